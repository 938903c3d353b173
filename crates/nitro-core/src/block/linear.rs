//! The local-loss linear block (algorithm.md §4.1): `IntegerLinear → Scaling → activation` with its
//! own learning head `IntegerLinear → Scaling`.

use super::head::{head_gradient, is_present, require_head, take_saved, update_head};
use crate::error::Result;
use crate::init::{bound, try_uniform, Init};
use crate::kernels::Int;
use crate::layers::{Activation, ActivationKind, Linear, Scaling};
use crate::metrics::LocalStats;
use crate::names;
use crate::optim::{Compat, Sgd};
use crate::rng::Pcg32;
use alloc::format;
use ndarray::{Array2, ArrayView2};

/// `IntegerLinear(in→out) → Scaling → activation`, with head `IntegerLinear(out→classes) → Scaling`.
#[derive(Clone, Debug)]
pub struct LocalLinearBlock {
    /// The forward linear layer.
    pub fwd: Linear,
    /// Its scaling layer.
    pub fwd_scale: Scaling,
    /// The activation.
    pub act: Activation,
    /// The learning head's linear layer.
    pub head: Linear,
    /// The head's scaling layer.
    pub head_scale: Scaling,
    saved_out: Option<Array2<i8>>,
}

impl LocalLinearBlock {
    #[allow(clippy::too_many_arguments)]
    /// A freshly initialised block; `index` names its layers ([`names::linear_encoder`],
    /// [`names::linear_pred`]) and picks their seed streams.
    pub fn new(
        index: usize,
        inputs: usize,
        outputs: usize,
        classes: usize,
        kind: ActivationKind,
        init: Init,
        bias: bool,
        seed: u64,
    ) -> Result<Self> {
        let (fwd, head) = (names::linear_encoder(index), names::linear_pred(index));
        let mut r = Pcg32::new(seed, names::encoder_stream(index));
        let b = bound(init, kind, inputs, outputs);
        let w = try_uniform((outputs, inputs), b, &mut r, &fwd)?;
        let mut r = Pcg32::new(seed, names::head_stream(index));
        let b = bound(init, kind, outputs, classes);
        let h = try_uniform((classes, outputs), b, &mut r, &head)?;
        let b1 = bias.then(|| ndarray::Array1::zeros(outputs));
        let b2 = bias.then(|| ndarray::Array1::zeros(classes));
        Self::from_layers(Linear::new(fwd, w, b1)?, Linear::new(head, h, b2)?, kind)
    }

    /// A block from existing layers (e.g. loaded from a file).
    pub fn from_layers(fwd: Linear, head: Linear, kind: ActivationKind) -> Result<Self> {
        if head.in_features() != fwd.out_features() {
            return Err(crate::Error::shape(format!(
                "{} has {} inputs but {} has {} outputs",
                head.name,
                head.in_features(),
                fwd.name,
                fwd.out_features()
            )));
        }
        Ok(LocalLinearBlock {
            fwd_scale: Scaling::for_fan_in(fwd.in_features())?,
            head_scale: Scaling::for_fan_in(head.in_features())?,
            act: Activation::new(kind)?,
            fwd,
            head,
            saved_out: None,
        })
    }

