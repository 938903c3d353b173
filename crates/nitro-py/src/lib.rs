//! `nitrod_rs._core`: the PyO3 binding of `nitro-core`.
//!
//! Deliberately thin (ARCHITECTURE.md): it converts numpy arrays to ndarray views (zero-copy for
//! the accepted dtypes), releases the GIL around every computation, and maps engine errors onto
//! Python exceptions. Argument checking with friendly messages and everything else Pythonic lives
//! in `python/nitrod_rs/`. Nothing here panics on user input: every engine call returns a
//! `Result`, and the Python side hands only the documented dtypes to these functions.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ndarray::{Array1, Array2, ArrayView2, IxDyn};
use nitro_core::layers::activation::backward_with_input;
use nitro_core::layers::{Activation, Conv2d, Linear, Pool2d, PoolKind, Scaling};
use nitro_core::names;
use nitro_core::train::{Control, Progress, Trainable};
use nitro_core::{
    io, ActivationKind, Augment, Cnn, CnnConfig, Compat, Dataset, EpochMetrics, Error, Feature,
    Fraction, Hyper, Init, LocalStats, Mlp, MlpConfig, Normalization, Plateau, Sgd, StepStats,
    TrainConfig,
};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

mod facts;

create_exception!(
    nitrod_rs,
    NitroError,
    PyValueError,
    "Base class of the errors raised by the nitrod-rs engine (a ValueError)."
);
create_exception!(
    nitrod_rs,
    FormatError,
    NitroError,
    "A model file or buffer is malformed, truncated or not a nitrod-rs model."
);
create_exception!(
    nitrod_rs,
    IntegerOverflowError,
    NitroError,
    "An integer result would leave its storage type (SPEC §1); nothing was changed."
);

/// Map an engine error onto the documented Python exception.
fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Shape(_) | Error::Config(_) => PyValueError::new_err(msg),
        Error::Format(_) => FormatError::new_err(msg),
        Error::Overflow { .. } => IntegerOverflowError::new_err(msg),
        Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
            _ => PyOSError::new_err(msg),
        },
        _ => NitroError::new_err(msg),
    }
}

fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Threads and fork safety
// ---------------------------------------------------------------------------------------------

/// Set in a child process after `fork()`: the parent's rayon pool has no threads there, so work
/// must not be handed to it (tokenizers guards the same way).
static FORKED: AtomicBool = AtomicBool::new(false);

extern "C" fn after_fork_in_child() {
    FORKED.store(true, Ordering::SeqCst);
}

/// The pool a call runs in: `threads` workers if given, one worker in a forked child, otherwise
/// rayon's global pool (`None`). Results do not depend on the choice (SPEC: same bits on any
/// thread count).
fn pool_for(threads: Option<usize>) -> PyResult<Option<Arc<rayon::ThreadPool>>> {
    let n = match threads {
        Some(0) => return Err(value_err("threads must be a positive integer (or None)")),
        Some(n) => n,
        None if FORKED.load(Ordering::SeqCst) => 1,
        None => return Ok(None),
    };
    let build = || {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map(Arc::new)
            .map_err(|e| PyOSError::new_err(format!("cannot start {n} worker threads: {e}")))
    };
    let pid = std::process::id();
    // try_lock: in a child forked while another thread held the lock, it stays locked forever;
    // such a child builds its pools without the cache.
    let Ok(mut pools) = POOLS.try_lock() else {
        return build().map(Some);
    };
    if let Some((_, _, p)) = pools.iter().find(|(q, m, _)| *q == pid && *m == n) {
        return Ok(Some(Arc::clone(p)));
    }
    // Pools of a parent process have no threads here: forget them without running their drop.
    for stale in std::mem::take(&mut *pools) {
        if stale.0 == pid {
            pools.push(stale);
        } else {
            std::mem::forget(stale);
        }
    }
    let p = build()?;
    if pools.len() < MAX_POOLS {
        pools.push((pid, n, Arc::clone(&p)));
    }
    Ok(Some(p))
}

/// Pools built for an explicit thread count, reused by later calls (starting and stopping the
/// threads of a new pool costs more than a small training step). Tagged with the process that
/// built them.
static POOLS: Mutex<Vec<(u32, usize, Arc<rayon::ThreadPool>)>> = Mutex::new(Vec::new());
/// Distinct thread counts kept in [`POOLS`].
const MAX_POOLS: usize = 8;

fn in_pool<T: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> T + Send) -> T {
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

// ---------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------

fn labels_to_usize(labels: &PyReadonlyArray1<'_, i64>) -> PyResult<Vec<usize>> {
    labels
        .as_array()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            usize::try_from(v)
                .map_err(|_| value_err(format!("label {v} at position {i} is negative")))
        })
        .collect()
}

fn hyper_from(
    lr_inv: i64,
    lr_amp_factor: i64,
    fwd_decay_inv: i64,
    subnet_decay_inv: i64,
    compat: &str,
) -> PyResult<Hyper> {
    let h = Hyper {
        lr_inv,
        lr_amp_factor,
        fwd_decay_inv,
        subnet_decay_inv,
        compat: Compat::from_name(compat).map_err(to_py)?,
    };
    h.sgds().map_err(to_py)?;
    Ok(h)
}

fn hyper_dict<'py>(py: Python<'py>, h: &Hyper) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("lr_inv", h.lr_inv)?;
    d.set_item("lr_amp_factor", h.lr_amp_factor)?;
    d.set_item("fwd_decay_inv", h.fwd_decay_inv)?;
    d.set_item("subnet_decay_inv", h.subnet_decay_inv)?;
    d.set_item("compat", h.compat.name())?;
    Ok(d)
}

fn step_dict<'py>(py: Python<'py>, s: &StepStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("loss", s.loss)?;
    d.set_item("correct", s.correct)?;
    d.set_item("total", s.total)?;
    let bl: Vec<i64> = s.blocks.iter().map(|b: &LocalStats| b.loss).collect();
    let bc: Vec<u64> = s.blocks.iter().map(|b| b.correct).collect();
    d.set_item("block_loss", bl)?;
    d.set_item("block_correct", bc)?;
    Ok(d)
}

fn fraction_pair(f: &Fraction) -> (u64, u64) {
    (f.correct, f.total)
}

fn epoch_dict<'py>(
    py: Python<'py>,
    m: &EpochMetrics,
    test_loss: Option<i64>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", m.epoch)?;
    d.set_item("train_loss", m.train_loss)?;
    d.set_item("train_correct", m.train.correct)?;
    d.set_item("train_total", m.train.total)?;
    let blocks: Vec<(u64, u64)> = m.blocks.iter().map(fraction_pair).collect();
    d.set_item("blocks", blocks)?;
    d.set_item("test", m.test.as_ref().map(fraction_pair))?;
    d.set_item("test_loss", m.test.and(test_loss))?;
    d.set_item("lr_inv", m.lr_inv)?;
    d.set_item("train_millis", m.train_millis)?;
    d.set_item("eval_millis", m.eval_millis)?;
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// A local-loss integer MLP (`nitro_core::Mlp`). Use `nitrod_rs.MLP`, which checks arguments.
#[pyclass(module = "nitrod_rs._core", name = "Model")]
struct Model {
    inner: Mlp,
}

