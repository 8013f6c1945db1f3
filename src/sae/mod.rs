//! Sparse autoencoders: the field's tool for finding the features a model computes in
//! superposition. An SAE reads one activation (a transformer hook, or a superposition model's
//! hidden layer), learns an overcomplete sparse code for it, and is judged by how well it
//! reconstructs the activation, how sparse its code is, and, where the true features are known,
//! how many of them its decoder finds. Headless: the weights and their gradients, training,
//! metrics, and SAELens's file format.

pub mod features;
pub mod fourier;
pub mod hook;
pub mod metrics;
pub mod model;
mod rows;
pub mod source;
pub mod train;

pub use hook::{Positions, TransformerHook, hook_width};
pub use metrics::{SaeMetrics, feature_recovery};
pub use model::{Architecture, SaeGrads, SaeWeights, StepOutput, activate};
pub use source::{Activations, CeLosses, Origin, TmsHidden};
pub use train::{SaeError, SaeRun, SaeTrainer};
