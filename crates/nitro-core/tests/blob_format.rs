//! The device blob (`nitro_core::export`): MLPs and CNNs reload bit-exactly (the same integers,
//! logits and further training steps), every tensor is stored in its narrowest exact width,
//! a blob without learning heads loads as an inference-only model, version-1 blobs still load,
//! and corrupt or truncated blobs are errors, never panics.

use ndarray::Array2;
use nitro_core::export::{
    from_blob, tensor_width, to_blob, to_blob_with, BlobOptions, DeviceModel, BLOB_VERSION,
};
use nitro_core::io::{self, Model};
use nitro_core::layers::PoolKind;
use nitro_core::rng::Pcg32;
use nitro_core::train::{Evaluate, Trainable};
use nitro_core::{
    fit, Cnn, CnnConfig, Compat, Dataset, Error, Feature, Hyper, Mlp, MlpConfig, Normalization,
    Sets, TrainConfig,
};

const NO_HEADS: BlobOptions = BlobOptions { heads: false };

fn rows(n: usize, features: usize, seed: u64) -> (Array2<i8>, Vec<usize>) {
    let mut r = Pcg32::new(seed, 3);
    let x = Array2::from_shape_fn((n, features), |_| r.symmetric(127) as i8);
    let y = (0..n).map(|_| r.below(3) as usize).collect();
    (x, y)
}

fn hyper() -> Hyper {
    Hyper {
        lr_inv: 64,
        fwd_decay_inv: 5000,
        subnet_decay_inv: 3000,
        ..Hyper::default()
    }
}

/// A model trained a few steps (so that its weights are no longer the initial ones), with
/// normalisation statistics and training settings.
fn trained<M: Trainable>(mut m: M, features: usize, norm: impl FnOnce(&mut M)) -> M {
    let (x, y) = rows(32, features, 1);
    for _ in 0..4 {
        m.step(x.view(), &y, &hyper()).unwrap();
    }
    m.set_hyper(hyper());
    norm(&mut m);
    m
}

fn mlp(bias: bool, dropout_pct: u32) -> Mlp {
    let mut c = MlpConfig::new(20, &[16, 8], 3);
    c.bias = bias;
    c.dropout_pct = dropout_pct;
    c.seed = 5;
    trained(Mlp::new(c).unwrap(), 20, |m| {
        m.normalization = Some(Normalization {
            mean: vec![-7],
            mad: vec![200],
        })
    })
}

/// Every layer kind the CNN constructor has: conv blocks (padded and not, pooled heads of
/// either kind), max and avg pools, the dropout a rate adds, classifier blocks, biases.
fn cnn_config(bias: bool, dropout_pct: u32) -> CnnConfig {
    let conv = |filters, kernel, padding| Feature::Conv {
        filters,
        kernel,
        stride: 1,
        padding,
    };
    let mut c = CnnConfig::new(
        (2, 8, 8),
        &[
            conv(4, 3, 1),
            Feature::MaxPool(2),
            conv(6, 3, 0),
            Feature::AvgPool(2),
        ],
        &[10, 7],
        3,
    );
    c.bias = bias;
    c.dropout_pct = dropout_pct;
    c.decoder_dim = 40;
    c.head_pool = PoolKind::Avg;
    c.conv_amp_adjust = true;
    c.seed = 9;
    c
}

fn cnn(bias: bool, dropout_pct: u32) -> Cnn {
    trained(Cnn::new(cnn_config(bias, dropout_pct)).unwrap(), 128, |m| {
        m.normalization = Some(Normalization {
            mean: vec![3, -128],
            mad: vec![1, 255],
        });
        m.hyper = Some(Hyper {
            compat: Compat::Reference,
            ..hyper()
        });
    })
}

/// Architecture, statistics, settings and every parameter tensor of `a` and `b` are equal.
fn assert_same(a: &Model, b: &Model) {
    match (a, b) {
        (Model::Mlp(a), Model::Mlp(b)) => {
            assert_eq!(a.config, b.config);
            assert_eq!((&a.normalization, a.hyper), (&b.normalization, b.hyper));
        }
        (Model::Cnn(a), Model::Cnn(b)) => {
            assert_eq!(a.config, b.config);
            assert_eq!((&a.normalization, a.hyper), (&b.normalization, b.hyper));
            for (ca, cb) in a.convs().iter().zip(b.convs()) {
                assert_eq!(
                    (&ca.name, &ca.weight, &ca.bias, ca.padding),
                    (&cb.name, &cb.weight, &cb.bias, cb.padding)
                );
            }
        }
        _ => panic!("different kinds"),
    }
    let linears = |m: &Model| match m {
        Model::Mlp(m) => m
            .linears()
            .into_iter()
            .map(|l| (l.name.clone(), l.weight.clone(), l.bias.clone()))
            .collect::<Vec<_>>(),
        Model::Cnn(m) => m
            .linears()
            .into_iter()
            .map(|l| (l.name.clone(), l.weight.clone(), l.bias.clone()))
            .collect(),
    };
    assert_eq!(linears(a), linears(b));
}

