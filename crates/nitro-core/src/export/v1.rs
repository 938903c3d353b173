//! The reader of layout version 1 (MLPs only, `i32` tensors, learning heads always present),
//! kept so that blobs written before version 2 still load. Nothing writes this version any
//! more.
//!
//! After the magic and the version (read by [`super::from_blob`]):
//!
//! | field | type | meaning |
//! |---|---|---|
//! | flags | u32 | bit 0 bias, bit 1 normalisation present, bit 2 hyper present; others 0 |
//! | inputs | u32 | input features |
//! | classes | u32 | classes |
//! | depth | u32 | number of hidden blocks (≤ [`super::MAX_DEPTH`]) |
//! | hidden | u32 × depth | hidden widths |
//! | activation | u8 len + ASCII | [`crate::ActivationKind::name`] |
//! | slope | u32 | activation parameter `a` |
//! | dropout_pct | u32 | dropout in percent |
//! | init | u8 len + ASCII | [`crate::Init::name`] |
//! | seed | u64 | initialisation seed |
//! | normalisation (bit 1) | u32 channels, then i32 mean × c, i32 MAD × c | algorithm.md §2 statistics |
//! | hyper (bit 2) | i64 lr_inv, lr_amp_factor, fwd_decay_inv, subnet_decay_inv; u8 compat | last training settings |
//! | tensors | i32 × … | every linear layer in [`Mlp::linears`] order: weight `out × in` row-major, then bias `out` if bit 0 |
//! | checksum | u32 | FNV-1a (32 bit) of every preceding byte |

use super::v2::{read_hyper, read_normalization, FLAG_BIAS, FLAG_HYPER, FLAG_NORM};
use super::wire::Reader;
use super::MAX_DEPTH;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::layers::{ActivationKind, Linear};
use crate::model::{Mlp, MlpConfig};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ndarray::{Array1, Array2};

/// Bytes the tensors of `config` occupy (checked: a hostile header cannot overflow this).
fn tensor_bytes(c: &MlpConfig) -> Option<usize> {
    let bias = usize::from(c.bias);
    let total = c
        .linear_shapes()
        .iter()
        .try_fold(0usize, |t, (_, (o, i))| {
            t.checked_add(o.checked_mul(i.checked_add(bias)?)?)
        })?;
    total.checked_mul(4)
}

fn read_linear(
    r: &mut Reader<'_>,
    name: String,
    out: usize,
    inp: usize,
    bias: bool,
) -> Result<Linear> {
    let w = Array2::from_shape_vec((out, inp), r.i32s(out * inp, &name)?)
        .map_err(|e| Error::format(format!("{name}: {e}")))?;
    let b = if bias {
        Some(Array1::from(r.i32s(out, &name)?))
    } else {
        None
    };
    Linear::new(name, w, b)
}

/// The model of a version-1 blob whose checksum has been checked; `r` stands after the version
/// and `body_len` is the length before the checksum.
pub(super) fn read(mut r: Reader<'_>, body_len: usize) -> Result<Mlp> {
    let flags = r.u32("flags")?;
    if flags & !(FLAG_BIAS | FLAG_NORM | FLAG_HYPER) != 0 {
        return Err(Error::format(format!(
            "model blob has unknown flags {flags:#x}"
        )));
    }
    let inputs = r.usize("inputs")?;
    let classes = r.usize("classes")?;
    let depth = r.u32("depth")?;
    if depth > MAX_DEPTH {
        return Err(Error::format(format!(
            "model blob declares {depth} hidden blocks (at most {MAX_DEPTH})"
        )));
    }
    let hidden = (0..depth)
        .map(|_| r.usize("hidden width"))
        .collect::<Result<Vec<_>>>()?;
    let act_name = r.name("activation")?;
    let slope = u8::try_from(r.u32("slope")?)
        .map_err(|_| Error::format("model blob: activation slope out of range"))?;
    let activation = ActivationKind::from_name(act_name, slope)?;
    let dropout_pct = r.u32("dropout_pct")?;
    let init = Init::from_name(r.name("init")?)?;
    let seed = r.u64("seed")?;
    let config = MlpConfig {
        inputs,
        hidden,
        classes,
        activation,
        dropout_pct,
        bias: flags & FLAG_BIAS != 0,
        init,
        seed,
    };
    config.validate()?;
    let normalization = if flags & FLAG_NORM != 0 {
        Some(read_normalization(&mut r, |r, c, what| r.i32s(c, what))?)
    } else {
        None
    };
    let hyper = if flags & FLAG_HYPER != 0 {
        Some(read_hyper(&mut r)?)
    } else {
        None
    };
    // Exact length before allocating the tensors: a hostile header cannot make us allocate more
    // than the blob itself holds.
    let need = tensor_bytes(&config)
        .and_then(|t| t.checked_add(r.pos))
        .ok_or_else(|| Error::format("model blob: architecture too large"))?;
    if need != body_len {
        return Err(Error::format(format!(
            "model blob has {body_len} bytes before the checksum, its architecture needs {need}"
        )));
    }
    let bias = config.bias;
    let mut model = Mlp::load_with(config, |name, (o, i)| read_linear(&mut r, name, o, i, bias))?;
    model.normalization = normalization;
    model.hyper = hyper;
    Ok(model)
}
