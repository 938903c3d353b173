//! A bounded, seeded mutation test of every loader of untrusted bytes (algorithm.md §8: "a
//! malformed, truncated or hostile file yields an error, never a panic"): model files (MLP with and
//! without bias, CNN), checkpoint files (MLP, CNN) and export blobs, mutated byte by byte and
//! structurally (the metadata's JSON values, the tensor table, the blob's fields with a
//! recomputed checksum). Every case must load to `Ok` or an `Error`, never panic; what loads is
//! then used — predictions, a training step with its own settings, and for a checkpoint the
//! resumed run — and that must not panic either.
//!
//! `NITROD_FUZZ_CASES=N` changes the number of cases per artefact (default 1500).

use ndarray::Array2;
use nitro_core::export::{from_blob, tensor_width, to_blob, to_blob_with, BlobOptions};
use nitro_core::io::{self, Checkpoint, Model};
use nitro_core::rng::Pcg32;
use nitro_core::train::{fit_from, Control, Trainable};
use nitro_core::{
    fit, Augment, CnnConfig, Dataset, Error, Feature, Hyper, Mlp, MlpConfig, Normalization,
    Plateau, Schedule, Sets, Split, TrainConfig,
};
use serde_json::{json, Value};
use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn cases() -> usize {
    std::env::var("NITROD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

// ---- the artefacts -------------------------------------------------------------------------

fn data(features: usize, chw: (usize, usize, usize), classes: usize) -> Dataset {
    let mut r = Pcg32::new(11, 2);
    let x = Array2::from_shape_fn((64, features), |_| r.symmetric(127) as i8);
    let y = (0..64).map(|_| r.below(classes as u32) as usize).collect();
    Dataset::new(x, y, chw).unwrap()
}

fn mlp_data() -> Dataset {
    data(20, (1, 4, 5), 3)
}

fn cnn_data() -> Dataset {
    data(64, (1, 8, 8), 3)
}

fn run_config() -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch_size: 16,
        hyper: Hyper {
            lr_inv: 64,
            lr_amp_factor: 16,
            fwd_decay_inv: 5000,
            subnet_decay_inv: 3000,
            ..Hyper::default()
        },
        schedule: Schedule::Linear { pct: 10, max: 100 },
        plateau: Some(Plateau::paper()),
        augment: Some(Augment { pad: 1, flip: true }),
        validation: Some(Split {
            permille: 250,
            seed: 1,
        }),
        ..TrainConfig::default()
    }
}

fn mlp(bias: bool) -> Mlp {
    let mut c = MlpConfig::new(20, &[8, 6], 3);
    c.bias = bias;
    c.dropout_pct = 10;
    c.seed = 2;
    let mut m = Mlp::new(c).unwrap();
    m.normalization = Some(Normalization {
        mean: vec![-54],
        mad: vec![82],
    });
    m
}

