//! The glue of training: keyword arguments to a `TrainConfig` and back, one epoch of the
//! engine's loop (`nitro_core::fit_held`) run with the GIL released on a thread of the chosen
//! pool while the caller's thread checks for signals, with a per-batch Python callback, either
//! of which may stop it after a batch, and single training steps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView2};
use nitro_core::train::{
    Control, DataParallel, DataPrint, DataPrints, Evaluate, Progress, Trainable,
};
use nitro_core::{
    Augment, Dataset, Hyper, Plateau, RunState, Schedule, Sets, Split, StepStats, TrainConfig,
};
use numpy::{PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::labels_to_usize;
use crate::errors::{to_py, value_err};
use crate::parallel::Exchanged;
use crate::threads::{checking_signals, in_pool, inside_pool, pool_for};

/// A model whose compute runs in a chosen thread pool (its steps and evaluations installed
/// there; a no-op when the epoch loop already runs on one of its threads, as in [`run_epoch`]).
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

/// How the plateau rule and early stopping are set, as given: each `None` takes the paper's
/// value (`Plateau::paper`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Watch {
    /// Multiply `lr_inv` by `plateau_factor` when the watched accuracy stalls.
    pub plateau: bool,
    /// Stop the run when the watched accuracy stalls for longer.
    pub early_stopping: bool,
    /// First epoch (1-based) at which the plateau rule may fire.
    pub plateau_start: Option<u32>,
    /// Epochs without an improvement before `lr_inv` is multiplied.
    pub plateau_patience: Option<u32>,
    /// The multiplier of `lr_inv` (at least 2).
    pub plateau_factor: Option<i64>,
    /// The improvement, in percentage points of accuracy, that counts (both rules).
    pub min_delta_points: Option<u64>,
    /// First epoch at which early stopping may fire.
    pub early_stopping_start: Option<u32>,
    /// Epochs without an improvement before the run stops.
    pub early_stopping_patience: Option<u32>,
}

impl Watch {
    /// The engine's watcher, or `None` when both rules are off; the settings checked.
    fn plateau(&self) -> PyResult<Option<Plateau>> {
        let plateau_only = [
            ("plateau_start", self.plateau_start.is_some()),
            ("plateau_patience", self.plateau_patience.is_some()),
            ("plateau_factor", self.plateau_factor.is_some()),
        ];
        let stop_only = [
            ("early_stopping_start", self.early_stopping_start.is_some()),
            (
                "early_stopping_patience",
                self.early_stopping_patience.is_some(),
            ),
        ];
        for (on, rule, given) in [
            (self.plateau, "plateau", &plateau_only[..]),
            (self.early_stopping, "early_stopping", &stop_only[..]),
        ] {
            if let Some((name, _)) = given.iter().find(|(_, g)| *g && !on) {
                return Err(value_err(format!(
                    "{name} is a setting of the {rule} rule, which is off: pass {rule}=True"
                )));
            }
        }
        if !self.plateau && !self.early_stopping {
            if self.min_delta_points.is_some() {
                return Err(value_err(
                    "min_delta_points is a setting of the plateau rule and early stopping, \
                     which are off",
                ));
            }
            return Ok(None);
        }
        let mut w = Plateau::paper();
        if self.plateau {
            w.start_epoch = self.plateau_start.unwrap_or(w.start_epoch);
            w.patience = self.plateau_patience.unwrap_or(w.patience);
            w.factor = self.plateau_factor.unwrap_or(w.factor);
            if w.factor < 2 {
                return Err(value_err(format!(
                    "plateau_factor must be at least 2 (lr_inv is multiplied by it on a \
                     plateau), got {}",
                    w.factor
                )));
            }
        } else {
            // The rule still counts the epochs (early stopping needs them) but never changes
            // lr_inv.
            w.factor = 1;
        }
        if self.early_stopping {
            w.early_stop_start = self.early_stopping_start.or(w.early_stop_start);
            if let Some(p) = self.early_stopping_patience {
                w.early_stop_patience = p;
            }
        } else {
            w.early_stop_start = None;
        }
        w.min_delta_points = self.min_delta_points.unwrap_or(w.min_delta_points);
        if w.min_delta_points > 100 {
            return Err(value_err(format!(
                "min_delta_points is a share of accuracy in percentage points (0..=100), got {}",
                w.min_delta_points
            )));
        }
        Ok(Some(w))
    }
}

