//! IntegerLinear (algorithm.md §3.1): `z = x·Wᵀ (+ b)`, weight gradient `δᵀ·x`, input error `δ·W`.

use super::saved::{no_forward, no_gradient};
use crate::arith::narrow_i32;
use crate::error::{Error, Result};
use crate::kernels::{gemm_nn, gemm_nt, gemm_tn, Int};
use crate::optim::{Gradient, Sgd, Staged};
use alloc::format;
use alloc::string::String;
use ndarray::{Array1, Array2, ArrayView2, Ix2};

/// A fully connected layer with `i32` weights `out×in` and an optional `i32` bias.
#[derive(Clone, Debug)]
pub struct Linear {
    /// Name used in errors and in saved files (e.g. `linear_encoder_00`).
    pub name: String,
    /// Weights, `out × in`.
    pub weight: Array2<i32>,
    /// Optional bias, `out`.
    pub bias: Option<Array1<i32>>,
    saved: Option<Array2<i16>>,
    /// The checked update of the training step in progress, not yet written
    /// ([`Linear::stage_backward`]).
    pending: Option<Staged<Ix2>>,
    /// The exact gradient sums of the training step in progress, not yet applied
    /// ([`Linear::compute_backward`]; data-parallel training combines them across workers
    /// before one update), or the product that gives them.
    grad: Option<Held>,
    /// The parameters from before the step, while an update of it has been written
    /// provisionally ([`Linear::write_provisionally`]).
    before: Option<(Array2<i32>, Option<Array1<i32>>)>,
}

impl Linear {
    /// A layer with the given weights (and bias).
    pub fn new(
        name: impl Into<String>,
        weight: Array2<i32>,
        bias: Option<Array1<i32>>,
    ) -> Result<Self> {
        let name = name.into();
        if let Some(b) = &bias {
            if b.len() != weight.nrows() {
                return Err(Error::shape(format!(
                    "{name}: bias has {} entries, weight has {} outputs",
                    b.len(),
                    weight.nrows()
                )));
            }
        }
        Ok(Linear {
            name,
            weight,
            bias,
            saved: None,
            pending: None,
            grad: None,
            before: None,
        })
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.ncols()
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.nrows()
    }