fn cnn_config() -> CnnConfig {
    let conv = |filters| Feature::Conv {
        filters,
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let mut c = CnnConfig::new(
        (1, 8, 8),
        &[conv(3), Feature::MaxPool(2), conv(4), Feature::AvgPool(2)],
        &[6],
        3,
    );
    c.bias = true;
    c.decoder_dim = 24;
    c.dropout_pct = 10;
    c.seed = 4;
    c
}

/// Train one epoch, returning the checkpoint written at its end.
fn checkpoint_of<M: Trainable + io::Checkpointable>(model: &mut M, data: &Dataset) -> Vec<u8> {
    let mut bytes = None;
    fit(
        model,
        &Sets::new(data, None),
        &run_config(),
        &mut |_| Control::Continue,
        &mut |end| {
            bytes = Some(Checkpoint::to_bytes(end.model, end.state)?);
            Ok(Control::Continue)
        },
    )
    .unwrap();
    bytes.unwrap()
}

// ---- using what loaded -----------------------------------------------------------------------

/// Predictions and one training step with the model's own settings: `Ok` or an error.
fn exercise(model: &mut Model, data: &Dataset) {
    let x = data.x.slice(ndarray::s![..8, ..]);
    let _ = match &*model {
        Model::Mlp(m) => m.predict(x).map(drop),
        Model::Cnn(m) => m.predict(x).map(drop),
    };
    let hyper = match &*model {
        Model::Mlp(m) => m.hyper,
        Model::Cnn(m) => m.hyper,
    };
    let _ = model.step(x, &data.y[..8], &hyper.unwrap_or_default());
}

/// Continue the run of a checkpoint by one epoch on the data it was made with.
fn resume(mut c: Checkpoint, data: &Dataset) {
    let mut cfg = c.state.config.clone();
    cfg.epochs = c.state.epoch.saturating_add(1);
    let _ = fit_from(
        &mut c.model,
        &Sets::new(data, None),
        &cfg,
        &mut c.state,
        &mut |_| Control::Continue,
        &mut |_| Ok(Control::Continue),
    );
}

// ---- mutations -------------------------------------------------------------------------------

const NUMBERS: [i128; 24] = [
    0,
    1,
    -1,
    2,
    3,
    4,
    7,
    64,
    255,
    256,
    4096,
    46340,
    65535,
    (1 << 31) - 1,
    1 << 31,
    1 << 32,
    (1 << 32) + 1,
    1 << 62,
    (1 << 63) - 1,
    -(1 << 63),
    u64::MAX as i128,
    -1000,
    1 << 20,
    10_000_000,
];

const STRINGS: [&str; 14] = [
    "",
    "mlp",
    "cnn",
    "conv",
    "maxpool",
    "avgpool",
    "dropout",
    "exact",
    "reference",
    "nitro_relu",
    "pocket_tanh",
    "kaiming",
    "I32",
    "0000000000000000",
];

fn number(r: &mut Pcg32) -> Value {
    if r.below(4) == 0 {
        return json!(r.below(100));
    }
    let v = NUMBERS[r.below(NUMBERS.len() as u32) as usize];
    match (i64::try_from(v), u64::try_from(v)) {
        (Ok(i), _) => json!(i),
        (_, Ok(u)) => json!(u),
        _ => json!(0),
    }
}

/// Every node of `v`, as paths of object keys and array indices.
fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                at.push(json!(k));
                paths(x, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(json!(i));
                paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn node<'a>(mut v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    for p in path {
        v = match p {
            Value::String(k) => &mut v[k.as_str()],
            Value::Number(i) => &mut v[i.as_u64().unwrap() as usize],
            _ => unreachable!(),
        };
    }
    v
}

/// Change one node of `v`: a new leaf value, or an array or object losing or gaining an entry.
fn mutate_json(v: &mut Value, r: &mut Pcg32) {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = &all[r.below(all.len() as u32) as usize];
    let n = node(v, path);
    match n {
        Value::Array(a) if r.coin() => match r.below(4) {
            0 if !a.is_empty() => {
                a.remove(r.below(a.len() as u32) as usize);
            }
            1 if !a.is_empty() => {
                let x = a[r.below(a.len() as u32) as usize].clone();
                a.push(x);
            }
            2 => a.push(number(r)),
            _ => a.clear(),
        },
        Value::Object(m) if r.coin() && !m.is_empty() => {
            let k = m
                .keys()
                .nth(r.below(m.len() as u32) as usize)
                .unwrap()
                .clone();
            m.remove(&k);
        }
        _ => {
            *n = match r.below(10) {
                0..=5 => number(r),
                6 | 7 => json!(STRINGS[r.below(STRINGS.len() as u32) as usize]),
                8 => json!(r.coin()),
                _ => Value::Null,
            }
        }
    }
}

/// A safetensors buffer: its header and its data.
fn split_safetensors(b: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&b[8..8 + n]).unwrap(),
        b[8 + n..].to_vec(),
    )
}

