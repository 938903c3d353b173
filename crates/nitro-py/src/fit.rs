//! The glue of `Model.fit`: keyword arguments to a `TrainConfig`, the engine's epoch loop run
//! with the GIL released and the model's compute in the chosen thread pool, and the Python
//! callbacks (per batch with a signal check, per epoch) that may stop it.

use std::sync::Mutex;

use ndarray::{Array2, ArrayView2};
use nitro_core::train::{Control, Evaluate, Progress, Trainable};
use nitro_core::{Augment, Dataset, EpochMetrics, Hyper, Plateau, StepStats, TrainConfig};
use numpy::{PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::convert::{epoch_dict, labels_to_usize};
use crate::errors::{to_py, value_err};
use crate::threads::{in_pool, pool_for};

/// A model whose compute runs in a chosen thread pool, while the epoch loop (and so the Python
/// callbacks and signal checks) stays on the calling thread.
struct Pooled<'a, M> {
    model: &'a mut M,
    pool: Option<&'a rayon::ThreadPool>,
}

impl<M: Evaluate + Sync> Evaluate for Pooled<'_, M> {
    fn logits(&self, x: ArrayView2<'_, i8>) -> nitro_core::Result<Array2<i8>> {
        let model = &*self.model;
        in_pool(self.pool, move || model.logits(x))
    }
    fn classes(&self) -> usize {
        self.model.classes()
    }
}

impl<M: Trainable + Send + Sync> Trainable for Pooled<'_, M> {
    fn step(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> nitro_core::Result<StepStats> {
        let model = &mut *self.model;
        in_pool(self.pool, move || model.step(x, labels, hyper))
    }
    fn num_blocks(&self) -> usize {
        self.model.num_blocks()
    }
    fn set_hyper(&mut self, hyper: Hyper) {
        self.model.set_hyper(hyper);
    }
}

/// The keyword arguments of `fit` as a `TrainConfig`; `hyper` comes checked (`hyper_from`).
#[allow(clippy::too_many_arguments)]
pub fn train_config(
    epochs: u32,
    batch_size: usize,
    hyper: Hyper,
    augment: Option<(usize, bool)>,
    shuffle: bool,
    plateau: bool,
    early_stopping: bool,
    seed: u64,
) -> TrainConfig {
    let watch = match (plateau, early_stopping) {
        (false, false) => None,
        (p, e) => {
            let mut w = Plateau::paper();
            if !p {
                w.factor = 1;
            }
            if !e {
                w.early_stop_start = None;
            }
            Some(w)
        }
    };
    TrainConfig {
        epochs,
        batch_size,
        hyper,
        plateau: watch,
        augment: augment.map(|(pad, flip)| Augment { pad, flip }),
        shuffle,
        seed,
        ..TrainConfig::default()
    }
}

/// The epoch loop of `fit`: GIL released, a per-batch callback with a signal check (Ctrl-C
/// stops after the current batch), a per-epoch callback whose truthy result stops training.
/// Returns the history dict and the exception that stopped training, if any.
#[allow(clippy::too_many_arguments)]
pub fn run_fit<'py, M: Trainable + Send + Sync>(
    py: Python<'py>,
    model: &mut M,
    x: PyReadonlyArray2<'py, i8>,
    y: PyReadonlyArray1<'py, i64>,
    chw: (usize, usize, usize),
    x_test: Option<PyReadonlyArray2<'py, i8>>,
    y_test: Option<PyReadonlyArray1<'py, i64>>,
    cfg: TrainConfig,
    on_batch: Option<Py<PyAny>>,
    on_epoch: Option<Py<PyAny>>,
    threads: Option<usize>,
) -> PyResult<(Bound<'py, PyDict>, Option<Py<PyAny>>)> {
    let y = labels_to_usize(&y)?;
    let test_labels = match (&x_test, &y_test) {
        (Some(_), Some(yt)) => Some(labels_to_usize(yt)?),
        (None, None) => None,
        _ => return Err(value_err("x_test and y_test must be given together")),
    };
    let pool = pool_for(threads)?;
    let xv = x.as_array();
    let xt = x_test.as_ref().map(|a| a.as_array());
    // The first exception a callback raised (or a signal's): it stops training and is returned.
    let pending: Mutex<Option<PyErr>> = Mutex::new(None);
    let record = |e: PyErr| {
        if let Ok(mut p) = pending.lock() {
            p.get_or_insert(e);
        }
        Control::Stop
    };
    let mut ob = |p: &Progress| -> Control {
        Python::attach(|py| {
            if let Some(cb) = &on_batch {
                let args = (
                    p.epoch,
                    p.batch,
                    p.batches,
                    p.loss,
                    p.train.correct,
                    p.train.total,
                );
                if let Err(e) = cb.call1(py, args) {
                    return record(e);
                }
            }
            match py.check_signals() {
                Ok(()) => Control::Continue,
                Err(e) => record(e),
            }
        })
    };
    let mut oe = |m: &EpochMetrics| -> Control {
        Python::attach(|py| {
            let Some(cb) = &on_epoch else {
                return Control::Continue;
            };
            let r = epoch_dict(py, m)
                .and_then(|d| cb.call1(py, (d,)))
                .and_then(|v| v.is_truthy(py));
            match r {
                Ok(true) => Control::Stop,
                Ok(false) => Control::Continue,
                Err(e) => record(e),
            }
        })
    };
    let result = py.detach(|| {
        let train = Dataset::new(xv.to_owned(), y, chw)?;
        let test = match (xt, test_labels) {
            (Some(x), Some(l)) => Some(Dataset::new(x.to_owned(), l, chw)?),
            _ => None,
        };
        let mut pooled = Pooled {
            model,
            pool: pool.as_deref(),
        };
        nitro_core::fit(&mut pooled, &train, test.as_ref(), &cfg, &mut ob, &mut oe)
    });
    let err = pending.into_inner().ok().flatten();
    let history = match result {
        Ok(h) => h,
        // An exception from a callback outranks what it caused.
        Err(e) => return Err(err.unwrap_or_else(|| to_py(e))),
    };
    let d = PyDict::new(py);
    let epochs = PyList::empty(py);
    for m in &history.epochs {
        epochs.append(epoch_dict(py, m)?)?;
    }
    d.set_item("epochs", epochs)?;
    d.set_item("cancelled", history.cancelled)?;
    d.set_item("early_stopped", history.early_stopped)?;
    Ok((d, err.map(|e| e.into_value(py).into_any())))
}

/// One training step on rows, GIL released, in the chosen pool; records the settings.
pub fn run_step<'py, M: Trainable + Send>(
    py: Python<'py>,
    model: &mut M,
    x: PyReadonlyArray2<'py, i8>,
    labels: PyReadonlyArray1<'py, i64>,
    hyper: Hyper,
    threads: Option<usize>,
) -> PyResult<StepStats> {
    let labels = labels_to_usize(&labels)?;
    let pool = pool_for(threads)?;
    let xv = x.as_array();
    py.detach(|| {
        in_pool(pool.as_deref(), || {
            let s = model.step(xv, &labels, &hyper);
            model.set_hyper(hyper);
            s
        })
    })
    .map_err(to_py)
}
