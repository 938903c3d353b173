//! Compact model export for devices (run on one by `embedded/`, see `embedded/README.md`): a
//! self-contained binary blob of an MLP or a CNN that a `no_std` target can load without JSON
//! or safetensors, and a Rust-source emitter of an MLP's `const` arrays
//! ([`to_rust_source`]).
//!
//! The Python CLI `nitrod export model.safetensors --format bin [--no-heads]|rust` is a thin
//! layer over [`to_blob_with`] and [`to_rust_source`].
//!
//! * Exact: every tensor is stored in the narrowest of `i8`/`i16`/`i32` that holds all of its
//!   values ([`tensor_width`]), so a reload gives exactly the same integers — the same logits,
//!   and the same training steps after it.
//! * Heads optional: prediction never runs the learning heads (algorithm.md §4.4), so a blob for a
//!   device that only predicts can leave them out ([`BlobOptions::heads`]); it loads as an
//!   inference-only model ([`Mlp::has_heads`] false) whose training is an error. Training on
//!   the device needs them.
//! * Like a model file, a blob holds no dropout generator state (a checkpoint does): a loaded
//!   model starts from its seed's generators.
//!
//! # Blob format, version 2
//!
//! Everything is little-endian; there is no padding. `u32`/`u64`/`i64` are 4 or 8 bytes; a
//! *name* is a `u8` length and that many ASCII bytes; a *tensor* of `n` values is one width
//! byte `w` (1, 2 or 4) and `n` signed `w`-byte values (`i8`, `i16` or `i32`).
//!
//! | field | type | meaning |
//! |---|---|---|
//! | magic | 4 bytes | `b"NTRD"` |
//! | version | u32 | `2` ([`BLOB_VERSION`]) |
//! | flags | u32 | bit 0 bias, bit 1 normalisation present, bit 2 hyper present, bit 3 learning heads present; others 0 |
//! | kind | u8 | 0 MLP, 1 CNN |
//! | classes | u32 | classes |
//! | activation | name | [`ActivationKind::name`](crate::ActivationKind::name) |
//! | slope | u32 | activation parameter `a` |
//! | dropout_pct | u32 | dropout in percent |
//! | init | name | [`Init::name`](crate::Init::name) |
//! | seed | u64 | initialisation seed |
//! | MLP: architecture | u32 inputs; u32 depth (≤ [`MAX_DEPTH`]), u32 × depth hidden widths | [`MlpConfig`](crate::MlpConfig) |
//! | CNN: architecture | u32 C, H, W; u32 entries (≤ [`MAX_DEPTH`]), each a u8 kind (0 conv, 1 max-pool, 2 avg-pool, 3 dropout) and its u32 fields (conv: filters, kernel, stride, padding; pool: size; dropout: rate); u32 depth and u32 × depth classifier widths; u32 decoder_dim; name head_pool; u8 conv_amp_adjust (0/1) | [`CnnConfig`](crate::CnnConfig) (its `features`, before the dropout that a rate adds) |
//! | normalisation (bit 1) | u32 channels, tensor mean, tensor MAD | algorithm.md §2 statistics |
//! | hyper (bit 2) | i64 lr_inv, lr_amp_factor, fwd_decay_inv, subnet_decay_inv; u8 compat (0 exact, 1 reference) | last training settings |
//! | tensors | tensor × … | MLP: every layer of [`Mlp::linears`]; CNN: for every conv block its convolution (`F×C×k×k`) and head, then the classifier's layers (each block's forward layer and head, the output layer). Each layer is its weight (row-major), then its bias if bit 0; the heads (`linear_pred_i`) only with bit 3 |
//! | checksum | u32 | FNV-1a (32 bit) of every preceding byte |
//!
//! Version 1 (MLPs only, `i32` tensors, heads always present; see `v1.rs`) is still read.
//!
//! [`from_blob`] checks the magic, version, flags, every field's range, the architecture, the
//! checksum, that the blob is long enough for the architecture (with checked arithmetic,
//! *before* anything large is allocated) and that no byte is left over, and returns
//! [`Error::Format`]/[`Error::Config`] for anything else — never a panic, whatever the input.

mod rust_source;
mod v1;
mod v2;
mod wire;

pub use rust_source::to_rust_source;
pub use wire::tensor_width;