/// What the binding needs of a model, for MLPs and CNNs alike: evaluation logits on rows
/// `N × features`, one training step on rows, and the bookkeeping of [`Trainable`].
trait Net: Send + Sync {
    fn logits_rows(&self, x: ArrayView2<'_, i8>) -> nitro_core::Result<Array2<i8>>;
    fn step_rows(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> nitro_core::Result<StepStats>;
    fn classes(&self) -> usize;
    fn blocks(&self) -> usize;
    fn store_hyper(&mut self, hyper: Hyper);
}

impl Net for Mlp {
    fn logits_rows(&self, x: ArrayView2<'_, i8>) -> nitro_core::Result<Array2<i8>> {
        self.predict_logits(x)
    }
    fn step_rows(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> nitro_core::Result<StepStats> {
        self.train_step(x, labels, hyper)
    }
    fn classes(&self) -> usize {
        self.config.classes
    }
    fn blocks(&self) -> usize {
        self.blocks.len()
    }
    fn store_hyper(&mut self, hyper: Hyper) {
        self.hyper = Some(hyper);
    }
}

impl Net for Cnn {
    fn logits_rows(&self, x: ArrayView2<'_, i8>) -> nitro_core::Result<Array2<i8>> {
        let x = x.as_standard_layout();
        self.predict_logits(self.images(x.view())?)
    }
    fn step_rows(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> nitro_core::Result<StepStats> {
        Trainable::step(self, x, labels, hyper)
    }
    fn classes(&self) -> usize {
        self.config.classes
    }
    fn blocks(&self) -> usize {
        self.num_local_blocks()
    }
    fn store_hyper(&mut self, hyper: Hyper) {
        self.hyper = Some(hyper);
    }
}

/// `nitro_core::train::Trainable` for a model whose compute runs in a chosen thread pool, while
/// the epoch loop (and so the Python progress callback and signal checks) stays on the calling
/// thread.
struct Pooled<'a, M: Net> {
    net: &'a mut M,
    pool: Option<&'a rayon::ThreadPool>,
    /// The evaluation loss `Σ (y − ŷ)²` of every `correct` call, in order (one per epoch).
    test_losses: &'a Mutex<Vec<i64>>,
}

/// Correct predictions and the loss `Σ (y − ŷ)²` on a labelled set, in chunks of rows; the
/// arg-max (first on ties) is the one the engine's `count_correct` uses.
fn correct_and_loss<M: Net>(
    net: &M,
    data: &Dataset,
    chunk: usize,
) -> nitro_core::Result<(u64, i64)> {
    let (mut correct, mut loss) = (0u64, 0i64);
    let chunk = chunk.max(1);
    for start in (0..data.len()).step_by(chunk) {
        let end = (start + chunk).min(data.len());
        let labels = &data.y[start..end];
        let logits = net.logits_rows(data.x.slice(ndarray::s![start..end, ..]))?;
        let target = nitro_core::loss::one_hot(labels, net.classes())?;
        let (l, c) = nitro_core::loss::loss_and_correct(&logits, &target, labels);
        correct += c;
        loss += l;
    }
    Ok((correct, loss))
}

impl<M: Net> Trainable for Pooled<'_, M> {
    fn step(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> nitro_core::Result<StepStats> {
        let net = &mut *self.net;
        in_pool(self.pool, move || net.step_rows(x, labels, hyper))
    }
    fn correct(&self, data: &Dataset, chunk: usize) -> nitro_core::Result<u64> {
        let net = &*self.net;
        let (correct, loss) = in_pool(self.pool, move || correct_and_loss(net, data, chunk))?;
        if let Ok(mut v) = self.test_losses.lock() {
            v.push(loss);
        }
        Ok(correct)
    }
    fn num_blocks(&self) -> usize {
        self.net.blocks()
    }
    fn set_hyper(&mut self, hyper: Hyper) {
        self.net.store_hyper(hyper);
    }
}

/// The arguments of `fit` shared by both model classes, checked and converted.
#[allow(clippy::too_many_arguments)]
fn train_config(
    epochs: u32,
    batch_size: usize,
    lr_inv: i64,
    lr_amp_factor: i64,
    fwd_decay_inv: i64,
    subnet_decay_inv: i64,
    compat: &str,
    augment: Option<(usize, bool)>,
    shuffle: bool,
    plateau: bool,
    early_stopping: bool,
    seed: u64,
) -> PyResult<TrainConfig> {
    let hyper = hyper_from(
        lr_inv,
        lr_amp_factor,
        fwd_decay_inv,
        subnet_decay_inv,
        compat,
    )?;
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
    Ok(TrainConfig {
        epochs,
        batch_size,
        hyper,
        plateau: watch,
        augment: augment.map(|(pad, flip)| Augment { pad, flip }),
        shuffle,
        seed,
        ..TrainConfig::default()
    })
}

/// The epoch loop of `fit` for either kind of model: GIL released, a per-batch callback with
/// a signal check (Ctrl-C stops after the current batch), a per-epoch callback. Returns the
/// history dict and the exception that stopped training, if any.
#[allow(clippy::too_many_arguments)]
fn run_fit<'py, M: Net>(
    py: Python<'py>,
    net: &mut M,
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
    let pending: Mutex<Option<PyErr>> = Mutex::new(None);
    let test_losses: Mutex<Vec<i64>> = Mutex::new(Vec::new());
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
            let loss = test_losses.lock().ok().and_then(|v| v.last().copied());
            let r = epoch_dict(py, m, loss)
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
        let mut model = Pooled {
            net,
            pool: pool.as_deref(),
            test_losses: &test_losses,
        };
        nitro_core::fit(&mut model, &train, test.as_ref(), &cfg, &mut ob, &mut oe)
    });
    let err = pending.into_inner().ok().flatten();
    let history = match result {
        Ok(h) => h,
        // An exception from a callback outranks what it caused.
        Err(e) => return Err(err.unwrap_or_else(|| to_py(e))),
    };
    let d = PyDict::new(py);
    let epochs = PyList::empty(py);
    let losses = test_losses.into_inner().unwrap_or_default();
    let mut losses = losses.into_iter();
    for m in &history.epochs {
        let loss = if m.test.is_some() {
            losses.next()
        } else {
            None
        };
        epochs.append(epoch_dict(py, m, loss)?)?;
    }
    d.set_item("epochs", epochs)?;
    d.set_item("cancelled", history.cancelled)?;
    d.set_item("early_stopped", history.early_stopped)?;
    Ok((d, err.map(|e| e.into_value(py).into_any())))
}

/// One training step on rows for either kind of model, GIL released; stores the settings.
#[allow(clippy::too_many_arguments)]
fn run_step<'py, M: Net>(
    py: Python<'py>,
    net: &mut M,
    x: PyReadonlyArray2<'py, i8>,
    labels: PyReadonlyArray1<'py, i64>,
    hyper: Hyper,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let labels = labels_to_usize(&labels)?;
    let pool = pool_for(threads)?;
    let xv = x.as_array();
    let stats = py
        .detach(|| {
            in_pool(pool.as_deref(), || {
                let s = net.step_rows(xv, &labels, &hyper);
                net.store_hyper(hyper);
                s
            })
        })
        .map_err(to_py)?;
    step_dict(py, &stats)
}

