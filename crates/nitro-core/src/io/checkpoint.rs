//! Checkpoints: a model file (algorithm.md §8) that also holds the state of the run that trains it
//! (`train::RunState`) and the model's dropout generators, so that a run stopped after any
//! batch continues bit for bit. A checkpoint loads as a plain model too (`Model::load_file`).
//!
//! Layout: the model's tensors and metadata, plus the metadata key [`CHECKPOINT_KEY`] (the run
//! state as JSON) and the `i32` tensor [`ORDER_TENSOR`] (the current order of the training rows).

use super::container::{deserialize, read_metadata, tensor_i32, with_extra, I32Tensor};
use super::file::{read_with, write_atomic};
use super::meta::{get_i64, get_u64, get_usize, hyper_json, meta_err, parse_hyper, parse_json};
use super::model::Model;
use crate::data::{Augment, Split};
use crate::error::{Error, Result};
use crate::metrics::Fraction;
use crate::model::{Cnn, Mlp};
use crate::optim::{Plateau, Schedule};
use crate::rng::Pcg32;
use crate::train::{DataPrint, DataPrints, EpochMetrics, RunState, TrainConfig};
use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;
use serde_json::{json, Value};

/// The metadata key of the run state.
pub const CHECKPOINT_KEY: &str = "checkpoint";
/// The tensor of the training rows' current order.
pub const ORDER_TENSOR: &str = crate::names::CHECKPOINT_ORDER;
/// Version of the run-state layout.
const VERSION: u64 = 1;

/// A model that can be written into a checkpoint.
pub trait Checkpointable {
    /// The model file's bytes.
    fn model_bytes(&self) -> Result<Vec<u8>>;
    /// The model's dropout generators, in order.
    fn dropout_rngs(&self) -> Vec<Pcg32>;
}

impl Checkpointable for Mlp {
    fn model_bytes(&self) -> Result<Vec<u8>> {
        super::mlp::to_bytes(self)
    }
    fn dropout_rngs(&self) -> Vec<Pcg32> {
        Mlp::dropout_rngs(self)
    }
}

impl Checkpointable for Cnn {
    fn model_bytes(&self) -> Result<Vec<u8>> {
        super::cnn::cnn_to_bytes(self)
    }
    fn dropout_rngs(&self) -> Vec<Pcg32> {
        Cnn::dropout_rngs(self)
    }
}

impl Checkpointable for Model {
    fn model_bytes(&self) -> Result<Vec<u8>> {
        self.to_bytes()
    }
    fn dropout_rngs(&self) -> Vec<Pcg32> {
        Model::dropout_rngs(self)
    }
}

/// A model and the state of the run training it.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The model, its dropout generators restored.
    pub model: Model,
    /// Where the run stands.
    pub state: RunState,
}

impl Checkpoint {
    /// The bytes of a checkpoint of `model` in the run `state`.
    pub fn to_bytes(model: &impl Checkpointable, state: &RunState) -> Result<Vec<u8>> {
        let order = state
            .order
            .iter()
            .map(|&i| i32::try_from(i).map_err(|_| Error::config("too many training rows")))
            .collect::<Result<Vec<i32>>>()?;
        let tensor = I32Tensor::new(&[order.len()], order.into_iter());
        let run = state_json(state, &model.dropout_rngs());
        with_extra(
            &model.model_bytes()?,
            alloc::vec![(ORDER_TENSOR.to_string(), tensor)],
            alloc::vec![(CHECKPOINT_KEY.to_string(), run.to_string())],
        )
    }

    /// Read a checkpoint; every field is checked, malformed input is an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint> {
        let meta = read_metadata(bytes)?;
        let run = meta
            .iter()
            .find(|(k, _)| k == CHECKPOINT_KEY)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| {
                Error::format(
                    "this is a model file, not a checkpoint (metadata \"checkpoint\" is \
                     missing); load it as a model, or resume from a file written with a \
                     checkpoint option",
                )
            })?;
        let run = parse_json(run, CHECKPOINT_KEY)?;
        let mut model = Model::from_bytes(bytes)?;
        let rows = get_usize(&run, "order_len")?;
        let st = deserialize(bytes)?;
        let order = tensor_i32(&st, ORDER_TENSOR, &[rows])?
            .into_iter()
            .map(|i| usize::try_from(i).map_err(|_| meta_err(ORDER_TENSOR, "negative row")))
            .collect::<Result<Vec<usize>>>()?;
        let (state, rngs) = parse_state(&run, order)?;
        model.set_dropout_rngs(&rngs).map_err(|e| match e {
            Error::Config(m) => Error::format(format!("metadata \"checkpoint\": {m}")),
            o => o,
        })?;
        Ok(Checkpoint { model, state })
    }

    /// Write a checkpoint file atomically (a temporary file renamed over `path`): an
    /// interrupted write leaves the previous file intact.
    pub fn save_file(
        path: &std::path::Path,
        model: &impl Checkpointable,
        state: &RunState,
    ) -> Result<()> {
        write_atomic(path, &Self::to_bytes(model, state)?)
    }

    /// Read a checkpoint file.
    pub fn load_file(path: &std::path::Path) -> Result<Checkpoint> {
        read_with(path, Self::from_bytes)
    }
}

