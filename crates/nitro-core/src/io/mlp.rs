//! Persistence of MLPs (algorithm.md §8).

use super::container::{check_no_extra, deserialize, push_layer, serialize_sorted, tensor_i32};
use super::file::{read_with, write_atomic};
use super::meta::{get_str, get_u64, get_usize, meta_err, metadata, Header};
use super::settings::push_settings_json;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::layers::{ActivationKind, Linear};
use crate::model::{settings_of, Mlp, MlpConfig};
use crate::names;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use ndarray::{Array1, Array2};
use safetensors::tensor::SafeTensors;
use serde_json::{json, Value};

fn architecture_json(c: &MlpConfig) -> Value {
    let mut arch = json!({
        "kind": "mlp",
        "inputs": c.inputs,
        "hidden": c.hidden,
    });
    push_settings_json(&mut arch, &settings_of!(c));
    arch
}

/// Serialise a model (parameters + metadata) to safetensors bytes.
pub fn to_bytes(model: &Mlp) -> Result<Vec<u8>> {
    // A file holds every head (algorithm.md §8); an inference-only model has none to write.
    model.require_heads()?;
    let mut tensors = Vec::new();
    for l in model.linears() {
        push_layer(&mut tensors, &l.name, &l.weight, l.bias.as_ref());
    }
    let arch = architecture_json(&model.config);
    let meta = metadata(&arch, model.hyper.as_ref(), model.normalization.as_ref());
    serialize_sorted(tensors, meta)
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
        Some(Array1::from(tensor_i32(st, &names::bias(&name), &[out])?))
    } else {
        None
    };
    Linear::new(name, w, b)
}

/// Rebuild a model from safetensors bytes written by [`to_bytes`]. Malformed, truncated or
/// hostile input yields [`Error::Format`], never a panic; tensors are only read after the
/// architecture has been validated and are checked against it for dtype and exact shape.
pub fn from_bytes(bytes: &[u8]) -> Result<Mlp> {
    let header = Header::read(bytes)?;
    let config = parse_config(&header.arch)?;
    let st = deserialize(bytes)?;
    let shapes = config.linear_shapes();
    let biases: Vec<String> = match config.bias {
        true => shapes.iter().map(|(n, _)| names::bias(n)).collect(),
        false => Vec::new(),
    };
    let weights = shapes.iter().map(|(n, _)| n.as_str());
    check_no_extra(&st, weights.chain(biases.iter().map(String::as_str)))?;
    let bias = config.bias;
    let mut model = Mlp::load_with(config, |name, (o, i)| load_linear(&st, name, o, i, bias))?;
    model.hyper = header.hyper()?;
    model.normalization = header.normalization()?;
    Ok(model)
}

/// Save a model to a `.safetensors` file (atomically).
pub fn save_file(model: &Mlp, path: &std::path::Path) -> Result<()> {
    write_atomic(path, &to_bytes(model)?)
}

/// Load a model from a `.safetensors` file.
pub fn load_file(path: &std::path::Path) -> Result<Mlp> {
    read_with(path, from_bytes)
}