fn run_logits<'py, M: Net>(
    py: Python<'py>,
    net: &M,
    x: PyReadonlyArray2<'py, i8>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<i8>>> {
    let pool = pool_for(threads)?;
    let xv = x.as_array();
    let logits = py
        .detach(|| in_pool(pool.as_deref(), || net.logits_rows(xv)))
        .map_err(to_py)?;
    Ok(logits.into_pyarray(py))
}

fn run_predict<'py, M: Net>(
    py: Python<'py>,
    net: &M,
    x: PyReadonlyArray2<'py, i8>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let pool = pool_for(threads)?;
    let xv = x.as_array();
    let classes = py
        .detach(|| {
            in_pool(pool.as_deref(), || {
                net.logits_rows(xv)
                    .map(|l| nitro_core::loss::argmax_rows(&l))
            })
        })
        .map_err(to_py)?;
    // Class indices are < classes ≤ i32::MAX (validated), so they fit i64.
    let v: Array1<i64> = classes.iter().map(|&c| c as i64).collect();
    Ok(v.into_pyarray(py))
}

fn find_linear<'a>(m: &'a mut Mlp, key: &str) -> PyResult<(&'a mut Linear, bool)> {
    let (name, is_bias) = match key.strip_suffix(names::BIAS_SUFFIX) {
        Some(n) => (n, true),
        None => (key, false),
    };
    let l = m
        .linear_mut(name)
        .ok_or_else(|| value_err(format!("the model has no parameter {key:?}")))?;
    if is_bias && l.bias.is_none() {
        return Err(value_err(format!(
            "the model has no parameter {key:?} (it was built without bias)"
        )));
    }
    Ok((l, is_bias))
}

/// One `#[pymethods]` block per model class: the methods every model shares (thin wrappers
/// over the generic `run_*` helpers, written once here), followed by the class's own.
macro_rules! model_pymethods {
    ($ty:ty { $($own:tt)* }) => {
        #[pymethods]
        impl $ty {
            /// The IntegerSGD settings of the last training run, if any.
            #[getter]
            fn hyper<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
                self.inner
                    .hyper
                    .as_ref()
                    .map(|h| hyper_dict(py, h))
                    .transpose()
            }

            /// Per-channel normalisation statistics `(mean, mad)` stored with the model, if any.
            #[getter]
            fn normalization(&self) -> Option<(Vec<i64>, Vec<i64>)> {
                self.inner
                    .normalization
                    .as_ref()
                    .map(|n| (n.mean.clone(), n.mad.clone()))
            }

            /// Store (or with `None`, clear) the normalisation statistics.
            #[pyo3(signature = (stats))]
            fn set_normalization(&mut self, stats: Option<(Vec<i64>, Vec<i64>)>) -> PyResult<()> {
                self.inner.normalization = match stats {
                    None => None,
                    Some((mean, mad)) => {
                        let n = Normalization { mean, mad };
                        n.validate().map_err(to_py)?;
                        Some(n)
                    }
                };
                Ok(())
            }

            /// E.g. `784-200-100-50-10 nitro_relu`.
            fn describe(&self) -> String {
                self.inner.describe()
            }

            /// Number of trainable parameters.
            fn num_parameters(&self) -> usize {
                self.inner.num_parameters()
            }

            /// Exactly one SPEC §4.3 training step on a normalised batch; returns its statistics.
            #[pyo3(signature = (x, labels, *, lr_inv=512, lr_amp_factor=640, fwd_decay_inv=0, subnet_decay_inv=0, compat="exact", threads=None))]
            #[allow(clippy::too_many_arguments)]
            fn train_step<'py>(
                &mut self,
                py: Python<'py>,
                x: PyReadonlyArray2<'py, i8>,
                labels: PyReadonlyArray1<'py, i64>,
                lr_inv: i64,
                lr_amp_factor: i64,
                fwd_decay_inv: i64,
                subnet_decay_inv: i64,
                compat: &str,
                threads: Option<usize>,
            ) -> PyResult<Bound<'py, PyDict>> {
                let hyper = hyper_from(
                    lr_inv,
                    lr_amp_factor,
                    fwd_decay_inv,
                    subnet_decay_inv,
                    compat,
                )?;
                run_step(py, &mut self.inner, x, labels, hyper, threads)
            }

            /// Evaluation-mode logits (`int8`, `N × classes`).
            #[pyo3(signature = (x, *, threads=None))]
            fn predict_logits<'py>(
                &self,
                py: Python<'py>,
                x: PyReadonlyArray2<'py, i8>,
                threads: Option<usize>,
            ) -> PyResult<Bound<'py, PyArray2<i8>>> {
                run_logits(py, &self.inner, x, threads)
            }

            /// Predicted classes (`int64`; arg-max, first on ties).
            #[pyo3(signature = (x, *, threads=None))]
            fn predict<'py>(
                &self,
                py: Python<'py>,
                x: PyReadonlyArray2<'py, i8>,
                threads: Option<usize>,
            ) -> PyResult<Bound<'py, PyArray1<i64>>> {
                run_predict(py, &self.inner, x, threads)
            }

            /// Train for `epochs` epochs (the Rust epoch loop, GIL released). Returns the history as a
            /// dict and the exception that stopped training early (e.g. `KeyboardInterrupt`), or `None`.
            #[pyo3(signature = (x, y, chw, *, x_test=None, y_test=None, epochs, batch_size=64, lr_inv=512, lr_amp_factor=640, fwd_decay_inv=0, subnet_decay_inv=0, compat="exact", augment=None, shuffle=true, plateau=false, early_stopping=false, seed=0, on_batch=None, on_epoch=None, threads=None))]
            #[allow(clippy::too_many_arguments)]
            fn fit<'py>(
                &mut self,
                py: Python<'py>,
                x: PyReadonlyArray2<'py, i8>,
                y: PyReadonlyArray1<'py, i64>,
                chw: (usize, usize, usize),
                x_test: Option<PyReadonlyArray2<'py, i8>>,
                y_test: Option<PyReadonlyArray1<'py, i64>>,
                epochs: u32,
                batch_size: usize,
                lr_inv: i64,
                lr_amp_factor: i64,
                fwd_decay_inv: i64,
                subnet_decay_inv: i64,
                compat: &str,
                augment: Option<(usize, bool)>,
                shuffle: bool,
                plateau: bool,
                early_stopping: bool,
                seed: u64,
                on_batch: Option<Py<PyAny>>,
                on_epoch: Option<Py<PyAny>>,
                threads: Option<usize>,
            ) -> PyResult<(Bound<'py, PyDict>, Option<Py<PyAny>>)> {
                let cfg = train_config(
                    epochs,
                    batch_size,
                    lr_inv,
                    lr_amp_factor,
                    fwd_decay_inv,
                    subnet_decay_inv,
                    compat,
                    augment,
                    shuffle,
                    plateau,
                    early_stopping,
                    seed,
                )?;
                run_fit(
                    py,
                    &mut self.inner,
                    x,
                    y,
                    chw,
                    x_test,
                    y_test,
                    cfg,
                    on_batch,
                    on_epoch,
                    threads,
                )
            }

            $($own)*
        }
    };
}

