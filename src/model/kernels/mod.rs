//! toylens's own kernels: candle custom ops with hand-written forward and backward passes on
//! host slices (the fused CPU kernels the plan's [`super::Kernels::FusedCpu`] runs), and the
//! index-ordered products a GPU uses for the full activation cache ([`ordered`]). Each is
//! tested against candle's composed ops for values and gradients.
//!
//! - [`attention_block`]: a whole attention layer (QKV, causal attention, output, optionally the
//!   residual add) as one op; [`attention_core`]: the causal attention between projections.
//! - [`causal_softmax`]: the attention pattern; [`softmax`]: the softmax and cross-entropy every
//!   host kernel shares.
//! - [`lm_loss`]: the unembedding and the next-token loss.
//! - [`bias`], [`gather`]: a bias over rows and a gather of table rows, with backward passes
//!   that suit the device.
//! - [`cpu`]: the kernels' thread pool, gemm call, row helpers and slice access; [`scratch`]:
//!   buffers reused between steps.

pub mod attention_block;
pub mod attention_core;
pub mod bias;
pub mod causal_softmax;
pub mod cpu;
pub mod gather;
pub mod lm_loss;
pub mod ordered;
pub mod scratch;
pub mod softmax;