/// A schedule of `lr_inv` from its keyword form `(kind, a, b)`: `("linear", pct, max)`,
/// `("exponential", pct, max)`, `("halving", every, max)`; `None` keeps `lr_inv` constant.
/// The growth must be positive and the cap `max` a valid `lr_inv` at least the starting one
/// (so that the schedule never produces a setting the next step refuses).
pub fn schedule_from(spec: Option<(String, i64, i64)>, hyper: &Hyper) -> PyResult<Schedule> {
    let Some((kind, a, max)) = spec else {
        return Ok(Schedule::Constant);
    };
    let s = match kind.as_str() {
        "linear" => Schedule::Linear { pct: a, max },
        "exponential" => Schedule::Exponential { pct: a, max },
        "halving" => Schedule::Halving {
            every: u32::try_from(a).unwrap_or(0),
            max,
        },
        "constant" => return Ok(Schedule::Constant),
        o => {
            return Err(value_err(format!(
                "schedule kind must be \"linear\", \"exponential\", \"halving\" or \
                 \"constant\", got {o:?}"
            )))
        }
    };
    let step = match s {
        Schedule::Halving { every, .. } => i64::from(every),
        _ => a,
    };
    if step < 1 {
        let what = if kind == "halving" {
            format!("its period (epochs) in 1..={}", u32::MAX)
        } else {
            "its growth in percent at least 1".to_string()
        };
        return Err(value_err(format!(
            "a {kind} schedule needs {what}, got {a}"
        )));
    }
    if max < hyper.lr_inv {
        return Err(value_err(format!(
            "the schedule's cap max={max} is below the starting lr_inv={} (the schedules only \
             grow lr_inv, i.e. shrink the steps)",
            hyper.lr_inv
        )));
    }
    let capped = Hyper {
        lr_inv: max,
        ..*hyper
    };
    capped.sgds().map_err(|e| {
        value_err(format!(
            "the schedule's cap max={max} is not a usable lr_inv with these settings: {e}"
        ))
    })?;
    Ok(s)
}

/// A schedule as the keyword form of [`schedule_from`] (`None` for a constant `lr_inv`).
fn schedule_spec(s: &Schedule) -> Option<(&'static str, i64, i64)> {
    match *s {
        Schedule::Constant => None,
        Schedule::Linear { pct, max } => Some(("linear", pct, max)),
        Schedule::Exponential { pct, max } => Some(("exponential", pct, max)),
        Schedule::Halving { every, max } => Some(("halving", i64::from(every), max)),
    }
}

/// The keyword arguments of a run as a `TrainConfig`; `hyper` comes checked (`hyper_from`).
/// `watch` switches and sets the two halves of the paper's rule (`Plateau::paper`);
/// `validation_permille` holds a seeded split out of the training set.
#[allow(clippy::too_many_arguments)]
pub fn train_config(
    epochs: u32,
    batch_size: usize,
    hyper: Hyper,
    schedule: Schedule,
    augment: Option<(usize, bool)>,
    shuffle: bool,
    watch: Watch,
    seed: u64,
    validation_permille: Option<u32>,
    validation_seed: u64,
    select_on_test: bool,
) -> PyResult<TrainConfig> {
    let plateau = watch.plateau()?;
    let validation = match validation_permille {
        None => None,
        Some(permille) => {
            let s = Split {
                permille,
                seed: validation_seed,
            };
            s.validate().map_err(to_py)?;
            Some(s)
        }
    };
    if epochs == 0 {
        return Err(value_err("epochs must be a positive integer"));
    }
    if batch_size == 0 {
        return Err(value_err("batch_size must be a positive integer"));
    }
    Ok(TrainConfig {
        epochs,
        batch_size,
        hyper,
        schedule,
        plateau,
        augment: augment.map(|(pad, flip)| Augment { pad, flip }),
        shuffle,
        seed,
        validation,
        select_on_test,
        ..TrainConfig::default()
    })
}

/// A `TrainConfig` as the keyword arguments of [`train_config`] (the hyper-parameters
/// flattened, as `TrainSettings` takes them).
pub fn settings_dict<'py>(py: Python<'py>, c: &TrainConfig) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epochs", c.epochs)?;
    d.set_item("batch_size", c.batch_size)?;
    for (k, v) in crate::convert::hyper_dict(py, &c.hyper)?.iter() {
        d.set_item(k, v)?;
    }
    d.set_item("augment", c.augment.map(|a| (a.pad, a.flip)))?;
    d.set_item("schedule", schedule_spec(&c.schedule))?;
    d.set_item("shuffle", c.shuffle)?;
    let plateau = c.plateau.as_ref().filter(|p| p.factor > 1);
    let stop = c.plateau.as_ref().filter(|p| p.early_stop_start.is_some());
    d.set_item("plateau", plateau.is_some())?;
    d.set_item("early_stopping", stop.is_some())?;
    d.set_item("plateau_start", plateau.map(|p| p.start_epoch))?;
    d.set_item("plateau_patience", plateau.map(|p| p.patience))?;
    d.set_item("plateau_factor", plateau.map(|p| p.factor))?;
    d.set_item(
        "min_delta_points",
        c.plateau.as_ref().map(|p| p.min_delta_points),
    )?;
    d.set_item(
        "early_stopping_start",
        stop.and_then(|p| p.early_stop_start),
    )?;
    d.set_item(
        "early_stopping_patience",
        stop.map(|p| p.early_stop_patience),
    )?;
    d.set_item("seed", c.seed)?;
    d.set_item("validation_permille", c.validation.map(|s| s.permille))?;
    d.set_item("validation_seed", c.validation.map_or(0, |s| s.seed))?;
    d.set_item("select_on_test", c.select_on_test)?;
    Ok(d)
}

