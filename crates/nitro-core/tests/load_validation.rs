//! Validation at the door (algorithm.md §8): a model file, checkpoint or blob whose settings a
//! training run would refuse, or that holds tensors its architecture does not have, is refused when
//! it is loaded — except the checkpoint's own `checkpoint.order`, which a plain model load accepts.

mod common;

use common::{edit_metadata, with_tensor};
use ndarray::Array2;
use nitro_core::export::{from_blob, tensor_width, to_blob};
use nitro_core::io::{self, Checkpoint, Model};
use nitro_core::rng::Pcg32;
use nitro_core::train::Control;
use nitro_core::{fit, Cnn, CnnConfig, Dataset, Error, Feature, Hyper, Mlp, MlpConfig, Sets};
use serde_json::json;

fn mlp(bias: bool) -> Mlp {
    let mut c = MlpConfig::new(12, &[6], 3);
    c.bias = bias;
    let mut m = Mlp::new(c).unwrap();
    m.hyper = Some(Hyper::default());
    m
}

fn cnn(bias: bool) -> Cnn {
    let mut c = CnnConfig::new(
        (1, 6, 6),
        &[Feature::conv3(2), Feature::MaxPool(2)],
        &[4],
        3,
    );
    c.bias = bias;
    let mut m = Cnn::new(c).unwrap();
    m.hyper = Some(Hyper::default());
    m
}

fn format_error(r: Result<Model, Error>, want: &str) {
    match r {
        Err(Error::Format(m)) => assert!(m.contains(want), "{m:?} should name {want:?}"),
        Err(e) => panic!("expected a format error naming {want:?}, got {e}"),
        Ok(_) => panic!("accepted; expected a format error naming {want:?}"),
    }
}

/// Settings `Hyper::sgds` refuses: `lr_inv = 0`, negative values, `lr_inv·amp` beyond `i64`.
fn bad_hypers() -> Vec<(&'static str, i64)> {
    vec![
        ("lr_inv", 0),
        ("lr_inv", -512),
        ("lr_amp_factor", 0),
        ("lr_amp_factor", -1),
        ("fwd_decay_inv", -1),
        ("subnet_decay_inv", -7),
        ("lr_amp_factor", i64::MAX / 2),
    ]
}

#[test]
fn invalid_hyper_parameters_are_refused_at_load() {
    let files = [
        io::to_bytes(&mlp(false)).unwrap(),
        io::cnn_to_bytes(&cnn(false)).unwrap(),
    ];
    for good in &files {
        Model::from_bytes(good).unwrap();
        for (key, value) in bad_hypers() {
            let bad = edit_metadata(good, "hyper", |h| h[key] = json!(value));
            format_error(Model::from_bytes(&bad), "hyper");
        }
    }
}

#[test]
fn tensors_the_architecture_lacks_are_refused() {
    for (good, layer) in [
        (io::to_bytes(&mlp(false)).unwrap(), "linear_encoder_00"),
        (io::cnn_to_bytes(&cnn(false)).unwrap(), "conv_encoder_00"),
    ] {
        // A bias in a file without bias.
        let bias = with_tensor(&good, &format!("{layer}.bias"), 6);
        format_error(Model::from_bytes(&bias), &format!("{layer}.bias"));
        // A tensor no layer has.
        format_error(
            Model::from_bytes(&with_tensor(&good, "linear_99", 3)),
            "linear_99",
        );
        // The checkpoint's row order is not an extra tensor.
        Model::from_bytes(&with_tensor(&good, "checkpoint.order", 5)).unwrap();
    }
    // With bias, a second copy under another name is still an extra.
    let good = io::to_bytes(&mlp(true)).unwrap();
    Model::from_bytes(&good).unwrap();
    format_error(
        Model::from_bytes(&with_tensor(&good, "linear_pred_00.bias.bias", 3)),
        "linear_pred_00.bias.bias",
    );
}

#[test]
fn a_checkpoint_loads_as_a_model_and_checks_its_settings() {
    let mut r = Pcg32::new(1, 1);
    let x = Array2::from_shape_fn((32, 12), |_| r.symmetric(127) as i8);
    let y = (0..32).map(|i| i % 3).collect();
    let data = Dataset::new(x, y, (1, 3, 4)).unwrap();
    let mut m = mlp(true);
    let mut ckpt = None;
    let cfg = nitro_core::TrainConfig {
        batch_size: 16,
        ..Default::default()
    };
    fit(
        &mut m,
        &Sets::new(&data, None),
        &cfg,
        &mut |_| Control::Continue,
        &mut |end| {
            ckpt = Some(Checkpoint::to_bytes(end.model, end.state)?);
            Ok(Control::Continue)
        },
    )
    .unwrap();
    let ckpt = ckpt.unwrap();
    Model::from_bytes(&ckpt).unwrap();
    Checkpoint::from_bytes(&ckpt).unwrap();
    let bad = edit_metadata(&ckpt, "hyper", |h| h["lr_inv"] = json!(0));
    format_error(Model::from_bytes(&bad), "hyper");
    assert!(Checkpoint::from_bytes(&bad).is_err());
    // The run state's settings are checked as well.
    let bad = edit_metadata(&ckpt, "checkpoint", |s| {
        s["hyper"]["lr_amp_factor"] = json!(-3)
    });
    assert!(Checkpoint::from_bytes(&bad).is_err());
    format_error(Model::from_bytes(&with_tensor(&ckpt, "junk", 2)), "junk");
}

/// The blob: the same settings refused (its checksum recomputed, so that the fields are read).
#[test]
fn invalid_blob_hyper_parameters_are_refused() {
    let blob = to_blob(&mlp(false)).unwrap();
    from_blob(&blob).unwrap();
    // The hyper section is the 33 bytes before the tensors: 4 × i64 and the compat byte. Each
    // tensor (no bias here) is a width byte and its values in that width.
    let m = mlp(false);
    let tensors: usize = m
        .linears()
        .iter()
        .map(|l| 1 + l.weight.len() * usize::from(tensor_width(l.weight.iter().copied())))
        .sum();
    let at = blob.len() - 4 - tensors - 33;
    for (i, (_, value)) in bad_hypers().into_iter().enumerate() {
        let field = match i {
            0 | 1 => 0,
            2..=3 => 1,
            4 => 2,
            5 => 3,
            _ => 1,
        };
        let mut b = blob[..blob.len() - 4].to_vec();
        b[at + 8 * field..at + 8 * field + 8].copy_from_slice(&value.to_le_bytes());
        let sum = b.iter().fold(0x811c_9dc5u32, |h, &x| {
            (h ^ u32::from(x)).wrapping_mul(0x0100_0193)
        });
        b.extend_from_slice(&sum.to_le_bytes());
        match from_blob(&b) {
            Err(Error::Config(m)) | Err(Error::Format(m)) => {
                assert!(m.contains("IntegerSGD") || m.contains("overflows"), "{m}")
            }
            other => panic!("field {field} = {value}: {other:?}"),
        }
    }
}
