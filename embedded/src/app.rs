//! The firmware's training run, free of any hardware detail so that it also runs on the host
//! (`cargo test` in a scratch crate can `#[path]`-include it): the dataset is streamed from the
//! image (flash), one batch at a time, so only the model and one step's tensors live on the heap.

use alloc::vec::Vec;
use core::fmt::Write;
use ndarray::{Array2, ArrayView2};
use nitro_core::rng::Pcg32;
use nitro_core::{Hyper, Mlp, MlpConfig, Normalization, Result};

/// Pixels per (pooled 14×14) image.
pub const PIXELS: usize = 196;

/// A labelled split of `u8` images stored in flash.
#[derive(Clone, Copy)]
pub struct Split<'a> {
    /// `n × 196` pixels, row-major.
    pub x: &'a [u8],
    /// `n` labels.
    pub y: &'a [u8],
}

impl<'a> Split<'a> {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.y.len()
    }
    /// All images as a zero-copy `n × 196` view.
    pub fn view(&self) -> ArrayView2<'a, u8> {
        ArrayView2::from_shape((self.len(), PIXELS), &self.x[..self.len() * PIXELS])
            .expect("split geometry checked in Settings::check")
    }
}

/// What the run does.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Epochs.
    pub epochs: u32,
    /// Batch size (last incomplete batch dropped, algorithm.md §2).
    pub batch: usize,
    /// Rows per evaluation chunk.
    pub eval_chunk: usize,
    /// IntegerSGD settings.
    pub hyper: Hyper,
    /// Seed of initialisation and shuffling.
    pub seed: u64,
}

/// Per-epoch accuracies (correct counts).
#[derive(Clone, Copy, Debug, Default)]
pub struct Epoch {
    /// Correct during training.
    pub train_correct: u64,
    /// Training samples seen.
    pub train_total: u64,
    /// Correct on the test split.
    pub test_correct: u64,
    /// Test samples.
    pub test_total: u64,
}

/// `a/b` as a percentage with two decimals, integer-only: `"81.25"`.
pub struct Pct(pub u64, pub u64);

impl core::fmt::Display for Pct {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let bp = (self.0 * 10_000).checked_div(self.1).unwrap_or(0);
        write!(f, "{}.{:02}%", bp / 100, bp % 100)
    }
}

/// Build the model and fit the normalisation on the training split (no copy of the data).
pub fn build(s: &Settings, train: &Split<'_>) -> Result<Mlp> {
    let mut cfg = MlpConfig::new(PIXELS, &s.hidden, 10);
    cfg.seed = s.seed;
    let mut model = Mlp::new(cfg)?;
    model.normalization = Some(Normalization::fit(train.view(), 1)?);
    Ok(model)
}

fn gather(split: &Split<'_>, idx: &[usize]) -> (Array2<u8>, Vec<usize>) {
    let mut x = Array2::<u8>::zeros((idx.len(), PIXELS));
    for (mut row, &i) in x.rows_mut().into_iter().zip(idx) {
        row.as_slice_mut()
            .expect("owned row")
            .copy_from_slice(&split.x[i * PIXELS..(i + 1) * PIXELS]);
    }
    (x, idx.iter().map(|&i| usize::from(split.y[i])).collect())
}

fn norm(model: &Mlp) -> Result<&Normalization> {
    model
        .normalization
        .as_ref()
        .ok_or_else(|| nitro_core::Error::Config("model has no normalisation".into()))
}

/// Correct predictions on `split`, evaluated in chunks straight from flash.
pub fn evaluate(model: &Mlp, split: &Split<'_>, chunk: usize) -> Result<u64> {
    let n = norm(model)?;
    let all = split.view();
    let mut correct = 0;
    for start in (0..split.len()).step_by(chunk.max(1)) {
        let end = (start + chunk.max(1)).min(split.len());
        let x = n.apply(all.slice(ndarray::s![start..end, ..]))?;
        let labels: Vec<usize> = split.y[start..end].iter().map(|&l| usize::from(l)).collect();
        correct += model.count_correct(x.view(), &labels, end - start)?;
    }
    Ok(correct)
}

/// One epoch over `train` in a seeded shuffled order, then evaluation on `test`.
pub fn epoch(
    model: &mut Mlp,
    s: &Settings,
    train: &Split<'_>,
    test: &Split<'_>,
    rng: &mut Pcg32,
    order: &mut [usize],
) -> Result<Epoch> {
    rng.shuffle(order);
    let mut e = Epoch::default();
    for idx in order.chunks_exact(s.batch) {
        let (raw, labels) = gather(train, idx);
        let x = norm(model)?.apply(raw.view())?;
        drop(raw);
        let st = model.train_step(x.view(), &labels, &s.hyper)?;
        e.train_correct += st.correct;
        e.train_total += st.total;
    }
    model.hyper = Some(s.hyper);
    e.test_correct = evaluate(model, test, s.eval_chunk)?;
    e.test_total = test.len() as u64;
    Ok(e)
}

/// Print one epoch's line.
pub fn report(out: &mut dyn Write, n: u32, e: &Epoch, extra: core::fmt::Arguments<'_>) {
    let _ = writeln!(
        out,
        "epoch {n}: train {} ({}/{})  test {} ({}/{}){extra}",
        Pct(e.train_correct, e.train_total),
        e.train_correct,
        e.train_total,
        Pct(e.test_correct, e.test_total),
        e.test_correct,
        e.test_total
    );
}
