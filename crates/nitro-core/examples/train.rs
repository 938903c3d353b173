//! Train a NITRO-D MLP preset on MNIST-format IDX files (e.g. Debian's Fashion-MNIST).
//!
//! ```text
//! cargo run --release -p nitro-core --example train -- --preset mlp2 \
//!     --data-dir /usr/share/datasets/fashion-mnist --epochs 10 --seed 0 [--threads 2] \
//!     [--save model.safetensors] [--limit 20000] [--paper-protocol] [--compat reference] \
//!     [--val-split PERMILLE [--plateau]]
//! ```
//! Prints one line per epoch and ends with `test_accuracy=` and `best_test_accuracy=` lines.
//! `--paper-protocol` runs the paper's plateau rule and early stopping on the test set (its
//! protocol). `--val-split P` holds P/1000 of the training rows out as a validation set (seed 0);
//! with `--plateau` the same rules watch it instead, and the run ends with the honest result:
//! `test_accuracy_at_best_val=` (the test accuracy of the epoch the validation set chose).

mod common;

use common::{pct, print_accuracy};
use ndarray::s;
use nitro_core::data::idx::load_mnist_like;
use nitro_core::train::{fit, Control, Sets, TrainConfig};
use nitro_core::{Augment, Compat, Dataset, Mlp, Normalization, Plateau, Preset, Split};
use std::path::PathBuf;
use std::process::ExitCode;

/// Large per-step buffers come and go every step: mimalloc keeps them mapped where glibc's
/// allocator returns them to the OS and faults them in again (BENCHMARKS.md, "the allocator").
/// The Python extension keeps the system allocator: mimalloc reserves memory without
/// committing it, so an impossible buffer there no longer fails when it is asked for.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    preset: String,
    data_dir: PathBuf,
    epochs: u32,
    seed: u64,
    threads: Option<usize>,
    save: Option<PathBuf>,
    limit: Option<usize>,
    paper_protocol: bool,
    val_split: Option<u32>,
    plateau: bool,
    compat: Compat,
    batch_size: usize,
    lr_inv: Option<i64>,
    fwd_decay_inv: Option<i64>,
    subnet_decay_inv: Option<i64>,
    augment: Option<bool>,
}

