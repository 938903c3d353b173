//! The layers of SPEC §3. Each layer describes its products to [`crate::kernels`] and owns what it
//! saves between the forward and backward pass of one training step.

pub mod activation;
pub mod dropout;
pub mod linear;
pub mod scaling;

pub use activation::{Activation, ActivationKind};
pub use dropout::Dropout;
pub use linear::Linear;
pub use scaling::Scaling;