    /// Forward through the block's forward layers; in training mode everything needed for the
    /// local update is saved.
    pub fn forward<T: Int>(&mut self, x: ArrayView2<'_, T>, train: bool) -> Result<Array2<i8>>
    where
        i16: From<T>,
    {
        let z = self.fwd.forward(x, train)?;
        Ok(self.forward_rest(z, train))
    }

    /// [`LocalLinearBlock::forward`] of an owned `i16` input, kept without a copy for the update.
    pub(crate) fn forward_owned(&mut self, x: Array2<i16>, train: bool) -> Result<Array2<i8>> {
        let z = self.fwd.forward_owned(x, train)?;
        Ok(self.forward_rest(z, train))
    }

    /// Scaling and activation of the forward layer's output `z`.
    fn forward_rest(&mut self, z: Array2<i64>, train: bool) -> Array2<i8> {
        let s = self.fwd_scale.forward_consuming(z);
        let h = self.act.forward(s, train);
        self.saved_out = if train { Some(h.clone()) } else { None };
        h
    }

    /// Evaluation-mode forward without touching saved state.
    pub fn infer<T: Int>(&self, x: ArrayView2<'_, T>) -> Result<Array2<i8>> {
        let z = self.fwd.infer(x)?;
        Ok(self.act.infer(&self.fwd_scale.forward_consuming(z)))
    }

    /// The head's prediction for a block output `h`.
    pub fn head_predict(&self, h: ArrayView2<'_, i8>) -> Result<Array2<i8>> {
        Ok(self.head_scale.forward_consuming(self.head.infer(h)?))
    }

    /// The local update of algorithm.md §4.1/§4.3 on what the training forward saved: head forward,
    /// local error, head update (passing `δ·W_head` back), activation backward, forward-layer
    /// update. `repeat` re-runs it on the same saved tensors (algorithm.md §12, item 1).
    /// All-or-nothing: on error neither layer is changed.
    pub fn local_update(
        &mut self,
        target: &Array2<i8>,
        labels: &[usize],
        fwd_sgd: &Sgd,
        head_sgd: &Sgd,
        compat: Compat,
        repeat: bool,
    ) -> Result<LocalStats> {
        let stats = self.stage_update(target, labels, fwd_sgd, head_sgd, compat, repeat)?;
        self.commit();
        Ok(stats)
    }

    /// [`LocalLinearBlock::local_update`] without the final write: both layers' updates are
    /// checked and kept for [`LocalLinearBlock::commit`] or [`LocalLinearBlock::discard`]. On
    /// error they are already discarded.
    ///
    /// With `repeat` the second run must see the first run's result (head forward and `δ·W`
    /// with the updated head, updates on top of the updated weights): the first run's updates
    /// are written provisionally, and [`LocalLinearBlock::discard`] returns to the parameters
    /// from before the step.
    pub(crate) fn stage_update(
        &mut self,
        target: &Array2<i8>,
        labels: &[usize],
        fwd_sgd: &Sgd,
        head_sgd: &Sgd,
        compat: Compat,
        repeat: bool,
    ) -> Result<LocalStats> {
        let result = (|| {
            require_head(&self.head)?;
            let h = take_saved(&mut self.saved_out, &self.fwd.name)?;
            // The forward input and the activation input, for the second run.
            let again = repeat.then(|| (self.fwd.saved_input().cloned(), self.act.clone()));
            let stats = self.stage_once(&h, target, labels, fwd_sgd, head_sgd, compat)?;
            if let Some((x, act)) = again {
                self.head.write_provisionally();
                self.fwd.write_provisionally();
                self.fwd.restore_input(x);
                self.act = act;
                self.stage_once(&h, target, labels, fwd_sgd, head_sgd, compat)?;
            }
            Ok(stats)
        })();
        if result.is_err() {
            self.discard();
        }
        result
    }

    /// Write the staged updates: the step succeeded.
    pub(crate) fn commit(&mut self) {
        self.head.commit();
        self.fwd.commit();
    }

    /// Drop the staged updates and return to the parameters from before the step.
    pub(crate) fn discard(&mut self) {
        self.head.discard();
        self.fwd.discard();
    }

    fn stage_once(
        &mut self,
        h: &Array2<i8>,
        target: &Array2<i8>,
        labels: &[usize],
        fwd_sgd: &Sgd,
        head_sgd: &Sgd,
        compat: Compat,
    ) -> Result<LocalStats> {
        let (stats, back) = update_head(
            &mut self.head,
            &self.head_scale,
            h.view(),
            target,
            labels,
            head_sgd,
            compat,
        )?;
        let d_act = self.act.backward(back)?;
        self.fwd.stage_backward(d_act.view(), false, fwd_sgd)?;
        Ok(stats)
    }

    /// The local update's gradients without the update (algorithm.md §4.3, once): head forward
    /// on the saved output, local error, head gradient, `δ·W_head` (the weights before the
    /// step) through the activation, forward-layer gradient. Both layers keep their gradient
    /// sums for [`LocalLinearBlock::stage_gradients`] (or to be taken out of them);
    /// no parameter changes.
    pub(crate) fn compute_gradients(
        &mut self,
        target: &Array2<i8>,
        labels: &[usize],
        compat: Compat,
    ) -> Result<LocalStats> {
        let result = (|| {
            require_head(&self.head)?;
            let h = take_saved(&mut self.saved_out, &self.fwd.name)?;
            let (stats, back) = head_gradient(
                &mut self.head,
                &self.head_scale,
                h.view(),
                target,
                labels,
                compat,
            )?;
            let d_act = self.act.backward(back)?;
            self.fwd.compute_backward(d_act.view(), false)?;
            Ok(stats)
        })();
        if result.is_err() {
            self.clear();
        }
        result
    }

    /// Stage the IntegerSGD updates of the kept gradients (head first), checked and not
    /// written; on error both are dropped.
    pub(crate) fn stage_gradients(&mut self, fwd_sgd: &Sgd, head_sgd: &Sgd) -> Result<()> {
        let r = self
            .head
            .stage_gradient(head_sgd)
            .and_then(|()| self.fwd.stage_gradient(fwd_sgd));
        if r.is_err() {
            self.discard();
            self.clear();
        }
        r
    }

    /// The forward layer and the head, in the order of the models' `linears`.
    pub(crate) fn layers_mut(&mut self) -> [&mut Linear; 2] {
        [&mut self.fwd, &mut self.head]
    }

    /// Whether the block has its learning head (not the absent head of an inference-only
    /// model, [`crate::block::absent_head`]).
    pub fn has_head(&self) -> bool {
        is_present(&self.head)
    }

    /// `Ok` when the block has its learning head; otherwise the error that training needs it.
    pub fn require_head(&self) -> Result<()> {
        require_head(&self.head)
    }

    /// Drop saved training state.
    pub fn clear(&mut self) {
        self.saved_out = None;
        self.fwd.clear();
        self.head.clear();
    }
}
