//! The learning head's half of a local update (algorithm.md §4.1, §4.3), shared by both block kinds:
//! head forward, local loss and error, head update passing `δ·W_head` back; and the head left
//! out of an inference-only model.
//!
//! Prediction never runs a learning head, so a device that only predicts does not need them
//! (`export::BlobOptions::heads`). Such a model holds in each block an *absent* head: a linear
//! layer with the head's inputs and no outputs, which takes no memory and keeps every shape
//! check of the block as it is; a local update of it is an error ([`require_head`]).

use crate::error::{Error, Result};
use crate::layers::{Linear, Scaling};
use crate::loss::{loss_and_correct, output_error};
use crate::metrics::LocalStats;
use crate::optim::{Compat, Sgd};
use alloc::format;
use ndarray::{Array2, ArrayView2};

/// The absent learning head `name` of a block whose head reads `inputs` features (see the
/// module documentation).
pub fn absent_head(name: impl Into<alloc::string::String>, inputs: usize) -> Result<Linear> {
    Linear::new(name, Array2::zeros((0, inputs)), None)
}

/// Whether `head` is a learning head rather than an absent one (a real head has one output per
/// class, at least 2).
pub(super) fn is_present(head: &Linear) -> bool {
    head.out_features() != 0
}

/// `Ok` for a present learning head; for an absent one the error that training (or saving as a
/// model file) needs the heads, naming the head and what to do instead.
pub(crate) fn require_head(head: &Linear) -> Result<()> {
    if is_present(head) {
        return Ok(());
    }
    Err(Error::config(format!(
        "{}: this model was loaded without its learning heads (an inference-only device blob); \
         it predicts and exports as an inference-only blob, but training it or saving it as a \
         model file needs the heads: load a blob exported with heads (BlobOptions::heads, \
         `nitrod export --format bin` without --no-heads) or the model file itself",
        head.name
    )))
}

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
    let out = head_gradient(head, head_scale, h, target, labels, compat)?;
    head.stage_gradient(head_sgd)?;
    Ok(out)
}

/// [`update_head`] without the update: the head's gradient sums are kept in it
/// (`Linear::compute_backward`).
pub(super) fn head_gradient(
    head: &mut Linear,
    head_scale: &Scaling,
    h: ArrayView2<'_, i8>,
    target: &Array2<i8>,
    labels: &[usize],
    compat: Compat,
) -> Result<(LocalStats, Array2<i32>)> {
    let pred = head_scale.forward_consuming(head.forward(h, true)?);
    let (loss, correct) = loss_and_correct(&pred, target, labels);
    let delta = output_error(&pred, target, compat);
    let back = head
        .compute_backward(delta.view(), true)?
        .ok_or_else(|| Error::config(format!("{}: no input error", head.name)))?;
    Ok((LocalStats { loss, correct }, back))
}
