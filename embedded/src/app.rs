//! The firmware's training runs, free of any hardware detail so that they also run on the host
//! (`crates/nitro-core/examples/firmware_host.rs` `#[path]`-includes this file, and `make
//! embedded` compares the final weights' hashes): the dataset is streamed from the image
//! (flash), one batch at a time, so only the model and one step's tensors live on the heap.
//! The loops are generic over the model ([`Net`]: the MLP and the CNN).

use alloc::vec::Vec;
use core::fmt::Write;
use ndarray::{Array2, ArrayView2};
use nitro_core::export::{self, BlobOptions, DeviceModel, ModelRef};
use nitro_core::rng::Pcg32;
use nitro_core::train::{Evaluate, Trainable};
use nitro_core::{
    Cnn, CnnConfig, Feature, Hyper, Mlp, MlpConfig, NamedParams, Normalization, Result, StepStats,
};

/// Side of the (pooled 14×14) images.
pub const SIDE: usize = 14;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;

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

/// What a run does (the model is built separately: [`mlp`], [`cnn`]).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
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
    /// Leading local blocks left as they are (fine-tuning; 0 = train everything).
    pub frozen: usize,
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
    /// Training steps.
    pub steps: u64,
    /// Instructions the training steps took (all of them; see [`epoch`]).
    pub step_instructions: u64,
}

/// `a/b` as a percentage with two decimals, integer-only: `"81.25%"`.
#[derive(Clone, Copy)]
pub struct Pct(pub u64, pub u64);

impl core::fmt::Display for Pct {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let bp = (self.0 * 10_000).checked_div(self.1).unwrap_or(0);
        write!(f, "{}.{:02}%", bp / 100, bp % 100)
    }
}

/// The MLP run: `196 → 32 → 32 → 10`, 8 epochs of batch 32.
pub const MLP_HIDDEN: [usize; 2] = [32, 32];
/// The MLP run's settings.
pub fn mlp_run() -> Settings {
    Settings {
        epochs: 8,
        batch: 32,
        eval_chunk: 100,
        hyper: Hyper {
            lr_inv: 64,
            ..Hyper::default()
        },
        seed: 0,
        frozen: 0,
    }
}

/// The CNN run: `C8 M2 C16 M2 | 32 → 10` on 1×14×14 (3×3 convolutions, padding 1), learning
/// heads of at most 128 pooled features.
pub const CNN_FEATURES: [Feature; 4] = [
    Feature::Conv {
        filters: 8,
        kernel: 3,
        stride: 1,
        padding: 1,
    },
    Feature::MaxPool(2),
    Feature::Conv {
        filters: 16,
        kernel: 3,
        stride: 1,
        padding: 1,
    },
    Feature::MaxPool(2),
];
/// The CNN's classifier hidden widths.
pub const CNN_CLASSIFIER: [usize; 1] = [32];
/// The CNN heads' largest input.
pub const CNN_DECODER: usize = 128;
/// The CNN run's settings.
pub fn cnn_run() -> Settings {
    Settings {
        epochs: 4,
        batch: 4,
        eval_chunk: 5,
        hyper: Hyper {
            lr_inv: 64,
            ..Hyper::default()
        },
        seed: 0,
        frozen: 0,
    }
}

/// A model the firmware trains: the engine's training interface plus the normalisation it
/// carries (fitted on the training split, saved with the model).
pub trait Net: Trainable + NamedParams {
    /// The model's normalisation field.
    fn normalization(&self) -> Option<&Normalization>;
    /// One training step on normalised rows, the first `frozen` local blocks left as they are.
    fn learn(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
        frozen: usize,
    ) -> Result<StepStats>;
    /// The model's input normalisation (an error if it has none).
    fn norm(&self) -> Result<&Normalization> {
        self.normalization().ok_or_else(no_norm)
    }
}

impl Net for Mlp {
    fn normalization(&self) -> Option<&Normalization> {
        self.normalization.as_ref()
    }
    fn learn(
        &mut self,
        x: ArrayView2<'_, i8>,
        l: &[usize],
        h: &Hyper,
        frozen: usize,
    ) -> Result<StepStats> {
        self.fine_tune_step(x, l, h, frozen)
    }
}

