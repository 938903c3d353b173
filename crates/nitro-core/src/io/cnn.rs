//! Persistence of CNNs (SPEC §8) and the [`Model`] enum that loads either kind of file,
//! dispatching on the architecture's `"kind"`.

use super::{
    get_str, get_u64, get_usize, hyper_json, meta_err, parse_hyper, parse_json, parse_norm,
    read_metadata, tensor_i32, I32Tensor, FORMAT, FORMAT_VERSION,
};
use crate::cnn::{Cnn, CnnConfig, Feature};
use crate::error::{Error, Result};
use crate::init::Init;
use crate::layers::{ActivationKind, PoolKind};
use crate::model::Mlp;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use safetensors::tensor::SafeTensors;
use serde_json::{json, Value};

/// A saved model of either architecture.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Model {
    /// A local-loss MLP.
    Mlp(Mlp),
    /// A local-loss CNN.
    Cnn(Cnn),
}

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
    json!({
        "kind": "cnn",
        "input": [c.input.0, c.input.1, c.input.2],
        "features": c.features.iter().map(feature_json).collect::<Vec<_>>(),
        "classifier": c.classifier,
        "classes": c.classes,
        "activation": c.activation.name(),
        "slope": c.activation.slope(),
        "dropout_pct": c.dropout_pct,
        "bias": c.bias,
        "init": c.init.name(),
        "seed": c.seed,
        "decoder_dim": c.decoder_dim,
        "head_pool": c.head_pool.name(),
        "conv_amp_adjust": c.conv_amp_adjust,
    })
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

fn tensors_of(model: &Cnn) -> Vec<(String, I32Tensor)> {
    let mut t = Vec::new();
    for c in model.convs() {
        t.push((
            c.name.clone(),
            I32Tensor::new(c.weight.shape(), c.weight.iter().copied()),
        ));
        if let Some(b) = &c.bias {
            t.push((
                format!("{}.bias", c.name),
                I32Tensor::new(&[b.len()], b.iter().copied()),
            ));
        }
    }
    for l in model.linears() {
        t.push((
            l.name.clone(),
            I32Tensor::new(l.weight.shape(), l.weight.iter().copied()),
        ));
        if let Some(b) = &l.bias {
            t.push((
                format!("{}.bias", l.name),
                I32Tensor::new(&[b.len()], b.iter().copied()),
            ));
        }
    }
    t
}

/// Serialise a CNN (parameters + metadata) to safetensors bytes.
pub fn cnn_to_bytes(model: &Cnn) -> Result<Vec<u8>> {
    let tensors = tensors_of(model);
    let mut meta: Vec<(String, String)> = alloc::vec![
        ("format".into(), FORMAT.into()),
        ("format_version".into(), FORMAT_VERSION.into()),
        ("library_version".into(), env!("CARGO_PKG_VERSION").into()),
        (
            "architecture".into(),
            architecture_json(&model.config).to_string(),
        ),
    ];
    if let Some(h) = &model.hyper {
        meta.push(("hyper".into(), hyper_json(h).to_string()));
    }
    if let Some(n) = &model.normalization {
        meta.push((
            "normalization".into(),
            json!({"mean": n.mean, "mad": n.mad}).to_string(),
        ));
    }
    super::serialize_sorted(tensors, meta)
}

/// Check the format keys and return the parsed metadata map and architecture.
fn header(bytes: &[u8]) -> Result<(Vec<(String, String)>, Value)> {
    let meta = read_metadata(bytes)?;
    let get = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if get("format") != Some(FORMAT) {
        return Err(Error::format(
            "not a nitrod-rs model (metadata \"format\" is missing or different)",
        ));
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
    Ok((meta, arch))
}

/// Rebuild a CNN from bytes written by [`cnn_to_bytes`]. Every tensor is checked for dtype and
/// exact shape against the validated architecture before any weight is allocated beyond what
/// the file holds; malformed input is an [`Error::Format`] (or `Config`), never a panic.
pub fn cnn_from_bytes(bytes: &[u8]) -> Result<Cnn> {
    let (meta, arch) = header(bytes)?;
    let config = parse_config(&arch)?;
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::format(format!("not a valid safetensors file: {e}")))?;
    // Read every tensor first: memory stays bounded by the file's own size.
    let mut loaded = Vec::new();
    for (name, shape) in config.tensor_shapes()? {
        let data = tensor_i32(&st, &name, &shape)?;
        loaded.push((name, shape, data));
    }
    let mut model = Cnn::new(config)?;
    for (name, shape, data) in loaded {
        let (base, is_bias) = match name.strip_suffix(".bias") {
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
    let get = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if let Some(h) = get("hyper") {
        model.hyper = Some(parse_hyper(&parse_json(h, "hyper")?)?);
    }
    if let Some(nm) = get("normalization") {
        model.normalization = Some(parse_norm(&parse_json(nm, "normalization")?)?);
    }
    Ok(model)
}

impl Model {
    /// Serialise either kind.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        match self {
            Model::Mlp(m) => super::to_bytes(m),
            Model::Cnn(m) => cnn_to_bytes(m),
        }
    }

    /// Load either kind, dispatching on the architecture's `"kind"`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
        let (_, arch) = header(bytes)?;
        match get_str(&arch, "kind")? {
            "mlp" => Ok(Model::Mlp(super::from_bytes(bytes)?)),
            "cnn" => Ok(Model::Cnn(cnn_from_bytes(bytes)?)),
            o => Err(meta_err(
                "architecture",
                &format!("unknown kind {o:?}; expected \"mlp\" or \"cnn\""),
            )),
        }
    }

    /// Save to a `.safetensors` file (atomically).
    #[cfg(feature = "std")]
    pub fn save_file(&self, path: &std::path::Path) -> Result<()> {
        super::write_atomic(path, &self.to_bytes()?)
    }

    /// Load from a `.safetensors` file.
    #[cfg(feature = "std")]
    pub fn load_file(path: &std::path::Path) -> Result<Model> {
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Model::from_bytes(&bytes).map_err(|e| match e {
            Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
            o => o,
        })
    }
}