model_pymethods!(Model {
    /// A freshly initialised model `inputs → hidden… → classes`.
    #[new]
    #[pyo3(signature = (inputs, hidden, classes, *, activation="nitro_relu", slope=4, dropout_pct=0, bias=false, init=None, seed=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        inputs: usize,
        hidden: Vec<usize>,
        classes: usize,
        activation: &str,
        slope: u8,
        dropout_pct: u32,
        bias: bool,
        init: Option<&str>,
        seed: u64,
    ) -> PyResult<Self> {
        let kind = ActivationKind::from_name(activation, slope).map_err(to_py)?;
        let init = match init {
            Some(s) => Init::from_name(s).map_err(to_py)?,
            None => Init::default_for(kind),
        };
        let config = MlpConfig {
            inputs,
            hidden,
            classes,
            activation: kind,
            dropout_pct,
            bias,
            init,
            seed,
        };
        Ok(Model {
            inner: Mlp::new(config).map_err(to_py)?,
        })
    }

    /// The architecture as a dict (the `architecture` metadata of a saved file).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.inner.config;
        let d = PyDict::new(py);
        d.set_item("inputs", c.inputs)?;
        d.set_item("hidden", c.hidden.clone())?;
        d.set_item("classes", c.classes)?;
        d.set_item("activation", c.activation.name())?;
        d.set_item("slope", c.activation.slope())?;
        d.set_item("dropout_pct", c.dropout_pct)?;
        d.set_item("bias", c.bias)?;
        d.set_item("init", c.init.name())?;
        d.set_item("seed", c.seed)?;
        Ok(d)
    }

    /// Parameter names in a fixed order (`linear_encoder_00`, `linear_pred_00`, …, `linear_03`,
    /// with `.bias` entries when the model has biases) and their shapes.
    fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        for l in self.inner.linears() {
            v.push((l.name.clone(), l.weight.shape().to_vec()));
            if let Some(b) = &l.bias {
                v.push((names::bias(&l.name), vec![b.len()]));
            }
        }
        v
    }

    /// Copies of every parameter as `int32` arrays, keyed by parameter name.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for l in self.inner.linears() {
            d.set_item(&l.name, l.weight.clone().into_pyarray(py))?;
            if let Some(b) = &l.bias {
                d.set_item(names::bias(&l.name), b.clone().into_pyarray(py))?;
            }
        }
        Ok(d)
    }

    /// Replace parameters by `int32` arrays keyed by name. All shapes are checked before anything
    /// is written, so a failing call leaves the model unchanged.
    fn load_state_dict(
        &mut self,
        params: Vec<(String, PyReadonlyArrayDyn<'_, i32>)>,
    ) -> PyResult<()> {
        // Validate everything first.
        for (key, arr) in &params {
            let (l, is_bias) = find_linear(&mut self.inner, key)?;
            let want: Vec<usize> = if is_bias {
                vec![l.out_features()]
            } else {
                l.weight.shape().to_vec()
            };
            if arr.shape() != want.as_slice() {
                return Err(value_err(format!(
                    "parameter {key:?} has shape {:?}, expected {want:?}",
                    arr.shape()
                )));
            }
        }
        for (key, arr) in &params {
            let (l, is_bias) = find_linear(&mut self.inner, key)?;
            let a = arr.as_array();
            if is_bias {
                l.bias = Some(a.iter().copied().collect::<Array1<i32>>());
            } else {
                let (o, i) = l.weight.dim();
                l.weight = Array2::from_shape_vec((o, i), a.iter().copied().collect())
                    .map_err(|e| value_err(format!("parameter {key:?}: {e}")))?;
            }
            l.clear();
        }
        for b in &mut self.inner.blocks {
            b.clear();
        }
        Ok(())
    }

    /// The model as `.safetensors` bytes (SPEC §8).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let b = io::to_bytes(&self.inner).map_err(to_py)?;
        Ok(PyBytes::new(py, &b))
    }

    /// A model from `.safetensors` bytes.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Model> {
        let inner = py.detach(|| io::from_bytes(data)).map_err(to_py)?;
        Ok(Model { inner })
    }

    /// Save atomically to a `.safetensors` file.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let m = &self.inner;
        py.detach(|| io::save_file(m, &path)).map_err(to_py)
    }

    /// Load a `.safetensors` file written by `save`.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        let inner = py.detach(|| io::load_file(&path)).map_err(to_py)?;
        Ok(Model { inner })
    }

    /// The compact `no_std`-loadable blob of `nitro_core::export::to_blob` (see `embedded/`).
    fn to_blob<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let b = nitro_core::export::to_blob(&self.inner).map_err(to_py)?;
        Ok(PyBytes::new(py, &b))
    }

    /// A model rebuilt from a blob by `nitro_core::export::from_blob` (the device loader).
    #[staticmethod]
    fn from_blob(py: Python<'_>, data: &[u8]) -> PyResult<Model> {
        let inner = py
            .detach(|| nitro_core::export::from_blob(data))
            .map_err(to_py)?;
        Ok(Model { inner })
    }

    /// Rust source with the model as `const` arrays (`nitro_core::export::to_rust_source`).
    #[pyo3(signature = (name="model"))]
    fn to_rust_source(&self, name: &str) -> PyResult<String> {
        nitro_core::export::to_rust_source(&self.inner, name).map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!("<nitrod_rs._core.Model {}>", self.inner.describe())
    }
});

// ---------------------------------------------------------------------------------------------
// The CNN
// ---------------------------------------------------------------------------------------------

/// A feature-extractor entry as `(kind, [numbers…])`: `("conv", [filters, kernel, stride,
/// padding])`, `("maxpool", [k])`, `("avgpool", [k])` or `("dropout", [percent])`.
type FeatureSpec = (String, Vec<usize>);

fn feature_from(spec: &FeatureSpec, i: usize) -> PyResult<Feature> {
    let (kind, v) = spec;
    let bad = || {
        value_err(format!(
            "feature {i}: {kind:?} with {v:?} is not one of (\"conv\", [filters, kernel, \
             stride, padding]), (\"maxpool\", [k]), (\"avgpool\", [k]), (\"dropout\", [percent])"
        ))
    };
    match (kind.as_str(), v.as_slice()) {
        ("conv", &[filters, kernel, stride, padding]) => Ok(Feature::Conv {
            filters,
            kernel,
            stride,
            padding,
        }),
        ("maxpool", &[k]) => Ok(Feature::MaxPool(k)),
        ("avgpool", &[k]) => Ok(Feature::AvgPool(k)),
        ("dropout", &[r]) => Ok(Feature::Dropout(u32::try_from(r).map_err(|_| bad())?)),
        _ => Err(bad()),
    }
}

fn feature_spec(f: &Feature) -> FeatureSpec {
    match *f {
        Feature::Conv {
            filters,
            kernel,
            stride,
            padding,
        } => ("conv".into(), vec![filters, kernel, stride, padding]),
        Feature::MaxPool(k) => ("maxpool".into(), vec![k]),
        Feature::AvgPool(k) => ("avgpool".into(), vec![k]),
        Feature::Dropout(r) => ("dropout".into(), vec![r as usize]),
    }
}

