//! Persistence (SPEC §8): one `.safetensors` file with every parameter as an exact `i32` tensor
//! and JSON metadata (architecture, hyper-parameters, normalisation, versions).
//!
//! Parsing works on byte slices and is available without `std`; [`save_file`]/[`load_file`]
//! add atomic file I/O under `std`.

use crate::block::{Compat, LocalLinearBlock};
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::layers::{ActivationKind, Linear};
use crate::model::{Hyper, Mlp, MlpConfig};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use ndarray::{Array1, Array2};
use safetensors::tensor::{Dtype, SafeTensors};
use serde_json::{json, Value};

mod cnn;
pub use cnn::{cnn_from_bytes, cnn_to_bytes, Model};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "nitrod-rs";
/// Version of the file layout written by this library.
pub const FORMAT_VERSION: &str = "1";

struct I32Tensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl I32Tensor {
    fn new(shape: &[usize], data: impl Iterator<Item = i32>) -> Self {
        I32Tensor {
            shape: shape.to_vec(),
            bytes: data.flat_map(i32::to_le_bytes).collect(),
        }
    }
}

fn architecture_json(c: &MlpConfig) -> Value {
    json!({
        "kind": "mlp",
        "inputs": c.inputs,
        "hidden": c.hidden,
        "classes": c.classes,
        "activation": c.activation.name(),
        "slope": c.activation.slope(),
        "dropout_pct": c.dropout_pct,
        "bias": c.bias,
        "init": c.init.name(),
        "seed": c.seed,
    })
}

/// The `hyper` metadata of a model as JSON.
pub fn hyper_json(h: &Hyper) -> Value {
    json!({
        "lr_inv": h.lr_inv,
        "lr_amp_factor": h.lr_amp_factor,
        "fwd_decay_inv": h.fwd_decay_inv,
        "subnet_decay_inv": h.subnet_decay_inv,
        "compat": h.compat.name(),
    })
}

/// Serialise a model (parameters + metadata) to safetensors bytes.
pub fn to_bytes(model: &Mlp) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, I32Tensor)> = Vec::new();
    for l in model.linears() {
        let (o, i) = l.weight.dim();
        tensors.push((
            l.name.clone(),
            I32Tensor::new(&[o, i], l.weight.iter().copied()),
        ));
        if let Some(b) = &l.bias {
            tensors.push((
                format!("{}.bias", l.name),
                I32Tensor::new(&[b.len()], b.iter().copied()),
            ));
        }
    }
    let mut meta: Vec<(String, String)> = alloc::vec![
        ("format".into(), FORMAT.into()),
        ("format_version".into(), FORMAT_VERSION.into()),
        ("library_version".into(), env!("CARGO_PKG_VERSION").into()),
    ];
    meta.push((
        "architecture".into(),
        architecture_json(&model.config).to_string(),
    ));
    if let Some(h) = &model.hyper {
        meta.push(("hyper".into(), hyper_json(h).to_string()));
    }
    if let Some(n) = &model.normalization {
        meta.push((
            "normalization".into(),
            json!({"mean": n.mean, "mad": n.mad}).to_string(),
        ));
    }
    serialize_sorted(tensors, meta)
}

/// Write a safetensors buffer with tensors and metadata in sorted order, so that the same model
/// always gives the same bytes (the `safetensors` crate's writer orders metadata by a hash map).
/// The header is padded with spaces to a multiple of 8 bytes, as the format recommends.
fn serialize_sorted(
    mut tensors: Vec<(String, I32Tensor)>,
    mut meta: Vec<(String, String)>,
) -> Result<Vec<u8>> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    meta.sort();
    let mut header = serde_json::Map::new();
    let meta_obj: serde_json::Map<String, Value> = meta
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    header.insert("__metadata__".into(), Value::Object(meta_obj));
    let mut offset = 0usize;
    for (name, t) in &tensors {
        if name == "__metadata__" {
            return Err(Error::format("a tensor may not be called __metadata__"));
        }
        let end = offset + t.bytes.len();
        header.insert(
            name.clone(),
            json!({"dtype": "I32", "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut h = Value::Object(header).to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, t) in &tensors {
        out.extend_from_slice(&t.bytes);
    }
    Ok(out)
}

fn meta_err(key: &str, what: &str) -> Error {
    Error::format(format!("metadata {key:?}: {what}"))
}

fn get_u64(v: &Value, key: &str) -> Result<u64> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| meta_err(key, "missing or not a non-negative integer"))
}