fn reload(blob: &[u8]) -> Model {
    from_blob(blob).unwrap()
}

/// Logits equal; the reloaded model trains on exactly like `reference` (a model in the same
/// state, its dropout generators included).
fn assert_equivalent(reference: &Model, blob: &[u8], features: usize) {
    let back = reload(blob);
    assert_same(reference, &back);
    let (x, y) = rows(40, features, 2);
    assert_eq!(
        reference.logits(x.view()).unwrap(),
        back.logits(x.view()).unwrap()
    );
    assert_eq!(to_blob(&back).unwrap(), blob, "re-export is byte-identical");
    let (mut a, mut b) = (reference.clone(), back);
    for _ in 0..3 {
        let sa = a.step(x.view(), &y, &hyper()).unwrap();
        let sb = b.step(x.view(), &y, &hyper()).unwrap();
        assert_eq!(sa, sb);
    }
    assert_same(&a, &b);
}

#[test]
fn mlp_blobs_reload_bit_exactly() {
    for (bias, dropout) in [(false, 0), (true, 0), (true, 20)] {
        let m = mlp(bias, dropout);
        let blob = to_blob(&m).unwrap();
        assert_eq!(&blob[..8], b"NTRD\x02\0\0\0");
        // Like a model file, a blob starts the dropout generators afresh: the reference for
        // further training is the same model through its safetensors file.
        let reference = Model::from_bytes(&io::to_bytes(&m).unwrap()).unwrap();
        assert_equivalent(&reference, &blob, 20);
        if dropout == 0 {
            assert_equivalent(&Model::Mlp(m), &blob, 20);
        }
    }
}

#[test]
fn cnn_blobs_reload_bit_exactly() {
    for (bias, dropout) in [(false, 0), (true, 0), (true, 20)] {
        let m = cnn(bias, dropout);
        let blob = to_blob(&m).unwrap();
        let reference = Model::from_bytes(&io::cnn_to_bytes(&m).unwrap()).unwrap();
        assert_equivalent(&reference, &blob, 128);
        if dropout == 0 {
            assert_equivalent(&Model::Cnn(m), &blob, 128);
        }
    }
}

/// The CNN preset the README's sizes are quoted for, freshly initialised: its blob reloads to
/// the same model (a 28×28 input, VGG-style padded 3×3 convs, max pools).
#[test]
fn small_cnn_preset_blob_reloads_bit_exactly() {
    let spec = nitro_core::CnnPreset::SmallCnn
        .spec("fashion-mnist")
        .unwrap();
    let m = Model::Cnn(Cnn::new(spec.config).unwrap());
    let blob = to_blob(&m).unwrap();
    assert_same(&m, &reload(&blob));
    let (x, _) = rows(4, 784, 4);
    assert_eq!(
        m.logits(x.view()).unwrap(),
        reload(&blob).logits(x.view()).unwrap()
    );
}