fn cnn_config_dict<'py>(py: Python<'py>, c: &CnnConfig) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("kind", "cnn")?;
    d.set_item("input", c.input)?;
    let feats: Vec<FeatureSpec> = c.features.iter().map(feature_spec).collect();
    d.set_item("features", feats)?;
    d.set_item("classifier", c.classifier.clone())?;
    d.set_item("classes", c.classes)?;
    d.set_item("activation", c.activation.name())?;
    d.set_item("slope", c.activation.slope())?;
    d.set_item("dropout_pct", c.dropout_pct)?;
    d.set_item("bias", c.bias)?;
    d.set_item("init", c.init.name())?;
    d.set_item("seed", c.seed)?;
    d.set_item("decoder_dim", c.decoder_dim)?;
    d.set_item("head_pool", c.head_pool.name())?;
    d.set_item("conv_amp_adjust", c.conv_amp_adjust)?;
    Ok(d)
}

/// A parameter of a CNN: a convolution's (4-D) or a linear layer's (2-D) weight, or a bias.
enum CnnParam<'a> {
    ConvWeight(&'a mut Conv2d),
    ConvBias(&'a mut Conv2d),
    LinearWeight(&'a mut Linear),
    LinearBias(&'a mut Linear),
}

fn find_cnn_param<'a>(m: &'a mut Cnn, key: &str) -> PyResult<CnnParam<'a>> {
    let (name, is_bias) = match key.strip_suffix(names::BIAS_SUFFIX) {
        Some(n) => (n, true),
        None => (key, false),
    };
    let missing = || value_err(format!("the model has no parameter {key:?}"));
    if m.convs().iter().any(|c| c.name == name) {
        let c = m.conv_mut(name).ok_or_else(missing)?;
        if is_bias {
            if c.bias.is_none() {
                return Err(missing());
            }
            return Ok(CnnParam::ConvBias(c));
        }
        return Ok(CnnParam::ConvWeight(c));
    }
    let l = m.linear_mut(name).ok_or_else(missing)?;
    if is_bias {
        if l.bias.is_none() {
            return Err(missing());
        }
        return Ok(CnnParam::LinearBias(l));
    }
    Ok(CnnParam::LinearWeight(l))
}

/// A local-loss integer CNN (`nitro_core::Cnn`). Use `nitrod_rs.CNN`, which checks arguments.
#[pyclass(module = "nitrod_rs._core", name = "CnnModel")]
struct CnnModel {
    inner: Cnn,
}

model_pymethods!(CnnModel {
    /// A freshly initialised CNN: `input` is `(C, H, W)` with `H = W`, `features` the
    /// feature-extractor entries, `classifier` the hidden widths of the MLP classifier.
    #[new]
    #[pyo3(signature = (input, features, classifier, classes, *, activation="nitro_relu", slope=4, dropout_pct=0, bias=false, init=None, seed=0, decoder_dim=2048, head_pool="max", conv_amp_adjust=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        input: (usize, usize, usize),
        features: Vec<FeatureSpec>,
        classifier: Vec<usize>,
        classes: usize,
        activation: &str,
        slope: u8,
        dropout_pct: u32,
        bias: bool,
        init: Option<&str>,
        seed: u64,
        decoder_dim: usize,
        head_pool: &str,
        conv_amp_adjust: bool,
    ) -> PyResult<Self> {
        let kind = ActivationKind::from_name(activation, slope).map_err(to_py)?;
        let init = match init {
            Some(s) => Init::from_name(s).map_err(to_py)?,
            None => Init::default_for(kind),
        };
        let features = features
            .iter()
            .enumerate()
            .map(|(i, f)| feature_from(f, i))
            .collect::<PyResult<Vec<_>>>()?;
        let mut config = CnnConfig::new(input, &features, &classifier, classes);
        config.activation = kind;
        config.dropout_pct = dropout_pct;
        config.bias = bias;
        config.init = init;
        config.seed = seed;
        config.decoder_dim = decoder_dim;
        config.head_pool = PoolKind::from_name(head_pool).map_err(to_py)?;
        config.conv_amp_adjust = conv_amp_adjust;
        Ok(CnnModel {
            inner: Cnn::new(config).map_err(to_py)?,
        })
    }

    /// The architecture as a dict (the `architecture` metadata of a saved file).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        cnn_config_dict(py, &self.inner.config)
    }

    /// Geometry `(C, d, d)` of the flattened features entering the classifier.
    #[getter]
    fn feature_shape(&self) -> (usize, usize, usize) {
        self.inner.feature_shape
    }

    /// Per conv block: `(name, head pooling kernel, head padding, pooled dims, D)` (SPEC §4.1).
    fn head_geometries(&self) -> Vec<HeadInfo> {
        self.inner
            .conv_blocks()
            .iter()
            .map(|b| {
                let g = &b.geometry;
                (b.conv.name.clone(), g.kernel, g.padding, g.dims, g.features)
            })
            .collect()
    }

    /// Parameter names in a fixed order (convolutions, then linear layers: conv heads,
    /// classifier blocks, output; `.bias` entries with biases) and their shapes.
    fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        for c in self.inner.convs() {
            v.push((c.name.clone(), c.weight.shape().to_vec()));
            if let Some(b) = &c.bias {
                v.push((names::bias(&c.name), vec![b.len()]));
            }
        }
        for l in self.inner.linears() {
            v.push((l.name.clone(), l.weight.shape().to_vec()));
            if let Some(b) = &l.bias {
                v.push((names::bias(&l.name), vec![b.len()]));
            }
        }
        v
    }

    /// Copies of every parameter as `int32` arrays, keyed by parameter name.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for c in self.inner.convs() {
            d.set_item(&c.name, c.weight.clone().into_pyarray(py))?;
            if let Some(b) = &c.bias {
                d.set_item(names::bias(&c.name), b.clone().into_pyarray(py))?;
            }
        }
        for l in self.inner.linears() {
            d.set_item(&l.name, l.weight.clone().into_pyarray(py))?;
            if let Some(b) = &l.bias {
                d.set_item(names::bias(&l.name), b.clone().into_pyarray(py))?;
            }
        }
        Ok(d)
    }

    /// Replace parameters by `int32` arrays keyed by name. All shapes are checked before anything
    /// is written, so a failing call leaves the model unchanged.
    fn load_state_dict(
        &mut self,
        params: Vec<(String, PyReadonlyArrayDyn<'_, i32>)>,
    ) -> PyResult<()> {
        for (key, arr) in &params {
            let want: Vec<usize> = match find_cnn_param(&mut self.inner, key)? {
                CnnParam::ConvWeight(c) => c.weight.shape().to_vec(),
                CnnParam::ConvBias(c) => vec![c.filters()],
                CnnParam::LinearWeight(l) => l.weight.shape().to_vec(),
                CnnParam::LinearBias(l) => vec![l.out_features()],
            };
            if arr.shape() != want.as_slice() {
                return Err(value_err(format!(
                    "parameter {key:?} has shape {:?}, expected {want:?}",
                    arr.shape()
                )));
            }
        }
        for (key, arr) in &params {
            let a = arr.as_array();
            let vals: Vec<i32> = a.iter().copied().collect();
            let shape_err = |e: ndarray::ShapeError| value_err(format!("parameter {key:?}: {e}"));
            match find_cnn_param(&mut self.inner, key)? {
                CnnParam::ConvWeight(c) => {
                    c.weight =
                        ndarray::Array4::from_shape_vec(c.weight.dim(), vals).map_err(shape_err)?;
                    c.clear();
                }
                CnnParam::ConvBias(c) => {
                    c.bias = Some(Array1::from(vals));
                    c.clear();
                }
                CnnParam::LinearWeight(l) => {
                    l.weight = Array2::from_shape_vec(l.weight.dim(), vals).map_err(shape_err)?;
                    l.clear();
                }
                CnnParam::LinearBias(l) => {
                    l.bias = Some(Array1::from(vals));
                    l.clear();
                }
            }
        }
        for s in &mut self.inner.stages {
            if let nitro_core::model::Stage::Block(b) = s {
                b.clear();
            }
        }
        for b in &mut self.inner.blocks {
            b.clear();
        }
        Ok(())
    }

    /// The model as `.safetensors` bytes (SPEC §8).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let b = io::cnn_to_bytes(&self.inner).map_err(to_py)?;
        Ok(PyBytes::new(py, &b))
    }

    /// A CNN from `.safetensors` bytes.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<CnnModel> {
        let inner = py.detach(|| io::cnn_from_bytes(data)).map_err(to_py)?;
        Ok(CnnModel { inner })
    }

    /// Save atomically to a `.safetensors` file.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let m = &self.inner;
        py.detach(|| -> nitro_core::Result<()> { io::write_atomic(&path, &io::cnn_to_bytes(m)?) })
            .map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!("<nitrod_rs._core.CnnModel {}>", self.inner.describe())
    }
});

