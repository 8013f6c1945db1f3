//! Toy Models of Superposition (Elhage et al. 2022): a second kind of model beside the
//! transformer. `n_instances` independent models `x' = ReLU(WᵀWx + b)` (or linear) learn to
//! reconstruct sparse features through fewer hidden dimensions; each instance has its own
//! feature probability. The core is headless: config, data, the exact loss and gradients,
//! AdamW, and the paper's measures of the learned geometry.

pub mod config;
pub mod data;
#[cfg(target_arch = "x86_64")]
mod fused;
pub mod metrics;
pub mod model;
pub mod train;

pub use config::{
    Importance, Output, Probability, SparseFeatures, TmsModel, TmsPreset, TmsRun, TmsTraining,
};
pub use metrics::{
    FRACTIONS, Geometry, Regime, TmsMetrics, dims_per_feature, geometry, gram, norms_only, regime,
};
pub use model::{TmsGrads, TmsWeights, loss_and_grads};
pub use train::{Ended, TmsError, TmsTrainer};
