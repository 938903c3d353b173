//! IntegerLinear (SPEC §3.1): `z = x·Wᵀ (+ b)`, weight gradient `δᵀ·x`, input error `δ·W`.

use crate::arith::narrow_i32;
use crate::error::{Error, Result};
use crate::kernels::{gemm_nn, gemm_nt, gemm_tn, Int};
use crate::optim::Sgd;
use alloc::format;
use alloc::string::String;
use ndarray::{Array1, Array2, ArrayView2, Axis};

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
        self.check_input(x.ncols())?;
        let mut z = gemm_nt(x, self.weight.view()).map_err(|e| e.in_layer(&self.name))?;
        if let Some(b) = &self.bias {
            z += &b.mapv(i64::from);
        }
        self.saved = if train { Some(x.mapv(i16::from)) } else { None };
        Ok(z)
    }

    /// Forward without saving anything (evaluation); `&self` so it can be shared.
    pub fn infer<T: Int>(&self, x: ArrayView2<'_, T>) -> Result<Array2<i64>> {
        self.check_input(x.ncols())?;
        let mut z = gemm_nt(x, self.weight.view()).map_err(|e| e.in_layer(&self.name))?;
        if let Some(b) = &self.bias {
            z += &b.mapv(i64::from);
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
    /// update) when `input_error` is set, then updates `W` (and `b`) with IntegerSGD.
    pub fn backward(
        &mut self,
        delta: ArrayView2<'_, i32>,
        input_error: bool,
        sgd: &Sgd,
    ) -> Result<Option<Array2<i32>>> {
        let x = self.saved.take().ok_or_else(|| {
            Error::config(format!(
                "{}: backward without a training-mode forward",
                self.name
            ))
        })?;
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
            let mut out = Array2::<i32>::zeros(d.raw_dim());
            for (o, &v) in out.iter_mut().zip(d.iter()) {
                *o = narrow_i32(v, &self.name, "input error")?;
            }
            Some(out)
        } else {
            None
        };
        let grad = gemm_tn(delta, x.view()).map_err(|e| e.in_layer(&self.name))?;
        let bias_grad = self
            .bias
            .as_ref()
            .map(|_| delta.map(|&v| i64::from(v)).sum_axis(Axis(0)));
        // Update weights and bias all-or-nothing.
        let bias = match (self.bias.as_mut(), bias_grad.as_ref()) {
            (Some(b), Some(g)) => Some((
                b.as_slice_mut().expect("contiguous"),
                g.as_slice().expect("contiguous"),
            )),
            _ => None,
        };
        sgd.apply_layer(
            self.weight.as_slice_mut().expect("owned standard layout"),
            grad.as_slice().expect("standard layout"),
            bias,
            &self.name,
        )?;
        Ok(din)
    }

    /// Drop anything saved by a training-mode forward.
    pub fn clear(&mut self) {
        self.saved = None;
    }
}