/// `(conv name, head kernel, head padding, pooled dims, D)`.
type HeadInfo = (
    String,
    (usize, usize),
    (usize, usize),
    (usize, usize),
    usize,
);

fn wrap_model(py: Python<'_>, m: io::Model) -> PyResult<Py<PyAny>> {
    Ok(match m {
        io::Model::Mlp(inner) => Py::new(py, Model { inner })?.into_any(),
        io::Model::Cnn(inner) => Py::new(py, CnnModel { inner })?.into_any(),
    })
}

/// A model of either kind (`Model` or `CnnModel`) from `.safetensors` bytes.
#[pyfunction]
fn model_from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Py<PyAny>> {
    let m = py.detach(|| io::Model::from_bytes(data)).map_err(to_py)?;
    wrap_model(py, m)
}

/// A model of either kind (`Model` or `CnnModel`) from a `.safetensors` file.
#[pyfunction]
fn load_model(py: Python<'_>, path: PathBuf) -> PyResult<Py<PyAny>> {
    let m = py.detach(|| io::Model::load_file(&path)).map_err(to_py)?;
    wrap_model(py, m)
}

/// A CNN preset's architecture and training settings (SPEC §7), from `nitro_core::CnnPreset`.
#[pyfunction]
#[pyo3(signature = (name, dataset="fashion-mnist"))]
fn cnn_preset_spec<'py>(
    py: Python<'py>,
    name: &str,
    dataset: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let spec = nitro_core::CnnPreset::from_name(name)
        .and_then(|p| p.spec(dataset))
        .map_err(to_py)?;
    let d = hyper_dict(py, &spec.hyper)?;
    let c = cnn_config_dict(py, &spec.config)?;
    d.set_item("config", c)?;
    d.set_item("augment", spec.augment.map(|a| (a.pad, a.flip)))?;
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// Data and files
// ---------------------------------------------------------------------------------------------

/// SPEC §2 statistics `(mean, mad)` per channel of `uint8` images stored as `N × (C·H·W)` rows.
#[pyfunction]
fn fit_normalization(
    py: Python<'_>,
    images: PyReadonlyArray2<'_, u8>,
    channels: usize,
) -> PyResult<(Vec<i64>, Vec<i64>)> {
    let v = images.as_array();
    let n = py
        .detach(|| Normalization::fit(v, channels))
        .map_err(to_py)?;
    Ok((n.mean, n.mad))
}

/// `clamp(tdiv((pixel − 128 − mean_c)·51, mad_c), −128, 127)` as `int8` (SPEC §2).
#[pyfunction]
fn normalize<'py>(
    py: Python<'py>,
    images: PyReadonlyArray2<'py, u8>,
    mean: Vec<i64>,
    mad: Vec<i64>,
) -> PyResult<Bound<'py, PyArray2<i8>>> {
    let n = Normalization { mean, mad };
    n.validate().map_err(to_py)?;
    let v = images.as_array();
    let out = py.detach(|| n.apply(v)).map_err(to_py)?;
    Ok(out.into_pyarray(py))
}

/// The metadata of a `.safetensors` buffer as a dict of strings.
#[pyfunction]
fn read_metadata(data: &[u8]) -> PyResult<Vec<(String, String)>> {
    io::read_metadata(data).map_err(to_py)
}

// ---------------------------------------------------------------------------------------------
// ops: the engine's primitives on numpy arrays
// ---------------------------------------------------------------------------------------------

/// Element-wise truncating division (SPEC §1) of two equally long `int64` vectors.
#[pyfunction]
fn tdiv<'py>(
    py: Python<'py>,
    a: PyReadonlyArray1<'py, i64>,
    b: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (a, b) = (a.as_array(), b.as_array());
    if a.len() != b.len() {
        return Err(value_err(format!(
            "tdiv: {} dividends but {} divisors",
            a.len(),
            b.len()
        )));
    }
    let mut out = Array1::<i64>::zeros(a.len());
    for (i, ((o, &x), &y)) in out.iter_mut().zip(a.iter()).zip(b.iter()).enumerate() {
        *o = nitro_core::arith::checked_tdiv(x, y).ok_or_else(|| {
            if y == 0 {
                pyo3::exceptions::PyZeroDivisionError::new_err(format!(
                    "tdiv: division by zero at index {i}"
                ))
            } else {
                IntegerOverflowError::new_err(format!("tdiv: {x} / {y} overflows int64"))
            }
        })?;
    }
    Ok(out.into_pyarray(py))
}

fn linear_layer(
    w: &PyReadonlyArray2<'_, i32>,
    b: Option<&PyReadonlyArray1<'_, i32>>,
) -> PyResult<Linear> {
    Linear::new(
        "ops.linear",
        w.as_array().to_owned(),
        b.map(|b| b.as_array().to_owned()),
    )
    .map_err(to_py)
}

/// `z = x·Wᵀ (+ b)` in `int64`, through the engine's exact GEMM (SPEC §3.1). `x` is `int8`.
#[pyfunction]
#[pyo3(signature = (x, weight, bias=None))]
fn linear<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, i8>,
    weight: PyReadonlyArray2<'py, i32>,
    bias: Option<PyReadonlyArray1<'py, i32>>,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    let l = linear_layer(&weight, bias.as_ref())?;
    let xv = x.as_array();
    let z = py.detach(|| l.infer(xv)).map_err(to_py)?;
    Ok(z.into_pyarray(py))
}

/// [`linear`] for `int16` inputs (outputs of an integer dropout layer).
#[pyfunction]
#[pyo3(signature = (x, weight, bias=None))]
fn linear_i16<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, i16>,
    weight: PyReadonlyArray2<'py, i32>,
    bias: Option<PyReadonlyArray1<'py, i32>>,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    let l = linear_layer(&weight, bias.as_ref())?;
    let xv = x.as_array();
    let z = py.detach(|| l.infer(xv)).map_err(to_py)?;
    Ok(z.into_pyarray(py))
}

