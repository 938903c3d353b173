//! `make bench`'s closing numbers (BENCHMARKS.md, the VGG8B rows): seconds per VGG8B training step (batch 64,
//! 1×28×28, random data; 1 warm-up step, then the mean of `--steps` timed steps, default 2)
//! and VGG8B inference images per second (evaluation-mode forward of `--infer` images in
//! batches of 64, default 128).
//!
//! The weights are those of a model in training, not of a fresh one: every weight is redrawn
//! uniformly in `±--weight-bound` (default 1000). Training grows them quickly — after one
//! epoch of VGG8B on Fashion-MNIST the median `|w|` of every conv is 425–680 and its maximum
//! 10k–20k (BENCHMARKS.md) — while the initialisation gives `|w| ≤ 9`, and some kernels are
//! faster on byte-sized weights (AMX needs one digit instead of two). `--weight-bound 0`
//! keeps the initialisation.
//!
//! `cargo run --release -p nitro-core --example bench_cnn [-- --steps N --infer N --weight-bound B]`

use ndarray::{s, Array4};
use nitro_core::rng::Pcg32;
use nitro_core::{Cnn, CnnPreset};
use std::time::Instant;

/// Large per-step buffers come and go every step: mimalloc keeps them mapped where glibc's
/// allocator returns them to the OS and faults them in again (BENCHMARKS.md, "the allocator").
/// The Python extension keeps the system allocator: mimalloc reserves memory without
/// committing it, so an impossible buffer there no longer fails when it is asked for.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a positive integer"))
        .unwrap_or(default)
}

/// Milliseconds as `s.mmm s`.
fn secs(ms: u128) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

fn main() -> nitro_core::Result<()> {
    let steps = arg("--steps", 2);
    let infer = arg("--infer", 128).max(1);
    // NITROD_ISA=avx2 (or portable, avx-vnni, avx512-vnni, amx) caps the kernels' instruction set.
    nitro_core::kernels::cap_from_env()?;
    let used = nitro_core::kernels::gemm::kernel_isa();
    let spec = CnnPreset::Vgg8b.spec("fashion-mnist")?;
    let mut model = Cnn::new(spec.config)?;
    let batch = 64;
    let mut r = Pcg32::new(7, 1);
    let bound = arg("--weight-bound", 1000);
    if bound > 0 {
        let bound = u32::try_from(bound).expect("a weight bound below 2^32");
        let names: Vec<String> = model.convs().iter().map(|c| c.name.clone()).collect();
        for name in names {
            let conv = model.conv_mut(&name).expect("a conv of the model");
            conv.weight.mapv_inplace(|_| r.symmetric(bound));
        }
        let names: Vec<String> = model.linears().iter().map(|l| l.name.clone()).collect();
        for name in names {
            let linear = model
                .linear_mut(&name)
                .expect("a linear layer of the model");
            linear.weight.mapv_inplace(|_| r.symmetric(bound));
        }
    }
    let n = batch.max(infer);
    let x = Array4::from_shape_fn((n, 1, 28, 28), |_| r.symmetric(127) as i8);
    let y: Vec<usize> = (0..n).map(|_| r.below(10) as usize).collect();
    println!(
        "VGG8B ({}, {} parameters), batch {batch}, 1x28x28 random data, {}, {} threads, {used} \
         kernels",
        model.describe(),
        model.num_parameters(),
        match bound {
            0 => "initial weights".to_string(),
            b => format!("weights uniform in ±{b}"),
        },
        rayon::current_num_threads()
    );
    let xb = x.slice(s![..batch, .., .., ..]);
    let mut per_step = 0;
    if steps > 0 {
        let t = Instant::now();
        model.train_step(xb, &y[..batch], &spec.hyper)?;
        println!("warm-up step: {}", secs(t.elapsed().as_millis()));
        let t = Instant::now();
        for _ in 0..steps {
            model.train_step(xb, &y[..batch], &spec.hyper)?;
        }
        per_step = t.elapsed().as_millis() / steps as u128;
    }
    let t = Instant::now();
    let mut done = 0;
    while done < infer {
        let end = (done + batch).min(infer);
        model.predict_logits(x.slice(s![done..end, .., .., ..]))?;
        done = end;
    }
    // Images per second with one decimal, in integers (the crate has no floats, algorithm.md §1).
    let tenths = (infer as u128 * 10_000_000) / t.elapsed().as_micros().max(1);
    println!(
        "VGG8B training: {} per step (batch {batch}, mean of {steps})",
        secs(per_step)
    );
    println!(
        "VGG8B inference: {}.{} images/s ({infer} images, batches of {batch})",
        tenths / 10,
        tenths % 10
    );
    // Which engines these numbers used (the pair engine on its best allowed micro-kernel).
    let c = nitro_core::kernels::engine_counts();
    let pairs = nitro_core::kernels::gemm::pairs_isa();
    println!(
        "products: {} on AMX tiles, {} on the pair engine ({pairs}), {} on the i32 engine",
        c.tiles, c.pairs, c.wide
    );
    Ok(())
}