fn fraction_json(f: &Fraction) -> Value {
    json!([f.correct, f.total])
}

fn rng_json(r: &Pcg32) -> Value {
    let (state, inc) = r.to_parts();
    json!([state, inc])
}

/// An epoch's metrics as JSON (also what the binding's history is made from).
pub fn metrics_json(m: &EpochMetrics) -> Value {
    json!({
        "epoch": m.epoch,
        "train_loss": m.train_loss,
        "train": fraction_json(&m.train),
        "blocks": m.blocks.iter().map(fraction_json).collect::<Vec<_>>(),
        "val": m.val.as_ref().map(fraction_json),
        "val_loss": m.val_loss,
        "test": m.test.as_ref().map(fraction_json),
        "test_loss": m.test_loss,
        "lr_inv": m.lr_inv,
        "train_millis": m.train_millis,
        "eval_millis": m.eval_millis,
    })
}

fn plateau_json(p: &Plateau) -> Value {
    let (best, since_best, since_lr_change) = p.counters();
    json!({
        "start_epoch": p.start_epoch,
        "patience": p.patience,
        "factor": p.factor,
        "min_delta_points": p.min_delta_points,
        "early_stop_start": p.early_stop_start,
        "early_stop_patience": p.early_stop_patience,
        "best": fraction_json(&best),
        "since_best": since_best,
        "since_lr_change": since_lr_change,
    })
}

fn schedule_json(s: &Schedule) -> Value {
    match *s {
        Schedule::Constant => json!({"kind": "constant"}),
        Schedule::Linear { pct, max } => json!({"kind": "linear", "pct": pct, "max": max}),
        Schedule::Exponential { pct, max } => {
            json!({"kind": "exponential", "pct": pct, "max": max})
        }
        Schedule::Halving { every, max } => json!({"kind": "halving", "every": every, "max": max}),
    }
}

fn print_json(p: &DataPrint) -> Value {
    json!({"rows": p.rows, "fingerprint": format!("{:016x}", p.fingerprint)})
}

fn config_json(c: &TrainConfig) -> Value {
    json!({
        "epochs": c.epochs,
        "batch_size": c.batch_size,
        "hyper": hyper_json(&c.hyper),
        "schedule": schedule_json(&c.schedule),
        "plateau": c.plateau.as_ref().map(plateau_json),
        "augment": c.augment.map(|a| json!({"pad": a.pad, "flip": a.flip})),
        "shuffle": c.shuffle,
        "seed": c.seed,
        "eval_chunk": c.eval_chunk,
        "validation": c.validation.map(|s| json!({"permille": s.permille, "seed": s.seed})),
        "select_on_test": c.select_on_test,
    })
}

fn state_json(s: &RunState, dropout: &[Pcg32]) -> Value {
    json!({
        "version": VERSION,
        "config": config_json(&s.config),
        "epoch": s.epoch,
        "batch": s.batch,
        "current": metrics_json(&s.current),
        "hyper": hyper_json(&s.hyper),
        "plateau": s.plateau.as_ref().map(plateau_json),
        "shuffle_rng": rng_json(&s.shuffle_rng),
        "augment_rng": rng_json(&s.augment_rng),
        "dropout_rngs": dropout.iter().map(rng_json).collect::<Vec<_>>(),
        "order_len": s.order.len(),
        "epochs": s.epochs.iter().map(metrics_json).collect::<Vec<_>>(),
        "early_stopped": s.early_stopped,
        "data": {
            "train": print_json(&s.data.train),
            "val": s.data.val.as_ref().map(print_json),
            "test": s.data.test.as_ref().map(print_json),
        },
    })
}

