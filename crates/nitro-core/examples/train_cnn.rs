//! Train a NITRO-D CNN preset (VGG8B, VGG11B or the small demo CNN) on MNIST-format IDX files.
//!
//! ```text
//! cargo run --release -p nitro-core --example train_cnn -- --preset small-cnn \
//!     --data-dir /usr/share/datasets/fashion-mnist --epochs 10 --seed 0 [--threads 2] \
//!     [--limit N] [--test-limit N] [--max-minutes M] [--compat reference] [--save FILE] \
//!     [--checkpoint FILE] [--resume FILE] [--log-jsonl FILE] [--paper-protocol]
//! ```
//! Prints progress every 20 batches (seconds per step), one line per epoch, and ends with
//! `test_accuracy=` and `best_test_accuracy=` lines. `--max-minutes` stops training after the
//! batch that crosses the time budget and still evaluates the model. `--checkpoint` writes a
//! checkpoint after every epoch (and when `--max-minutes` stops the run); `--resume` continues
//! one bit for bit, with the checkpoint's settings (`--epochs` may extend the run).
//! `--log-jsonl` appends one JSON line of metrics per epoch.

mod common;

use common::{pct, print_accuracy};
use ndarray::s;
use nitro_core::data::idx::load_mnist_like;
use nitro_core::io::{Checkpoint, Model};
use nitro_core::train::{fit_from, score, Control, RunState, Sets, TrainConfig};
use nitro_core::{Cnn, CnnPreset};
use nitro_core::{Compat, Dataset, Fraction, Normalization, Plateau};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Large per-step buffers come and go every step: mimalloc keeps them mapped where glibc's
/// allocator returns them to the OS and faults them in again (BENCHMARKS.md, "the allocator").
/// The Python extension keeps the system allocator: mimalloc reserves memory without
/// committing it, so an impossible buffer there no longer fails when it is asked for.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn value<T: std::str::FromStr>(args: &[String], flag: &str) -> Result<Option<T>, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => {
            let v = args
                .get(i + 1)
                .ok_or_else(|| format!("{flag} needs a value"))?;
            v.parse()
                .map(Some)
                .map_err(|_| format!("{flag}: invalid value {v:?}"))
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let preset: String = value(args, "--preset")?.unwrap_or_else(|| "small-cnn".into());
    let dir: PathBuf =
        value(args, "--data-dir")?.unwrap_or_else(|| "/usr/share/datasets/fashion-mnist".into());
    let epochs: u32 = value(args, "--epochs")?.unwrap_or(1);
    let seed: u64 = value(args, "--seed")?.unwrap_or(0);
    let limit: Option<usize> = value(args, "--limit")?;
    let test_limit: Option<usize> = value(args, "--test-limit")?;
    let max_minutes: Option<u64> = value(args, "--max-minutes")?;
    let compat: Option<String> = value(args, "--compat")?;
    let save: Option<PathBuf> = value(args, "--save")?;
    let checkpoint: Option<PathBuf> = value(args, "--checkpoint")?;
    let resume: Option<PathBuf> = value(args, "--resume")?;
    let log_jsonl: Option<PathBuf> = value(args, "--log-jsonl")?;
    let paper_protocol = args.iter().any(|a| a == "--paper-protocol");
    let dataset = dir.to_string_lossy().to_lowercase();
    let dataset = if dataset.contains("fashion") {
        "fashion-mnist"
    } else {
        "mnist"
    };
    let raw = load_mnist_like(&dir).map_err(|e| e.to_string())?;
    let n = limit.unwrap_or(usize::MAX).min(raw.train_x.nrows());
    let nt = test_limit.unwrap_or(usize::MAX).min(raw.test_x.nrows());

    // A resumed run takes its model (with its normalisation) and settings from the checkpoint;
    // only --epochs may extend it.
    let (mut model, mut state, cfg) = match &resume {
        Some(path) => {
            let ck = Checkpoint::load_file(path).map_err(|e| e.to_string())?;
            if !matches!(ck.model, Model::Cnn(_)) {
                return Err(format!("{} holds an MLP, not a CNN", path.display()));
            }
            let mut cfg = ck.state.config.clone();
            cfg.epochs = epochs;
            println!(
                "resuming {} after epoch {} batch {} (lr_inv {})",
                path.display(),
                ck.state.epoch,
                ck.state.batch,
                ck.state.hyper.lr_inv
            );
            (ck.model, Some(ck.state), cfg)
        }
        None => {
            let spec = CnnPreset::from_name(&preset)
                .and_then(|p| p.spec(dataset))
                .map_err(|e| e.to_string())?;
            let mut config = spec.config.clone();
            config.seed = seed;
            let mut model = Cnn::new(config).map_err(|e| e.to_string())?;
            model.normalization = Some(
                Normalization::fit(raw.train_x.slice(s![..n, ..]), 1).map_err(|e| e.to_string())?,
            );
            let mut hyper = spec.hyper;
            if let Some(c) = compat {
                hyper.compat = Compat::from_name(&c).map_err(|e| e.to_string())?;
            }
            let cfg = TrainConfig {
                epochs,
                hyper,
                augment: spec.augment,
                plateau: paper_protocol.then(Plateau::paper),
                select_on_test: paper_protocol,
                seed,
                ..TrainConfig::default()
            };
            (Model::Cnn(model), None, cfg)
        }
    };
    let Model::Cnn(cnn) = &model else {
        unreachable!("checked above")
    };
    let norm = cnn
        .normalization
        .clone()
        .ok_or("the model has no normalisation")?;
    let train = Dataset::new(
        norm.apply(raw.train_x.slice(s![..n, ..]))
            .map_err(|e| e.to_string())?,
        raw.train_y[..n].to_vec(),
        (1, 28, 28),
    )
    .map_err(|e| e.to_string())?;
    let test = Dataset::new(
        norm.apply(raw.test_x.slice(s![..nt, ..]))
            .map_err(|e| e.to_string())?,
        raw.test_y[..nt].to_vec(),
        (1, 28, 28),
    )
    .map_err(|e| e.to_string())?;
    let sets = Sets::new(&train, Some(&test));
    let mut state = match state.take() {
        Some(s) => s,
        None => RunState::new(&cfg, &sets).map_err(|e| e.to_string())?,
    };
    let label = match &resume {
        Some(p) => format!("the run of {}", p.display()),
        None => preset.clone(),
    };
    println!(
        "{label} on {dataset}: {n} train / {nt} test images, {} parameters, augment {:?}, compat {}, threads {}",
        cnn.num_parameters(),
        cfg.augment,
        cfg.hyper.compat.name(),
        rayon::current_num_threads()
    );
    let mut log = match &log_jsonl {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("{}: {e}", p.display()))?,
        ),
        None => None,
    };
    let start = Instant::now();
    let mut last = Instant::now();
    let mut steps = 0u64;
    let history =
        fit_from(
            &mut model,
            &sets,
            &cfg,
            &mut state,
            &mut |p| {
                steps += 1;
                if p.batch % 20 == 0 || p.batch == p.batches {
                    let dt = last.elapsed();
                    last = Instant::now();
                    eprintln!(
                        "  epoch {} batch {}/{}  train {}  {:.2?} per step  elapsed {:.0?}",
                        p.epoch,
                        p.batch,
                        p.batches,
                        pct(p.train),
                        dt / 20,
                        start.elapsed()
                    );
                }
                match max_minutes {
                    Some(m) if start.elapsed().as_secs() >= m * 60 => Control::Stop,
                    _ => Control::Continue,
                }
            },
            &mut |end| {
                let m = end.metrics;
                println!(
                "epoch {:3}  {:>5}.{:03}s train  {:>5}.{:03}s eval  train {}  test {}  blocks [{}]",
                m.epoch,
                m.train_millis / 1000,
                m.train_millis % 1000,
                m.eval_millis / 1000,
                m.eval_millis % 1000,
                pct(m.train),
                m.test.map(pct).unwrap_or_default(),
                m.blocks.iter().map(|f| pct(*f)).collect::<Vec<_>>().join(", ")
            );
                if let Some(f) = log.as_mut() {
                    writeln!(f, "{}", nitro_core::io::metrics_json(m))
                        .map_err(|e| nitro_core::Error::Config(format!("--log-jsonl: {e}")))?;
                }
                if let Some(p) = &checkpoint {
                    Checkpoint::save_file(p, end.model, end.state)?;
                    println!("checkpoint {} (epoch {})", p.display(), end.state.epoch);
                }
                Ok(Control::Continue)
            },
        )
        .map_err(|e| e.to_string())?;
    let mut last_test = history.epochs.last().and_then(|e| e.test);
    if history.cancelled {
        // Time budget reached mid-epoch: keep a checkpoint that continues from the next batch,
        // and evaluate the model as it stands.
        if let Some(p) = &checkpoint {
            Checkpoint::save_file(p, &model, &state).map_err(|e| e.to_string())?;
            println!(
                "checkpoint {} (epoch {} batch {})",
                p.display(),
                state.epoch,
                state.batch
            );
        }
        let t = Instant::now();
        let (correct, _) = score(&model, &test, 256).map_err(|e| e.to_string())?;
        last_test = Some(Fraction {
            correct,
            total: test.len() as u64,
        });
        println!(
            "stopped by --max-minutes after {steps} steps; evaluation took {:.1?}",
            t.elapsed()
        );
    }
    let train_ms: u64 = history.epochs.iter().map(|e| e.train_millis).sum();
    println!(
        "steps={steps} train_seconds={}.{:03} seconds_per_step={}.{:03}",
        train_ms / 1000,
        train_ms % 1000,
        train_ms / steps.max(1) / 1000,
        train_ms / steps.max(1) % 1000
    );
    if let Some(p) = save {
        model.save_file(&p).map_err(|e| e.to_string())?;
        println!("saved {}", p.display());
    }
    let last_test = last_test.unwrap_or_default();
    let best = history
        .best_test()
        .map_or(last_test, |b| if last_test.gt(&b) { last_test } else { b });
    print_accuracy(last_test, best);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: Option<usize> = match value(&args, "--threads") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match threads {
        Some(t) => match rayon::ThreadPoolBuilder::new().num_threads(t).build() {
            Ok(pool) => pool.install(|| run(&args)),
            Err(e) => Err(e.to_string()),
        },
        None => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