use crate::data::{Normalization, Share};
use crate::error::{Error, Result};
use crate::metrics::StepStats;
use crate::model::{Cnn, Gradients, Mlp};
use crate::optim::Hyper;
use crate::rng::Pcg32;
use crate::train::{DataParallel, Evaluate, Trainable};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ndarray::{Array2, ArrayView2};
use wire::{fnv1a, Reader};

/// The blob's first four bytes.
pub const BLOB_MAGIC: [u8; 4] = *b"NTRD";
/// The blob layout version written by this library ([`from_blob`] also reads version 1).
pub const BLOB_VERSION: u32 = 2;
/// Most hidden blocks (and, for a CNN, feature-extractor entries) a blob may declare.
pub const MAX_DEPTH: u32 = 64;
/// Most channels a blob's normalisation may declare.
pub const MAX_CHANNELS: u32 = 4096;

/// What a blob carries besides what prediction needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobOptions {
    /// Include the learning heads (default): the loaded model can be trained further. Without
    /// them the blob is smaller and loads as an inference-only model that predicts the same.
    pub heads: bool,
}

impl Default for BlobOptions {
    fn default() -> Self {
        BlobOptions { heads: true }
    }
}

/// A model of either kind, borrowed for [`to_blob`] (`&Mlp`, `&Cnn` and `&DeviceModel`
/// convert into it).
#[derive(Clone, Copy, Debug)]
pub enum ModelRef<'a> {
    /// An MLP.
    Mlp(&'a Mlp),
    /// A CNN.
    Cnn(&'a Cnn),
}

impl<'a> From<&'a Mlp> for ModelRef<'a> {
    fn from(m: &'a Mlp) -> Self {
        ModelRef::Mlp(m)
    }
}

impl<'a> From<&'a Cnn> for ModelRef<'a> {
    fn from(m: &'a Cnn) -> Self {
        ModelRef::Cnn(m)
    }
}

impl<'a> From<&'a DeviceModel> for ModelRef<'a> {
    fn from(m: &'a DeviceModel) -> Self {
        match m {
            DeviceModel::Mlp(m) => ModelRef::Mlp(m),
            DeviceModel::Cnn(m) => ModelRef::Cnn(m),
        }
    }
}

/// The model a blob holds: an MLP or a CNN ([`from_blob`]). It predicts and trains on rows
/// `N × features` through [`Evaluate`] and [`Trainable`], as `train::fit` does.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum DeviceModel {
    /// A local-loss MLP.
    Mlp(Mlp),
    /// A local-loss CNN.
    Cnn(Cnn),
}

impl DeviceModel {
    /// The MLP, or an error naming the kind the blob holds.
    pub fn into_mlp(self) -> Result<Mlp> {
        match self {
            DeviceModel::Mlp(m) => Ok(m),
            DeviceModel::Cnn(m) => Err(Error::format(format!(
                "the blob holds a CNN ({}), not an MLP",
                m.describe()
            ))),
        }
    }

    /// The CNN, or an error naming the kind the blob holds.
    pub fn into_cnn(self) -> Result<Cnn> {
        match self {
            DeviceModel::Cnn(m) => Ok(m),
            DeviceModel::Mlp(m) => Err(Error::format(format!(
                "the blob holds an MLP ({}), not a CNN",
                m.describe()
            ))),
        }
    }

    /// Whether the model has its learning heads (`false`: inference only).
    pub fn has_heads(&self) -> bool {
        match self {
            DeviceModel::Mlp(m) => m.has_heads(),
            DeviceModel::Cnn(m) => m.has_heads(),
        }
    }

    /// The normalisation statistics the model was trained with, if saved.
    pub fn normalization(&self) -> Option<&Normalization> {
        match self {
            DeviceModel::Mlp(m) => m.normalization.as_ref(),
            DeviceModel::Cnn(m) => m.normalization.as_ref(),
        }
    }

    /// Number of parameters the model holds (an inference-only model holds no heads).
    pub fn num_parameters(&self) -> usize {
        match self {
            DeviceModel::Mlp(m) => m.num_parameters(),
            DeviceModel::Cnn(m) => m.num_parameters(),
        }
    }

    /// A short human-readable description (`Mlp::describe`, `Cnn::describe`).
    pub fn describe(&self) -> String {
        match self {
            DeviceModel::Mlp(m) => m.describe(),
            DeviceModel::Cnn(m) => m.describe(),
        }
    }
}