const USAGE: &str = "usage: train --preset mlp1|mlp2|mlp3 --data-dir DIR [--epochs N] [--seed S] \
[--threads T] [--save FILE] [--limit N] [--batch-size B] [--lr-inv N] [--fwd-decay-inv N] \
[--subnet-decay-inv N] [--augment|--no-augment] [--paper-protocol] [--compat exact|reference] \
[--val-split PERMILLE [--plateau]]";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        preset: "mlp2".into(),
        data_dir: PathBuf::from("/usr/share/datasets/fashion-mnist"),
        epochs: 10,
        seed: 0,
        threads: None,
        save: None,
        limit: None,
        paper_protocol: false,
        val_split: None,
        plateau: false,
        compat: Compat::Exact,
        batch_size: 64,
        lr_inv: None,
        fwd_decay_inv: None,
        subnet_decay_inv: None,
        augment: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
        }
        match flag.as_str() {
            "--preset" => a.preset = val()?,
            "--data-dir" => a.data_dir = PathBuf::from(val()?),
            "--epochs" => a.epochs = num(&flag, val()?)?,
            "--seed" => a.seed = num(&flag, val()?)?,
            "--threads" => a.threads = Some(num(&flag, val()?)?),
            "--save" => a.save = Some(PathBuf::from(val()?)),
            "--limit" => a.limit = Some(num(&flag, val()?)?),
            "--batch-size" => a.batch_size = num(&flag, val()?)?,
            "--lr-inv" => a.lr_inv = Some(num(&flag, val()?)?),
            "--fwd-decay-inv" => a.fwd_decay_inv = Some(num(&flag, val()?)?),
            "--subnet-decay-inv" => a.subnet_decay_inv = Some(num(&flag, val()?)?),
            "--augment" => a.augment = Some(true),
            "--no-augment" => a.augment = Some(false),
            "--paper-protocol" => a.paper_protocol = true,
            "--plateau" => a.plateau = true,
            "--val-split" => {
                a.val_split = Some(
                    val()?
                        .parse()
                        .map_err(|_| "--val-split: expected thousandths")?,
                )
            }
            "--compat" => a.compat = Compat::from_name(&val()?).map_err(|e| e.to_string())?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn run(a: Args) -> Result<(), String> {
    let preset = Preset::from_name(&a.preset).map_err(|e| e.to_string())?;
    let dataset_name = a.data_dir.to_string_lossy().to_lowercase();
    let spec = preset.spec(&dataset_name);
    let raw = load_mnist_like(&a.data_dir).map_err(|e| e.to_string())?;
    let n_train = a.limit.unwrap_or(usize::MAX).min(raw.train_x.nrows());
    let train_x = raw.train_x.slice(s![..n_train, ..]);
    let norm = Normalization::fit(train_x, 1).map_err(|e| e.to_string())?;
    eprintln!(
        "data: {} train / {} test images from {}; mean {:?}, MAD {:?}",
        n_train,
        raw.test_x.nrows(),
        a.data_dir.display(),
        norm.mean,
        norm.mad
    );
    let train = Dataset::new(
        norm.apply(train_x).map_err(|e| e.to_string())?,
        raw.train_y[..n_train].to_vec(),
        (1, 28, 28),
    )
    .map_err(|e| e.to_string())?;
    let test = Dataset::new(
        norm.apply(raw.test_x.view()).map_err(|e| e.to_string())?,
        raw.test_y.clone(),
        (1, 28, 28),
    )
    .map_err(|e| e.to_string())?;

    let mut config = spec.config.clone();
    config.seed = a.seed;
    let mut model = Mlp::new(config).map_err(|e| e.to_string())?;
    model.normalization = Some(norm);
    let mut hyper = spec.hyper;
    hyper.compat = a.compat;
    if let Some(v) = a.lr_inv {
        hyper.lr_inv = v;
    }
    if let Some(v) = a.fwd_decay_inv {
        hyper.fwd_decay_inv = v;
    }
    if let Some(v) = a.subnet_decay_inv {
        hyper.subnet_decay_inv = v;
    }
    let augment = a.augment.unwrap_or(spec.augment).then_some(Augment {
        pad: 2,
        flip: dataset_name.contains("fashion"),
    });
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        hyper,
        plateau: (a.paper_protocol || a.plateau).then(Plateau::paper),
        validation: a.val_split.map(|permille| Split { permille, seed: 0 }),
        // The paper's protocol: its plateau rule watches the test set.
        select_on_test: a.paper_protocol,
        augment,
        seed: a.seed,
        ..TrainConfig::default()
    };
    println!(
        "model {} ({} parameters), lr_inv {}, lr_amp_factor {}, fwd_decay_inv {}, subnet_decay_inv {}, augment {}, threads {}",
        model.describe(),
        model.num_parameters(),
        hyper.lr_inv,
        hyper.lr_amp_factor,
        hyper.fwd_decay_inv,
        hyper.subnet_decay_inv,
        augment.is_some(),
        rayon::current_num_threads()
    );
    let history = fit(
        &mut model,
        &Sets::new(&train, Some(&test)),
        &cfg,
        &mut |_| Control::Continue,
        &mut |end| {
            let m = end.metrics;
            let blocks: Vec<String> = m.blocks.iter().map(|f| pct(*f)).collect();
            println!(
                "epoch {:3}  {:>4}.{:03}s  lr_inv {:6}  train {}{}  test {}  blocks [{}]",
                m.epoch,
                m.train_millis / 1000,
                m.train_millis % 1000,
                m.lr_inv,
                pct(m.train),
                m.val
                    .map(|v| format!("  val {}", pct(v)))
                    .unwrap_or_default(),
                m.test.map(pct).unwrap_or_default(),
                blocks.join(", ")
            );
            Ok(Control::Continue)
        },
    )
    .map_err(|e| e.to_string())?;
    if history.early_stopped {
        println!("early stop after epoch {}", history.epochs.len());
    }
    let last = history
        .epochs
        .last()
        .and_then(|e| e.test)
        .unwrap_or_default();
    let best = history.best_test().unwrap_or_default();
    if let Some(p) = &a.save {
        nitro_core::io::save_file(&model, p).map_err(|e| e.to_string())?;
        println!("saved {}", p.display());
    }
    print_accuracy(last, best);
    if let Some(b) = history.best().filter(|b| b.val.is_some()) {
        let t = b.test.unwrap_or_default();
        println!(
            "best_val_epoch={} val_accuracy={} test_accuracy_at_best_val={}/{} ({})",
            b.epoch,
            b.val.map(pct).unwrap_or_default(),
            t.correct,
            t.total,
            pct(t)
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let threads = args.threads;
    let result = match threads {
        Some(t) => match rayon::ThreadPoolBuilder::new().num_threads(t).build() {
            Ok(pool) => pool.install(|| run(args)),
            Err(e) => Err(e.to_string()),
        },
        None => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