/// The keyword arguments behind each setting name of `TrainConfig::differences`.
fn keys_of(setting: &str) -> &'static [&'static str] {
    match setting {
        "batch_size" => &["batch_size"],
        "hyper" => &[
            "lr_inv",
            "lr_amp_factor",
            "fwd_decay_inv",
            "subnet_decay_inv",
            "compat",
        ],
        "plateau" => &[
            "plateau",
            "early_stopping",
            "plateau_start",
            "plateau_patience",
            "plateau_factor",
            "min_delta_points",
            "early_stopping_start",
            "early_stopping_patience",
        ],
        "schedule" => &["schedule"],
        "augment" => &["augment"],
        "shuffle" => &["shuffle"],
        "seed" => &["seed"],
        "validation" => &["validation_permille", "validation_seed"],
        "select_on_test" => &["select_on_test"],
        _ => &[],
    }
}

/// `state.check_continues_with(cfg, sets, prints)`; when the settings differ, the error also
/// lists each differing keyword argument with the checkpoint's value and the given one.
pub fn check_continues(
    py: Python<'_>,
    state: &RunState,
    cfg: &TrainConfig,
    sets: &Sets<'_>,
    prints: DataPrints,
) -> PyResult<()> {
    let Err(e) = state.check_continues_with(cfg, sets, prints) else {
        return Ok(());
    };
    let differs = state.config.differences(cfg);
    if differs.is_empty() {
        return Err(to_py(e));
    }
    let (was, now) = (settings_dict(py, &state.config)?, settings_dict(py, cfg)?);
    let mut details = Vec::new();
    for name in &differs {
        for key in keys_of(name) {
            let (a, b) = (was.get_item(key)?, now.get_item(key)?);
            let (a, b) = (
                a.map(|v| v.repr().map(|r| r.to_string())).transpose()?,
                b.map(|v| v.repr().map(|r| r.to_string())).transpose()?,
            );
            if a != b {
                details.push(format!(
                    "{key}={} in the checkpoint, {key}={} given",
                    a.unwrap_or_default(),
                    b.unwrap_or_default()
                ));
            }
        }
    }
    Err(crate::errors::ConfigError::new_err(format!(
        "{e}: {}",
        details.join("; ")
    )))
}

/// Labelled rows as a `Dataset` (copied; the arrays stay the caller's), with its print
/// (`Dataset::fingerprint`) computed from the arrays while they are copied, on a thread of its
/// own for a large set: both read every pixel (Fashion-MNIST's training set: ~18 ms to copy,
/// ~10 ms to fingerprint).
pub fn dataset(
    x: &PyReadonlyArray2<'_, i8>,
    y: &PyReadonlyArray1<'_, i64>,
    chw: (usize, usize, usize),
) -> PyResult<(Dataset, DataPrint)> {
    let labels = labels_to_usize(y)?;
    let src = x.as_array();
    let print = || DataPrint {
        rows: labels.len(),
        fingerprint: Dataset::fingerprint_of(src, &labels, chw),
    };
    // A scoped thread, not the pool: the GIL is held here, and a pool worker may be waiting
    // for it (a callback of a run on another Python thread).
    let (pixels, print) = if src.len() >= PRINT_ASIDE_BYTES {
        std::thread::scope(|s| {
            let p = s.spawn(print);
            let pixels = src.to_owned();
            (
                pixels,
                p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
            )
        })
    } else {
        (src.to_owned(), print())
    };
    Ok((Dataset::new(pixels, labels, chw).map_err(to_py)?, print))
}

/// Pixels from which a set is fingerprinted on a thread beside its copy (a thread costs tens
/// of microseconds; a megabyte takes ~0.3 ms to copy).
const PRINT_ASIDE_BYTES: usize = 1 << 20;

