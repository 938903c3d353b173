//! IntegerConv2d (algorithm.md §3.2): stride 1, zero padding `p`, square kernel `k`, optional bias.
//!
//! Forward `z[m,f,i,j] = Σ_{c,u,v} W[f,c,u,v]·xp[m,c,i+u,j+v]`; weight gradient
//! `G[f,c,u,v] = Σ_{m,i,j} δ[m,f,i,j]·xp[m,c,i+u,j+v]`; bias gradient `Σ_{m,i,j} δ`. Both are
//! lowered onto the exact GEMM ([`crate::kernels::im2col`]), so their accumulator widths are
//! proven (algorithm.md §10). The input-error path is not needed inside a NITRO-D block and is not
//! built.

use super::saved::{no_forward, no_gradient};
use super::scaling::Scaling;
use crate::error::{Error, Result};
use crate::kernels::channels_last::ChannelsLast;
use crate::kernels::im2col::{out_size, Patches, PatchesHwc};
use crate::kernels::nchw::NchwLane;
use crate::kernels::sparse::{conv_weight_gradient, SparseDelta};
use crate::kernels::{conv_rows_nt_nchw, gemm_nt_rows, Int};
use crate::optim::{Gradient, Sgd, Staged};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ndarray::{Array1, Array2, Array4, ArrayView4, Axis, Ix4};

/// A 2-D convolution with `i32` weights `F×C×k×k` and an optional `i32` bias `F`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Name used in errors and in saved files (e.g. `conv_encoder_00`).
    pub name: String,
    /// Weights, `F × C × k × k`.
    pub weight: Array4<i32>,
    /// Optional bias, `F`.
    pub bias: Option<Array1<i32>>,
    /// Zero padding on each side.
    pub padding: usize,
    saved: Option<ChannelsLast>,
    /// The checked update of the training step in progress, not yet written
    /// ([`Conv2d::stage_backward`]).
    pending: Option<Staged<Ix4>>,
    /// The exact gradient sums of the training step in progress, not yet applied
    /// ([`Conv2d::compute_backward`]).
    grad: Option<Gradient<Ix4>>,
}

impl Conv2d {
    /// A layer with the given weights; `stride` must be 1 (the paper's only stride).
    pub fn new(
        name: impl Into<String>,
        weight: Array4<i32>,
        bias: Option<Array1<i32>>,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let name = name.into();
        if stride != 1 {
            return Err(Error::config(format!(
                "{name}: convolution stride {stride} is not supported; NITRO-D convolutions use \
                 stride 1 (docs/algorithm.md §3.2) — downsample with MaxPool/AvgPool instead"
            )));
        }
        let (f, c, kh, kw) = weight.dim();
        if kh != kw || kh == 0 || f == 0 || c == 0 {
            return Err(Error::shape(format!(
                "{name}: weight must be F×C×k×k with positive sizes, got {:?}",
                weight.dim()
            )));
        }
        if let Some(b) = &bias {
            if b.len() != f {
                return Err(Error::shape(format!(
                    "{name}: bias has {} entries, weight has {f} filters",
                    b.len()
                )));
            }
        }
        Ok(Conv2d {
            name,
            weight,
            bias,
            padding,
            saved: None,
            pending: None,
            grad: None,
        })
    }

    /// Filters `F`.
    pub fn filters(&self) -> usize {
        self.weight.dim().0
    }
    /// Input channels `C`.
    pub fn channels(&self) -> usize {
        self.weight.dim().1
    }
    /// Kernel size `k`.
    pub fn kernel(&self) -> usize {
        self.weight.dim().2
    }
    /// `fan_in = C·k·k` (algorithm.md §3.2; the scaling layer after it uses `2⁸·fan_in`).
    pub fn fan_in(&self) -> usize {
        self.channels() * self.kernel() * self.kernel()
    }

