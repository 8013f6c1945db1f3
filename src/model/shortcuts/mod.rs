//! Exact alternatives to the general path for particular models, each taken only where the
//! model's plan says so ([`super::Plan::shortcut`], [`super::Plan::lm_step`]) and each tested
//! equal to the general path:
//! - [`token_table`]: last-position logits of the skip-trigram model from per-token tables, and
//!   from token multisets;
//! - [`fixed_query`]: modular addition's `a b =` model, whose scored query is the same for every
//!   sample;
//! - [`direct_step`]: the LM training step of attention-only models, the fused kernels called
//!   on the parameters' host memory outside candle's graph.

pub mod direct_step;
pub mod fixed_query;
pub mod token_table;

pub use fixed_query::FixedQueryShape;