    /// `z = x·Wᵀ (+ b)`, exact in `i64`. In training mode `x` is saved for [`Linear::backward`].
    pub fn forward<T: Int>(&mut self, x: ArrayView2<'_, T>, train: bool) -> Result<Array2<i64>>
    where
        i16: From<T>,
    {
        let z = self.infer(x)?;
        self.saved = if train { Some(x.mapv(i16::from)) } else { None };
        Ok(z)
    }

    /// [`Linear::forward`] of an owned `i16` input, which is kept (not copied) in training mode.
    pub(crate) fn forward_owned(&mut self, x: Array2<i16>, train: bool) -> Result<Array2<i64>> {
        let z = self.infer(x.view())?;
        self.saved = if train { Some(x) } else { None };
        Ok(z)
    }

    /// Forward without saving anything (evaluation); `&self` so it can be shared.
    pub fn infer<T: Int>(&self, x: ArrayView2<'_, T>) -> Result<Array2<i64>> {
        self.check_input(x.ncols())?;
        let mut z = gemm_nt(x, self.weight.view()).map_err(|e| e.in_layer(&self.name))?;
        if let Some(b) = &self.bias {
            for mut row in z.rows_mut() {
                for (v, &bv) in row.iter_mut().zip(b.iter()) {
                    *v += i64::from(bv);
                }
            }
        }
        Ok(z)
    }

    fn check_input(&self, cols: usize) -> Result<()> {
        if cols != self.in_features() {
            return Err(Error::shape(format!(
                "{}: expected {} input features, got {cols}",
                self.name,
                self.in_features()
            )));
        }
        Ok(())
    }

    /// Backward for error `δ` (`batch × out`). Returns `δ·W` (with the weights before this
    /// update) when `input_error` is set, then updates `W` (and `b`) with IntegerSGD,
    /// all-or-nothing: on error the parameters are unchanged.
    pub fn backward(
        &mut self,
        delta: ArrayView2<'_, i32>,
        input_error: bool,
        sgd: &Sgd,
    ) -> Result<Option<Array2<i32>>> {
        let din = self.stage_backward(delta, input_error, sgd)?;
        self.commit();
        Ok(din)
    }

    /// [`Linear::backward`] without the write: the update is checked (every new value fits
    /// `i32`, else the same [`crate::Error::Overflow`]) and kept for [`Linear::commit`] or
    /// [`Linear::discard`]; the parameters are not changed. A model stages every layer's
    /// update of a training step and writes them only when all of them succeeded.
    pub(crate) fn stage_backward(
        &mut self,
        delta: ArrayView2<'_, i32>,
        input_error: bool,
        sgd: &Sgd,
    ) -> Result<Option<Array2<i32>>> {
        let din = self.compute_backward(delta, input_error)?;
        self.stage_gradient(sgd)?;
        Ok(din)
    }

    /// The first half of [`Linear::stage_backward`]: the input error `δ·W` (with the weights
    /// before this step) when `input_error` is set, and the exact gradient sums `δᵀ·x` (and
    /// `Σ δ` for the bias) over the saved input's rows, kept in the layer for
    /// [`Linear::stage_gradient`] (or [`Linear::take_gradient`]) — the weights' sums as the
    /// product `δᵀ·x` itself, computed by whichever of the two comes ([`Held`]). No parameter
    /// changes.
    ///
    /// Every gradient is a sum over the batch's rows of a function of the weights before the
    /// step and that row: the sums of the parts of a batch add up to the sum of the batch,
    /// exactly (what data-parallel training relies on).
    pub(crate) fn compute_backward(
        &mut self,
        delta: ArrayView2<'_, i32>,
        input_error: bool,
    ) -> Result<Option<Array2<i32>>> {
        self.pending = None;
        self.grad = None;
        let x = self
            .saved
            .take()
            .ok_or_else(|| no_forward(format_args!("{}:", self.name)))?;
        if delta.nrows() != x.nrows() || delta.ncols() != self.out_features() {
            return Err(Error::shape(format!(
                "{}: error is {}×{}, expected {}×{}",
                self.name,
                delta.nrows(),
                delta.ncols(),
                x.nrows(),
                self.out_features()
            )));
        }
        let din = if input_error {
            let d = gemm_nn(delta, self.weight.view()).map_err(|e| e.in_layer(&self.name))?;
            let din = narrow_all(&d, &self.name, "input error");
            crate::kernels::recycle(d);
            Some(din?)
        } else {
            None
        };
        let bias = self.bias.as_ref().map(|_| {
            // Σ over the batch of each column of δ (exact: batch · 2³¹ < 2⁶³).
            let mut g = Array1::<i64>::zeros(delta.ncols());
            for row in delta.rows() {
                for (s, &v) in g.iter_mut().zip(row.iter()) {
                    *s += i64::from(v);
                }
            }
            g
        });
        self.grad = Some(if x.nrows() <= DEFER_ROWS {
            Held::Product {
                delta: delta.to_owned(),
                input: x,
                bias,
            }
        } else {
            let weight = gemm_tn(delta, x.view()).map_err(|e| e.in_layer(&self.name))?;
            Held::Sums(Gradient { weight, bias })
        });
        Ok(din)
    }

    /// The second half of [`Linear::stage_backward`]: the IntegerSGD update of the gradient
    /// kept by [`Linear::compute_backward`] (or [`Linear::put_gradient`]), checked (every new
    /// value fits `i32`, else [`crate::Error::Overflow`]) and kept for [`Linear::commit`].
    pub(crate) fn stage_gradient(&mut self, sgd: &Sgd) -> Result<()> {
        self.pending = None;
        let held = self.grad.take().ok_or_else(|| no_gradient(&self.name))?;
        self.pending = Some(match held {
            Held::Sums(g) => {
                let bias = self.bias.as_ref().zip(g.bias);
                sgd.stage(&self.weight, g.weight, bias, &self.name)?
            }
            Held::Product { delta, input, bias } => {
                let bias = self.bias.as_ref().zip(bias);
                sgd.stage_product(&self.weight, delta.view(), input.view(), bias, &self.name)?
            }
        });
        Ok(())
    }

    /// The gradient kept by [`Linear::compute_backward`], taken out of the layer (its sums
    /// computed now if it was kept as their product).
    pub(crate) fn take_gradient(&mut self) -> Result<Option<Gradient<Ix2>>> {
        Ok(match self.grad.take() {
            None => None,
            Some(Held::Sums(g)) => Some(g),
            Some(Held::Product { delta, input, bias }) => {
                let weight =
                    gemm_tn(delta.view(), input.view()).map_err(|e| e.in_layer(&self.name))?;
                Some(Gradient { weight, bias })
            }
        })
    }

    /// Keep `g` as the gradient of the step in progress (for [`Linear::stage_gradient`]);
    /// a shape error, naming the layer, unless it has the parameters' shapes.
    pub(crate) fn put_gradient(&mut self, g: Gradient<Ix2>) -> Result<()> {
        g.check(
            self.weight.shape(),
            self.bias.as_ref().map(|b| b.len()),
            &self.name,
        )?;
        self.grad = Some(Held::Sums(g));
        Ok(())
    }

    /// Write the staged update (if any), and forget the parameters kept by
    /// [`Linear::write_provisionally`]: the step is done.
    pub(crate) fn commit(&mut self) {
        if let Some(p) = self.pending.take() {
            p.commit(&mut self.weight, self.bias.as_mut());
        }
        self.before = None;
    }

    /// Drop the staged update (if any) and return to the parameters from before the step if
    /// an update of it was written provisionally: the step failed.
    pub(crate) fn discard(&mut self) {
        self.pending = None;
        if let Some((w, b)) = self.before.take() {
            self.weight = w;
            self.bias = b;
        }
    }

    /// Write the staged update now (a later one of the same step must see it: algorithm.md §12 item
    /// 1), keeping the parameters from before the step until [`Linear::commit`] or
    /// [`Linear::discard`].
    pub(crate) fn write_provisionally(&mut self) {
        if let Some(p) = self.pending.take() {
            if self.before.is_none() {
                self.before = Some((self.weight.clone(), self.bias.clone()));
            }
            p.commit(&mut self.weight, self.bias.as_mut());
        }
    }

    /// The input a training-mode forward saved (for a second update on the same input).
    pub(crate) fn saved_input(&self) -> Option<&Array2<i16>> {
        self.saved.as_ref()
    }

    /// Put back an input saved by a training-mode forward.
    pub(crate) fn restore_input(&mut self, x: Option<Array2<i16>>) {
        self.saved = x;
    }

    /// Drop anything saved by a training-mode forward, and any staged update (the parameters
    /// stay as they are).
    pub fn clear(&mut self) {
        self.saved = None;
        self.pending = None;
        self.grad = None;
        self.before = None;
    }
}

/// A weight gradient kept between [`Linear::compute_backward`] and its use.
#[derive(Clone, Debug)]
enum Held {
    /// The sums `δᵀ·x` (and `Σ δ`).
    Sums(Gradient<Ix2>),
    /// The error and input whose product `δᵀ·x` the sums are, with the bias sums: a training
    /// step's update computes the product straight into the new weights
    /// ([`Sgd::stage_product`]), never writing the sums out.
    Product {
        delta: Array2<i32>,
        input: Array2<i16>,
        bias: Option<Array1<i64>>,
    },
}

/// Batches of at most this many rows keep their weight gradient as a product ([`Held`]): its
/// sums then cannot overflow `i64` (`2¹⁶·2³¹·2¹⁵ = 2⁶²`), so deferring the product defers no
/// error — the step reports the same one at the same point as before.
const DEFER_ROWS: usize = 1 << 16;

/// Narrow every element to `i32`, or report the first that does not fit (as [`narrow_i32`]).
fn narrow_all(d: &Array2<i64>, layer: &str, op: &'static str) -> Result<Array2<i32>> {
    // One branch-free pass decides; v fits i32 ⇔ (v + 2³¹) >> 32 = 0 (wrapping, as u64).
    let bad = d
        .iter()
        .fold(0u64, |b, &v| b | ((v as u64).wrapping_add(1 << 31) >> 32));
    if bad != 0 {
        for &v in d.iter() {
            narrow_i32(v, layer, op)?;
        }
    }
    Ok(d.mapv(|v| v as i32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn input_error_overflow_names_the_first_value_and_keeps_the_weights() {
        let w = array![[3, i32::MAX], [1, i32::MAX]];
        let mut l = Linear::new("lin", w.clone(), None).unwrap();
        l.forward(array![[1i8, 1]].view(), true).unwrap();
        let sgd = Sgd::new(1, 1, 0).unwrap();
        let e = l.backward(array![[1, 2]].view(), true, &sgd).unwrap_err();
        // δ·W = [3 + 2, i32::MAX + 2·i32::MAX]: the first value is fine, the second is not.
        let want = narrow_i32(3 * i64::from(i32::MAX), "lin", "input error").unwrap_err();
        assert_eq!(alloc::format!("{e}"), alloc::format!("{want}"));
        assert_eq!(l.weight, w);
    }

    #[test]
    fn input_error_and_bias_gradient() {
        let w = array![[1, 2, 3], [-4, 5, -6]];
        let mut l = Linear::new("lin", w.clone(), Some(array![10, -10])).unwrap();
        let z = l
            .forward(array![[1i8, 0, -1], [2, 2, 2]].view(), true)
            .unwrap();
        assert_eq!(z, array![[1 - 3 + 10, -4 + 6 - 10], [12 + 10, -10 - 10]]);
        let d = array![[1, -1], [3, 4]];
        let din = l
            .backward(d.view(), true, &Sgd::new(1, 1, 0).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(din, array![[1 + 4, 2 - 5, 3 + 6], [3 - 16, 6 + 20, 9 - 24]]);
        // b ← b − Σ_rows δ = [10 − 4, −10 − 3].
        assert_eq!(l.bias, Some(array![6, -13]));
    }
}