#[test]
fn a_blob_without_heads_predicts_the_same_and_refuses_training() {
    let models: [(Model, (usize, usize, usize)); 2] = [
        (Model::Mlp(mlp(true, 0)), (1, 4, 5)),
        (Model::Cnn(cnn(true, 10)), (2, 8, 8)),
    ];
    for (m, chw) in models {
        let features = chw.0 * chw.1 * chw.2;
        let with = to_blob(&m).unwrap();
        let without = to_blob_with(&m, NO_HEADS).unwrap();
        // The heads are `classes × width` per block: what leaving them out saves.
        let heads: usize = match &m {
            Model::Mlp(m) => m.blocks.iter().map(|b| b.head.weight.len()).sum(),
            Model::Cnn(m) => m
                .linears()
                .iter()
                .filter(|l| l.name.starts_with("linear_pred"))
                .map(|l| l.weight.len())
                .sum(),
        };
        assert!(
            without.len() + heads <= with.len(),
            "{} vs {}",
            without.len(),
            with.len()
        );
        let device = from_blob(&without).unwrap();
        assert!(!device.has_heads());
        assert!(from_blob(&with).unwrap().has_heads());
        let mut back: Model = device;
        let (x, y) = rows(24, features, 6);
        assert_eq!(m.logits(x.view()).unwrap(), back.logits(x.view()).unwrap());
        // Training, direct or through `fit`, is refused with an error that says why and what
        // to do, and changes no parameter.
        let before = to_blob_with(&back, NO_HEADS).unwrap();
        let err = back.step(x.view(), &y, &hyper()).unwrap_err();
        assert_eq!(to_blob_with(&back, NO_HEADS).unwrap(), before);
        assert_eq!(before, without, "re-export without heads is byte-identical");
        let msg = err.to_string();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(
            msg.contains("without its learning heads") && msg.contains("exported with heads"),
            "{msg}"
        );
        let data = Dataset::new(x.clone(), y.clone(), chw).unwrap();
        let cfg = TrainConfig {
            epochs: 1,
            batch_size: 8,
            ..TrainConfig::default()
        };
        let fitted = fit(
            &mut back,
            &Sets::new(&data, None),
            &cfg,
            &mut |_| nitro_core::train::Control::Continue,
            &mut |_| Ok(nitro_core::train::Control::Continue),
        );
        assert!(fitted.unwrap_err().to_string().contains("learning heads"));
        assert_eq!(m.logits(x.view()).unwrap(), back.logits(x.view()).unwrap());
        // Neither a model file nor a blob with heads can be written from it.
        assert!(back
            .to_bytes()
            .unwrap_err()
            .to_string()
            .contains("learning heads"));
        assert!(to_blob(&back)
            .unwrap_err()
            .to_string()
            .contains("learning heads"));
    }
}

#[test]
fn each_tensor_takes_the_narrowest_exact_width() {
    assert_eq!(tensor_width([]), 1);
    assert_eq!(tensor_width([0, 127, -128]), 1);
    assert_eq!(tensor_width([128]), 2);
    assert_eq!(tensor_width([-129, 5]), 2);
    assert_eq!(tensor_width([i16::MAX.into(), i16::MIN.into()]), 2);
    assert_eq!(tensor_width([32_768]), 4);
    assert_eq!(tensor_width([-32_769]), 4);
    assert_eq!(tensor_width([i32::MAX, i32::MIN]), 4);
    // A model whose every tensor is 0 takes one byte per value; putting one value of a
    // layer of n weights out of i8 (i16) range costs n (3n) bytes more — and reloads exactly.
    let mut c = MlpConfig::new(9, &[5], 3);
    c.bias = true;
    let mut m = Mlp::new(c).unwrap();
    let names: Vec<String> = m.linears().iter().map(|l| l.name.clone()).collect();
    for n in &names {
        let l = m.linear_mut(n).unwrap();
        l.weight.fill(0);
        l.bias.as_mut().unwrap().fill(0);
    }
    let base = to_blob(&m).unwrap().len();
    let layer = names[0].clone();
    let n = m.linear_mut(&layer).unwrap().weight.len();
    for (v, extra) in [
        (127, 0),
        (-128, 0),
        (128, n),
        (-129, n),
        (32_767, n),
        (-32_768, n),
        (32_768, 3 * n),
        (-32_769, 3 * n),
        (i32::MAX, 3 * n),
        (i32::MIN, 3 * n),
    ] {
        let mut w = m.clone();
        w.linear_mut(&layer).unwrap().weight[[2, 4]] = v;
        let blob = to_blob(&w).unwrap();
        assert_eq!(blob.len(), base + extra, "value {v}");
        assert_same(&Model::Mlp(w), &reload(&blob));
    }
    // A bias is its own tensor: one large bias value widens only the bias.
    let mut w = m.clone();
    w.linear_mut(&layer).unwrap().bias.as_mut().unwrap()[0] = 1000;
    assert_eq!(to_blob(&w).unwrap().len(), base + 5);
}

fn fixture(name: &str) -> Vec<u8> {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
    std::fs::read(format!("{p}{name}")).unwrap()
}