    /// Output spatial size for an `h×w` input.
    pub fn output_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let (hp, wp) = self.padded_size(h, w)?;
        out_size(hp, wp, self.kernel()).map_err(|e| e.in_layer(&self.name))
    }

    /// `(h + 2p, w + 2p)`, checked: a padding that would wrap is a shape error.
    fn padded_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let p2 = self.padding.checked_mul(2);
        let add = |x: usize| p2.and_then(|p| p.checked_add(x));
        add(h).zip(add(w)).ok_or_else(|| {
            Error::shape(format!(
                "{}: padding {} is too large for a {h}×{w} input",
                self.name, self.padding
            ))
        })
    }

    fn compute(&self, xp: &ChannelsLast) -> Result<Array4<i64>> {
        self.compute_map(xp, |v| v)
    }

    /// The convolution of a padded input with `epilogue` applied to every output (bias added
    /// first), written straight into `N × F × Ho × Wo` order.
    fn compute_map<O, E>(&self, xp: &ChannelsLast, epilogue: E) -> Result<Array4<O>>
    where
        O: NchwLane,
        E: crate::kernels::nchw::Epilogue<O>,
    {
        let (n, _, hp, wp) = xp.dim();
        let (ho, wo) = out_size(hp, wp, self.kernel()).map_err(|e| e.in_layer(&self.name))?;
        // Channels-last patches and weights: the same sums, faster patch rows (im2col.rs).
        let cols = PatchesHwc::new(xp, self.kernel())?;
        let f = self.filters();
        let bias: Vec<i64> = match &self.bias {
            Some(b) => b.iter().map(|&v| i64::from(v)).collect(),
            None => alloc::vec![0; f],
        };
        // The (N·Ho·Wo) × F product (row (m, i, j): every filter's output at that position)
        // through the epilogue into N × F × Ho·Wo.
        let out = conv_rows_nt_nchw(&cols, self.weight.view(), (n, ho * wo), &bias, epilogue)
            .map_err(|e| e.in_layer(&self.name))?;
        Ok(Array4::from_shape_vec((n, f, ho, wo), out).expect("sizes computed above"))
    }

    /// [`Conv2d::forward`] followed by `scale` in one pass (no `i64` output tensor): the same
    /// values as `scale.forward(&conv.forward(x, train)?)`.
    pub fn forward_scaled<T: Int>(
        &mut self,
        x: ArrayView4<'_, T>,
        train: bool,
        scale: &Scaling,
    ) -> Result<Array4<i8>>
    where
        i16: From<T>,
    {
        let xp = self.padded_input(&x)?;
        let y = self.compute_map(&xp, scale.scalar())?;
        self.saved = if train { Some(xp) } else { None };
        Ok(y)
    }

    /// [`Conv2d::infer`] followed by `scale` in one pass.
    pub fn infer_scaled<T: Int>(&self, x: ArrayView4<'_, T>, scale: &Scaling) -> Result<Array4<i8>>
    where
        i16: From<T>,
    {
        let xp = self.padded_input(&x)?;
        self.compute_map(&xp, scale.scalar())
    }

    /// [`Conv2d::infer_scaled`] followed by `table` (`table[scaled as u8]`, an activation's
    /// table) in the same pass.
    pub(crate) fn infer_scaled_lookup<T: Int>(
        &self,
        x: ArrayView4<'_, T>,
        scale: &Scaling,
        table: [i8; 256],
    ) -> Result<Array4<i8>>
    where
        i16: From<T>,
    {
        let xp = self.padded_input(&x)?;
        let scale = scale.scalar();
        self.compute_map(&xp, crate::kernels::lookup::Then::new(scale, table))
    }

    /// The input widened to `i16`, padded and channels-last in one pass: what the forward's
    /// patches read and the backward keeps.
    fn padded_input<T: Int>(&self, x: &ArrayView4<'_, T>) -> Result<ChannelsLast>
    where
        i16: From<T>,
    {
        if x.dim().1 != self.channels() {
            return Err(Error::shape(format!(
                "{}: expected {} input channels, got {}",
                self.name,
                self.channels(),
                x.dim().1
            )));
        }
        let (_, _, h, w) = x.dim();
        self.padded_size(h, w)?;
        ChannelsLast::padded(x.view(), self.padding).map_err(|e| e.in_layer(&self.name))
    }

    /// `z` (exact, `i64`, `N×F×Ho×Wo`); in training mode the padded input is saved.
    pub fn forward<T: Int>(&mut self, x: ArrayView4<'_, T>, train: bool) -> Result<Array4<i64>>
    where
        i16: From<T>,
    {
        let xp = self.padded_input(&x)?;
        let z = self.compute(&xp)?;
        self.saved = if train { Some(xp) } else { None };
        Ok(z)
    }

    /// Forward without saving anything (evaluation).
    pub fn infer<T: Int>(&self, x: ArrayView4<'_, T>) -> Result<Array4<i64>>
    where
        i16: From<T>,
    {
        let xp = self.padded_input(&x)?;
        self.compute(&xp)
    }

    /// Weight gradient `F×C×k×k` and bias gradient for `δ` (`N×F×Ho×Wo`) against the saved
    /// padded input (not consumed). The reduction over `N·Ho·Wo` is proven by the GEMM.
    pub fn gradients(
        &self,
        delta: ArrayView4<'_, i32>,
    ) -> Result<(Array4<i64>, Option<Array1<i64>>)> {
        let xp = self
            .saved
            .as_ref()
            .ok_or_else(|| no_forward(format_args!("{}:", self.name)))?;
        let (n, _, hp, wp) = xp.dim();
        let (ho, wo) = out_size(hp, wp, self.kernel())?;
        let f = self.filters();
        if delta.dim() != (n, f, ho, wo) {
            return Err(Error::shape(format!(
                "{}: error is {:?}, expected {:?}",
                self.name,
                delta.dim(),
                (n, f, ho, wo)
            )));
        }
        // δ as F × (N·Ho·Wo), matching the column order of the transposed patches.
        let hw = ho * wo;
        let ds = delta.as_standard_layout();
        let d = ds.as_slice().expect("standard layout");
        let mut dt = Vec::with_capacity(d.len());
        for fi in 0..f {
            for m in 0..n {
                dt.extend_from_slice(&d[(m * f + fi) * hw..(m * f + fi + 1) * hw]);
            }
        }
        let dt = Array2::from_shape_vec((f, n * hw), dt).expect("sizes");
        // The dense path reads the input in NCHW order (average-pool heads and heads without
        // pooling only; max-pool heads take the sparse path on the channels-last copy).
        let xp = xp.to_nchw();
        let cols = Patches::transposed(xp.view(), self.kernel())?;
        let g = gemm_nt_rows(dt.view(), &cols).map_err(|e| e.in_layer(&self.name))?;
        let (_, c, k, _) = self.weight.dim();
        let g = g.into_shape_with_order((f, c, k, k)).expect("F×CKK");
        let gb = self
            .bias
            .as_ref()
            .map(|_| dt.map(|&v| i64::from(v)).sum_axis(Axis(1)));
        Ok((g, gb))
    }

    /// Backward for `δ`: update weights (and bias) with IntegerSGD, all-or-nothing. No input
    /// error is produced (algorithm.md §3.2: it is never needed inside a NITRO-D block).
    pub fn backward(&mut self, delta: ArrayView4<'_, i32>, sgd: &Sgd) -> Result<()> {
        self.stage_backward(delta, sgd)?;
        self.commit();
        Ok(())
    }

    /// [`Conv2d::backward`] without the write: the update is checked and kept for
    /// [`Conv2d::commit`] or [`Conv2d::discard`]; the parameters are not changed.
    pub(crate) fn stage_backward(&mut self, delta: ArrayView4<'_, i32>, sgd: &Sgd) -> Result<()> {
        self.compute_backward(delta)?;
        self.stage_gradient(sgd)
    }

    /// The first half of [`Conv2d::stage_backward`]: the exact gradient sums of `δ`, kept in
    /// the layer (for [`Conv2d::stage_gradient`] or [`Conv2d::take_gradient`]); the saved
    /// input is dropped, no parameter changes.
    pub(crate) fn compute_backward(&mut self, delta: ArrayView4<'_, i32>) -> Result<()> {
        self.pending = None;
        self.grad = None;
        let (weight, bias) = self.gradients(delta)?;
        self.saved = None;
        self.grad = Some(Gradient { weight, bias });
        Ok(())
    }

    /// [`Conv2d::compute_backward`] for a sparse error ([`Conv2d::gradients_sparse`]).
    pub(crate) fn compute_backward_sparse(&mut self, delta: &SparseDelta) -> Result<()> {
        self.pending = None;
        self.grad = None;
        let (weight, bias) = self.gradients_sparse(delta)?;
        self.saved = None;
        self.grad = Some(Gradient { weight, bias });
        Ok(())
    }

    /// The IntegerSGD update of the kept gradient, checked and kept for [`Conv2d::commit`].
    pub(crate) fn stage_gradient(&mut self, sgd: &Sgd) -> Result<()> {
        self.pending = None;
        let g = self.grad.take().ok_or_else(|| no_gradient(&self.name))?;
        let bias = self.bias.as_ref().zip(g.bias);
        self.pending = Some(sgd.stage(&self.weight, g.weight, bias, &self.name)?);
        Ok(())
    }

    /// The gradient kept by [`Conv2d::compute_backward`], taken out of the layer.
    pub(crate) fn take_gradient(&mut self) -> Option<Gradient<Ix4>> {
        self.grad.take()
    }

    /// Keep `g` as the gradient of the step in progress; a shape error unless it fits.
    pub(crate) fn put_gradient(&mut self, g: Gradient<Ix4>) -> Result<()> {
        g.check(
            self.weight.shape(),
            self.bias.as_ref().map(|b| b.len()),
            &self.name,
        )?;
        self.grad = Some(g);
        Ok(())
    }

    /// Write the staged update, if any.
    pub(crate) fn commit(&mut self) {
        if let Some(p) = self.pending.take() {
            p.commit(&mut self.weight, self.bias.as_mut());
        }
    }

    /// Drop the staged update, if any.
    pub(crate) fn discard(&mut self) {
        self.pending = None;
    }

    /// [`Conv2d::gradients`] for an error given by its non-zero entries (as a max-pool head
    /// leaves it): the same values, from only those entries' patches
    /// ([`crate::kernels::sparse`]).
    pub fn gradients_sparse(
        &self,
        delta: &SparseDelta,
    ) -> Result<(Array4<i64>, Option<Array1<i64>>)> {
        let xp = self
            .saved
            .as_ref()
            .ok_or_else(|| no_forward(format_args!("{}:", self.name)))?;
        let f = self.filters();
        if delta.dim().1 != f {
            return Err(Error::shape(format!(
                "{}: error has {} filters, the layer {f}",
                self.name,
                delta.dim().1
            )));
        }
        let (g, gb) = conv_weight_gradient(xp, self.kernel(), delta, self.bias.is_some())
            .map_err(|e| e.in_layer(&self.name))?;
        let (_, c, k, _) = self.weight.dim();
        let g = Array4::from_shape_vec((f, c, k, k), g).expect("F×CKK");
        Ok((g, gb.map(Array1::from)))
    }

    /// [`Conv2d::backward`] for a sparse error: the update of [`Conv2d::gradients_sparse`].
    pub fn backward_sparse(&mut self, delta: &SparseDelta, sgd: &Sgd) -> Result<()> {
        self.stage_backward_sparse(delta, sgd)?;
        self.commit();
        Ok(())
    }

    /// [`Conv2d::backward_sparse`] without the write (see [`Conv2d::stage_backward`]).
    pub(crate) fn stage_backward_sparse(&mut self, delta: &SparseDelta, sgd: &Sgd) -> Result<()> {
        self.compute_backward_sparse(delta)?;
        self.stage_gradient(sgd)
    }

    /// Drop anything saved by a training-mode forward, and any staged update.
    pub fn clear(&mut self) {
        self.saved = None;
        self.pending = None;
        self.grad = None;
    }
}
