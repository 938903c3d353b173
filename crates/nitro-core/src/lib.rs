//! # nitro-core — NITRO-D, integer-only training of deep neural networks
//!
//! An exact, deterministic implementation of NITRO-D (Pirillo, Colombo, Roveri, ECAI 2025):
//! data, weights, activations, errors and updates are integers; there is no floating point
//! anywhere in this crate (`#![deny(clippy::float_arithmetic)]`). Learning uses local error
//! signals — every hidden block has its own learning head — and IntegerSGD.
//!
//! * Exact: every product's accumulator width is proven before it runs ([`kernels::gemm`]); no
//!   result ever wraps. An update that would leave its storage type is an [`Error::Overflow`].
//! * Deterministic: same seed → same bits, on any number of threads and any platform.
//! * `no_std`: build with `default-features = false` (needs `alloc`); features `std` (files,
//!   clocks, IDX readers) and `parallel` (rayon) are on by default.
//!
//! Every computation is specified to the bit in `docs/algorithm.md` of the nitrod-rs
//! repository; the documentation here cites its sections as "algorithm.md §N".
//!
//! ## Where things are
//!
//! * [`model`]: [`Mlp`] and [`Cnn`] — both end in one shared classifier (local-loss linear
//!   blocks and an output layer); [`block`]: the local-loss linear and conv blocks;
//!   [`layers`]: the integer layers they are made of; [`kernels`]: exact GEMM, SIMD, threads.
//! * [`loss`]: one-hot targets, output error, loss, arg-max; [`metrics`]: exact accuracies
//!   ([`Fraction`]) and step statistics; [`optim`]: IntegerSGD, [`Hyper`], [`Compat`],
//!   schedules, plateau; [`train`]: the epoch loop.
//! * [`presets`]: the paper's presets of both kinds; [`names`]: layer names and seed streams.
//! * [`data`]: normalisation, augmentation, datasets, IDX; `io` (std): safetensors files;
//!   [`export`]: the device blob.
//!
//! ## Example: train a small MLP on synthetic data
//!
//! ```
//! use nitro_core::{Mlp, MlpConfig, Dataset, TrainConfig, train::{fit, Control, Sets}};
//! use ndarray::Array2;
//!
//! // Two classes: rows whose first half is bright vs. whose second half is bright.
//! let n = 256;
//! let x = Array2::from_shape_fn((n, 16), |(i, j)| if (i % 2 == 0) == (j < 8) { 100i8 } else { -100 });
//! let y: Vec<usize> = (0..n).map(|i| i % 2).collect();
//! let data = Dataset::new(x, y, (1, 4, 4)).unwrap();
//!
//! let mut model = Mlp::new(MlpConfig::new(16, &[32], 2)).unwrap();
//! let cfg = TrainConfig { epochs: 3, batch_size: 16, ..TrainConfig::default() };
//! let history = fit(&mut model, &Sets::new(&data, Some(&data)), &cfg,
//!                   &mut |_| Control::Continue, &mut |_| Ok(Control::Continue)).unwrap();
//! let acc = history.epochs.last().unwrap().test.unwrap();
//! assert!(acc.correct * 10 >= acc.total * 9, "accuracy {acc:?}");
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(clippy::float_arithmetic)]
#![deny(missing_docs)]

extern crate alloc;

pub mod arith;
pub mod block;
pub mod data;
pub mod error;
pub mod export;
pub mod init;
#[cfg(feature = "std")]
pub mod io;
pub mod kernels;
pub mod layers;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod names;
pub mod optim;
pub mod params;
pub mod presets;
pub mod rng;
pub mod train;

pub use block::{LocalConv2dBlock, LocalLinearBlock};
pub use data::{Augment, Dataset, Normalization, Share, Split};
pub use error::{Error, Result};
pub use init::Init;
pub use layers::ActivationKind;
pub use metrics::{Fraction, LocalStats, StepStats};
pub use model::{Cnn, CnnConfig, Feature, Gradients, LayerGradient, Mlp, MlpConfig};
pub use optim::{Compat, Hyper, Plateau, Schedule, Sgd};
pub use params::NamedParams;
pub use presets::{CnnPreset, CnnPresetSpec, Preset, PresetSpec};
pub use train::{fit, fit_from, fit_held, EpochMetrics, History, RunState, Sets, TrainConfig};

/// The library version (also written into saved models).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