impl Net for Cnn {
    fn normalization(&self) -> Option<&Normalization> {
        self.normalization.as_ref()
    }
    fn learn(
        &mut self,
        x: ArrayView2<'_, i8>,
        l: &[usize],
        h: &Hyper,
        frozen: usize,
    ) -> Result<StepStats> {
        match frozen {
            0 => self.step(x, l, h),
            _ => Err(nitro_core::Error::Config(
                "the firmware fine-tunes MLPs only".into(),
            )),
        }
    }
}

fn no_norm() -> nitro_core::Error {
    nitro_core::Error::Config("model has no normalisation".into())
}

/// The MLP `196 → hidden… → 10`, its normalisation fitted on the training split (no copy of
/// the data).
pub fn mlp(hidden: &[usize], seed: u64, train: &Split<'_>) -> Result<Mlp> {
    let mut cfg = MlpConfig::new(PIXELS, hidden, 10);
    cfg.seed = seed;
    let mut model = Mlp::new(cfg)?;
    model.normalization = Some(Normalization::fit(train.view(), 1)?);
    Ok(model)
}

/// The CNN on 1×14×14 images: `features`, then the classifier MLP `classifier… → 10`; each
/// conv block's learning head reads at most `decoder_dim` pooled features.
pub fn cnn(
    features: &[Feature],
    classifier: &[usize],
    decoder_dim: usize,
    seed: u64,
    train: &Split<'_>,
) -> Result<Cnn> {
    let mut cfg = CnnConfig::new((1, SIDE, SIDE), features, classifier, 10);
    cfg.seed = seed;
    cfg.decoder_dim = decoder_dim;
    let mut model = Cnn::new(cfg)?;
    model.normalization = Some(Normalization::fit(train.view(), 1)?);
    Ok(model)
}

/// FNV-1a (64-bit) over every parameter's name, shape and `i32` values (little-endian), in the
/// order of saved files: equal hashes on two machines mean the same weights, bit for bit.
pub fn weights_hash<M: NamedParams>(model: &M) -> Result<u64> {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    for (name, shape) in model.parameter_shapes() {
        h.bytes(name.as_bytes());
        for d in shape {
            h.bytes(&(d as u64).to_le_bytes());
        }
        for v in model.parameter(&name)?.iter() {
            h.bytes(&v.to_le_bytes());
        }
    }
    Ok(h.0)
}

struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
        }
    }
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

/// Correct predictions and the number of images on the images of `split` whose label passes
/// `keep`, evaluated in chunks straight from flash.
pub fn evaluate<M: Net>(
    model: &M,
    split: &Split<'_>,
    chunk: usize,
    keep: impl Fn(u8) -> bool,
) -> Result<(u64, u64)> {
    let n = model.norm()?;
    let all = split.view();
    let (mut correct, mut total) = (0, 0);
    for start in (0..split.len()).step_by(chunk.max(1)) {
        let end = (start + chunk.max(1)).min(split.len());
        let x = n.apply(all.slice(ndarray::s![start..end, ..]))?;
        let predicted = nitro_core::loss::argmax_rows(&model.logits(x.view())?);
        for (p, &l) in predicted.iter().zip(&split.y[start..end]) {
            if keep(l) {
                total += 1;
                correct += u64::from(*p == usize::from(l));
            }
        }
    }
    Ok((correct, total))
}

/// One epoch over `train` in a seeded shuffled order, then evaluation on `test`.
/// `instructions` reads the device's instruction counter (a constant where there is none): the
/// training steps' total lands in [`Epoch::step_instructions`].
pub fn epoch<M: Net>(
    model: &mut M,
    s: &Settings,
    train: &Split<'_>,
    test: &Split<'_>,
    rng: &mut Pcg32,
    order: &mut [usize],
    instructions: fn() -> u64,
) -> Result<Epoch> {
    rng.shuffle(order);
    let mut e = Epoch::default();
    for idx in order.chunks_exact(s.batch) {
        let (raw, labels) = gather(train, idx);
        let x = model.norm()?.apply(raw.view())?;
        drop(raw);
        let t0 = instructions();
        let st = model.learn(x.view(), &labels, &s.hyper, s.frozen)?;
        e.step_instructions += instructions().wrapping_sub(t0);
        e.steps += 1;
        e.train_correct += st.correct;
        e.train_total += st.total;
    }
    model.set_hyper(s.hyper);
    (e.test_correct, e.test_total) = evaluate(model, test, s.eval_chunk, |_| true)?;
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

/// What the runs need of the machine they run on.
pub struct Device {
    /// The target triple, for the report.
    pub target: &'static str,
    /// Bytes of the heap.
    pub heap_size: usize,
    /// The most heap bytes in use at once since the last `reset_peak`.
    pub peak: fn() -> usize,
    /// Start a new peak measurement from what is live now.
    pub reset_peak: fn(),
    /// Heap bytes in use now.
    pub live: fn() -> usize,
    /// Centiseconds of (host) time.
    pub centis: fn() -> u32,
    /// The instruction counter (a constant where there is none).
    pub instructions: fn() -> u64,
}

/// The embedded dataset, and the host-trained model the device fine-tunes.
pub struct Data<'a> {
    /// Training split.
    pub train: Split<'a>,
    /// Test split.
    pub test: Split<'a>,
    /// The device blob of an MLP trained on the host without the classes from
    /// [`HELD_OUT`] on (`examples/firmware_host.rs` writes it).
    pub pretrained: &'a [u8],
}