// ---- reading -------------------------------------------------------------------------------

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value> {
    v.get(key).ok_or_else(|| meta_err(key, "missing"))
}

fn optional<'a>(v: &'a Value, key: &str) -> Result<Option<&'a Value>> {
    Ok(Some(field(v, key)?).filter(|x| !x.is_null()))
}

fn get_u32(v: &Value, key: &str) -> Result<u32> {
    u32::try_from(get_u64(v, key)?).map_err(|_| meta_err(key, "too large"))
}

fn get_bool(v: &Value, key: &str) -> Result<bool> {
    field(v, key)?
        .as_bool()
        .ok_or_else(|| meta_err(key, "not true or false"))
}

fn pair(v: &Value, key: &str) -> Result<(u64, u64)> {
    match v.as_array().map(|a| a.as_slice()) {
        Some([a, b]) => match (a.as_u64(), b.as_u64()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(meta_err(key, "not a pair of non-negative integers")),
        },
        _ => Err(meta_err(key, "not a pair of non-negative integers")),
    }
}

fn parse_fraction(v: &Value, key: &str) -> Result<Fraction> {
    let (correct, total) = pair(v, key)?;
    if correct > total {
        return Err(meta_err(key, "more correct than total"));
    }
    Ok(Fraction { correct, total })
}

fn parse_rng(v: &Value, key: &str) -> Result<Pcg32> {
    let (state, inc) = pair(v, key)?;
    Pcg32::from_parts(state, inc).ok_or_else(|| meta_err(key, "not a PCG32 state (even increment)"))
}

fn opt_fraction(v: &Value, key: &str) -> Result<Option<Fraction>> {
    optional(v, key)?
        .map(|x| parse_fraction(x, key))
        .transpose()
}

fn opt_i64(v: &Value, key: &str) -> Result<Option<i64>> {
    optional(v, key)?
        .map(|x| x.as_i64().ok_or_else(|| meta_err(key, "not an integer")))
        .transpose()
}

fn parse_metrics(v: &Value) -> Result<EpochMetrics> {
    let blocks = field(v, "blocks")?
        .as_array()
        .ok_or_else(|| meta_err("blocks", "not a list"))?
        .iter()
        .map(|b| parse_fraction(b, "blocks"))
        .collect::<Result<Vec<_>>>()?;
    Ok(EpochMetrics {
        epoch: get_u32(v, "epoch")?,
        train_loss: get_i64(v, "train_loss")?,
        train: parse_fraction(field(v, "train")?, "train")?,
        blocks,
        val: opt_fraction(v, "val")?,
        val_loss: opt_i64(v, "val_loss")?,
        test: opt_fraction(v, "test")?,
        test_loss: opt_i64(v, "test_loss")?,
        lr_inv: get_i64(v, "lr_inv")?,
        train_millis: get_u64(v, "train_millis")?,
        eval_millis: get_u64(v, "eval_millis")?,
    })
}

fn parse_plateau(v: &Value) -> Result<Plateau> {
    let early_stop_start = optional(v, "early_stop_start")?
        .map(|x| {
            x.as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(|| meta_err("early_stop_start", "not an epoch"))
        })
        .transpose()?;
    let mut p = Plateau::paper();
    p.start_epoch = get_u32(v, "start_epoch")?;
    p.patience = get_u32(v, "patience")?;
    p.factor = get_i64(v, "factor")?;
    p.min_delta_points = get_u64(v, "min_delta_points")?;
    p.early_stop_start = early_stop_start;
    p.early_stop_patience = get_u32(v, "early_stop_patience")?;
    if p.factor < 1 {
        return Err(meta_err("factor", "must be at least 1"));
    }
    Ok(p.with_counters(
        parse_fraction(field(v, "best")?, "best")?,
        get_u32(v, "since_best")?,
        get_u32(v, "since_lr_change")?,
    ))
}

fn parse_schedule(v: &Value) -> Result<Schedule> {
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| meta_err("schedule", "kind missing"))?;
    Ok(match kind {
        "constant" => Schedule::Constant,
        "linear" => Schedule::Linear {
            pct: get_i64(v, "pct")?,
            max: get_i64(v, "max")?,
        },
        "exponential" => Schedule::Exponential {
            pct: get_i64(v, "pct")?,
            max: get_i64(v, "max")?,
        },
        "halving" => Schedule::Halving {
            every: get_u32(v, "every")?,
            max: get_i64(v, "max")?,
        },
        o => return Err(meta_err("schedule", &format!("unknown kind {o:?}"))),
    })
}

