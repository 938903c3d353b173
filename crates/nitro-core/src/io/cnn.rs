//! Persistence of CNNs (algorithm.md §8).

use super::container::{check_no_extra, deserialize, push_layer, serialize_sorted, tensor_i32};
use super::meta::{get_str, get_u64, get_usize, meta_err, metadata, Header};
use super::settings::{extend_json, push_settings_json};
use crate::error::{Error, Result};
use crate::init::Init;
use crate::layers::{ActivationKind, PoolKind};
use crate::model::{settings_of, Cnn, CnnConfig, Feature};
use crate::names;
use alloc::format;
use alloc::vec::Vec;
use serde_json::{json, Value};

fn feature_json(f: &Feature) -> Value {
    match *f {
        Feature::Conv {
            filters,
            kernel,
            stride,
            padding,
        } => json!(["conv", filters, kernel, stride, padding]),
        Feature::MaxPool(k) => json!(["maxpool", k]),
        Feature::AvgPool(k) => json!(["avgpool", k]),
        Feature::Dropout(r) => json!(["dropout", r]),
    }
}

fn architecture_json(c: &CnnConfig) -> Value {
    let mut arch = json!({
        "kind": "cnn",
        "input": [c.input.0, c.input.1, c.input.2],
        "features": c.features.iter().map(feature_json).collect::<Vec<_>>(),
        "classifier": c.classifier,
    });
    push_settings_json(&mut arch, &settings_of!(c));
    extend_json(
        &mut arch,
        json!({
            "decoder_dim": c.decoder_dim,
            "head_pool": c.head_pool.name(),
            "conv_amp_adjust": c.conv_amp_adjust,
        }),
    );
    arch
}

fn usize_list(v: &Value, key: &str) -> Result<Vec<usize>> {
    v.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| meta_err(key, "missing or not a list"))?
        .iter()
        .map(|w| {
            w.as_u64()
                .and_then(|w| usize::try_from(w).ok())
                .ok_or_else(|| meta_err(key, "not a non-negative integer"))
        })
        .collect()
}

fn parse_feature(v: &Value) -> Result<Feature> {
    let a = v
        .as_array()
        .ok_or_else(|| meta_err("features", "entry is not a list"))?;
    let kind = a
        .first()
        .and_then(Value::as_str)
        .ok_or_else(|| meta_err("features", "entry without a kind"))?;
    let num = |i: usize| -> Result<usize> {
        a.get(i)
            .and_then(Value::as_u64)
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| meta_err("features", "missing or invalid number"))
    };
    let want = |n: usize| -> Result<()> {
        if a.len() == n {
            Ok(())
        } else {
            Err(meta_err("features", "wrong number of fields"))
        }
    };
    match kind {
        "conv" => {
            want(5)?;
            Ok(Feature::Conv {
                filters: num(1)?,
                kernel: num(2)?,
                stride: num(3)?,
                padding: num(4)?,
            })
        }
        "maxpool" => {
            want(2)?;
            Ok(Feature::MaxPool(num(1)?))
        }
        "avgpool" => {
            want(2)?;
            Ok(Feature::AvgPool(num(1)?))
        }
        "dropout" => {
            want(2)?;
            Ok(Feature::Dropout(
                u32::try_from(num(1)?).map_err(|_| meta_err("features", "rate out of range"))?,
            ))
        }
        o => Err(meta_err("features", &format!("unknown entry kind {o:?}"))),
    }
}

