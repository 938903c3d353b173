//! The paper's presets (algorithm.md §4.2, §7) for both kinds of model — architectures and training
//! settings — and our small demo CNN, each with its one name.

use crate::data::Augment;
use crate::error::{Error, Result};
use crate::model::{CnnConfig, Feature, MlpConfig};
use crate::optim::Hyper;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Paper preset names (algorithm.md §4.2 / §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// 784-100-50-10, MNIST.
    Mlp1,
    /// 784-200-100-50-10, Fashion-MNIST.
    Mlp2,
    /// 784-1024×3-10, MNIST or Fashion-MNIST, augmentation.
    Mlp3,
    /// 3072-3000×3-10, CIFAR-10, augmentation, dropout 10 %.
    Mlp4,
}

/// A preset's architecture and the paper's training settings (algorithm.md §7).
#[derive(Clone, Debug)]
pub struct PresetSpec {
    /// Architecture.
    pub config: MlpConfig,
    /// IntegerSGD settings.
    pub hyper: Hyper,
    /// Whether the paper used augmentation.
    pub augment: bool,
}

impl Preset {
    /// Every MLP preset.
    pub const ALL: [Preset; 4] = [Preset::Mlp1, Preset::Mlp2, Preset::Mlp3, Preset::Mlp4];

    /// The preset's name (`mlp1`…`mlp4`).
    pub fn name(self) -> &'static str {
        match self {
            Preset::Mlp1 => "mlp1",
            Preset::Mlp2 => "mlp2",
            Preset::Mlp3 => "mlp3",
            Preset::Mlp4 => "mlp4",
        }
    }

    /// The data set the paper evaluated the preset on (algorithm.md §7; MLP3 also on
    /// Fashion-MNIST).
    pub fn paper_dataset(self) -> &'static str {
        match self {
            Preset::Mlp1 | Preset::Mlp3 => "mnist",
            Preset::Mlp2 => "fashion-mnist",
            Preset::Mlp4 => "cifar10",
        }
    }

    /// Parse [`Preset::name`] (any case).
    pub fn from_name(s: &str) -> Result<Preset> {
        parse("preset", &Preset::ALL, Preset::name, s)
    }

    /// The paper's settings; `dataset` matters for MLP3 (`"mnist"` or `"fashion-mnist"`).
    pub fn spec(self, dataset: &str) -> PresetSpec {
        let fmnist = dataset.contains("fashion");
        let (inputs, hidden, fwd, sub, aug, drop): (usize, &[usize], i64, i64, bool, u32) =
            match self {
                Preset::Mlp1 => (784, &[100, 50], 12_000, 3_000, false, 0),
                Preset::Mlp2 => (784, &[200, 100, 50], 10_000, 8_000, false, 0),
                Preset::Mlp3 if fmnist => (784, &[1024, 1024, 1024], 29_000, 6_000, true, 0),
                Preset::Mlp3 => (784, &[1024, 1024, 1024], 28_000, 500, true, 0),
                Preset::Mlp4 => (3072, &[3000, 3000, 3000], 19_000, 7_500, true, 10),
            };
        let mut config = MlpConfig::new(inputs, hidden, 10);
        config.dropout_pct = drop;
        PresetSpec {
            config,
            hyper: Hyper {
                fwd_decay_inv: fwd,
                subnet_decay_inv: sub,
                ..Hyper::default()
            },
            augment: aug,
        }
    }
}

/// CNN presets (algorithm.md §4.2, §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CnnPreset {
    /// VGG8B: `C128 C256 P C256 C512 P C512 P C512 P`, classifier `[1024]`, decoder 4096.
    Vgg8b,
    /// VGG11B: `C128 C128 C128 C256 P C256 C512 P C512 C512 P C512 P`, classifier `[1024]`.
    Vgg11b,
    /// `small-cnn`: a small, fast demo CNN (ours, not the paper's): `C32 P C64 P`, classifier
    /// `[256]`, decoder 2048, with VGG8B's per-dataset decays and augmentation. 860,256 parameters
    /// (most in the learning heads); a Fashion-MNIST epoch takes minutes instead of VGG8B's hours.
    SmallCnn,
}

/// A CNN preset's architecture and training settings.
#[derive(Clone, Debug)]
pub struct CnnPresetSpec {
    /// Architecture.
    pub config: CnnConfig,
    /// IntegerSGD settings (the paper's CNN runs used [`crate::optim::Compat::Reference`]
    /// behaviour; the default here is [`crate::optim::Compat::Exact`]).
    pub hyper: Hyper,
    /// Augmentation (algorithm.md §2: pad 2 for MNIST/Fashion-MNIST, 4 for CIFAR-10; flips except
    /// MNIST).
    pub augment: Option<Augment>,
}

