//! The local-loss convolutional block (algorithm.md §4.1): `IntegerConv2d → Scaling → activation`
//! with the learning head `[pool] → Flatten → IntegerLinear → Scaling`, and the sizing of that
//! head.

use super::head::{head_gradient, is_present, require_head, take_saved};
use crate::error::{Error, Result};
use crate::kernels::{buffers, Int};
use crate::layers::{
    flatten, unflatten, Activation, ActivationKind, Conv2d, Linear, Pool2d, PoolKind, Scaling,
};
use crate::metrics::LocalStats;
use crate::optim::{Compat, Sgd};
use alloc::format;
use ndarray::{Array2, Array4, ArrayView4};

/// The learning-head pooling of a conv block (algorithm.md §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadGeometry {
    /// Pooling kernel `(kh, kw)`; `(1, 1)` means no pooling.
    pub kernel: (usize, usize),
    /// Pooling padding `(ph, pw)`.
    pub padding: (usize, usize),
    /// Pooled spatial size `(dh, dw)`.
    pub dims: (usize, usize),
    /// Flattened head input `D = F·dh·dw`.
    pub features: usize,
}

fn ceil_div(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// Head sizing of algorithm.md §4.1 for a block output `filters × d × d`: double `kh` (and, while
/// still too large in the same round, `kw`) until `D ≤ decoder_dim` or `kh ≥ d`.
///
/// `F=128, d=28, decoder_dim=4096` gives kernel `(8,4)`, padding `(4,0)`, `D = 3584`.
pub fn head_geometry(filters: usize, d: usize, decoder_dim: usize) -> HeadGeometry {
    let (mut kh, mut kw, mut dh, mut dw) = (1usize, 1usize, d, d);
    let size = |dh: usize, dw: usize| filters.saturating_mul(dh).saturating_mul(dw);
    while size(dh, dw) > decoder_dim && kh < d {
        kh *= 2;
        dh = ceil_div(d, kh);
        if size(dh, dw) > decoder_dim {
            kw *= 2;
            dw = ceil_div(d, kw);
        }
    }
    let padding = if (kh, kw) == (1, 1) {
        (0, 0)
    } else {
        ((kh * (dh - d / kh)) / 2, (kw * (dw - d / kw)) / 2)
    };
    HeadGeometry {
        kernel: (kh, kw),
        padding,
        dims: (dh, dw),
        features: size(dh, dw),
    }
}

/// `IntegerConv2d → Scaling(2⁸·C·k·k) → activation`, with the learning head
/// `[MaxPool|AvgPool] → Flatten → IntegerLinear(D→classes) → Scaling(2⁸·D)` (algorithm.md §4.1).
#[derive(Clone, Debug)]
pub struct LocalConv2dBlock {
    /// The forward convolution.
    pub conv: Conv2d,
    /// Its scaling layer.
    pub conv_scale: Scaling,
    /// The activation.
    pub act: Activation,
    /// The head's pooling (absent when the block output already fits `decoder_dim`).
    pub pool: Option<Pool2d>,
    /// The head's linear layer.
    pub head: Linear,
    /// The head's scaling layer.
    pub head_scale: Scaling,
    /// Head pooling geometry.
    pub geometry: HeadGeometry,
    /// Output spatial size `d` of the block.
    pub out_size: usize,
    saved_out: Option<Array4<i8>>,
}

impl LocalConv2dBlock {
    /// A block from existing layers; `in_size` is the (square) input size.
    pub fn from_layers(
        conv: Conv2d,
        head: Linear,
        in_size: usize,
        decoder_dim: usize,
        head_pool: PoolKind,
        kind: ActivationKind,
    ) -> Result<Self> {
        let (d, _) = conv.output_size(in_size, in_size)?;
        let geometry = head_geometry(conv.filters(), d, decoder_dim);
        if head.in_features() != geometry.features {
            return Err(Error::shape(format!(
                "{} has {} inputs but the head of {} gives {}",
                head.name,
                head.in_features(),
                conv.name,
                geometry.features
            )));
        }
        let pool = (geometry.kernel != (1, 1))
            .then(|| Pool2d::new(head_pool, geometry.kernel, geometry.padding))
            .transpose()?;
        Ok(LocalConv2dBlock {
            conv_scale: Scaling::for_fan_in(conv.fan_in())?,
            head_scale: Scaling::for_fan_in(head.in_features())?,
            act: Activation::new(kind)?,
            pool,
            conv,
            head,
            geometry,
            out_size: d,
            saved_out: None,
        })
    }

    /// Forward through conv, scaling and activation; training mode saves what the local
    /// update needs.
    pub fn forward<T: Int>(&mut self, x: ArrayView4<'_, T>, train: bool) -> Result<Array4<i8>>
    where
        i16: From<T>,
    {
        let scaled = self.conv.forward_scaled(x, train, &self.conv_scale)?;
        let h = self.act.forward(scaled, train);
        self.saved_out = if train { Some(h.clone()) } else { None };
        Ok(h)
    }

    /// The training forward, its output kept only for the local update (no copy returned):
    /// the model reads it as the next stage's input through [`LocalConv2dBlock::kept_output`].
    pub(crate) fn forward_kept<T: Int>(&mut self, x: ArrayView4<'_, T>) -> Result<()>
    where
        i16: From<T>,
    {
        let scaled = self.conv.forward_scaled(x, true, &self.conv_scale)?;
        self.saved_out = Some(self.act.forward(scaled, true));
        Ok(())
    }

    /// The output the last training forward kept, until the local update takes it.
    pub(crate) fn kept_output(&self) -> Option<&Array4<i8>> {
        self.saved_out.as_ref()
    }

    /// Evaluation-mode forward.
    pub fn infer<T: Int>(&self, x: ArrayView4<'_, T>) -> Result<Array4<i8>>
    where
        i16: From<T>,
    {
        if let Some(table) = self.act.table() {
            // The activation's lookup on each tile of the scaled output as it is written.
            return self.conv.infer_scaled_lookup(x, &self.conv_scale, table);
        }
        let scaled = self.conv.infer_scaled(x, &self.conv_scale)?;
        let y = self.act.infer(&scaled);
        buffers::give_array(scaled);
        Ok(y)
    }

    /// The opt-in amplification adjustment `d² / (kh·kw)` of algorithm.md §5 (at least 1).
    pub fn amp_adjustment(&self) -> i64 {
        let (kh, kw) = self.geometry.kernel;
        ((self.out_size * self.out_size) / (kh * kw)).max(1) as i64
    }

    /// The local update (algorithm.md §4.1, §4.3): head forward on the saved output, local error,
    /// head update passing `δ·W_head` back through Flatten and the pooling, activation backward,
    /// convolution update. Conv blocks are updated once, also in [`Compat::Reference`].
    /// All-or-nothing: on error neither layer is changed.
    pub fn local_update(
        &mut self,
        target: &Array2<i8>,
        labels: &[usize],
        fwd_sgd: &Sgd,
        head_sgd: &Sgd,
        compat: Compat,
    ) -> Result<LocalStats> {
        let stats = self.stage_update(target, labels, fwd_sgd, head_sgd, compat)?;
        self.commit();
        Ok(stats)
    }

    /// [`LocalConv2dBlock::local_update`] without the final write: both layers' updates are
    /// checked and kept for [`LocalConv2dBlock::commit`] or [`LocalConv2dBlock::discard`]. On
    /// error they are already discarded.
    pub(crate) fn stage_update(
        &mut self,
        target: &Array2<i8>,
        labels: &[usize],
        fwd_sgd: &Sgd,
        head_sgd: &Sgd,
        compat: Compat,
    ) -> Result<LocalStats> {
        let result = self.stage_once(target, labels, fwd_sgd, head_sgd, compat);
        if result.is_err() {
            self.discard();
        }
        result
    }

    /// Write the staged updates: the step succeeded.
    pub(crate) fn commit(&mut self) {
        self.head.commit();
        self.conv.commit();
    }

    /// Drop the staged updates: the step failed.
    pub(crate) fn discard(&mut self) {
        self.head.discard();
        self.conv.discard();
    }

    fn stage_once(
        &mut self,
        target: &Array2<i8>,
        labels: &[usize],
        fwd_sgd: &Sgd,
        head_sgd: &Sgd,
        compat: Compat,
    ) -> Result<LocalStats> {
        let stats = self.compute_once(target, labels, compat)?;
        self.head.stage_gradient(head_sgd)?;
        self.conv.stage_gradient(fwd_sgd)?;
        Ok(stats)
    }

    /// The local update's gradients without the update: head forward on the saved output,
    /// local error, head gradient, `δ·W_head` back through Flatten, the pooling and the
    /// activation, convolution gradient. Both layers keep their gradient sums (for
    /// [`LocalConv2dBlock::stage_gradients`], or to be taken out of them); no parameter
    /// changes. On error nothing is kept.
    pub(crate) fn compute_gradients(
        &mut self,
        target: &Array2<i8>,
        labels: &[usize],
        compat: Compat,
    ) -> Result<LocalStats> {
        let result = self.compute_once(target, labels, compat);
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
            .and_then(|()| self.conv.stage_gradient(fwd_sgd));
        if r.is_err() {
            self.discard();
            self.clear();
        }
        r
    }

    fn compute_once(
        &mut self,
        target: &Array2<i8>,
        labels: &[usize],
        compat: Compat,
    ) -> Result<LocalStats> {
        require_head(&self.head)?;
        let h = take_saved(&mut self.saved_out, &self.conv.name)?;
        let pooled = match &mut self.pool {
            Some(p) => {
                let pooled = p.forward(h.view(), true, compat)?;
                // The block's output is spent: its buffer serves the next step's activation.
                buffers::give_array(h);
                pooled
            }
            None => h,
        };
        let (_, f, dh, dw) = pooled.dim();
        let flat = flatten(pooled);
        let (stats, back) = head_gradient(
            &mut self.head,
            &self.head_scale,
            flat.view(),
            target,
            labels,
            compat,
        )?;
        let back = unflatten(back, (f, dh, dw))?;
        // A max-pool head leaves at most one error per window and channel: the sparse path
        // (`kernels::sparse`) gives the same bits with a fraction of the multiply-adds.
        if let Some(p) = self.pool.as_mut().filter(|p| p.kind == PoolKind::Max) {
            let mut sparse = p.backward_sparse(back.view())?;
            self.act.backward_sparse(&mut sparse)?;
            self.conv.compute_backward_sparse(&sparse)?;
            return Ok(stats);
        }
        let back = match &mut self.pool {
            Some(p) => p.backward(back.view())?,
            None => back,
        };
        let d_act = self.act.backward(back)?;
        self.conv.compute_backward(d_act.view())?;
        Ok(stats)
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
        self.conv.clear();
        self.head.clear();
        if let Some(p) = &mut self.pool {
            p.clear();
        }
    }
}
