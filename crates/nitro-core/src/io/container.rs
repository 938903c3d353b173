//! The safetensors container as this crate writes and reads it: `i32` tensors only, tensors and
//! metadata in sorted order so that the same model always gives the same bytes.

use crate::error::{Error, Result};
use crate::names;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use safetensors::tensor::{Dtype, SafeTensors};
use serde_json::{json, Value};

/// One tensor to write: its shape and little-endian bytes.
pub(super) struct I32Tensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl I32Tensor {
    pub(super) fn new(shape: &[usize], data: impl Iterator<Item = i32>) -> Self {
        I32Tensor {
            shape: shape.to_vec(),
            bytes: data.flat_map(i32::to_le_bytes).collect(),
        }
    }
}

/// Push a layer's weight (called `name`) and its bias, if any, as tensors.
pub(super) fn push_layer<D: ndarray::Dimension>(
    tensors: &mut Vec<(String, I32Tensor)>,
    name: &str,
    weight: &ndarray::Array<i32, D>,
    bias: Option<&ndarray::Array1<i32>>,
) {
    tensors.push((
        name.to_string(),
        I32Tensor::new(weight.shape(), weight.iter().copied()),
    ));
    if let Some(b) = bias {
        tensors.push((
            names::bias(name),
            I32Tensor::new(&[b.len()], b.iter().copied()),
        ));
    }
}

/// Write a safetensors buffer with tensors and metadata in sorted order, so that the same model
/// always gives the same bytes (the `safetensors` crate's writer orders metadata by a hash map).
/// The header is padded with spaces to a multiple of 8 bytes, as the format recommends.
pub(super) fn serialize_sorted(
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
    while h.len() % 8 != 0 {
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

/// The `i32` tensor `name`, checked for dtype and exact `shape`.
pub(super) fn tensor_i32(st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<i32>> {
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
    let bytes = shape.iter().try_fold(4usize, |n, &d| n.checked_mul(d));
    if bytes != Some(d.len()) {
        return Err(Error::format(format!(
            "tensor {name:?} has the wrong number of bytes"
        )));
    }
    Ok(d.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Every tensor of the file is one the architecture has (`expected`) or a checkpoint's
/// [`names::CHECKPOINT_ORDER`]: a tensor the model would not read is an error, not ignored.
pub(super) fn check_no_extra<'a>(
    st: &SafeTensors<'_>,
    expected: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    let mut expected: Vec<&str> = expected.into_iter().collect();
    expected.push(names::CHECKPOINT_ORDER);
    expected.sort_unstable();
    let mut extra: Vec<&str> = st
        .names()
        .into_iter()
        .filter(|n| expected.binary_search(n).is_err())
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    extra.sort_unstable();
    let bias = extra.iter().any(|n| n.ends_with(names::BIAS_SUFFIX));
    Err(Error::format(format!(
        "tensor {:?}{} is not part of the architecture in the metadata{}",
        extra[0],
        match extra.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        },
        if bias {
            " (a bias tensor in a file whose architecture has \"bias\": false?)"
        } else {
            ""
        }
    )))
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

/// Parse a safetensors buffer (tensors are read lazily, by name).
pub(super) fn deserialize(bytes: &[u8]) -> Result<SafeTensors<'_>> {
    SafeTensors::deserialize(bytes)
        .map_err(|e| Error::format(format!("not a valid safetensors file: {e}")))
}

/// The tensors and metadata of the safetensors buffer `bytes` together with `tensors` and
/// `meta`, written as [`serialize_sorted`] writes (a name or key may not be given twice).
pub(super) fn with_extra(
    bytes: &[u8],
    tensors: Vec<(String, I32Tensor)>,
    meta: Vec<(String, String)>,
) -> Result<Vec<u8>> {
    let st = deserialize(bytes)?;
    let mut all: Vec<(String, I32Tensor)> = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::I32 {
            return Err(Error::format(format!(
                "tensor {name:?} has dtype {:?}, expected I32",
                view.dtype()
            )));
        }
        all.push((
            name,
            I32Tensor {
                shape: view.shape().to_vec(),
                bytes: view.data().to_vec(),
            },
        ));
    }
    let mut entries = read_metadata(bytes)?;
    for (name, _) in &tensors {
        if all.iter().any(|(n, _)| n == name) {
            return Err(Error::format(format!("tensor {name:?} is already present")));
        }
    }
    for (key, _) in &meta {
        if entries.iter().any(|(k, _)| k == key) {
            return Err(Error::format(format!(
                "metadata {key:?} is already present"
            )));
        }
    }
    all.extend(tensors);
    entries.extend(meta);
    serialize_sorted(all, entries)
}