fn join_safetensors(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = header.to_string().into_bytes();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// A structural mutation of a safetensors file: a metadata value's JSON, a metadata string,
/// or the tensor table (dtype, shape, offsets, a tensor removed or one added).
fn mutate_safetensors(bytes: &[u8], r: &mut Pcg32) -> Vec<u8> {
    let (mut header, mut data) = split_safetensors(bytes);
    let tensors: Vec<String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    for _ in 0..1 + r.below(3) {
        match r.below(10) {
            // The JSON inside a metadata value (architecture, hyper, normalisation, run state).
            0..=5 => {
                let meta = header["__metadata__"].as_object_mut().unwrap();
                let keys: Vec<String> = meta.keys().cloned().collect();
                let k = &keys[r.below(keys.len() as u32) as usize];
                let s = meta[k].as_str().unwrap_or("null").to_string();
                match serde_json::from_str::<Value>(&s) {
                    Ok(mut inner) if inner.is_object() || inner.is_array() => {
                        mutate_json(&mut inner, r);
                        meta[k] = json!(inner.to_string());
                    }
                    _ => meta[k] = json!(STRINGS[r.below(STRINGS.len() as u32) as usize]),
                }
            }
            // A tensor's entry.
            6 | 7 => {
                let t = &tensors[r.below(tensors.len() as u32) as usize];
                mutate_json(&mut header[t.as_str()], r);
            }
            // A tensor removed.
            8 => {
                let t = &tensors[r.below(tensors.len() as u32) as usize];
                header.as_object_mut().unwrap().remove(t);
            }
            // A tensor added (valid offsets): a bias, a copy under another name, junk.
            _ => {
                let t = &tensors[r.below(tensors.len() as u32) as usize];
                let name = match r.below(3) {
                    0 => format!("{t}.bias"),
                    1 => "linear_99".to_string(),
                    _ => "checkpoint.order".to_string(),
                };
                let len = 4 * (1 + r.below(8) as usize);
                let start = data.len();
                data.extend((0..len).map(|i| i as u8));
                header[name.as_str()] = json!({
                    "dtype": "I32",
                    "shape": [len / 4],
                    "data_offsets": [start, start + len],
                });
            }
        }
    }
    join_safetensors(&header, &data)
}

/// Random byte-level damage: bytes overwritten, a truncation, an insertion or a deletion.
fn mutate_bytes(bytes: &[u8], r: &mut Pcg32) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match r.below(4) {
        0 => {
            for _ in 0..1 + r.below(4) {
                let i = r.below(b.len() as u32) as usize;
                b[i] = r.next_u32() as u8;
            }
        }
        1 => b.truncate(r.below(b.len() as u32) as usize),
        2 => {
            let i = r.below(b.len() as u32) as usize;
            let junk: Vec<u8> = (0..1 + r.below(16)).map(|_| r.next_u32() as u8).collect();
            b.splice(i..i, junk);
        }
        _ => {
            let i = r.below(b.len() as u32) as usize;
            let j = (i + 1 + r.below(16) as usize).min(b.len());
            b.drain(i..j);
        }
    }
    b
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A blob with one field (or a few bytes) changed, its checksum recomputed most of the time so
/// that the change reaches the field checks.
fn mutate_blob(blob: &[u8], r: &mut Pcg32) -> Vec<u8> {
    let mut b = blob[..blob.len() - 4].to_vec();
    match r.below(3) {
        0 => b = mutate_bytes(&b, r),
        _ => {
            // A 4- or 8-byte field in the header region (aligned or not: version 2 has byte
            // fields between the wider ones).
            let at = match r.coin() {
                true => 4 * r.below((b.len().min(160) / 4) as u32) as usize,
                false => r.below(b.len().min(160) as u32) as usize,
            };
            let v = number(r).as_i64().unwrap_or(-1);
            let w = if r.coin() { 4 } else { 8 };
            let bytes = v.to_le_bytes();
            let end = (at + w).min(b.len());
            b[at..end].copy_from_slice(&bytes[..end - at]);
        }
    }
    let sum = if r.below(5) == 0 {
        r.next_u32()
    } else {
        fnv1a(&b)
    };
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

/// The parameter tensors of `m` in a version-2 blob's order (the layout table of
/// `nitro_core::export`): weight, then bias, of every layer; the heads only with `heads`.
fn blob_tensors(m: &Model, heads: bool) -> Vec<Vec<i32>> {
    let mut t: Vec<Vec<i32>> = Vec::new();
    let layer = |t: &mut Vec<Vec<i32>>, w: Vec<i32>, b: Option<Vec<i32>>| {
        t.push(w);
        t.extend(b);
    };
    let linear = |t: &mut Vec<Vec<i32>>, l: &nitro_core::layers::Linear| {
        if heads || !nitro_core::names::is_linear_pred(&l.name) {
            layer(
                t,
                l.weight.iter().copied().collect(),
                l.bias.as_ref().map(|b| b.to_vec()),
            );
        }
    };
    match m {
        Model::Mlp(m) => m.linears().into_iter().for_each(|l| linear(&mut t, l)),
        Model::Cnn(m) => {
            for b in m.conv_blocks() {
                let c = &b.conv;
                layer(
                    &mut t,
                    c.weight.iter().copied().collect(),
                    c.bias.as_ref().map(|b| b.to_vec()),
                );
                linear(&mut t, &b.head);
            }
            let tail = m.blocks.iter().flat_map(|b| [&b.fwd, &b.head]);
            tail.chain([&m.out]).for_each(|l| linear(&mut t, l));
        }
    }
    t
}

/// Where each tensor's width byte sits in the version-2 blob `blob` of `m`.
fn width_bytes(blob: &[u8], m: &Model, heads: bool) -> Vec<usize> {
    let tensors = blob_tensors(m, heads);
    let size = |v: &Vec<i32>| 1 + v.len() * usize::from(tensor_width(v.iter().copied()));
    let mut at = blob.len() - 4 - tensors.iter().map(size).sum::<usize>();
    let mut offsets = Vec::new();
    for v in &tensors {
        assert_eq!(usize::from(blob[at]), size(v) / v.len().max(1), "layout");
        offsets.push(at);
        at += size(v);
    }
    offsets
}

/// A blob to mutate: its name, bytes, the data to use what loads on, and (for version 2) the
/// model it holds and whether with heads, to locate its tensors' width bytes.
type BlobCase<'a> = (&'a str, Vec<u8>, &'a Dataset, Option<(&'a Model, bool)>);