impl CnnPreset {
    /// Every CNN preset.
    pub const ALL: [CnnPreset; 3] = [CnnPreset::Vgg8b, CnnPreset::Vgg11b, CnnPreset::SmallCnn];

    /// The preset's name (`vgg8b`, `vgg11b`, `small-cnn`).
    pub fn name(self) -> &'static str {
        match self {
            CnnPreset::Vgg8b => "vgg8b",
            CnnPreset::Vgg11b => "vgg11b",
            CnnPreset::SmallCnn => "small-cnn",
        }
    }

    /// The data set the paper evaluated the preset on (algorithm.md §7); `small-cnn` is ours and
    /// uses VGG8B's.
    pub fn paper_dataset(self) -> &'static str {
        match self {
            CnnPreset::Vgg8b | CnnPreset::SmallCnn => "fashion-mnist",
            CnnPreset::Vgg11b => "cifar10",
        }
    }

    /// Parse [`CnnPreset::name`] (any case).
    pub fn from_name(s: &str) -> Result<Self> {
        parse("CNN preset", &CnnPreset::ALL, CnnPreset::name, s)
    }

    /// The paper's settings for `dataset` (`mnist`, `fashion-mnist` or `cifar10`; algorithm.md §7).
    /// VGG11B was only reported on CIFAR-10; on the other datasets it uses CIFAR-10's decays.
    pub fn spec(self, dataset: &str) -> Result<CnnPresetSpec> {
        let ds = dataset.to_ascii_lowercase().replace(['-', '_'], "");
        let (input, augment, key) = match ds.as_str() {
            "mnist" => (
                (1, 28, 28),
                Augment {
                    pad: 2,
                    flip: false,
                },
                0,
            ),
            "fashionmnist" | "fmnist" => ((1, 28, 28), Augment { pad: 2, flip: true }, 1),
            "cifar10" | "cifar" => ((3, 32, 32), Augment { pad: 4, flip: true }, 2),
            o => {
                return Err(Error::config(format!(
                    "unknown dataset {o:?}; expected mnist, fashion-mnist or cifar10"
                )))
            }
        };
        let p = Feature::MaxPool(2);
        let c = Feature::conv3;
        let (features, classifier, decoder, fwd, sub, drop): (Vec<Feature>, &[usize], _, _, _, _) =
            match self {
                CnnPreset::Vgg8b => {
                    let (fwd, sub, drop) =
                        [(30_000, 3_000, 0), (28_000, 3_500, 10), (25_000, 3_000, 15)][key];
                    (
                        alloc::vec![c(128), c(256), p, c(256), c(512), p, c(512), p, c(512), p],
                        &[1024],
                        4096,
                        fwd,
                        sub,
                        drop,
                    )
                }
                CnnPreset::Vgg11b => (
                    alloc::vec![
                        c(128),
                        c(128),
                        c(128),
                        c(256),
                        p,
                        c(256),
                        c(512),
                        p,
                        c(512),
                        c(512),
                        p,
                        c(512),
                        p
                    ],
                    &[1024],
                    4096,
                    28_000,
                    4_500,
                    0,
                ),
                CnnPreset::SmallCnn => {
                    let (fwd, sub) = [(30_000, 3_000), (28_000, 3_500), (25_000, 3_000)][key];
                    (alloc::vec![c(32), p, c(64), p], &[256], 2048, fwd, sub, 0)
                }
            };
        let mut config = CnnConfig::new(input, &features, classifier, 10);
        config.decoder_dim = decoder;
        config.dropout_pct = drop;
        Ok(CnnPresetSpec {
            config,
            hyper: Hyper {
                fwd_decay_inv: fwd,
                subnet_decay_inv: sub,
                ..Hyper::default()
            },
            augment: Some(augment),
        })
    }
}

/// The preset of `all` whose name is `s` (any case), or an error listing the names.
fn parse<P: Copy>(what: &str, all: &[P], name: fn(P) -> &'static str, s: &str) -> Result<P> {
    let wanted = s.to_ascii_lowercase();
    if let Some(&p) = all.iter().find(|&&p| name(p) == wanted) {
        return Ok(p);
    }
    let names: Vec<&str> = all.iter().map(|&p| name(p)).collect();
    let expected: String = match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.concat(),
    };
    Err(Error::config(format!(
        "unknown {what} {wanted:?}; expected {expected}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for p in Preset::ALL {
            assert_eq!(
                Preset::from_name(&p.name().to_ascii_uppercase()).unwrap(),
                p
            );
        }
        for p in CnnPreset::ALL {
            assert_eq!(CnnPreset::from_name(p.name()).unwrap(), p);
        }
        let e = CnnPreset::from_name("small").unwrap_err();
        assert!(
            format!("{e}").contains("expected vgg8b, vgg11b or small-cnn"),
            "{e}"
        );
    }
}
