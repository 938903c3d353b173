//! Data preparation of algorithm.md §2: per-channel integer normalisation, per-sample augmentation,
//! labelled sets with seeded batching, and (std only) IDX file readers. One-hot targets belong
//! to the classifier's loss (`loss.rs`).

mod augment;
mod dataset;
#[cfg(feature = "std")]
pub mod idx;
mod normalization;
mod share;
mod split;

pub use augment::Augment;
pub use dataset::Dataset;
pub use normalization::Normalization;
pub use share::Share;
pub use split::Split;
