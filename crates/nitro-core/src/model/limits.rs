//! Upper bounds on the sizes a model may declare, checked with checked arithmetic before any
//! weight is allocated: a configuration beyond them — built in code, read from a file or a
//! blob — is an [`Error::Config`] naming the size, never an allocation failure that aborts the
//! process. (Allocation of the weights themselves is fallible too: `init::try_uniform`.)

use crate::error::{Error, Result};
use alloc::format;

/// Most trainable parameters (weights and biases of every layer) a model may have: 2³⁰, 4 GiB
/// of `i32` weights. The paper's largest model, MLP4, has 27 million.
pub const MAX_PARAMETERS: usize = 1 << 30;

/// Most elements of one image's feature map `C × d × d` at any point of a CNN, its input
/// included: 2²⁴. VGG8B on CIFAR-10 peaks at 128×32×32 = 131 072.
pub const MAX_FEATURE_MAP: usize = 1 << 24;

/// Parameters counted with checked arithmetic: `None` once the count leaves `usize`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Count(Option<usize>);

impl Count {
    pub(crate) fn zero() -> Self {
        Count(Some(0))
    }

    /// Add a layer of `out × inputs` weights (and `out` biases with `bias`).
    pub(crate) fn layer(self, out: usize, inputs: usize, bias: bool) -> Self {
        let n = inputs
            .checked_add(usize::from(bias))
            .and_then(|i| i.checked_mul(out));
        Count(self.0.zip(n).and_then(|(a, b)| a.checked_add(b)))
    }

    /// The total, or an error naming the model `what` and its size.
    pub(crate) fn check(self, what: &dyn core::fmt::Display) -> Result<usize> {
        match self.0 {
            Some(n) if n <= MAX_PARAMETERS => Ok(n),
            Some(n) => Err(Error::config(format!(
                "{what} would have {n} parameters, more than the {MAX_PARAMETERS} a model may \
                 have (MAX_PARAMETERS); make the layers narrower"
            ))),
            None => Err(Error::config(format!(
                "{what} would have more parameters than this machine can count; make the \
                 layers narrower"
            ))),
        }
    }
}

/// `c × d × d` elements, or an error naming `what` when beyond [`MAX_FEATURE_MAP`].
pub(crate) fn feature_map(what: &dyn core::fmt::Display, c: usize, d: usize) -> Result<usize> {
    match c.checked_mul(d).and_then(|n| n.checked_mul(d)) {
        Some(n) if n <= MAX_FEATURE_MAP => Ok(n),
        _ => Err(Error::config(format!(
            "{what}: a {c}×{d}×{d} feature map is larger than the {MAX_FEATURE_MAP} elements per \
             image a CNN may have (MAX_FEATURE_MAP)"
        ))),
    }
}