fn get_i64(v: &Value, key: &str) -> Result<i64> {
    v.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| meta_err(key, "missing or not an integer"))
}

fn get_usize(v: &Value, key: &str) -> Result<usize> {
    usize::try_from(get_u64(v, key)?).map_err(|_| meta_err(key, "too large"))
}

fn get_str<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| meta_err(key, "missing or not a string"))
}

fn parse_json(s: &str, key: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| meta_err(key, &format!("invalid JSON: {e}")))
}

fn parse_config(v: &Value) -> Result<MlpConfig> {
    if get_str(v, "kind")? != "mlp" {
        return Err(meta_err(
            "architecture",
            "only kind \"mlp\" is supported by this version",
        ));
    }
    let hidden = v
        .get("hidden")
        .and_then(Value::as_array)
        .ok_or_else(|| meta_err("hidden", "missing or not a list"))?
        .iter()
        .map(|w| {
            w.as_u64()
                .and_then(|w| usize::try_from(w).ok())
                .ok_or_else(|| meta_err("hidden", "not a width"))
        })
        .collect::<Result<Vec<_>>>()?;
    let slope =
        u8::try_from(get_u64(v, "slope")?).map_err(|_| meta_err("slope", "out of range"))?;
    let config = MlpConfig {
        inputs: get_usize(v, "inputs")?,
        hidden,
        classes: get_usize(v, "classes")?,
        activation: ActivationKind::from_name(get_str(v, "activation")?, slope)?,
        dropout_pct: u32::try_from(get_u64(v, "dropout_pct")?)
            .map_err(|_| meta_err("dropout_pct", "out of range"))?,
        bias: v
            .get("bias")
            .and_then(Value::as_bool)
            .ok_or_else(|| meta_err("bias", "missing"))?,
        init: Init::from_name(get_str(v, "init")?)?,
        seed: get_u64(v, "seed")?,
    };
    config.validate()?;
    Ok(config)
}

/// Parse the `hyper` metadata.
pub fn parse_hyper(v: &Value) -> Result<Hyper> {
    Ok(Hyper {
        lr_inv: get_i64(v, "lr_inv")?,
        lr_amp_factor: get_i64(v, "lr_amp_factor")?,
        fwd_decay_inv: get_i64(v, "fwd_decay_inv")?,
        subnet_decay_inv: get_i64(v, "subnet_decay_inv")?,
        compat: Compat::from_name(get_str(v, "compat")?)?,
    })
}

fn parse_norm(v: &Value) -> Result<Normalization> {
    let list = |k: &str| -> Result<Vec<i64>> {
        v.get(k)
            .and_then(Value::as_array)
            .ok_or_else(|| meta_err(k, "missing or not a list"))?
            .iter()
            .map(|x| x.as_i64().ok_or_else(|| meta_err(k, "not an integer")))
            .collect()
    };
    let n = Normalization {
        mean: list("mean")?,
        mad: list("mad")?,
    };
    n.validate()?;
    Ok(n)
}

