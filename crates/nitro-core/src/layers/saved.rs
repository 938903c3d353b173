//! The one error every layer gives when its backward finds nothing saved by a training-mode
//! forward (algorithm.md §3: a layer saves its input, mask or arg-max in training mode only).

use crate::error::Error;
use alloc::format;
use core::fmt::Display;

/// The error of a backward that found nothing saved; `who` names the layer (`"pooling"`,
/// `"conv_encoder_00:"`).
pub(crate) fn no_forward(who: impl Display) -> Error {
    Error::config(format!("{who} backward without a training-mode forward"))
}

/// The error of an update asked of a layer that holds no gradient (no backward ran in this
/// step, or its gradient was taken out).
pub(crate) fn no_gradient(layer: &str) -> Error {
    Error::config(format!("{layer}: update without a gradient of this step"))
}