/// Benchmark hook: runs exactly what [`linear`] runs on the Rust side (`Linear::infer`: the
/// bound proof, the exact GEMM and the `int64` output allocation) `repeats` times and returns
/// each call's wall time in nanoseconds (`std::time::Instant`). Unlike timing `ops.linear` from
/// Python, this leaves out argument checking, the weight copy and the numpy wrapping of the
/// result. `threads`: as in `Model.train_step` (`None` = rayon's global pool).
#[pyfunction]
#[pyo3(signature = (x, weight, repeats, threads=None))]
fn gemm_bench(
    py: Python<'_>,
    x: PyReadonlyArray2<'_, i8>,
    weight: PyReadonlyArray2<'_, i32>,
    repeats: usize,
    threads: Option<usize>,
) -> PyResult<Vec<u64>> {
    if repeats == 0 {
        return Err(value_err("repeats must be a positive integer"));
    }
    let l = linear_layer(&weight, None)?;
    let pool = pool_for(threads)?;
    let xv = x.as_array();
    py.detach(|| {
        in_pool(pool.as_deref(), || {
            let mut times = Vec::with_capacity(repeats);
            for _ in 0..repeats {
                let t = std::time::Instant::now();
                let z = std::hint::black_box(l.infer(std::hint::black_box(xv))?);
                times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                drop(z);
            }
            Ok(times)
        })
    })
    .map_err(to_py)
}

/// Two `int64` matrices returned together.
type MatrixPair<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<i64>>);

/// The input error `δ·W` and weight gradient `δᵀ·x` of a linear layer (SPEC §3.1), `int64`.
#[pyfunction]
fn linear_backward<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, i8>,
    weight: PyReadonlyArray2<'py, i32>,
    delta: PyReadonlyArray2<'py, i32>,
) -> PyResult<MatrixPair<'py>> {
    let (xv, wv, dv) = (x.as_array(), weight.as_array(), delta.as_array());
    if dv.nrows() != xv.nrows() || dv.ncols() != wv.nrows() || xv.ncols() != wv.ncols() {
        return Err(value_err(format!(
            "linear_backward: x {:?}, weight {:?} and delta {:?} do not fit (need N×in, out×in, N×out)",
            xv.shape(),
            wv.shape(),
            dv.shape()
        )));
    }
    let (din, grad) = py
        .detach(|| -> nitro_core::Result<_> {
            Ok((
                nitro_core::kernels::gemm_nn(dv, wv)?,
                nitro_core::kernels::gemm_tn(dv, xv)?,
            ))
        })
        .map_err(to_py)?;
    Ok((din.into_pyarray(py), grad.into_pyarray(py)))
}

/// `clip8(tdiv(z, 2⁸·fan_in))` element-wise (SPEC §3.3).
#[pyfunction]
fn scaling<'py>(
    py: Python<'py>,
    z: PyReadonlyArrayDyn<'py, i64>,
    fan_in: usize,
) -> PyResult<Bound<'py, PyArrayDyn<i8>>> {
    let s = Scaling::for_fan_in(fan_in).map_err(to_py)?;
    let z = z.as_array().to_owned();
    let y = py.detach(|| s.forward(&z));
    Ok(y.into_pyarray(py))
}

/// An activation's forward pass on `int8` input (SPEC §3.4), via the engine's layer.
#[pyfunction]
#[pyo3(signature = (x, kind="nitro_relu", slope=4))]
fn activation_forward<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, i8>,
    kind: &str,
    slope: u8,
) -> PyResult<Bound<'py, PyArrayDyn<i8>>> {
    let layer =
        Activation::new(ActivationKind::from_name(kind, slope).map_err(to_py)?).map_err(to_py)?;
    let x = x.as_array().to_owned();
    let y = py.detach(|| layer.infer(&x));
    Ok(y.into_pyarray(py))
}

/// An activation's backward pass `δ_in = tdiv(δ, s(x))` (SPEC §3.4), via the engine's layer.
#[pyfunction]
#[pyo3(signature = (x, delta, kind="nitro_relu", slope=4))]
fn activation_backward<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, i8>,
    delta: PyReadonlyArrayDyn<'py, i32>,
    kind: &str,
    slope: u8,
) -> PyResult<Bound<'py, PyArrayDyn<i32>>> {
    let kind = ActivationKind::from_name(kind, slope).map_err(to_py)?;
    if x.shape() != delta.shape() {
        return Err(value_err(format!(
            "activation_backward: x has shape {:?} but delta has shape {:?}",
            x.shape(),
            delta.shape()
        )));
    }
    let xv = x.as_array();
    let d = delta.as_array().to_owned();
    let out = py.detach(|| backward_with_input::<IxDyn>(kind, xv, d));
    Ok(out.into_pyarray(py))
}

/// One IntegerSGD update (SPEC §5): returns `P − (tdiv(G, lr_inv·amp) + tdiv(P, decay_inv))`.
#[pyfunction]
#[pyo3(signature = (params, grads, *, lr_inv, amp=1, decay_inv=0))]
fn integer_sgd_update<'py>(
    py: Python<'py>,
    params: PyReadonlyArrayDyn<'py, i32>,
    grads: PyReadonlyArrayDyn<'py, i64>,
    lr_inv: i64,
    amp: i64,
    decay_inv: i64,
) -> PyResult<Bound<'py, PyArrayDyn<i32>>> {
    let sgd = Sgd::new(lr_inv, amp, decay_inv).map_err(to_py)?;
    if params.shape() != grads.shape() {
        return Err(value_err(format!(
            "integer_sgd_update: params have shape {:?} but grads have shape {:?}",
            params.shape(),
            grads.shape()
        )));
    }
    let mut p = params.as_array().as_standard_layout().into_owned();
    let g = grads.as_array().as_standard_layout().into_owned();
    py.detach(|| match (p.as_slice_mut(), g.as_slice()) {
        (Some(ps), Some(gs)) => sgd.apply(ps, gs, "integer_sgd_update"),
        _ => Ok(()),
    })
    .map_err(to_py)?;
    Ok(p.into_pyarray(py))
}

fn conv_layer(
    weight: &PyReadonlyArrayDyn<'_, i32>,
    bias: Option<Array1<i32>>,
    padding: usize,
) -> PyResult<Conv2d> {
    let w = weight.as_array();
    let w = w
        .as_standard_layout()
        .into_owned()
        .into_dimensionality::<ndarray::Ix4>()
        .map_err(|_| {
            value_err(format!(
                "conv2d: weight must be F×C×k×k, got shape {:?}",
                weight.shape()
            ))
        })?;
    Conv2d::new("ops.conv2d", w, bias, 1, padding).map_err(to_py)
}

fn view4<'a, T>(
    a: &'a PyReadonlyArrayDyn<'_, T>,
    name: &str,
) -> PyResult<ndarray::ArrayView4<'a, T>>
where
    T: numpy::Element,
{
    a.as_array()
        .into_dimensionality::<ndarray::Ix4>()
        .map_err(|_| value_err(format!("{name} must be N×C×H×W, got shape {:?}", a.shape())))
}

