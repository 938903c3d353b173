//! Compact model export for devices (run on one by `embedded/`, see `embedded/README.md`): a self-contained binary blob that a `no_std`
//! target can load without JSON or safetensors, and a Rust-source emitter of `const` arrays.
//!
//! The Python CLI `nitrod export model.safetensors --format bin|rust` is a thin layer over
//! [`to_blob`] and [`to_rust_source`].
//!
//! # Blob format, version 1
//!
//! Everything is little-endian; there is no padding. `u32`/`i32`/`u64`/`i64` are 4 or 8 bytes.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | magic | 4 bytes | `b"NTRD"` |
//! | version | u32 | `1` ([`BLOB_VERSION`]) |
//! | flags | u32 | bit 0 bias, bit 1 normalisation present, bit 2 hyper present; others 0 |
//! | inputs | u32 | input features |
//! | classes | u32 | classes |
//! | depth | u32 | number of hidden blocks (≤ [`MAX_DEPTH`]) |
//! | hidden | u32 × depth | hidden widths |
//! | activation | u8 len + ASCII | [`ActivationKind::name`] |
//! | slope | u32 | activation parameter `a` |
//! | dropout_pct | u32 | dropout in percent |
//! | init | u8 len + ASCII | [`Init::name`] |
//! | seed | u64 | initialisation seed |
//! | normalisation (bit 1) | u32 channels, then i32 mean × c, i32 MAD × c | algorithm.md §2
//! statistics | | hyper (bit 2) | i64 lr_inv, lr_amp_factor, fwd_decay_inv, subnet_decay_inv; u8
//! compat (0 exact, 1 reference) | last training settings | | tensors | i32 × … | for every linear
//! layer in [`Mlp::linears`] order (`linear_encoder_i`, `linear_pred_i`, …, `linear_n`): weight
//! `out × in` row-major, then bias `out` if bit 0 | | checksum | u32 | FNV-1a (32 bit) of every
//! preceding byte |
//!
//! [`from_blob`] checks the magic, version, flags, every field's range, the architecture, the
//! exact total length (computed with checked arithmetic *before* anything large is allocated) and
//! the checksum, and returns [`Error::Format`]/[`Error::Config`] for anything else — never a
//! panic, whatever the input.

use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::layers::{ActivationKind, Linear};
use crate::model::{Mlp, MlpConfig};
use crate::optim::{Compat, Hyper};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use ndarray::{Array1, Array2};

/// The blob's first four bytes.
pub const BLOB_MAGIC: [u8; 4] = *b"NTRD";
/// The blob layout version written and read by this library.
pub const BLOB_VERSION: u32 = 1;
/// Most hidden blocks a blob may declare.
pub const MAX_DEPTH: u32 = 64;
/// Most channels a blob's normalisation may declare.
pub const MAX_CHANNELS: u32 = 4096;

const FLAG_BIAS: u32 = 1;
const FLAG_NORM: u32 = 2;
const FLAG_HYPER: u32 = 4;

/// FNV-1a, 32 bit: a dependency-free integrity check (not a cryptographic one).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::config(format!("{what} {v} does not fit the blob (u32)")))
}

fn put_name(buf: &mut Vec<u8>, name: &str) -> Result<()> {
    let len = u8::try_from(name.len()).map_err(|_| Error::config("name too long for a blob"))?;
    buf.push(len);
    buf.extend_from_slice(name.as_bytes());
    Ok(())
}