/// The first class the host-trained model never saw: Fashion-MNIST's 8 (bag) and 9 (ankle
/// boot) are the device's new local classes.
pub const HELD_OUT: u8 = 8;

/// The host's training run for the fine-tuning model: [`mlp_run`]'s settings on the training
/// images of the classes below [`HELD_OUT`] (normalisation fitted on those too). The host
/// runner calls it; the firmware only fine-tunes.
#[cfg_attr(target_os = "none", allow(dead_code))]
pub fn pretrain(data: &Data<'_>) -> Result<Mlp> {
    let s = mlp_run();
    let seen: Vec<usize> = (0..data.train.len())
        .filter(|&i| data.train.y[i] < HELD_OUT)
        .collect();
    let (images, _) = gather(&data.train, &seen);
    let mut cfg = MlpConfig::new(PIXELS, &MLP_HIDDEN, 10);
    cfg.seed = s.seed;
    let mut model = Mlp::new(cfg)?;
    model.normalization = Some(Normalization::fit(images.view(), 1)?);
    drop(images);
    let mut rng = Pcg32::new(s.seed, nitro_core::names::SHUFFLE_STREAM);
    let mut order = seen;
    for _ in 0..s.epochs {
        epoch(
            &mut model,
            &s,
            &data.train,
            &data.test,
            &mut rng,
            &mut order,
            || 0,
        )?;
    }
    Ok(model)
}

/// The fine-tuning run's settings: 3 epochs over the device's local data, the first local
/// block frozen (its activations are not even kept), the second block and the output layer
/// learning.
pub fn tune_run() -> Settings {
    Settings {
        frozen: 1,
        epochs: 3,
        ..mlp_run()
    }
}

/// Accuracy on the test images of the classes the host saw and of the held-out ones.
fn by_classes(model: &Mlp, data: &Data<'_>, chunk: usize) -> Result<(Pct, Pct)> {
    let (c, t) = evaluate(model, &data.test, chunk, |l| l < HELD_OUT)?;
    let (c2, t2) = evaluate(model, &data.test, chunk, |l| l >= HELD_OUT)?;
    Ok((Pct(c, t), Pct(c2, t2)))
}

/// On-device fine-tuning: load the host-trained model from its blob, train it on the local
/// data (every class) with the first block frozen, and report the accuracy on the seen and the
/// held-out classes before and after. Passes when the held-out classes reach 70 %.
fn fine_tune(out: &mut dyn Write, dev: &Device, data: &Data<'_>) -> Result<bool> {
    (dev.reset_peak)();
    let s = tune_run();
    let model = export::from_blob(data.pretrained)?.into_mlp()?;
    let (seen, new) = by_classes(&model, data, s.eval_chunk)?;
    let _ = writeln!(
        out,
        "tune: host-trained MLP {} from a {} B blob (classes {HELD_OUT}-9 held out); before: \
         classes 0-{} {seen}, classes {HELD_OUT}-9 {new}; fine-tuning {} epochs, first {} block(s) frozen",
        model.describe(),
        data.pretrained.len(),
        HELD_OUT - 1,
        s.epochs,
        s.frozen
    );
    let (ok, model) = train(out, dev, data, "tune", model, &s, |_, m| Ok(m))?;
    let (c, t) = evaluate(&model, &data.test, s.eval_chunk, |l| l >= HELD_OUT)?;
    let (seen, _) = by_classes(&model, data, s.eval_chunk)?;
    let _ = writeln!(
        out,
        "tune: after: classes 0-{} {seen}, classes {HELD_OUT}-9 {}",
        HELD_OUT - 1,
        Pct(c, t)
    );
    Ok(ok && c * 100 >= t * TARGET_PCT)
}

