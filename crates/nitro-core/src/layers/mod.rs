//! The layers of algorithm.md §3. Each layer describes its products to [`crate::kernels`] and owns
//! what it saves between the forward and backward pass of one training step.

pub mod activation;
pub mod conv2d;
pub mod dropout;
pub mod linear;
pub mod pool;
mod saved;
pub mod scaling;

pub use activation::{Activation, ActivationKind};
pub use conv2d::Conv2d;
pub use dropout::Dropout;
pub use linear::Linear;
pub use pool::{flatten, unflatten, Pool2d, PoolKind};
pub use scaling::Scaling;
