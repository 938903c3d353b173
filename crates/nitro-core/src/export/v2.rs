//! Layout version 2 (written by [`super::to_blob_with`]): MLPs and CNNs, every tensor in the
//! narrowest exact width, the learning heads optional. The table is in the module
//! documentation of [`super`].

use super::wire::{put_name, put_tensor, put_u32, Reader};
use super::{DeviceModel, ModelRef, MAX_CHANNELS, MAX_DEPTH};
use crate::block::absent_head;
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::layers::{ActivationKind, Linear, PoolKind};
use crate::model::{settings_of, Cnn, CnnConfig, ConvParams, Feature, Mlp, MlpConfig, Settings};
use crate::names;
use crate::optim::{Compat, Hyper};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ndarray::{Array1, Array2, Array4};

/// Flag bit: every layer has a bias.
pub(super) const FLAG_BIAS: u32 = 1;
/// Flag bit: the normalisation section is present.
pub(super) const FLAG_NORM: u32 = 2;
/// Flag bit: the training-settings section is present.
pub(super) const FLAG_HYPER: u32 = 4;
/// Flag bit (version 2): the learning heads' tensors are present.
pub(super) const FLAG_HEADS: u32 = 8;

const KIND_MLP: u8 = 0;
const KIND_CNN: u8 = 1;

const FEATURE_CONV: u8 = 0;
const FEATURE_MAXPOOL: u8 = 1;
const FEATURE_AVGPOOL: u8 = 2;
const FEATURE_DROPOUT: u8 = 3;

fn put_settings(b: &mut Vec<u8>, s: &Settings) -> Result<()> {
    put_u32(b, s.classes, "classes")?;
    put_name(b, s.activation.name())?;
    b.extend_from_slice(&u32::from(s.activation.slope()).to_le_bytes());
    b.extend_from_slice(&s.dropout_pct.to_le_bytes());
    put_name(b, s.init.name())?;
    b.extend_from_slice(&s.seed.to_le_bytes());
    Ok(())
}

fn put_widths(b: &mut Vec<u8>, widths: &[usize], what: &str) -> Result<()> {
    put_u32(b, widths.len(), "depth")?;
    widths.iter().try_for_each(|&w| put_u32(b, w, what))
}

fn put_cnn_architecture(b: &mut Vec<u8>, c: &CnnConfig) -> Result<()> {
    let (ch, h, w) = c.input;
    for (v, what) in [
        (ch, "input channels"),
        (h, "input height"),
        (w, "input width"),
    ] {
        put_u32(b, v, what)?;
    }
    put_u32(b, c.features.len(), "feature entries")?;
    for f in &c.features {
        match *f {
            Feature::Conv {
                filters,
                kernel,
                stride,
                padding,
            } => {
                b.push(FEATURE_CONV);
                for (v, what) in [
                    (filters, "filters"),
                    (kernel, "kernel"),
                    (stride, "stride"),
                    (padding, "padding"),
                ] {
                    put_u32(b, v, what)?;
                }
            }
            Feature::MaxPool(k) => {
                b.push(FEATURE_MAXPOOL);
                put_u32(b, k, "pool size")?;
            }
            Feature::AvgPool(k) => {
                b.push(FEATURE_AVGPOOL);
                put_u32(b, k, "pool size")?;
            }
            Feature::Dropout(r) => {
                b.push(FEATURE_DROPOUT);
                b.extend_from_slice(&r.to_le_bytes());
            }
        }
    }
    put_widths(b, &c.classifier, "classifier width")?;
    put_u32(b, c.decoder_dim, "decoder_dim")?;
    put_name(b, c.head_pool.name())?;
    b.push(u8::from(c.conv_amp_adjust));
    Ok(())
}

fn put_linear(b: &mut Vec<u8>, l: &Linear, heads: bool) {
    if !heads && names::is_linear_pred(&l.name) {
        return;
    }
    put_tensor(b, l.weight.iter().copied());
    if let Some(bias) = &l.bias {
        put_tensor(b, bias.iter().copied());
    }
}

