//! Data-parallel training steps on rows `N × features`, for either model kind
//! (`model::gradients`): what a worker computes on its share of a batch and what every replica
//! applies once the shares are added up. The epoch loop itself does not change: a `Trainable`
//! whose `step` sends the batch's shares out and applies their sum (the Python binding's) runs
//! in `fit_from` as any model does, so shuffling, augmentation, evaluation, schedules and
//! checkpoints are those of plain training.

use super::Trainable;
use crate::data::Share;
use crate::error::Result;
use crate::model::{Cnn, Gradients, Mlp};
use crate::optim::Hyper;
use crate::rng::Pcg32;
use crate::StepStats;
use alloc::vec::Vec;
use ndarray::ArrayView2;

/// A model that computes the gradient sums of a share of a batch and applies a whole batch's.
pub trait DataParallel: Trainable {
    /// `Mlp::gradients` / `Cnn::gradients` on rows `x` (the rows `share` of a batch).
    fn gradients(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
        share: Share,
    ) -> Result<Gradients>;
    /// `Mlp::apply_gradients` / `Cnn::apply_gradients`.
    fn apply_gradients(&mut self, g: Gradients, hyper: &Hyper) -> Result<StepStats>;
    /// The dropout layers' generators, in order.
    fn dropout_rngs(&self) -> Vec<Pcg32>;
    /// Restore them; all or nothing.
    fn set_dropout_rngs(&mut self, rngs: &[Pcg32]) -> Result<()>;
}

impl DataParallel for Mlp {
    fn gradients(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
        share: Share,
    ) -> Result<Gradients> {
        Mlp::gradients(self, x, labels, hyper, share)
    }
    fn apply_gradients(&mut self, g: Gradients, hyper: &Hyper) -> Result<StepStats> {
        Mlp::apply_gradients(self, g, hyper)
    }
    fn dropout_rngs(&self) -> Vec<Pcg32> {
        Mlp::dropout_rngs(self)
    }
    fn set_dropout_rngs(&mut self, rngs: &[Pcg32]) -> Result<()> {
        Mlp::set_dropout_rngs(self, rngs)
    }
}

/// Rows `N × (C·H·W)` are reshaped to the model's NCHW images (`Cnn::images`).
impl DataParallel for Cnn {
    fn gradients(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
        share: Share,
    ) -> Result<Gradients> {
        let x = x.as_standard_layout();
        let imgs = self.images(x.view())?;
        Cnn::gradients(self, imgs, labels, hyper, share)
    }
    fn apply_gradients(&mut self, g: Gradients, hyper: &Hyper) -> Result<StepStats> {
        Cnn::apply_gradients(self, g, hyper)
    }
    fn dropout_rngs(&self) -> Vec<Pcg32> {
        Cnn::dropout_rngs(self)
    }
    fn set_dropout_rngs(&mut self, rngs: &[Pcg32]) -> Result<()> {
        Cnn::set_dropout_rngs(self, rngs)
    }
}