/// Whether `a` and `b` give the same logits on the first `n` test images (in chunks).
fn same_logits<A: Evaluate, B: Evaluate>(
    a: &A,
    b: &B,
    norm: &Normalization,
    test: &Split<'_>,
    (n, chunk): (usize, usize),
) -> Result<bool> {
    let mut same = true;
    for start in (0..n.min(test.len())).step_by(chunk) {
        let end = (start + chunk).min(n).min(test.len());
        let x = norm.apply(test.view().slice(ndarray::s![start..end, ..]))?;
        same &= a.logits(x.view())? == b.logits(x.view())?;
    }
    Ok(same)
}

fn verdict(same: bool) -> &'static str {
    if same {
        "identical"
    } else {
        "DIFFER"
    }
}

/// The device blobs of `model`, with learning heads and without (for a device that only
/// predicts): their sizes, and that each reloads to a model with the same logits on the first
/// `n` test images (evaluated `chunk` at a time), the headless one refusing to train. Returns
/// the model reloaded from the full blob.
fn blobs<M: Net>(
    out: &mut dyn Write,
    dev: &Device,
    tag: &str,
    model: &M,
    test: &Split<'_>,
    (n, chunk): (usize, usize),
) -> Result<DeviceModel>
where
    for<'a> &'a M: Into<ModelRef<'a>>,
{
    let norm = model.norm()?;
    let blob = export::to_blob(model)?;
    let loaded = export::from_blob(&blob)?;
    let full = blob.len();
    drop(blob);
    let same = same_logits(model, &loaded, norm, test, (n, chunk))?;
    let small = export::to_blob_with(model, BlobOptions { heads: false })?;
    let mut device = export::from_blob(&small)?;
    let headless = small.len();
    drop(small);
    let same_small = same_logits(model, &device, norm, test, (n, chunk))?;
    let x = norm.apply(test.view().slice(ndarray::s![..4, ..]))?;
    let refused = !device.has_heads() && device.step(x.view(), &[0; 4], &Hyper::default()).is_err();
    drop(device);
    let _ = writeln!(
        out,
        "{tag} export: {full} B blob with learning heads (format v{}), {headless} B without \
         (inference only); reloaded: logits on {} test images {} ({} without heads, training \
         it {}) (peak heap so far {} B)",
        export::BLOB_VERSION,
        n.min(test.len()),
        verdict(same),
        verdict(same_small),
        if refused { "refused" } else { "NOT REFUSED" },
        (dev.peak)()
    );
    if !(same && same_small && refused) {
        return Err(nitro_core::Error::Format(
            "a reloaded model predicts differently".into(),
        ));
    }
    Ok(loaded)
}

/// Before the MLP's last epoch: its blobs ([`blobs`], the whole test split), and training goes
/// on from the model reloaded from the full blob (the original is dropped).
fn reload(out: &mut dyn Write, dev: &Device, model: Mlp, test: &Split<'_>) -> Result<Mlp> {
    let loaded = blobs(out, dev, "mlp", &model, test, (test.len(), 50))?;
    drop(model);
    let _ = writeln!(out, "mlp: continuing training from the reloaded model");
    loaded.into_mlp()
}

/// The test accuracy every run must reach (percent; the fine-tuning run also on the held-out
/// classes).
pub const TARGET_PCT: u64 = 70;