/// The version-2 blob of `model`, with its learning heads when `heads` is set.
pub(super) fn write(model: ModelRef<'_>, heads: bool) -> Result<Vec<u8>> {
    let (settings, normalization, hyper, params) = match model {
        ModelRef::Mlp(m) => (
            settings_of!(&m.config),
            &m.normalization,
            &m.hyper,
            m.num_parameters(),
        ),
        ModelRef::Cnn(m) => (
            settings_of!(&m.config),
            &m.normalization,
            &m.hyper,
            m.num_parameters(),
        ),
    };
    if heads {
        match model {
            ModelRef::Mlp(m) => m.require_heads()?,
            ModelRef::Cnn(m) => m.require_heads()?,
        }
    }
    let mut flags = FLAG_HEADS * u32::from(heads);
    flags |= FLAG_BIAS * u32::from(settings.bias);
    flags |= FLAG_NORM * u32::from(normalization.is_some());
    flags |= FLAG_HYPER * u32::from(hyper.is_some());
    let mut b = Vec::with_capacity(128 + params);
    b.extend_from_slice(&super::BLOB_MAGIC);
    b.extend_from_slice(&super::BLOB_VERSION.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.push(match model {
        ModelRef::Mlp(_) => KIND_MLP,
        ModelRef::Cnn(_) => KIND_CNN,
    });
    put_settings(&mut b, &settings)?;
    match model {
        ModelRef::Mlp(m) => {
            put_u32(&mut b, m.config.inputs, "inputs")?;
            put_widths(&mut b, &m.config.hidden, "hidden width")?;
        }
        ModelRef::Cnn(m) => put_cnn_architecture(&mut b, &m.config)?,
    }
    if let Some(n) = normalization {
        n.validate()?;
        put_u32(&mut b, n.channels(), "channels")?;
        // validate() bounds mean to [-128, 127] and MAD to [1, 255]: both fit i32.
        put_tensor(&mut b, n.mean.iter().map(|&v| v as i32));
        put_tensor(&mut b, n.mad.iter().map(|&v| v as i32));
    }
    if let Some(h) = hyper {
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
    match model {
        ModelRef::Mlp(m) => m
            .linears()
            .into_iter()
            .for_each(|l| put_linear(&mut b, l, heads)),
        ModelRef::Cnn(m) => {
            for block in m.conv_blocks() {
                put_tensor(&mut b, block.conv.weight.iter().copied());
                if let Some(bias) = &block.conv.bias {
                    put_tensor(&mut b, bias.iter().copied());
                }
                put_linear(&mut b, &block.head, heads);
            }
            let tail = m.blocks.iter().flat_map(|k| [&k.fwd, &k.head]);
            tail.chain([&m.out])
                .for_each(|l| put_linear(&mut b, l, heads));
        }
    }
    Ok(b)
}

/// The normalisation section: channels, then mean and MAD read by `values` (the version's
/// tensor encoding).
pub(super) fn read_normalization(
    r: &mut Reader<'_>,
    values: impl Fn(&mut Reader<'_>, usize, &str) -> Result<Vec<i32>>,
) -> Result<Normalization> {
    let c = r.u32("channels")?;
    if c == 0 || c > MAX_CHANNELS {
        return Err(Error::format(format!(
            "model blob: {c} normalisation channels (1..={MAX_CHANNELS})"
        )));
    }
    let c = c as usize;
    let mean = values(r, c, "normalisation mean")?;
    let mad = values(r, c, "normalisation MAD")?;
    let n = Normalization {
        mean: mean.into_iter().map(i64::from).collect(),
        mad: mad.into_iter().map(i64::from).collect(),
    };
    n.validate()?;
    Ok(n)
}

/// The training-settings section.
pub(super) fn read_hyper(r: &mut Reader<'_>) -> Result<Hyper> {
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
    Ok(h)
}

fn read_settings(r: &mut Reader<'_>, flags: u32) -> Result<Settings> {
    let classes = r.usize("classes")?;
    let act_name = r.name("activation")?;
    let slope = u8::try_from(r.u32("slope")?)
        .map_err(|_| Error::format("model blob: activation slope out of range"))?;
    Ok(Settings {
        classes,
        activation: ActivationKind::from_name(act_name, slope)?,
        dropout_pct: r.u32("dropout_pct")?,
        init: Init::from_name(r.name("init")?)?,
        seed: r.u64("seed")?,
        bias: flags & FLAG_BIAS != 0,
    })
}

/// A count of blocks or entries, at most [`MAX_DEPTH`].
fn read_depth(r: &mut Reader<'_>, what: &str) -> Result<usize> {
    let n = r.u32(what)?;
    if n > MAX_DEPTH {
        return Err(Error::format(format!(
            "model blob declares {n} {what} (at most {MAX_DEPTH})"
        )));
    }
    Ok(n as usize)
}

fn read_widths(r: &mut Reader<'_>, what: &str) -> Result<Vec<usize>> {
    let n = read_depth(r, "hidden blocks")?;
    (0..n).map(|_| r.usize(what)).collect()
}

fn read_feature(r: &mut Reader<'_>) -> Result<Feature> {
    Ok(match r.u8("feature kind")? {
        FEATURE_CONV => Feature::Conv {
            filters: r.usize("filters")?,
            kernel: r.usize("kernel")?,
            stride: r.usize("stride")?,
            padding: r.usize("padding")?,
        },
        FEATURE_MAXPOOL => Feature::MaxPool(r.usize("pool size")?),
        FEATURE_AVGPOOL => Feature::AvgPool(r.usize("pool size")?),
        FEATURE_DROPOUT => Feature::Dropout(r.u32("dropout rate")?),
        o => {
            return Err(Error::format(format!(
                "model blob: unknown feature kind {o}"
            )))
        }
    })
}

fn read_cnn_config(r: &mut Reader<'_>, s: Settings) -> Result<CnnConfig> {
    let input = (
        r.usize("input channels")?,
        r.usize("input height")?,
        r.usize("input width")?,
    );
    let n = read_depth(r, "feature entries")?;
    let features = (0..n)
        .map(|_| read_feature(r))
        .collect::<Result<Vec<_>>>()?;
    let classifier = read_widths(r, "classifier width")?;
    let decoder_dim = r.usize("decoder_dim")?;
    let head_pool = PoolKind::from_name(r.name("head_pool")?)?;
    let conv_amp_adjust = r.bool("conv_amp_adjust")?;
    let mut c = CnnConfig::new(input, &features, &classifier, s.classes);
    c.activation = s.activation;
    c.dropout_pct = s.dropout_pct;
    c.bias = s.bias;
    c.init = s.init;
    c.seed = s.seed;
    c.decoder_dim = decoder_dim;
    c.head_pool = head_pool;
    c.conv_amp_adjust = conv_amp_adjust;
    c.validate()?;
    Ok(c)
}

fn read_linear(
    r: &mut Reader<'_>,
    name: String,
    (o, i): (usize, usize),
    s: &Settings,
    heads: bool,
) -> Result<Linear> {
    if !heads && names::is_linear_pred(&name) {
        return absent_head(name, i);
    }
    let n = o
        .checked_mul(i)
        .ok_or_else(|| Error::format(format!("model blob: {name} too large")))?;
    let w = Array2::from_shape_vec((o, i), r.tensor(n, &name)?)
        .map_err(|e| Error::format(format!("{name}: {e}")))?;
    let b = match s.bias {
        true => Some(Array1::from(r.tensor(o, &names::bias(&name))?)),
        false => None,
    };
    Linear::new(name, w, b)
}

fn read_conv(
    r: &mut Reader<'_>,
    name: &str,
    shape: (usize, usize, usize, usize),
    s: &Settings,
) -> Result<ConvParams> {
    let (f, c, kh, kw) = shape;
    let n = [c, kh, kw]
        .iter()
        .try_fold(f, |t, &x| t.checked_mul(x))
        .ok_or_else(|| Error::format(format!("model blob: {name} too large")))?;
    let w = Array4::from_shape_vec(shape, r.tensor(n, name)?)
        .map_err(|e| Error::format(format!("{name}: {e}")))?;
    let b = match s.bias {
        true => Some(Array1::from(r.tensor(f, &names::bias(name))?)),
        false => None,
    };
    Ok((w, b))
}

/// The model of a version-2 blob whose checksum has been checked; `r` stands after the version
/// and `body_len` is the length before the checksum.
pub(super) fn read(mut r: Reader<'_>, body_len: usize) -> Result<DeviceModel> {
    let flags = r.u32("flags")?;
    if flags & !(FLAG_BIAS | FLAG_NORM | FLAG_HYPER | FLAG_HEADS) != 0 {
        return Err(Error::format(format!(
            "model blob has unknown flags {flags:#x}"
        )));
    }
    let heads = flags & FLAG_HEADS != 0;
    let kind = r.u8("model kind")?;
    if kind != KIND_MLP && kind != KIND_CNN {
        return Err(Error::format(format!(
            "model blob: unknown model kind {kind} (0 MLP, 1 CNN)"
        )));
    }
    let s = read_settings(&mut r, flags)?;
    enum Arch {
        Mlp(MlpConfig),
        Cnn(CnnConfig),
    }
    let arch = if kind == KIND_MLP {
        let inputs = r.usize("inputs")?;
        let hidden = read_widths(&mut r, "hidden width")?;
        let mut c = MlpConfig::new(inputs, &hidden, s.classes);
        c.activation = s.activation;
        c.dropout_pct = s.dropout_pct;
        c.bias = s.bias;
        c.init = s.init;
        c.seed = s.seed;
        c.validate()?;
        Arch::Mlp(c)
    } else {
        Arch::Cnn(read_cnn_config(&mut r, s)?)
    };
    let normalization = match flags & FLAG_NORM != 0 {
        true => Some(read_normalization(&mut r, |r, c, what| r.tensor(c, what))?),
        false => None,
    };
    let hyper = match flags & FLAG_HYPER != 0 {
        true => Some(read_hyper(&mut r)?),
        false => None,
    };
    // The fewest bytes the architecture's tensors can take, before any is allocated: a hostile
    // header cannot make the reader allocate more than four times what the blob holds.
    let skip = |name: &str| !heads && names::is_linear_pred(name);
    let least = match &arch {
        Arch::Mlp(c) => c
            .linear_shapes()
            .iter()
            .filter(|(name, _)| !skip(name))
            .try_fold(0usize, |t, (_, (o, i))| {
                let bias = if c.bias { o.checked_add(1)? } else { 0 };
                t.checked_add(o.checked_mul(*i)?.checked_add(1)?)?
                    .checked_add(bias)
            }),
        Arch::Cnn(c) => c
            .tensor_shapes()?
            .iter()
            .filter(|(name, _)| !skip(name))
            .try_fold(0usize, |t, (_, shape)| {
                let n = shape.iter().try_fold(1usize, |p, &x| p.checked_mul(x))?;
                t.checked_add(n.checked_add(1)?)
            }),
    };
    let least = least
        .and_then(|t| t.checked_add(r.pos))
        .ok_or_else(|| Error::format("model blob: architecture too large"))?;
    if least > body_len {
        return Err(Error::format(format!(
            "model blob has {body_len} bytes before the checksum, its architecture needs at \
             least {least}"
        )));
    }
    let mut model = match arch {
        Arch::Mlp(c) => DeviceModel::Mlp(Mlp::load_with(c, |name, shape| {
            read_linear(&mut r, name, shape, &s, heads)
        })?),
        Arch::Cnn(c) => {
            let r = core::cell::RefCell::new(&mut r);
            DeviceModel::Cnn(Cnn::load_with(
                c,
                |name, shape| read_conv(&mut r.borrow_mut(), &name, shape, &s),
                |name, shape| read_linear(&mut r.borrow_mut(), name, shape, &s, heads),
            )?)
        }
    };
    if r.pos != body_len {
        return Err(Error::format(format!(
            "model blob has {} bytes after its last tensor (before the checksum)",
            body_len - r.pos
        )));
    }
    match &mut model {
        DeviceModel::Mlp(m) => (m.normalization, m.hyper) = (normalization, hyper),
        DeviceModel::Cnn(m) => (m.normalization, m.hyper) = (normalization, hyper),
    }
    Ok(model)
}