/// `IntegerConv2d` forward (stride 1, zero padding; SPEC §3.2) in `int64`, through the
/// engine's `Conv2d` (im2col + exact GEMM). `x` is `int8` N×C×H×W, `weight` `int32` F×C×k×k.
#[pyfunction]
#[pyo3(signature = (x, weight, bias=None, padding=0))]
fn conv2d<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, i8>,
    weight: PyReadonlyArrayDyn<'py, i32>,
    bias: Option<PyReadonlyArray1<'py, i32>>,
    padding: usize,
) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
    let layer = conv_layer(&weight, bias.map(|b| b.as_array().to_owned()), padding)?;
    let xv = view4(&x, "x")?;
    let z = py.detach(|| layer.infer(xv)).map_err(to_py)?;
    Ok(z.into_dyn().into_pyarray(py))
}

/// A convolution's weight gradient (`F×C×k×k`) and bias gradient (`F`), `int64`.
type ConvGrads<'py> = (Bound<'py, PyArrayDyn<i64>>, Bound<'py, PyArray1<i64>>);

/// The weight and bias gradients of `IntegerConv2d` (SPEC §3.2): `(Σ δ ⋆ x, Σ δ)` in `int64`,
/// reduced over batch × H × W with the engine's proven accumulators. `delta` is `int32`
/// N×F×Ho×Wo.
#[pyfunction]
#[pyo3(signature = (x, weight, delta, padding=0))]
fn conv2d_weight_grad<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, i8>,
    weight: PyReadonlyArrayDyn<'py, i32>,
    delta: PyReadonlyArrayDyn<'py, i32>,
    padding: usize,
) -> PyResult<ConvGrads<'py>> {
    let f = weight.shape().first().copied().unwrap_or(0);
    let mut layer = conv_layer(&weight, Some(Array1::zeros(f)), padding)?;
    let xv = view4(&x, "x")?;
    let dv = view4(&delta, "delta")?;
    let (g, gb) = py
        .detach(|| -> nitro_core::Result<_> {
            layer.forward(xv, true)?;
            layer.gradients(dv)
        })
        .map_err(to_py)?;
    let gb = gb.unwrap_or_else(|| Array1::zeros(f));
    Ok((g.into_dyn().into_pyarray(py), gb.into_pyarray(py)))
}

fn pool_layer(kind: &str, kernel: (usize, usize), padding: (usize, usize)) -> PyResult<Pool2d> {
    Pool2d::new(PoolKind::from_name(kind).map_err(to_py)?, kernel, padding).map_err(to_py)
}

macro_rules! pool_fns {
    ($fwd:ident, $bwd:ident, $t:ty) => {
        /// Max or average pooling forward (kernel = stride; SPEC §3.5) via the engine's
        /// `Pool2d`; returns the pooled tensor in the input's dtype.
        #[pyfunction]
        #[pyo3(signature = (x, kind, kernel, padding=(0, 0), compat="exact"))]
        fn $fwd<'py>(
            py: Python<'py>,
            x: PyReadonlyArrayDyn<'py, $t>,
            kind: &str,
            kernel: (usize, usize),
            padding: (usize, usize),
            compat: &str,
        ) -> PyResult<Bound<'py, PyArrayDyn<$t>>> {
            let layer = pool_layer(kind, kernel, padding)?;
            let compat = Compat::from_name(compat).map_err(to_py)?;
            let xv = view4(&x, "x")?;
            let (y, _) = py.detach(|| layer.apply(xv, compat)).map_err(to_py)?;
            Ok(y.into_dyn().into_pyarray(py))
        }

        /// Pooling backward via the engine's `Pool2d` (a training-mode forward on `x`, then
        /// backward of `delta`): max routes δ to the arg-max (first in row-major order on ties),
        /// average spreads `tdiv(δ, kh·kw)`; `int32` out, shaped like `x`.
        #[pyfunction]
        #[pyo3(signature = (x, delta, kind, kernel, padding=(0, 0), compat="exact"))]
        fn $bwd<'py>(
            py: Python<'py>,
            x: PyReadonlyArrayDyn<'py, $t>,
            delta: PyReadonlyArrayDyn<'py, i32>,
            kind: &str,
            kernel: (usize, usize),
            padding: (usize, usize),
            compat: &str,
        ) -> PyResult<Bound<'py, PyArrayDyn<i32>>> {
            let mut layer = pool_layer(kind, kernel, padding)?;
            let compat = Compat::from_name(compat).map_err(to_py)?;
            let xv = view4(&x, "x")?;
            let dv = view4(&delta, "delta")?;
            let out = py
                .detach(|| -> nitro_core::Result<_> {
                    layer.forward(xv, true, compat)?;
                    layer.backward(dv)
                })
                .map_err(to_py)?;
            Ok(out.into_dyn().into_pyarray(py))
        }
    };
}

pool_fns!(pool2d_i8, pool2d_backward_i8, i8);
pool_fns!(pool2d_i16, pool2d_backward_i16, i16);
pool_fns!(pool2d_i32, pool2d_backward_i32, i32);

/// A paper preset's architecture and training settings (SPEC §7), from `nitro_core::Preset`.
#[pyfunction]
#[pyo3(signature = (name, dataset="fashion-mnist"))]
fn preset_spec<'py>(py: Python<'py>, name: &str, dataset: &str) -> PyResult<Bound<'py, PyDict>> {
    let spec = nitro_core::Preset::from_name(name)
        .map_err(to_py)?
        .spec(dataset);
    let c = &spec.config;
    let d = hyper_dict(py, &spec.hyper)?;
    let mut layers = vec![c.inputs];
    layers.extend(&c.hidden);
    layers.push(c.classes);
    d.set_item("layers", layers)?;
    d.set_item("dropout_pct", c.dropout_pct)?;
    d.set_item("augment", spec.augment)?;
    Ok(d)
}

/// The module `nitrod_rs._core`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // SAFETY: registers a plain function that only stores to an atomic; it is async-signal-safe.
    unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_in_child));
    }
    let py = m.py();
    m.add("__version__", nitro_core::VERSION)?;
    m.add("NitroError", py.get_type::<NitroError>())?;
    m.add("FormatError", py.get_type::<FormatError>())?;
    m.add(
        "IntegerOverflowError",
        py.get_type::<IntegerOverflowError>(),
    )?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(fit_normalization, m)?)?;
    m.add_function(wrap_pyfunction!(normalize, m)?)?;
    m.add_function(wrap_pyfunction!(read_metadata, m)?)?;
    m.add_function(wrap_pyfunction!(preset_spec, m)?)?;
    m.add_function(wrap_pyfunction!(tdiv, m)?)?;
    m.add_function(wrap_pyfunction!(linear, m)?)?;
    m.add_function(wrap_pyfunction!(linear_i16, m)?)?;
    m.add_function(wrap_pyfunction!(linear_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gemm_bench, m)?)?;
    m.add_function(wrap_pyfunction!(scaling, m)?)?;
    m.add_function(wrap_pyfunction!(activation_forward, m)?)?;
    m.add_function(wrap_pyfunction!(activation_backward, m)?)?;
    m.add_function(wrap_pyfunction!(integer_sgd_update, m)?)?;
    m.add_class::<CnnModel>()?;
    m.add_function(wrap_pyfunction!(model_from_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(load_model, m)?)?;
    m.add_function(wrap_pyfunction!(cnn_preset_spec, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d_weight_grad, m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_i8, m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_i16, m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_i32, m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_backward_i8, m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_backward_i16, m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_backward_i32, m)?)?;
    facts::register(m)?;
    Ok(())
}