/// An optional labelled set (and its print) from an optional pair of arrays; `what` names it
/// in the error when only one of the two is given.
pub fn optional_dataset(
    x: Option<PyReadonlyArray2<'_, i8>>,
    y: Option<PyReadonlyArray1<'_, i64>>,
    chw: (usize, usize, usize),
    what: &str,
) -> PyResult<Option<(Dataset, DataPrint)>> {
    match (x, y) {
        (Some(x), Some(y)) => dataset(&x, &y, chw).map(Some),
        (None, None) => Ok(None),
        _ => Err(value_err(format!(
            "x_{what} and y_{what} must be given together"
        ))),
    }
}

/// What one call of [`run_epoch`] ended with: the engine's history of the call, and the
/// exception a callback or a signal raised (it stopped the run after a batch).
pub struct EpochOutcome {
    /// The engine's result (an engine error ends the run).
    pub history: nitro_core::Result<nitro_core::History>,
    /// The first exception of the per-batch callback or the signal check.
    pub exception: Option<PyErr>,
}

/// A per-batch callback `call(epoch, batch, batches, loss, correct, total)` and how often it
/// runs: after a batch only when `every` has passed since its last call (and always after its
/// first batch and after an epoch's last one); `Duration::ZERO` is after every batch. A
/// progress display needs a few calls a second, and each call is a round trip through the
/// GIL (~30 µs: a tenth of an MLP2 step on two cores).
pub struct OnBatch {
    /// The Python callable.
    pub call: Py<PyAny>,
    /// The least time between two calls.
    pub every: Duration,
}

/// Run `state` on `model` until `cfg.epochs` are complete or a batch callback stops it: GIL
/// released, the loop on a thread of the pool for `threads`, `on_batch` after batches (on that
/// thread; [`OnBatch`]), and this thread checking for signals meanwhile (Ctrl-C stops after
/// the batch in progress; the exception is returned, not raised).
///
/// With `exchange`, every step is computed by workers (`parallel::Exchanged`): the model
/// applies the sum of their gradient sums, which is its own step bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn run_epoch<M: DataParallel + Send + Sync>(
    py: Python<'_>,
    model: &mut M,
    sets: &Sets<'_>,
    cfg: &TrainConfig,
    state: &mut RunState,
    on_batch: Option<OnBatch>,
    threads: Option<usize>,
    exchange: Option<Py<PyAny>>,
) -> PyResult<EpochOutcome> {
    let pool = pool_for(threads)?;
    // The first exception a callback raised (or a signal's): it stops training and is returned.
    let pending: Mutex<Option<PyErr>> = Mutex::new(None);
    let record = |e: PyErr| {
        if let Ok(mut p) = pending.lock() {
            p.get_or_insert(e);
        }
        Control::Stop
    };
    // The engine's loop runs on a thread of the pool (its steps then start where they are,
    // not handed over one by one), except with an exchange, whose Python calls stay on this
    // thread. CPython runs signal handlers only on its main thread: off it, this thread (the
    // caller's) checks for signals while it waits, and a signal stops the loop at the next
    // batch through `stop`.
    let on_pool = exchange.is_none();
    let stop = AtomicBool::new(false);
    let mut last_call: Option<Instant> = None;
    let mut ob = |p: &Progress| -> Control {
        if stop.load(Ordering::Acquire) {
            return Control::Stop;
        }
        let due = on_batch
            .as_ref()
            .filter(|cb| p.batch == p.batches || last_call.is_none_or(|t| t.elapsed() >= cb.every));
        if due.is_none() && on_pool {
            return Control::Continue;
        }
        if due.is_some() {
            last_call = Some(Instant::now());
        }
        Python::attach(|py| {
            if let Some(cb) = due.map(|cb| &cb.call) {
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
            match on_pool {
                true => Control::Continue,
                false => py
                    .check_signals()
                    .map_or_else(record, |()| Control::Continue),
            }
        })
    };
    let history = match &exchange {
        None => {
            let signal = |e: PyErr| {
                record(e);
                stop.store(true, Ordering::Release);
            };
            checking_signals(py, signal, || {
                inside_pool(pool.as_deref(), || {
                    let mut pooled = Pooled {
                        model,
                        pool: pool.as_deref(),
                    };
                    nitro_core::fit_held(&mut pooled, sets, cfg, state, &mut ob, &mut |_| {
                        Ok(Control::Continue)
                    })
                })
            })
        }
        Some(exchange) => py.detach(|| {
            let mut exchanged = Exchanged {
                model,
                pool: pool.as_deref(),
                exchange,
                pending: &pending,
            };
            nitro_core::fit_held(&mut exchanged, sets, cfg, state, &mut ob, &mut |_| {
                Ok(Control::Continue)
            })
        }),
    };
    let exception = pending.into_inner().ok().flatten();
    Ok(EpochOutcome { history, exception })
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