fn parse_print(v: &Value) -> Result<DataPrint> {
    let hex = v
        .get("fingerprint")
        .and_then(Value::as_str)
        .ok_or_else(|| meta_err("fingerprint", "missing or not a string"))?;
    Ok(DataPrint {
        rows: get_usize(v, "rows")?,
        fingerprint: u64::from_str_radix(hex, 16)
            .map_err(|_| meta_err("fingerprint", "not a hexadecimal number"))?,
    })
}

fn parse_config(v: &Value) -> Result<TrainConfig> {
    let augment = optional(v, "augment")?
        .map(|a| {
            Ok::<_, Error>(Augment {
                pad: get_usize(a, "pad")?,
                flip: get_bool(a, "flip")?,
            })
        })
        .transpose()?;
    let validation = optional(v, "validation")?
        .map(|s| {
            let s = Split {
                permille: get_u32(s, "permille")?,
                seed: get_u64(s, "seed")?,
            };
            s.validate()?;
            Ok::<_, Error>(s)
        })
        .transpose()?;
    let c = TrainConfig {
        epochs: get_u32(v, "epochs")?,
        batch_size: get_usize(v, "batch_size")?,
        hyper: parse_hyper(field(v, "hyper")?)?,
        schedule: parse_schedule(field(v, "schedule")?)?,
        plateau: optional(v, "plateau")?.map(parse_plateau).transpose()?,
        augment,
        shuffle: get_bool(v, "shuffle")?,
        seed: get_u64(v, "seed")?,
        eval_chunk: get_usize(v, "eval_chunk")?,
        validation,
        select_on_test: get_bool(v, "select_on_test")?,
    };
    if c.batch_size == 0 {
        return Err(meta_err("batch_size", "must be positive"));
    }
    c.hyper.sgds()?;
    Ok(c)
}

fn parse_state(v: &Value, order: Vec<usize>) -> Result<(RunState, Vec<Pcg32>)> {
    match get_u64(v, "version")? {
        VERSION => {}
        o => {
            return Err(meta_err(
                "version",
                &format!("checkpoint layout {o} is not supported; this library reads {VERSION}"),
            ))
        }
    }
    let list = |key: &str| -> Result<&Vec<Value>> {
        field(v, key)?
            .as_array()
            .ok_or_else(|| meta_err(key, "not a list"))
    };
    let dropout = list("dropout_rngs")?
        .iter()
        .map(|r| parse_rng(r, "dropout_rngs"))
        .collect::<Result<Vec<_>>>()?;
    let epochs = list("epochs")?
        .iter()
        .map(parse_metrics)
        .collect::<Result<Vec<_>>>()?;
    let data = field(v, "data")?;
    let state = RunState {
        config: parse_config(field(v, "config")?)?,
        epoch: get_u32(v, "epoch")?,
        batch: get_usize(v, "batch")?,
        current: parse_metrics(field(v, "current")?)?,
        hyper: parse_hyper(field(v, "hyper")?)?,
        plateau: optional(v, "plateau")?.map(parse_plateau).transpose()?,
        shuffle_rng: parse_rng(field(v, "shuffle_rng")?, "shuffle_rng")?,
        augment_rng: parse_rng(field(v, "augment_rng")?, "augment_rng")?,
        order,
        epochs,
        early_stopped: get_bool(v, "early_stopped")?,
        data: DataPrints {
            train: parse_print(field(data, "train")?)?,
            val: optional(data, "val")?.map(parse_print).transpose()?,
            test: optional(data, "test")?.map(parse_print).transpose()?,
        },
    };
    state.hyper.sgds()?;
    if state.epochs.len() != state.epoch as usize {
        return Err(meta_err(
            "epochs",
            "does not hold one entry per completed epoch",
        ));
    }
    Ok((state, dropout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_and_plateaus_round_trip() {
        for s in [
            Schedule::Constant,
            Schedule::Linear { pct: 10, max: 900 },
            Schedule::Exponential { pct: 5, max: 700 },
            Schedule::Halving {
                every: 3,
                max: 4096,
            },
        ] {
            assert_eq!(parse_schedule(&schedule_json(&s)).unwrap(), s);
        }
        let p = Plateau::paper().with_counters(
            Fraction {
                correct: 7,
                total: 9,
            },
            3,
            2,
        );
        assert_eq!(parse_plateau(&plateau_json(&p)).unwrap(), p);
    }
}
