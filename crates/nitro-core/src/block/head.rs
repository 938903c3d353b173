//! The learning head's half of a local update (algorithm.md §4.1, §4.3), shared by both block
//! kinds: head forward, local loss and error, head update passing `δ·W_head` back.

use crate::error::{Error, Result};
use crate::layers::{Linear, Scaling};
use crate::loss::{loss_and_correct, output_error};
use crate::metrics::LocalStats;
use crate::optim::{Compat, Sgd};
use alloc::format;
use ndarray::{Array2, ArrayView2};

/// The block output a training forward saved for the local update; an error naming `layer`
/// when there was none.
pub(super) fn take_saved<A>(saved: &mut Option<A>, layer: &str) -> Result<A> {
    saved
        .take()
        .ok_or_else(|| Error::config(format!("{layer}: local update without a training forward")))
}

/// Head forward on the (flattened) block output `h`, the local loss against `target`, and the
/// head update, staged (`Linear::stage_backward`: checked, not yet written); returns the stats
/// and the error `δ·W_head` (with the head's weights before the update) for the block's
/// forward layers.
pub(super) fn update_head(
    head: &mut Linear,
    head_scale: &Scaling,
    h: ArrayView2<'_, i8>,
    target: &Array2<i8>,
    labels: &[usize],
    head_sgd: &Sgd,
    compat: Compat,
) -> Result<(LocalStats, Array2<i32>)> {
    let pred = head_scale.forward(&head.forward(h, true)?);
    let (loss, correct) = loss_and_correct(&pred, target, labels);
    let delta = output_error(&pred, target, compat);
    let back = head
        .stage_backward(delta.view(), true, head_sgd)?
        .ok_or_else(|| Error::config(format!("{}: no input error", head.name)))?;
    Ok((LocalStats { loss, correct }, back))
}
