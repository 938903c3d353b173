//! The exact gradient sums of one layer for one training step: what IntegerSGD (`sgd.rs`)
//! turns into an update, kept apart from it so that the sums of several parts of a batch can be
//! added up first (data-parallel training, `model::gradients`).

use crate::error::{Error, Result};
use alloc::format;
use ndarray::{Array, Array1, Dimension};

/// The `i64` gradient sums of a layer's weights (the weights' shape) and of its bias, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Gradient<D: Dimension> {
    pub weight: Array<i64, D>,
    pub bias: Option<Array1<i64>>,
}

impl<D: Dimension> Gradient<D> {
    /// A shape error naming `layer` unless the weight gradient has the shape `weight` and the
    /// bias gradient (if any) `bias` entries, present exactly when the layer has a bias.
    pub fn check(&self, weight: &[usize], bias: Option<usize>, layer: &str) -> Result<()> {
        let got_bias = self.bias.as_ref().map(|b| b.len());
        if self.weight.shape() != weight || got_bias != bias {
            return Err(Error::shape(format!(
                "{layer}: gradient of shape {:?} (bias {got_bias:?}) for parameters of shape \
                 {weight:?} (bias {bias:?})",
                self.weight.shape()
            )));
        }
        Ok(())
    }
}