/// Blobs written by the version-1 writer (`tests/data/README.md`) load to exactly the model
/// saved beside them, predict and train on identically, and re-export as version 2.
#[test]
fn version_1_blobs_still_load() {
    for name in ["blob_v1_mlp_bias", "blob_v1_mlp_plain"] {
        let v1 = fixture(&format!("{name}.bin"));
        assert_eq!(&v1[..8], b"NTRD\x01\0\0\0");
        let reference = Model::from_bytes(&fixture(&format!("{name}.safetensors"))).unwrap();
        let back = reload(&v1);
        assert_same(&reference, &back);
        assert!(back_has_heads(&back));
        let v2 = to_blob(&back).unwrap();
        assert_eq!(
            u32::from_le_bytes(v2[4..8].try_into().unwrap()),
            BLOB_VERSION
        );
        assert!(v2.len() < v1.len(), "{} < {}", v2.len(), v1.len());
        // The v1 and v2 blobs of the model behave alike: same logits, same further training.
        assert_equivalent(&reload(&v1), &v2, 12);
        assert_equivalent(&reference, &v2, 12);
    }
}

fn back_has_heads(m: &Model) -> bool {
    match m {
        Model::Mlp(m) => m.has_heads(),
        Model::Cnn(m) => m.has_heads(),
    }
}

fn with_checksum(mut body: Vec<u8>) -> Vec<u8> {
    let sum = body.iter().fold(0x811c_9dc5u32, |h, &x| {
        (h ^ u32::from(x)).wrapping_mul(0x0100_0193)
    });
    body.extend_from_slice(&sum.to_le_bytes());
    body
}

#[test]
fn corrupt_blobs_are_errors_not_panics() {
    let blobs = [
        to_blob(&mlp(true, 0)).unwrap(),
        to_blob_with(&mlp(false, 0), NO_HEADS).unwrap(),
        to_blob(&cnn(true, 10)).unwrap(),
        to_blob_with(&cnn(false, 0), NO_HEADS).unwrap(),
        fixture("blob_v1_mlp_bias.bin"),
    ];
    for blob in &blobs {
        from_blob(blob).unwrap();
        for n in 0..blob.len() {
            assert!(from_blob(&blob[..n]).is_err(), "truncated to {n}");
        }
        // Any single-byte change is caught (FNV-1a), also when it keeps the layout valid.
        for i in 0..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 0x5a;
            assert!(from_blob(&b).is_err(), "byte {i} flipped");
        }
        let body = &blob[..blob.len() - 4];
        // Extra or missing bytes before a correct checksum.
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(matches!(
            from_blob(&with_checksum(longer)),
            Err(Error::Format(_))
        ));
        let shorter = body[..body.len() - 1].to_vec();
        assert!(matches!(
            from_blob(&with_checksum(shorter)),
            Err(Error::Format(_))
        ));
        // A consistent header that declares a huge first field after the flags.
        let mut huge = body.to_vec();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(from_blob(&with_checksum(huge)).is_err());
        // A later version is refused by name.
        let mut later = body.to_vec();
        later[4..8].copy_from_slice(&3u32.to_le_bytes());
        let msg = from_blob(&with_checksum(later)).unwrap_err().to_string();
        assert!(msg.contains("version 3"), "{msg}");
    }
    // Version 2: an unknown kind, flag or width byte.
    let body = blobs[0][..blobs[0].len() - 4].to_vec();
    let mut kind = body.clone();
    kind[12] = 2;
    assert!(from_blob(&with_checksum(kind))
        .unwrap_err()
        .to_string()
        .contains("kind"));
    let mut flags = body.clone();
    flags[8] |= 0x10;
    assert!(from_blob(&with_checksum(flags))
        .unwrap_err()
        .to_string()
        .contains("flags"));
    // The last tensor is the output layer's bias: its width byte, then 3 values.
    let out_bias = mlp(true, 0).out.bias.unwrap();
    let w = usize::from(tensor_width(out_bias.iter().copied()));
    let mut width = body.clone();
    let at = width.len() - 1 - 3 * w;
    assert_eq!(usize::from(width[at]), w);
    width[at] = 3;
    assert!(from_blob(&with_checksum(width))
        .unwrap_err()
        .to_string()
        .contains("width"));
    // Random garbage of many lengths, with and without the magic.
    let mut r = Pcg32::new(9, 9);
    for len in 0..400 {
        let mut g: Vec<u8> = (0..len).map(|_| r.next_u32() as u8).collect();
        assert!(from_blob(&g).is_err());
        if len >= 8 {
            g[..8].copy_from_slice(b"NTRD\x02\0\0\0");
            assert!(from_blob(&with_checksum(g)).is_err());
        }
    }
}