/// Train `model` for `s.epochs` epochs (`before_last` runs first on the model before the last
/// epoch), print the epochs and the run's summary lines, and return whether the final test
/// accuracy reached [`TARGET_PCT`] within the heap.
fn train<M: Net>(
    out: &mut dyn Write,
    dev: &Device,
    data: &Data<'_>,
    tag: &str,
    mut model: M,
    s: &Settings,
    before_last: impl FnOnce(&mut dyn Write, M) -> Result<M>,
) -> Result<(bool, M)> {
    let (train, test) = (&data.train, &data.test);
    // What is live now is the model (parameters and their containers): the rest of the peak is
    // the training step's working set (activations saved for the local updates, scratch).
    let model_bytes = (dev.live)();
    let mut rng = Pcg32::new(s.seed, nitro_core::names::SHUFFLE_STREAM);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut last = Epoch::default();
    let mut before_last = Some(before_last);
    for n in 1..=s.epochs {
        if n == s.epochs {
            if let Some(f) = before_last.take() {
                model = f(out, model)?;
            }
        }
        let t0 = (dev.centis)();
        last = epoch(
            &mut model,
            s,
            train,
            test,
            &mut rng,
            &mut order,
            dev.instructions,
        )?;
        let dt = (dev.centis)().wrapping_sub(t0);
        report(
            out,
            n,
            &last,
            format_args!(
                "  {}.{:02} s  peak heap {} B",
                dt / 100,
                dt % 100,
                (dev.peak)()
            ),
        );
    }
    let acc_ok = last.test_correct * 100 >= last.test_total * TARGET_PCT;
    let heap_ok = (dev.peak)() <= dev.heap_size;
    let _ = writeln!(
        out,
        "{tag}: peak heap {} B ({} KiB of {} KiB: model {} B, training working set {} B); \
         {} instructions per training step (batch {}, mean of the last epoch's {} steps; \
         exact only under qemu -icount shift=0)",
        (dev.peak)(),
        (dev.peak)().div_ceil(1024),
        dev.heap_size / 1024,
        model_bytes,
        (dev.peak)().saturating_sub(model_bytes),
        last.step_instructions / last.steps.max(1),
        s.batch,
        last.steps
    );
    let _ = writeln!(out, "HASH {tag} {:016x}", weights_hash(&model)?);
    let _ = writeln!(
        out,
        "{tag}: {} (test accuracy {} needs >= {TARGET_PCT}%)",
        if acc_ok && heap_ok { "PASS" } else { "FAIL" },
        Pct(last.test_correct, last.test_total),
    );
    Ok((acc_ok && heap_ok, model))
}

/// Both runs (the MLP, then the CNN) on `data`; whether both passed.
pub fn run(out: &mut dyn Write, dev: &Device, data: &Data<'_>) -> Result<bool> {
    let (train_split, test) = (&data.train, &data.test);
    if train_split.x.len() != train_split.len() * PIXELS || test.x.len() != test.len() * PIXELS {
        return Err(nitro_core::Error::Shape(
            "embedded dataset has the wrong size".into(),
        ));
    }
    let _ = writeln!(
        out,
        "nitrod firmware: {}, {} train / {} test Fashion-MNIST 14x14 images in flash, heap arena {} KiB",
        dev.target,
        train_split.len(),
        test.len(),
        dev.heap_size / 1024
    );
    // The MLP.
    let s = mlp_run();
    let model = mlp(&MLP_HIDDEN, s.seed, train_split)?;
    let _ = writeln!(
        out,
        "mlp: NITRO-D MLP {} ({} parameters), batch {}, lr_inv {}, {} epochs",
        model.describe(),
        model.num_parameters(),
        s.batch,
        s.hyper.lr_inv,
        s.epochs
    );
    (dev.reset_peak)();
    let (mlp_ok, _) = train(out, dev, data, "mlp", model, &s, |out, m| {
        reload(out, dev, m, test)
    })?;

    // The CNN.
    let s = cnn_run();
    let model = cnn(
        &CNN_FEATURES,
        &CNN_CLASSIFIER,
        CNN_DECODER,
        s.seed,
        train_split,
    )?;
    let _ = writeln!(
        out,
        "cnn: NITRO-D CNN {} ({} parameters), batch {}, lr_inv {}, {} epochs",
        model.describe(),
        model.num_parameters(),
        s.batch,
        s.hyper.lr_inv,
        s.epochs
    );
    (dev.reset_peak)();
    let (cnn_ok, model) = train(out, dev, data, "cnn", model, &s, |_, m| Ok(m))?;
    blobs(out, dev, "cnn", &model, test, (100, s.eval_chunk))?;
    drop(model);

    let tune_ok = fine_tune(out, dev, data)?;

    let ok = mlp_ok && cnn_ok && tune_ok;
    let _ = writeln!(out, "live heap at end {} B", (dev.live)());
    let _ = writeln!(out, "RESULT: {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}