/// Serialise `model` (architecture, normalisation, hyper-parameters, exact `i32` parameters) to
/// the blob format documented in this module.
pub fn to_blob(model: &Mlp) -> Result<Vec<u8>> {
    let c = &model.config;
    let mut flags = 0;
    if c.bias {
        flags |= FLAG_BIAS;
    }
    if model.normalization.is_some() {
        flags |= FLAG_NORM;
    }
    if model.hyper.is_some() {
        flags |= FLAG_HYPER;
    }
    let params = model.num_parameters();
    let mut b = Vec::with_capacity(64 + 4 * c.hidden.len() + 4 * params);
    b.extend_from_slice(&BLOB_MAGIC);
    b.extend_from_slice(&BLOB_VERSION.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&u32_of(c.inputs, "inputs")?.to_le_bytes());
    b.extend_from_slice(&u32_of(c.classes, "classes")?.to_le_bytes());
    b.extend_from_slice(&u32_of(c.hidden.len(), "depth")?.to_le_bytes());
    for &w in &c.hidden {
        b.extend_from_slice(&u32_of(w, "hidden width")?.to_le_bytes());
    }
    put_name(&mut b, c.activation.name())?;
    b.extend_from_slice(&u32::from(c.activation.slope()).to_le_bytes());
    b.extend_from_slice(&c.dropout_pct.to_le_bytes());
    put_name(&mut b, c.init.name())?;
    b.extend_from_slice(&c.seed.to_le_bytes());
    if let Some(n) = &model.normalization {
        n.validate()?;
        b.extend_from_slice(&u32_of(n.channels(), "channels")?.to_le_bytes());
        // validate() bounds mean to [-128, 127] and MAD to [1, 255]: both fit i32.
        for &v in n.mean.iter().chain(&n.mad) {
            b.extend_from_slice(&(v as i32).to_le_bytes());
        }
    }
    if let Some(h) = &model.hyper {
        for v in [
            h.lr_inv,
            h.lr_amp_factor,
            h.fwd_decay_inv,
            h.subnet_decay_inv,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(match h.compat {
            Compat::Exact => 0,
            Compat::Reference => 1,
        });
    }
    for l in model.linears() {
        for &w in l.weight.iter() {
            b.extend_from_slice(&w.to_le_bytes());
        }
        if let Some(bias) = &l.bias {
            for &v in bias.iter() {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    let sum = fnv1a(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    Ok(b)
}

/// A bounds-checked reader over the blob.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Error::format(format!(
                "model blob truncated while reading {what} at byte {}",
                self.pos
            ))),
        }
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    fn usize(&mut self, what: &str) -> Result<usize> {
        usize::try_from(self.u32(what)?)
            .map_err(|_| Error::format(format!("model blob: {what} too large for this target")))
    }
    fn name(&mut self, what: &str) -> Result<&'a str> {
        let n = usize::from(self.u8(what)?);
        core::str::from_utf8(self.take(n, what)?)
            .map_err(|_| Error::format(format!("model blob: {what} is not UTF-8")))
    }
    fn i32s(&mut self, n: usize, what: &str) -> Result<Vec<i32>> {
        let len = n
            .checked_mul(4)
            .ok_or_else(|| Error::format(format!("model blob: {what} too large")))?;
        Ok(self
            .take(len, what)?
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

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

/// Rebuild a model from a blob written by [`to_blob`], validating everything (see the module
/// documentation). The model predicts exactly like the exported one and can be trained further.
pub fn from_blob(bytes: &[u8]) -> Result<Mlp> {
    let mut r = Reader { bytes, pos: 0 };
    if r.array::<4>("magic")? != BLOB_MAGIC {
        return Err(Error::format("not a nitrod-rs model blob (bad magic)"));
    }
    let version = r.u32("version")?;
    if version != BLOB_VERSION {
        return Err(Error::format(format!(
            "unsupported model blob version {version}; this library reads version {BLOB_VERSION}"
        )));
    }
    // The checksum covers everything but itself; check it before trusting any field.
    let body_len = bytes
        .len()
        .checked_sub(4)
        .filter(|&n| n >= r.pos)
        .ok_or_else(|| Error::format("model blob truncated (no checksum)"))?;
    let stored = u32::from_le_bytes([
        bytes[body_len],
        bytes[body_len + 1],
        bytes[body_len + 2],
        bytes[body_len + 3],
    ]);
    if fnv1a(&bytes[..body_len]) != stored {
        return Err(Error::format(
            "model blob checksum mismatch (corrupt or truncated)",
        ));
    }
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
        let c = r.u32("channels")?;
        if c == 0 || c > MAX_CHANNELS {
            return Err(Error::format(format!(
                "model blob: {c} normalisation channels (1..={MAX_CHANNELS})"
            )));
        }
        let c = c as usize;
        let mean = r.i32s(c, "normalisation mean")?;
        let mad = r.i32s(c, "normalisation MAD")?;
        let n = Normalization {
            mean: mean.into_iter().map(i64::from).collect(),
            mad: mad.into_iter().map(i64::from).collect(),
        };
        n.validate()?;
        Some(n)
    } else {
        None
    };
    let hyper = if flags & FLAG_HYPER != 0 {
        let h = Hyper {
            lr_inv: r.i64("lr_inv")?,
            lr_amp_factor: r.i64("lr_amp_factor")?,
            fwd_decay_inv: r.i64("fwd_decay_inv")?,
            subnet_decay_inv: r.i64("subnet_decay_inv")?,
            compat: match r.u8("compat")? {
                0 => Compat::Exact,
                1 => Compat::Reference,
                o => return Err(Error::format(format!("model blob: unknown compat {o}"))),
            },
        };
        h.sgds()?;
        Some(h)
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

/// Rust source with the model as `const` data, for firmware that wants it compiled in:
///
/// * `MODEL_BLOB: [u8; N]` — the [`to_blob`] bytes, loadable with [`from_blob`] (to keep
///   training or to predict through `nitro-core`);
/// * per linear layer `<NAME>_WEIGHT: [[i32; IN]; OUT]` (and `<NAME>_BIAS: [i32; OUT]`) — the
///   raw parameters for a hand-written inference loop;
/// * `NORM_MEAN`/`NORM_MAD: [i64; C]` when the model carries normalisation statistics.
///
/// `name` is a comment naming the source of the model.
pub fn to_rust_source(model: &Mlp, name: &str) -> Result<String> {
    let blob = to_blob(model)?;
    let mut s = String::new();
    let e = |_| Error::config("formatting failed");
    writeln!(
        s,
        "// Generated by nitro_core::export::to_rust_source (nitrod-rs {}) from {}.\n\
         // NITRO-D MLP {}, {} parameters; blob format version {BLOB_VERSION}.\n\
         #![allow(dead_code)]\n",
        crate::VERSION,
        name.replace(['\n', '\r'], " "),
        model.describe(),
        model.num_parameters()
    )
    .map_err(e)?;
    writeln!(s, "/// The model blob (`nitro_core::export::from_blob`).").map_err(e)?;
    writeln!(s, "pub static MODEL_BLOB: [u8; {}] = [", blob.len()).map_err(e)?;
    for chunk in blob.chunks(16) {
        s.push_str("   ");
        for b in chunk {
            write!(s, " {b},").map_err(e)?;
        }
        s.push('\n');
    }
    s.push_str("];\n");
    if let Some(n) = &model.normalization {
        writeln!(
            s,
            "\n/// Per-channel normalisation mean (nitrod-rs docs/algorithm.md §2)."
        )
        .map_err(e)?;
        writeln!(
            s,
            "pub const NORM_MEAN: [i64; {}] = {:?};",
            n.mean.len(),
            n.mean
        )
        .map_err(e)?;
        writeln!(
            s,
            "/// Per-channel normalisation MAD (nitrod-rs docs/algorithm.md §2)."
        )
        .map_err(e)?;
        writeln!(
            s,
            "pub const NORM_MAD: [i64; {}] = {:?};",
            n.mad.len(),
            n.mad
        )
        .map_err(e)?;
    }
    for l in model.linears() {
        let (o, i) = l.weight.dim();
        let up = l.name.to_ascii_uppercase();
        writeln!(s, "\n/// `{}` weights, {o}×{i}.", l.name).map_err(e)?;
        writeln!(s, "pub const {up}_WEIGHT: [[i32; {i}]; {o}] = [").map_err(e)?;
        for row in l.weight.rows() {
            s.push_str("    [");
            for (k, v) in row.iter().enumerate() {
                if k > 0 {
                    s.push_str(", ");
                }
                write!(s, "{v}").map_err(e)?;
            }
            s.push_str("],\n");
        }
        s.push_str("];\n");
        if let Some(b) = &l.bias {
            writeln!(s, "/// `{}` bias.", l.name).map_err(e)?;
            writeln!(s, "pub const {up}_BIAS: [i32; {o}] = {:?};", b.to_vec()).map_err(e)?;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::one_hot;
    use crate::rng::Pcg32;

    fn trained(bias: bool) -> (Mlp, Array2<i8>, Vec<usize>) {
        let mut c = MlpConfig::new(12, &[16, 8], 3);
        c.bias = bias;
        c.seed = 7;
        let mut m = Mlp::new(c).unwrap();
        let mut r = Pcg32::new(1, 1);
        let x = Array2::from_shape_fn((24, 12), |_| r.symmetric(100) as i8);
        let y: Vec<usize> = (0..24).map(|i| i % 3).collect();
        let h = Hyper::default();
        for _ in 0..3 {
            m.train_step(x.view(), &y, &h).unwrap();
        }
        m.hyper = Some(h);
        m.normalization = Some(Normalization {
            mean: alloc::vec![-3],
            mad: alloc::vec![40],
        });
        (m, x, y)
    }

    fn same_params(a: &Mlp, b: &Mlp) {
        assert_eq!(a.config, b.config);
        assert_eq!(a.normalization, b.normalization);
        assert_eq!(a.hyper, b.hyper);
        for (la, lb) in a.linears().iter().zip(b.linears()) {
            assert_eq!(la.name, lb.name);
            assert_eq!(la.weight, lb.weight);
            assert_eq!(la.bias, lb.bias);
        }
    }

    #[test]
    fn blob_round_trips_and_predicts_identically() {
        for bias in [false, true] {
            let (m, x, _) = trained(bias);
            let blob = to_blob(&m).unwrap();
            assert_eq!(&blob[..4], b"NTRD");
            let back = from_blob(&blob).unwrap();
            same_params(&m, &back);
            assert_eq!(
                m.predict_logits(x.view()).unwrap(),
                back.predict_logits(x.view()).unwrap()
            );
            assert_eq!(to_blob(&back).unwrap(), blob, "re-export is byte-identical");
        }
    }

    #[test]
    fn training_continues_identically_from_a_blob() {
        let (mut m, x, y) = trained(false);
        let mut back = from_blob(&to_blob(&m).unwrap()).unwrap();
        let h = m.hyper.unwrap();
        for _ in 0..3 {
            let a = m.train_step(x.view(), &y, &h).unwrap();
            let b = back.train_step(x.view(), &y, &h).unwrap();
            assert_eq!(a, b);
        }
        same_params(&m, &back);
        assert_eq!(one_hot(&y, 3).unwrap().nrows(), 24);
    }

    #[test]
    #[cfg(feature = "std")]
    fn safetensors_to_blob_is_lossless() {
        // The path of `nitrod export model.safetensors --format bin`.
        let (m, x, _) = trained(true);
        let st = crate::io::from_bytes(&crate::io::to_bytes(&m).unwrap()).unwrap();
        let back = from_blob(&to_blob(&st).unwrap()).unwrap();
        same_params(&m, &back);
        assert_eq!(
            m.predict(x.view()).unwrap(),
            back.predict(x.view()).unwrap()
        );
    }

    #[test]
    fn without_optional_sections() {
        let m = Mlp::new(MlpConfig::new(5, &[], 2)).unwrap();
        let back = from_blob(&to_blob(&m).unwrap()).unwrap();
        same_params(&m, &back);
    }

    #[test]
    fn hostile_blobs_are_errors_not_panics() {
        let (m, _, _) = trained(true);
        let blob = to_blob(&m).unwrap();
        // Every truncation.
        for n in 0..blob.len() {
            assert!(from_blob(&blob[..n]).is_err(), "truncated to {n}");
        }
        // Every single-byte corruption (checksum or validation catches it).
        for i in 0..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 0x5a;
            assert!(from_blob(&b).is_err(), "byte {i} flipped");
        }
        // A consistent (re-checksummed) header that declares a huge architecture.
        let mut b = blob[..blob.len() - 4].to_vec();
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes()); // inputs
        let sum = fnv1a(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        assert!(from_blob(&b).is_err());
        // Extra bytes.
        let mut b = blob[..blob.len() - 4].to_vec();
        b.push(0);
        let sum = fnv1a(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        assert!(matches!(from_blob(&b), Err(Error::Format(_))));
        // Random garbage of many lengths.
        let mut r = Pcg32::new(9, 9);
        for len in 0..300 {
            let g: Vec<u8> = (0..len).map(|_| r.next_u32() as u8).collect();
            assert!(from_blob(&g).is_err());
        }
    }

    #[test]
    fn rust_source_contains_the_blob_and_layers() {
        let (m, _, _) = trained(true);
        let s = to_rust_source(&m, "test").unwrap();
        let blob = to_blob(&m).unwrap();
        assert!(s.contains(&format!("pub static MODEL_BLOB: [u8; {}]", blob.len())));
        assert!(s.contains("pub const LINEAR_ENCODER_00_WEIGHT: [[i32; 12]; 16]"));
        assert!(s.contains("pub const LINEAR_02_BIAS: [i32; 3]"));
        assert!(s.contains("pub const NORM_MAD: [i64; 1] = [40];"));
        // The emitted bytes parse back to the blob.
        let start = s.find("= [\n").unwrap() + 4;
        let end = start + s[start..].find("];").unwrap();
        let bytes: Vec<u8> = s[start..end]
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| t.parse().unwrap())
            .collect();
        assert_eq!(bytes, blob);
    }
}
