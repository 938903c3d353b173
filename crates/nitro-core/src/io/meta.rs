//! The metadata of a saved model (algorithm.md §8): format keys, the hyper-parameters and the
//! normalisation statistics as JSON strings, and the checks every loader starts with.

use super::container::read_metadata;
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::optim::{Compat, Hyper};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::{json, Value};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "nitrod-rs";
/// Version of the file layout written by this library.
pub const FORMAT_VERSION: &str = "1";

pub(super) fn meta_err(key: &str, what: &str) -> Error {
    Error::format(format!("metadata {key:?}: {what}"))
}

pub(super) fn get_u64(v: &Value, key: &str) -> Result<u64> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| meta_err(key, "missing or not a non-negative integer"))
}

pub(super) fn get_i64(v: &Value, key: &str) -> Result<i64> {
    v.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| meta_err(key, "missing or not an integer"))
}

pub(super) fn get_usize(v: &Value, key: &str) -> Result<usize> {
    usize::try_from(get_u64(v, key)?).map_err(|_| meta_err(key, "too large"))
}

pub(super) fn get_str<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| meta_err(key, "missing or not a string"))
}

pub(super) fn parse_json(s: &str, key: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| meta_err(key, &format!("invalid JSON: {e}")))
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

/// Parse the `hyper` metadata, checked as a training run checks it ([`Hyper::sgds`]: `lr_inv`
/// and `lr_amp_factor` positive, decays not negative, `lr_inv · lr_amp_factor` within `i64`).
pub fn parse_hyper(v: &Value) -> Result<Hyper> {
    let h = Hyper {
        lr_inv: get_i64(v, "lr_inv")?,
        lr_amp_factor: get_i64(v, "lr_amp_factor")?,
        fwd_decay_inv: get_i64(v, "fwd_decay_inv")?,
        subnet_decay_inv: get_i64(v, "subnet_decay_inv")?,
        compat: Compat::from_name(get_str(v, "compat")?)?,
    };
    h.sgds().map_err(|e| match e {
        Error::Config(m) => meta_err("hyper", &m),
        o => o,
    })?;
    Ok(h)
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

/// The metadata of a model with architecture `arch`: format keys, versions, and the
/// hyper-parameters and normalisation when the model has them.
pub(super) fn metadata(
    arch: &Value,
    hyper: Option<&Hyper>,
    normalization: Option<&Normalization>,
) -> Vec<(String, String)> {
    let mut meta: Vec<(String, String)> = alloc::vec![
        ("format".into(), FORMAT.into()),
        ("format_version".into(), FORMAT_VERSION.into()),
        ("library_version".into(), env!("CARGO_PKG_VERSION").into()),
        ("architecture".into(), arch.to_string()),
    ];
    if let Some(h) = hyper {
        meta.push(("hyper".into(), hyper_json(h).to_string()));
    }
    if let Some(n) = normalization {
        meta.push((
            "normalization".into(),
            json!({"mean": n.mean, "mad": n.mad}).to_string(),
        ));
    }
    meta
}

/// The metadata of a file, its format keys checked.
pub(super) struct Header {
    entries: Vec<(String, String)>,
    /// The parsed `architecture`.
    pub arch: Value,
}

impl Header {
    /// Read and check the format keys; parse the architecture.
    pub fn read(bytes: &[u8]) -> Result<Header> {
        let entries = read_metadata(bytes)?;
        let get = |k: &str| {
            entries
                .iter()
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
        Ok(Header { entries, arch })
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// The saved hyper-parameters, if any.
    pub fn hyper(&self) -> Result<Option<Hyper>> {
        self.get("hyper")
            .map(|h| parse_hyper(&parse_json(h, "hyper")?))
            .transpose()
    }

    /// The saved normalisation statistics, if any.
    pub fn normalization(&self) -> Result<Option<Normalization>> {
        self.get("normalization")
            .map(|n| parse_norm(&parse_json(n, "normalization")?))
            .transpose()
    }
}