impl From<Mlp> for DeviceModel {
    fn from(m: Mlp) -> Self {
        DeviceModel::Mlp(m)
    }
}

impl From<Cnn> for DeviceModel {
    fn from(m: Cnn) -> Self {
        DeviceModel::Cnn(m)
    }
}

impl Evaluate for DeviceModel {
    fn logits(&self, x: ArrayView2<'_, i8>) -> Result<Array2<i8>> {
        match self {
            DeviceModel::Mlp(m) => m.logits(x),
            DeviceModel::Cnn(m) => m.logits(x),
        }
    }
    fn classes(&self) -> usize {
        match self {
            DeviceModel::Mlp(m) => m.config.classes,
            DeviceModel::Cnn(m) => m.config.classes,
        }
    }
}

impl Trainable for DeviceModel {
    fn step(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> Result<StepStats> {
        match self {
            DeviceModel::Mlp(m) => m.step(x, labels, hyper),
            DeviceModel::Cnn(m) => m.step(x, labels, hyper),
        }
    }
    fn num_blocks(&self) -> usize {
        match self {
            DeviceModel::Mlp(m) => m.num_blocks(),
            DeviceModel::Cnn(m) => m.num_blocks(),
        }
    }
    fn set_hyper(&mut self, hyper: Hyper) {
        match self {
            DeviceModel::Mlp(m) => m.set_hyper(hyper),
            DeviceModel::Cnn(m) => m.set_hyper(hyper),
        }
    }
}

impl DataParallel for DeviceModel {
    fn gradients(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
        share: Share,
    ) -> Result<Gradients> {
        match self {
            DeviceModel::Mlp(m) => DataParallel::gradients(m, x, labels, hyper, share),
            DeviceModel::Cnn(m) => DataParallel::gradients(m, x, labels, hyper, share),
        }
    }
    fn apply_gradients(&mut self, g: Gradients, hyper: &Hyper) -> Result<StepStats> {
        match self {
            DeviceModel::Mlp(m) => m.apply_gradients(g, hyper),
            DeviceModel::Cnn(m) => m.apply_gradients(g, hyper),
        }
    }
    fn dropout_rngs(&self) -> Vec<Pcg32> {
        match self {
            DeviceModel::Mlp(m) => m.dropout_rngs(),
            DeviceModel::Cnn(m) => m.dropout_rngs(),
        }
    }
    fn set_dropout_rngs(&mut self, rngs: &[Pcg32]) -> Result<()> {
        match self {
            DeviceModel::Mlp(m) => m.set_dropout_rngs(rngs),
            DeviceModel::Cnn(m) => m.set_dropout_rngs(rngs),
        }
    }
}

/// The blob of `model` (an MLP or a CNN) with its learning heads: architecture,
/// normalisation, training settings and exact parameters, in the format documented in this
/// module. `to_blob_with(model, BlobOptions::default())`.
pub fn to_blob<'a>(model: impl Into<ModelRef<'a>>) -> Result<Vec<u8>> {
    to_blob_with(model, BlobOptions::default())
}

/// The blob of `model` with `options`; an error if it should carry heads the model does not
/// have (an inference-only model exports only without them).
pub fn to_blob_with<'a>(model: impl Into<ModelRef<'a>>, options: BlobOptions) -> Result<Vec<u8>> {
    let mut b = v2::write(model.into(), options.heads)?;
    let sum = fnv1a(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    Ok(b)
}

/// Rebuild a model from a blob written by [`to_blob`] (version 2, or version 1 by an earlier
/// release), validating everything (see the module documentation). The model predicts exactly
/// like the exported one and, when the blob has its learning heads, trains on from it.
pub fn from_blob(bytes: &[u8]) -> Result<DeviceModel> {
    let mut r = Reader::new(bytes);
    if r.array::<4>("magic")? != BLOB_MAGIC {
        return Err(Error::format("not a nitrod-rs model blob (bad magic)"));
    }
    let version = r.u32("version")?;
    if version != 1 && version != BLOB_VERSION {
        return Err(Error::format(format!(
            "unsupported model blob version {version}; this library reads versions 1 and \
             {BLOB_VERSION} (a newer nitrod-rs wrote it?)"
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
    // From here on nothing reads into the checksum.
    let r = Reader::at(&bytes[..body_len], r.pos);
    match version {
        1 => v1::read(r, body_len).map(DeviceModel::Mlp),
        _ => v2::read(r, body_len),
    }
}