#[test]
fn the_loaded_kind_is_checked() {
    let c = from_blob(&to_blob(&cnn(false, 0)).unwrap()).unwrap();
    assert!(matches!(c, DeviceModel::Cnn(_)));
    let msg = c.into_mlp().unwrap_err().to_string();
    assert!(msg.contains("holds a CNN"), "{msg}");
    let m = from_blob(&to_blob(&mlp(false, 0)).unwrap()).unwrap();
    assert!(m.clone().into_mlp().is_ok());
    assert!(m
        .into_cnn()
        .unwrap_err()
        .to_string()
        .contains("holds an MLP"));
}

/// A value range for one tensor: within `i8`, within `i16`, or the whole of `i32`.
fn range(kind: u8) -> (i64, i64) {
    match kind % 3 {
        0 => (i8::MIN.into(), i8::MAX.into()),
        1 => (i16::MIN.into(), i16::MAX.into()),
        _ => (i32::MIN.into(), i32::MAX.into()),
    }
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any parameters, each tensor drawn from its own width's range, reload exactly, and the
    /// blob's length is the header plus a width byte and `width × values` per tensor.
    #[test]
    fn any_parameters_reload_exactly(
        kinds in proptest::collection::vec(any::<u8>(), 6),
        seed in any::<u64>(),
        heads in any::<bool>(),
    ) {
        let mut c = MlpConfig::new(7, &[5, 4], 3);
        c.bias = true;
        let mut m = Mlp::new(c).unwrap();
        let names: Vec<String> = m.linears().iter().map(|l| l.name.clone()).collect();
        let mut r = Pcg32::new(seed, 1);
        let mut draw = |(lo, hi): (i64, i64)| {
            let span = (hi - lo + 1) as u64;
            let v = (u64::from(r.next_u32()) << 32 | u64::from(r.next_u32())) % span;
            (lo + v as i64) as i32
        };
        for (i, n) in names.iter().enumerate() {
            let l = m.linear_mut(n).unwrap();
            let (w, b) = (range(kinds[i % 6]), range(kinds[(i + 3) % 6]));
            l.weight.mapv_inplace(|_| draw(w));
            l.bias.as_mut().unwrap().mapv_inplace(|_| draw(b));
        }
        let options = BlobOptions { heads };
        let blob = to_blob_with(&m, options).unwrap();
        let back: Model = from_blob(&blob).unwrap();
        let kept: Vec<_> = m
            .linears()
            .into_iter()
            .filter(|l| heads || !l.name.starts_with("linear_pred"))
            .collect();
        let tensors: usize = kept
            .iter()
            .flat_map(|l| [l.weight.iter().copied().collect::<Vec<_>>(), l.bias.clone().unwrap().to_vec()])
            .map(|v| 1 + v.len() * usize::from(tensor_width(v.iter().copied())))
            .sum();
        let Model::Mlp(b) = &back else { panic!("kind") };
        for l in &kept {
            let lb = b.linears().into_iter().find(|x| x.name == l.name).unwrap();
            prop_assert_eq!(&lb.weight, &l.weight);
            prop_assert_eq!(&lb.bias, &l.bias);
        }
        prop_assert_eq!(b.has_heads(), heads);
        prop_assert_eq!(to_blob_with(&back, options).unwrap(), blob.clone());
        let (x, _) = rows(6, 7, seed);
        prop_assert_eq!(m.logits(x.view()).unwrap(), back.logits(x.view()).unwrap());
        // Every byte after the header is a tensor's: the blob ends with them and the checksum.
        let fixed = blob.len() - 4 - tensors;
        prop_assert_eq!(fixed, header_len(&m, heads));
    }
}

/// The bytes before the tensors of `m`'s blob: the same for any parameter values, so read off
/// the blob of an all-zero copy (one byte per value).
fn header_len(m: &Mlp, heads: bool) -> usize {
    let mut z = m.clone();
    let names: Vec<String> = z.linears().iter().map(|l| l.name.clone()).collect();
    let mut values = 0;
    for n in &names {
        let l = z.linear_mut(n).unwrap();
        l.weight.fill(0);
        if let Some(b) = l.bias.as_mut() {
            b.fill(0);
        }
        if heads || !n.starts_with("linear_pred") {
            values += 1 + l.weight.len() + l.bias.as_ref().map_or(0, |b| 1 + b.len());
        }
    }
    to_blob_with(&z, BlobOptions { heads }).unwrap().len() - 4 - values
}