fn tensor_i32(st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<i32>> {
    let t = st
        .tensor(name)
        .map_err(|_| Error::format(format!("tensor {name:?} is missing")))?;
    if t.dtype() != Dtype::I32 {
        return Err(Error::format(format!(
            "tensor {name:?} has dtype {:?}, expected I32",
            t.dtype()
        )));
    }
    if t.shape() != shape {
        return Err(Error::format(format!(
            "tensor {name:?} has shape {:?}, expected {shape:?}",
            t.shape()
        )));
    }
    let d = t.data();
    if d.len() != shape.iter().product::<usize>() * 4 {
        return Err(Error::format(format!(
            "tensor {name:?} has the wrong number of bytes"
        )));
    }
    Ok(d.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn load_linear(
    st: &SafeTensors<'_>,
    name: String,
    out: usize,
    inp: usize,
    bias: bool,
) -> Result<Linear> {
    let w = Array2::from_shape_vec((out, inp), tensor_i32(st, &name, &[out, inp])?)
        .map_err(|e| Error::format(e.to_string()))?;
    let b = if bias {
        Some(Array1::from(tensor_i32(
            st,
            &format!("{name}.bias"),
            &[out],
        )?))
    } else {
        None
    };
    Linear::new(name, w, b)
}

/// The metadata map of a safetensors buffer (empty if none).
pub fn read_metadata(bytes: &[u8]) -> Result<Vec<(String, String)>> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::format(format!("not a valid safetensors file: {e}")))?;
    let mut out: Vec<(String, String)> = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    out.sort();
    Ok(out)
}

/// Rebuild a model from safetensors bytes written by [`to_bytes`]. Malformed, truncated or
/// hostile input yields [`Error::Format`], never a panic; tensors are only read after the
/// architecture has been validated and are checked against it for dtype and exact shape.
pub fn from_bytes(bytes: &[u8]) -> Result<Mlp> {
    let meta = read_metadata(bytes)?;
    let get = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    match get("format") {
        Some(FORMAT) => {}
        _ => {
            return Err(Error::format(
                "not a nitrod-rs model (metadata \"format\" is missing or different)",
            ))
        }
    }
    match get("format_version") {
        Some(FORMAT_VERSION) => {}
        v => {
            return Err(Error::format(format!(
                "unsupported format_version {v:?}; this library reads version {FORMAT_VERSION}"
            )))
        }
    }
    let arch = parse_json(
        get("architecture").ok_or_else(|| meta_err("architecture", "missing"))?,
        "architecture",
    )?;
    let config = parse_config(&arch)?;
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::format(format!("not a valid safetensors file: {e}")))?;
    let mut blocks = Vec::new();
    let mut prev = config.inputs;
    for (i, &w) in config.hidden.iter().enumerate() {
        let fwd = load_linear(&st, format!("linear_encoder_{i:02}"), w, prev, config.bias)?;
        let head = load_linear(
            &st,
            format!("linear_pred_{i:02}"),
            config.classes,
            w,
            config.bias,
        )?;
        blocks.push(LocalLinearBlock::from_layers(fwd, head, config.activation)?);
        prev = w;
    }
    let n = blocks.len();
    let out = load_linear(
        &st,
        format!("linear_{n:02}"),
        config.classes,
        prev,
        config.bias,
    )?;
    let mut model = Mlp::from_layers(config, blocks, out)?;
    if let Some(h) = get("hyper") {
        model.hyper = Some(parse_hyper(&parse_json(h, "hyper")?)?);
    }
    if let Some(nm) = get("normalization") {
        model.normalization = Some(parse_norm(&parse_json(nm, "normalization")?)?);
    }
    Ok(model)
}

/// Write bytes to `path` atomically: a temporary file in the same directory, flushed and
/// synced, then renamed over the target. On error the target is untouched.
#[cfg(feature = "std")]
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::config(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

/// Save a model to a `.safetensors` file (atomically).
#[cfg(feature = "std")]
pub fn save_file(model: &Mlp, path: &std::path::Path) -> Result<()> {
    write_atomic(path, &to_bytes(model)?)
}

/// Load a model from a `.safetensors` file.
#[cfg(feature = "std")]
pub fn load_file(path: &std::path::Path) -> Result<Mlp> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    from_bytes(&bytes).map_err(|e| match e {
        Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
        o => o,
    })
}
