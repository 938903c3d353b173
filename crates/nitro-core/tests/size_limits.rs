//! Sizes that would wrap or exhaust memory are configuration errors naming the size, found
//! before anything is allocated: CNN geometry (a huge padding or kernel), models with an
//! impossible number of parameters.

use nitro_core::{Cnn, CnnConfig, Error, Feature, Mlp, MlpConfig};

fn config_error(r: Result<impl Sized, Error>, want: &[&str]) {
    match r {
        Err(Error::Config(m)) => {
            for w in want {
                assert!(m.contains(w), "{m:?} should name {w:?}");
            }
        }
        Err(e) => panic!("expected a configuration error naming {want:?}, got {e}"),
        Ok(_) => panic!("accepted; expected a configuration error naming {want:?}"),
    }
}

fn cnn(kernel: usize, padding: usize) -> CnnConfig {
    let conv = Feature::Conv {
        filters: 4,
        kernel,
        stride: 1,
        padding,
    };
    CnnConfig::new((1, 8, 8), &[conv, Feature::MaxPool(2)], &[16], 10)
}

#[test]
fn cnn_geometry_that_would_wrap_is_an_error_naming_the_field() {
    // `validate` first: it allocates nothing, whatever it decides.
    for (kernel, padding, field) in [
        (3, 1 << 62, "padding"),
        (3, usize::MAX / 2, "padding"),
        (3, usize::MAX, "padding"),
        (1 << 32, 1 << 31, "kernel"),
        (1 << 33, 1 << 32, "kernel"),
        (3, 1 << 20, "padding"),
    ] {
        let c = cnn(kernel, padding);
        config_error(c.validate(), &[field]);
        config_error(c.tensor_shapes(), &[field]);
        config_error(Cnn::new(c), &[field]);
    }
    // A kernel larger than the padded input is refused as before.
    config_error(cnn(1 << 32, 1).validate(), &["kernel"]);
}

#[test]
fn impossible_model_sizes_are_refused_before_allocating() {
    let c = MlpConfig::new(784, &[46340; 4], 10);
    config_error(c.validate(), &["parameters", "46340"]);
    config_error(Mlp::new(c), &["parameters"]);
    let c = MlpConfig::new(usize::MAX, &[2], 10);
    config_error(c.validate(), &["parameters"]);
    // A CNN whose classifier alone is too large.
    let mut c = cnn(3, 1);
    c.classifier = vec![1 << 20, 1 << 20];
    config_error(c.validate(), &["parameters"]);
    config_error(Cnn::new(c), &["parameters"]);
    // Many filters on a large input.
    let mut c = cnn(3, 1);
    c.input = (3, 4096, 4096);
    config_error(c.validate(), &["feature map"]);
    // The paper's largest models are well inside the limits.
    let mlp4 = MlpConfig::new(3072, &[3000, 3000, 3000], 10);
    mlp4.validate().unwrap();
}
