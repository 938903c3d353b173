//! Models (algorithm.md §4.2): the local-loss MLP and CNN. Both end in the same classifier —
//! local-loss linear blocks and an output layer — whose training step is written once
//! (`classifier.rs`); the CNN puts a feature extractor of conv blocks in front of it.

mod classifier;
mod cnn;
mod cnn_config;
mod gradients;
mod limits;
mod mlp;

pub(crate) use classifier::Settings;
// The persistence (`io/`) and the device blob (`export/`) write the settings of either
// configuration.
pub(crate) use classifier::settings_of;
pub use cnn::{Cnn, ConvParams, Stage};
pub use cnn_config::{CnnConfig, Feature, FeatureShape};
pub use gradients::{Gradients, LayerGradient};
pub use limits::{MAX_FEATURE_MAP, MAX_PARAMETERS};
pub use mlp::{Mlp, MlpConfig};
// What `train_step` returns, also reachable beside the models that produce it.
pub use crate::metrics::StepStats;