/// A version-2 blob with one tensor's width byte changed, its checksum recomputed.
fn mutate_width(blob: &[u8], offsets: &[usize], r: &mut Pcg32) -> Vec<u8> {
    let mut b = blob[..blob.len() - 4].to_vec();
    let at = offsets[r.below(offsets.len() as u32) as usize];
    b[at] = [0, 1, 2, 3, 4, 8, 255, r.next_u32() as u8][r.below(8) as usize];
    let sum = fnv1a(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

// ---- the test ----------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    cases: usize,
    ok: usize,
    errors: std::collections::BTreeMap<&'static str, usize>,
    panics: Vec<String>,
}

impl Tally {
    fn record<T>(&mut self, what: &str, case: usize, f: impl FnOnce() -> Result<T, Error>) {
        self.cases += 1;
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(_)) => self.ok += 1,
            Ok(Err(e)) => {
                let kind = match e {
                    Error::Format(_) => "Format",
                    Error::Config(_) => "Config",
                    Error::Shape(_) => "Shape",
                    Error::Overflow { .. } => "Overflow",
                    _ => "other",
                };
                *self.errors.entry(kind).or_default() += 1;
            }
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.panics.push(format!("{what} case {case}: {msg}"));
            }
        }
    }
}

#[test]
fn mutated_files_and_blobs_load_or_fail_cleanly() {
    let n = cases();
    let (md, cd) = (mlp_data(), cnn_data());
    let mut trained = mlp(true);
    let mlp_ckpt = checkpoint_of(&mut trained, &md);
    let mlp_bias = io::to_bytes(&trained).unwrap();
    let mut plain = mlp(false);
    let plain_ckpt = checkpoint_of(&mut plain, &md);
    let mlp_plain = io::to_bytes(&plain).unwrap();
    let mut cnn = nitro_core::Cnn::new(cnn_config()).unwrap();
    let cnn_ckpt = checkpoint_of(&mut cnn, &cd);
    let cnn_file = io::cnn_to_bytes(&cnn).unwrap();
    let no_heads = BlobOptions { heads: false };
    let (mlp_model, cnn_model) = (Model::Mlp(trained.clone()), Model::Cnn(cnn.clone()));
    let v1_blob = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/blob_v1_mlp_bias.bin"
    ))
    .unwrap();
    let v1_data = data(12, (1, 3, 4), 3);
    let blobs: [BlobCase<'_>; 5] = [
        (
            "mlp blob",
            to_blob(&trained).unwrap(),
            &md,
            Some((&mlp_model, true)),
        ),
        (
            "mlp blob without heads",
            to_blob_with(&trained, no_heads).unwrap(),
            &md,
            Some((&mlp_model, false)),
        ),
        (
            "cnn blob",
            to_blob(&cnn).unwrap(),
            &cd,
            Some((&cnn_model, true)),
        ),
        (
            "cnn blob without heads",
            to_blob_with(&cnn, no_heads).unwrap(),
            &cd,
            Some((&cnn_model, false)),
        ),
        ("version-1 blob", v1_blob, &v1_data, None),
    ];
    // The artefacts themselves load.
    for b in [&mlp_bias, &mlp_plain, &cnn_file, &mlp_ckpt, &cnn_ckpt] {
        Model::from_bytes(b).unwrap();
    }
    for b in [&mlp_ckpt, &plain_ckpt, &cnn_ckpt] {
        Checkpoint::from_bytes(b).unwrap();
    }
    for (_, b, _, _) in &blobs {
        from_blob(b).unwrap();
    }

    let mut t = Tally::default();
    let mut r = Pcg32::new(0x5eed, 7);
    let models: [(&str, &Vec<u8>, &Dataset); 3] = [
        ("mlp file", &mlp_bias, &md),
        ("mlp file without bias", &mlp_plain, &md),
        ("cnn file", &cnn_file, &cd),
    ];
    for (what, base, d) in models {
        for case in 0..n {
            let b = match case % 2 {
                0 => mutate_bytes(base, &mut r),
                _ => mutate_safetensors(base, &mut r),
            };
            t.record(what, case, || {
                let mut m = Model::from_bytes(&b)?;
                exercise(&mut m, d);
                Ok(())
            });
        }
    }
    let checkpoints: [(&str, &Vec<u8>, &Dataset); 3] = [
        ("mlp checkpoint", &mlp_ckpt, &md),
        ("mlp checkpoint without bias", &plain_ckpt, &md),
        ("cnn checkpoint", &cnn_ckpt, &cd),
    ];
    for (what, base, d) in checkpoints {
        for case in 0..n {
            let b = match case % 3 {
                0 => mutate_bytes(base, &mut r),
                _ => mutate_safetensors(base, &mut r),
            };
            t.record(what, case, || {
                let mut m = Model::from_bytes(&b)?;
                exercise(&mut m, d);
                Ok(())
            });
            t.record(what, case, || {
                resume(Checkpoint::from_bytes(&b)?, d);
                Ok(())
            });
        }
    }
    for (what, blob, d, layout) in &blobs {
        let widths = layout.map(|(m, heads)| width_bytes(blob, m, heads));
        for case in 0..n {
            let b = match &widths {
                Some(w) if case % 3 == 2 => mutate_width(blob, w, &mut r),
                _ => mutate_blob(blob, &mut r),
            };
            t.record(what, case, || {
                let mut m: Model = from_blob(&b)?;
                exercise(&mut m, d);
                Ok(())
            });
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "fuzz_loaders: {} cases, {} loaded, errors {:?}, {} panics",
        t.cases,
        t.ok,
        t.errors,
        t.panics.len()
    );
    assert!(
        t.panics.is_empty(),
        "{} of {} cases panicked; first ones:\n{}",
        t.panics.len(),
        t.cases,
        t.panics[..t.panics.len().min(15)].join("\n")
    );
    // The structural mutations reach the checks behind the container's.
    assert!(t.errors.get("Config").copied().unwrap_or(0) > 0);
    assert!(t.ok > 0);
}