fn parse_config(v: &Value) -> Result<CnnConfig> {
    if get_str(v, "kind")? != "cnn" {
        return Err(meta_err("architecture", "kind is not \"cnn\""));
    }
    let input = usize_list(v, "input")?;
    if input.len() != 3 {
        return Err(meta_err("input", "must be [C, H, W]"));
    }
    let features = v
        .get("features")
        .and_then(Value::as_array)
        .ok_or_else(|| meta_err("features", "missing or not a list"))?
        .iter()
        .map(parse_feature)
        .collect::<Result<Vec<_>>>()?;
    let slope =
        u8::try_from(get_u64(v, "slope")?).map_err(|_| meta_err("slope", "out of range"))?;
    let flag = |k: &str| {
        v.get(k)
            .and_then(Value::as_bool)
            .ok_or_else(|| meta_err(k, "missing or not a boolean"))
    };
    let config = CnnConfig {
        input: (input[0], input[1], input[2]),
        features,
        classifier: usize_list(v, "classifier")?,
        classes: get_usize(v, "classes")?,
        activation: ActivationKind::from_name(get_str(v, "activation")?, slope)?,
        dropout_pct: u32::try_from(get_u64(v, "dropout_pct")?)
            .map_err(|_| meta_err("dropout_pct", "out of range"))?,
        bias: flag("bias")?,
        init: Init::from_name(get_str(v, "init")?)?,
        seed: get_u64(v, "seed")?,
        decoder_dim: get_usize(v, "decoder_dim")?,
        head_pool: PoolKind::from_name(get_str(v, "head_pool")?)?,
        conv_amp_adjust: flag("conv_amp_adjust")?,
    };
    config.validate()?;
    Ok(config)
}

/// Serialise a CNN (parameters + metadata) to safetensors bytes.
pub fn cnn_to_bytes(model: &Cnn) -> Result<Vec<u8>> {
    // A file holds every head (algorithm.md §8); an inference-only model has none to write.
    model.require_heads()?;
    let mut tensors = Vec::new();
    for c in model.convs() {
        push_layer(&mut tensors, &c.name, &c.weight, c.bias.as_ref());
    }
    for l in model.linears() {
        push_layer(&mut tensors, &l.name, &l.weight, l.bias.as_ref());
    }
    let arch = architecture_json(&model.config);
    let meta = metadata(&arch, model.hyper.as_ref(), model.normalization.as_ref());
    serialize_sorted(tensors, meta)
}

/// Rebuild a CNN from bytes written by [`cnn_to_bytes`]. Every tensor is checked for dtype and
/// exact shape against the validated architecture before any weight is allocated beyond what
/// the file holds; malformed input is an [`Error::Format`] (or `Config`), never a panic.
pub fn cnn_from_bytes(bytes: &[u8]) -> Result<Cnn> {
    let header = Header::read(bytes)?;
    let config = parse_config(&header.arch)?;
    let st = deserialize(bytes)?;
    let shapes = config.tensor_shapes()?;
    check_no_extra(&st, shapes.iter().map(|(n, _)| n.as_str()))?;
    // Read every tensor first: memory stays bounded by the file's own size.
    let mut loaded = Vec::new();
    for (name, shape) in shapes {
        let data = tensor_i32(&st, &name, &shape)?;
        loaded.push((name, shape, data));
    }
    let mut model = Cnn::new(config)?;
    for (name, shape, data) in loaded {
        let (base, is_bias) = match name.strip_suffix(names::BIAS_SUFFIX) {
            Some(b) => (b, true),
            None => (name.as_str(), false),
        };
        let bad = || Error::format(format!("tensor {name:?} does not fit the model"));
        if shape.len() == 4 {
            let c = model.conv_mut(base).ok_or_else(bad)?;
            c.weight =
                ndarray::Array4::from_shape_vec((shape[0], shape[1], shape[2], shape[3]), data)
                    .map_err(|_| bad())?;
        } else if is_bias {
            let b = ndarray::Array1::from(data);
            if let Some(c) = model.conv_mut(base) {
                c.bias = Some(b);
            } else {
                model.linear_mut(base).ok_or_else(bad)?.bias = Some(b);
            }
        } else {
            let l = model.linear_mut(base).ok_or_else(bad)?;
            l.weight =
                ndarray::Array2::from_shape_vec((shape[0], shape[1]), data).map_err(|_| bad())?;
        }
    }
    model.hyper = header.hyper()?;
    model.normalization = header.normalization()?;
    Ok(model)
}
