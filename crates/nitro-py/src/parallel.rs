//! Data-parallel training from Python (`nitrod_rs._parallel`): a worker's gradient sums of its
//! share of a batch (`Model.gradients`), their exact sum (`sum_gradients`), the application of
//! a whole batch's sums (`Model.apply_gradients`), and the driver's model in the engine's epoch
//! loop with its step sent out to the workers (`Exchanged`, `Run.epoch(..., exchange=)`).
//!
//! Gradient sums travel as bytes (`nitro_core::Gradients::to_bytes`): exact `i64` values, added
//! here in Rust with every sum checked, never as floats.

use std::sync::Mutex;

use ndarray::{Array2, ArrayView2};
use nitro_core::rng::Pcg32;
use nitro_core::train::{DataParallel, Evaluate, Trainable};
use nitro_core::{Gradients, Hyper, StepStats};
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::convert::hyper_dict;
use crate::errors::{to_py, value_err};
use crate::threads::in_pool;

/// Dropout generator states as `(state, inc)` pairs, the form they cross the binding in.
pub type RngParts = Vec<(u64, u64)>;

/// The generators of [`RngParts`]; a `ValueError` for an impossible state.
pub fn rngs_from(parts: &[(u64, u64)]) -> PyResult<Vec<Pcg32>> {
    parts
        .iter()
        .map(|&(s, i)| {
            Pcg32::from_parts(s, i).ok_or_else(|| {
                value_err(format!(
                    "({s}, {i}) is not a dropout generator state (the increment is odd)"
                ))
            })
        })
        .collect()
}

/// The [`RngParts`] of `rngs`.
pub fn rng_parts(rngs: &[Pcg32]) -> RngParts {
    rngs.iter().map(Pcg32::to_parts).collect()
}

/// The exact sum of the gradient sums `parts` of consecutive shares of one batch, in row order
/// (each `Model.gradients` bytes), as bytes: every addition checked (an `IntegerOverflowError`
/// names the layer), shares of different models or batches, or out of order, refused.
#[pyfunction]
pub fn sum_gradients<'py>(
    py: Python<'py>,
    parts: Vec<Bound<'py, PyBytes>>,
) -> PyResult<Bound<'py, PyBytes>> {
    if parts.is_empty() {
        return Err(value_err(
            "sum_gradients needs at least one share's gradient sums",
        ));
    }
    let parts: Vec<&[u8]> = parts.iter().map(|b| b.as_bytes()).collect();
    let total = py
        .detach(|| {
            let mut it = parts.iter();
            let first = Gradients::from_bytes(it.next().expect("non-empty"))?;
            it.try_fold(first, |acc, b| acc.checked_add(&Gradients::from_bytes(b)?))
                .map(|g| g.to_bytes())
        })
        .map_err(to_py)?;
    Ok(PyBytes::new(py, &total))
}

/// A model whose training step is computed elsewhere: `exchange(x, labels, hyper, rngs)`
/// (Python) sends the shares of the batch `x` to the workers with the dropout generator states
/// `rngs` the step starts from, and returns the exact sum of their gradient sums (bytes); the
/// model applies it (in the chosen pool). Evaluation runs on the model itself.
///
/// An exception of `exchange` stops the run: it is kept in `pending` (which the epoch's caller
/// raises) and the step fails with an engine error saying so; no parameter has changed.
pub struct Exchanged<'a, M> {
    pub model: &'a mut M,
    pub pool: Option<&'a rayon::ThreadPool>,
    pub exchange: &'a Py<PyAny>,
    pub pending: &'a Mutex<Option<PyErr>>,
}

impl<M: Evaluate + Sync> Evaluate for Exchanged<'_, M> {
    fn logits(&self, x: ArrayView2<'_, i8>) -> nitro_core::Result<Array2<i8>> {
        let model = &*self.model;
        in_pool(self.pool, move || model.logits(x))
    }
    fn classes(&self) -> usize {
        self.model.classes()
    }
}

impl<M: DataParallel + Send + Sync> Trainable for Exchanged<'_, M> {
    fn step(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> nitro_core::Result<StepStats> {
        let rngs = rng_parts(&self.model.dropout_rngs());
        let total = Python::attach(|py| -> PyResult<Vec<u8>> {
            let xs = x.to_owned().into_pyarray(py);
            let ys = labels
                .iter()
                .map(|&l| l as i64)
                .collect::<Vec<i64>>()
                .into_pyarray(py);
            let out = self
                .exchange
                .call1(py, (xs, ys, hyper_dict(py, hyper)?, rngs))?;
            let bytes = out.bind(py).cast::<PyBytes>().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(
                    "the data-parallel exchange must return the gradient sums as bytes",
                )
            })?;
            Ok(bytes.as_bytes().to_vec())
        });
        let total = match total {
            Ok(t) => t,
            Err(e) => {
                let msg = format!("the data-parallel step failed on a worker: {e}");
                if let Ok(mut p) = self.pending.lock() {
                    p.get_or_insert(e);
                }
                return Err(nitro_core::Error::Config(msg));
            }
        };
        let g = Gradients::from_bytes(&total)?;
        if g.total != labels.len() {
            return Err(nitro_core::Error::Shape(format!(
                "the workers returned gradient sums of a batch of {} for a batch of {}",
                g.total,
                labels.len()
            )));
        }
        let model = &mut *self.model;
        in_pool(self.pool, move || model.apply_gradients(g, hyper))
    }
    fn num_blocks(&self) -> usize {
        self.model.num_blocks()
    }
    fn set_hyper(&mut self, hyper: Hyper) {
        self.model.set_hyper(hyper);
    }
}

/// Add the data-parallel functions to the module `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sum_gradients, m)?)?;
    Ok(())
}
