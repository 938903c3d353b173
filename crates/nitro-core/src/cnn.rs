//! Convolutional NITRO-D (SPEC §4.1, §4.2, §4.3, §5, §7, §12): the local-loss convolutional
//! block, the CNN model (feature extractor + MLP classifier), its training step and presets.

use crate::block::{
    argmax_rows, loss_and_correct, output_error, Compat, LocalLinearBlock, LocalStats,
};
use crate::data::{one_hot, Augment, Normalization};
use crate::error::{Error, Result};
use crate::init::{bound, uniform, Init};
use crate::kernels::Int;
use crate::layers::{
    flatten, unflatten, Activation, ActivationKind, Conv2d, Dropout, Linear, Pool2d, PoolKind,
    Scaling,
};
use crate::model::{Hyper, StepStats};
use crate::optim::Sgd;
use crate::rng::Pcg32;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ndarray::{Array2, Array4, ArrayView2, ArrayView4};

/// One entry of a CNN feature extractor (SPEC §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// A [`LocalConv2dBlock`] with `filters` square `kernel×kernel` filters.
    Conv {
        /// Output channels.
        filters: usize,
        /// Kernel size.
        kernel: usize,
        /// Stride (only 1 is supported; others are rejected).
        stride: usize,
        /// Zero padding on each side.
        padding: usize,
    },
    /// A plain MaxPool2d with kernel = stride = `k`, no padding.
    MaxPool(usize),
    /// A plain IntegerAvgPool2d with kernel = stride = `k`, no padding.
    AvgPool(usize),
    /// A Dropout layer, rate in percent.
    Dropout(u32),
}

impl Feature {
    /// `Conv(filters, k=3, stride 1, padding 1)`, the VGG building block.
    pub const fn conv3(filters: usize) -> Self {
        Feature::Conv {
            filters,
            kernel: 3,
            stride: 1,
            padding: 1,
        }
    }
}

/// The learning-head pooling of a conv block (SPEC §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadGeometry {
    /// Pooling kernel `(kh, kw)`; `(1, 1)` means no pooling.
    pub kernel: (usize, usize),
    /// Pooling padding `(ph, pw)`.
    pub padding: (usize, usize),
    /// Pooled spatial size `(dh, dw)`.
    pub dims: (usize, usize),
    /// Flattened head input `D = F·dh·dw`.
    pub features: usize,
}

fn ceil_div(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// Head sizing of SPEC §4.1 for a block output `filters × d × d`: double `kh` (and, while still
/// too large in the same round, `kw`) until `D ≤ decoder_dim` or `kh ≥ d`.
///
/// `F=128, d=28, decoder_dim=4096` gives kernel `(8,4)`, padding `(4,0)`, `D = 3584`.
pub fn head_geometry(filters: usize, d: usize, decoder_dim: usize) -> HeadGeometry {
    let (mut kh, mut kw, mut dh, mut dw) = (1usize, 1usize, d, d);
    let size = |dh: usize, dw: usize| filters.saturating_mul(dh).saturating_mul(dw);
    while size(dh, dw) > decoder_dim && kh < d {
        kh *= 2;
        dh = ceil_div(d, kh);
        if size(dh, dw) > decoder_dim {
            kw *= 2;
            dw = ceil_div(d, kw);
        }
    }
    let padding = if (kh, kw) == (1, 1) {
        (0, 0)
    } else {
        ((kh * (dh - d / kh)) / 2, (kw * (dw - d / kw)) / 2)
    };
    HeadGeometry {
        kernel: (kh, kw),
        padding,
        dims: (dh, dw),
        features: size(dh, dw),
    }
}

/// `IntegerConv2d → Scaling(2⁸·C·k·k) → activation`, with the learning head
/// `[MaxPool|AvgPool] → Flatten → IntegerLinear(D→classes) → Scaling(2⁸·D)` (SPEC §4.1).
#[derive(Clone, Debug)]
pub struct LocalConv2dBlock {
    /// The forward convolution.
    pub conv: Conv2d,
    /// Its scaling layer.
    pub conv_scale: Scaling,
    /// The activation.
    pub act: Activation,
    /// The head's pooling (absent when the block output already fits `decoder_dim`).
    pub pool: Option<Pool2d>,
    /// The head's linear layer.
    pub head: Linear,
    /// The head's scaling layer.
    pub head_scale: Scaling,
    /// Head pooling geometry.
    pub geometry: HeadGeometry,
    /// Output spatial size `d` of the block.
    pub out_size: usize,
    saved_out: Option<Array4<i8>>,
}

impl LocalConv2dBlock {
    /// A block from existing layers; `in_size` is the (square) input size.
    pub fn from_layers(
        conv: Conv2d,
        head: Linear,
        in_size: usize,
        decoder_dim: usize,
        head_pool: PoolKind,
        kind: ActivationKind,
    ) -> Result<Self> {
        let (d, _) = conv.output_size(in_size, in_size)?;
        let geometry = head_geometry(conv.filters(), d, decoder_dim);
        if head.in_features() != geometry.features {
            return Err(Error::shape(format!(
                "{} has {} inputs but the head of {} gives {}",
                head.name,
                head.in_features(),
                conv.name,
                geometry.features
            )));
        }
        let pool = (geometry.kernel != (1, 1))
            .then(|| Pool2d::new(head_pool, geometry.kernel, geometry.padding))
            .transpose()?;
        Ok(LocalConv2dBlock {
            conv_scale: Scaling::for_fan_in(conv.fan_in())?,
            head_scale: Scaling::for_fan_in(head.in_features())?,
            act: Activation::new(kind)?,
            pool,
            conv,
            head,
            geometry,
            out_size: d,
            saved_out: None,
        })
    }

    /// Forward through conv, scaling and activation; training mode saves what the local
    /// update needs.
    pub fn forward<T: Int>(&mut self, x: ArrayView4<'_, T>, train: bool) -> Result<Array4<i8>>
    where
        i16: From<T>,
    {
        let scaled = self.conv.forward_scaled(x, train, &self.conv_scale)?;
        let h = self.act.forward(scaled, train);
        self.saved_out = if train { Some(h.clone()) } else { None };
        Ok(h)
    }

    /// Evaluation-mode forward.
    pub fn infer<T: Int>(&self, x: ArrayView4<'_, T>) -> Result<Array4<i8>>
    where
        i16: From<T>,
    {
        let scaled = self.conv.infer_scaled(x, &self.conv_scale)?;
        Ok(self.act.infer(&scaled))
    }

    /// The opt-in amplification adjustment `d² / (kh·kw)` of SPEC §5 (at least 1).
    pub fn amp_adjustment(&self) -> i64 {
        let (kh, kw) = self.geometry.kernel;
        ((self.out_size * self.out_size) / (kh * kw)).max(1) as i64
    }

    /// The local update (SPEC §4.1, §4.3): head forward on the saved output, local error, head
    /// update passing `δ·W_head` back through Flatten and the pooling, activation backward,
    /// convolution update. Conv blocks are updated once, also in [`Compat::Reference`].
    pub fn local_update(
        &mut self,
        target: &Array2<i8>,
        labels: &[usize],
        fwd_sgd: &Sgd,
        head_sgd: &Sgd,
        compat: Compat,
    ) -> Result<LocalStats> {
        let h = self.saved_out.take().ok_or_else(|| {
            Error::config(format!(
                "{}: local update without a training forward",
                self.conv.name
            ))
        })?;
        let pooled = match &mut self.pool {
            Some(p) => p.forward(h.view(), true, compat)?,
            None => h,
        };
        let (_, f, dh, dw) = pooled.dim();
        let flat = flatten(pooled);
        let pred = self
            .head_scale
            .forward(&self.head.forward(flat.view(), true)?);
        let (loss, correct) = loss_and_correct(&pred, target, labels);
        let delta = output_error(&pred, target, compat);
        let back = self
            .head
            .backward(delta.view(), true, head_sgd)?
            .expect("input error requested");
        let back = unflatten(back, (f, dh, dw))?;
        let back = match &mut self.pool {
            Some(p) => p.backward(back.view())?,
            None => back,
        };
        let d_act = self.act.backward(back)?;
        self.conv.backward(d_act.view(), fwd_sgd)?;
        Ok(LocalStats { loss, correct })
    }

    /// Drop saved training state.
    pub fn clear(&mut self) {
        self.saved_out = None;
        self.conv.clear();
        self.head.clear();
        if let Some(p) = &mut self.pool {
            p.clear();
        }
    }
}

/// Architecture of a local-loss CNN (SPEC §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CnnConfig {
    /// Input geometry `(C, H, W)`; `H = W` is required.
    pub input: (usize, usize, usize),
    /// The feature extractor.
    pub features: Vec<Feature>,
    /// Hidden widths of the classifier MLP (e.g. `[1024]`).
    pub classifier: Vec<usize>,
    /// Classes.
    pub classes: usize,
    /// Activation of every block.
    pub activation: ActivationKind,
    /// Classifier dropout in percent (0 = none). Per SPEC §7 a non-zero rate also puts one
    /// Dropout layer just before the last entry of the feature extractor.
    pub dropout_pct: u32,
    /// Whether conv and linear layers have a bias (paper: no).
    pub bias: bool,
    /// Initialisation.
    pub init: Init,
    /// Seed of initialisation and dropout.
    pub seed: u64,
    /// Largest flattened learning-head input of a conv block (SPEC §4.1; default 2048).
    pub decoder_dim: usize,
    /// Pooling of the conv blocks' learning heads.
    pub head_pool: PoolKind,
    /// Multiply each conv block's amplification by `d²/(kh·kw)` (SPEC §5; default off, which
    /// reproduces the paper).
    pub conv_amp_adjust: bool,
}

impl CnnConfig {
    /// A CNN with the paper's defaults (NITRO-ReLU a=4, Kaiming, no bias, no dropout,
    /// decoder 2048, max-pool heads, plain amplification, seed 0).
    pub fn new(
        input: (usize, usize, usize),
        features: &[Feature],
        classifier: &[usize],
        classes: usize,
    ) -> Self {
        CnnConfig {
            input,
            features: features.to_vec(),
            classifier: classifier.to_vec(),
            classes,
            activation: ActivationKind::default(),
            dropout_pct: 0,
            bias: false,
            init: Init::Kaiming,
            seed: 0,
            decoder_dim: 2048,
            head_pool: PoolKind::Max,
            conv_amp_adjust: false,
        }
    }

    /// The feature list as built: with classifier dropout, one Dropout is placed just before
    /// the last entry (SPEC §7). Layer names are indexed by position in this list.
    pub fn effective_features(&self) -> Vec<Feature> {
        let mut f = self.features.clone();
        if self.dropout_pct > 0 && !f.is_empty() {
            let at = f.len() - 1;
            f.insert(at, Feature::Dropout(self.dropout_pct));
        }
        f
    }

    /// Check sizes and settings; returns the flattened feature geometry `(C, d, d)`.
    pub fn validate(&self) -> Result<(usize, usize, usize)> {
        let (c0, h, w) = self.input;
        if c0 == 0 || h == 0 || h != w {
            return Err(Error::config(format!(
                "CNN input must be C×d×d with positive sizes, got {:?}",
                self.input
            )));
        }
        if self.classes < 2 {
            return Err(Error::config("need at least 2 classes"));
        }
        if self.classifier.contains(&0) || self.decoder_dim == 0 {
            return Err(Error::config(
                "classifier widths and decoder_dim must be positive",
            ));
        }
        if self.dropout_pct != 0 {
            Dropout::new(self.dropout_pct, 0, 0)?;
        }
        self.activation.validate()?;
        let (mut c, mut d) = (c0, h);
        for (i, f) in self.effective_features().iter().enumerate() {
            match *f {
                Feature::Conv {
                    filters,
                    kernel,
                    stride,
                    padding,
                } => {
                    if stride != 1 {
                        return Err(Error::config(format!(
                            "feature {i}: convolution stride {stride} is not supported (only 1; \
                             SPEC §3.2)"
                        )));
                    }
                    if filters == 0 || kernel == 0 || d + 2 * padding < kernel {
                        return Err(Error::config(format!(
                            "feature {i}: Conv({filters}, k{kernel}, p{padding}) does not fit a \
                             {d}×{d} input"
                        )));
                    }
                    if filters
                        .checked_mul(c * kernel * kernel)
                        .is_none_or(|p| p > 1 << 30)
                    {
                        return Err(Error::config(format!("feature {i}: too many weights")));
                    }
                    d = d + 2 * padding - kernel + 1;
                    c = filters;
                }
                Feature::MaxPool(k) | Feature::AvgPool(k) => {
                    if k == 0 || k > d {
                        return Err(Error::config(format!(
                            "feature {i}: pooling {k} does not fit a {d}×{d} input"
                        )));
                    }
                    d /= k;
                }
                Feature::Dropout(r) => {
                    Dropout::new(r, 0, 0)?;
                }
            }
        }
        let mut prev = c * d * d;
        for &wd in self
            .classifier
            .iter()
            .chain(core::iter::once(&self.classes))
        {
            if prev.checked_mul(wd).is_none_or(|p| p > 1 << 30) {
                return Err(Error::config(format!(
                    "classifier layer {prev}→{wd} is too large"
                )));
            }
            prev = wd;
        }
        Ok((c, d, d))
    }
}

impl CnnConfig {
    /// Name and shape of every parameter tensor this architecture has (weights, then
    /// `<name>.bias` when `bias` is set), in the order of [`Cnn::convs`] then [`Cnn::linears`].
    /// Computed from the configuration alone, without allocating any weights.
    pub fn tensor_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let feature_shape = self.validate()?;
        let mut convs = Vec::new();
        let mut heads = Vec::new();
        let (mut c, mut d) = (self.input.0, self.input.1);
        let feats = self.effective_features();
        for (i, f) in feats.iter().enumerate() {
            match *f {
                Feature::Conv {
                    filters,
                    kernel,
                    padding,
                    ..
                } => {
                    d = d + 2 * padding - kernel + 1;
                    let g = head_geometry(filters, d, self.decoder_dim);
                    convs.push((
                        format!("conv_encoder_{i:02}"),
                        alloc::vec![filters, c, kernel, kernel],
                        filters,
                    ));
                    heads.push((
                        format!("linear_pred_{i:02}"),
                        alloc::vec![self.classes, g.features],
                        self.classes,
                    ));
                    c = filters;
                }
                Feature::MaxPool(k) | Feature::AvgPool(k) => d /= k,
                Feature::Dropout(_) => {}
            }
        }
        let nf = feats.len();
        let mut prev = feature_shape.0 * feature_shape.1 * feature_shape.2;
        for (j, &w) in self.classifier.iter().enumerate() {
            heads.push((
                format!("linear_encoder_{:02}", nf + j),
                alloc::vec![w, prev],
                w,
            ));
            heads.push((
                format!("linear_pred_{:02}", nf + j),
                alloc::vec![self.classes, w],
                self.classes,
            ));
            prev = w;
        }
        heads.push((
            format!("linear_{:02}", nf + self.classifier.len()),
            alloc::vec![self.classes, prev],
            self.classes,
        ));
        let mut out = Vec::new();
        for (name, shape, outs) in convs.into_iter().chain(heads) {
            if self.bias {
                out.push((format!("{name}.bias"), alloc::vec![outs]));
            }
            out.push((name, shape));
        }
        Ok(out)
    }
}

/// One stage of the feature extractor.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Stage {
    /// A local-loss conv block.
    Block(LocalConv2dBlock),
    /// A plain pooling layer between blocks.
    Pool(Pool2d),
    /// A dropout layer.
    Dropout(Dropout),
}

/// `IntegerLocalLossCNN` (SPEC §4.2): feature extractor → Flatten → LocalLinearBlocks (with
/// optional Dropout) → output `IntegerLinear` → Scaling.
///
/// Layer names follow the original: entry `i` of [`CnnConfig::effective_features`] is
/// `conv_encoder_{i:02}` / `linear_pred_{i:02}`; classifier block `j` is
/// `linear_encoder_{n+j:02}` / `linear_pred_{n+j:02}` with `n` features; the output layer is
/// `linear_{n+blocks:02}`.
#[derive(Clone, Debug)]
pub struct Cnn {
    /// The architecture this model was built from.
    pub config: CnnConfig,
    /// The feature extractor.
    pub stages: Vec<Stage>,
    /// The classifier's local-loss blocks.
    pub blocks: Vec<LocalLinearBlock>,
    dropouts: Vec<Option<Dropout>>,
    /// The output layer.
    pub out: Linear,
    out_scale: Scaling,
    /// Geometry `(C, d, d)` of the flattened features.
    pub feature_shape: (usize, usize, usize),
    /// Normalisation statistics of the training data (saved with the model).
    pub normalization: Option<Normalization>,
    /// The settings of the last training run (saved with the model).
    pub hyper: Option<Hyper>,
}

impl Cnn {
    /// A freshly initialised model.
    pub fn new(config: CnnConfig) -> Result<Self> {
        let feature_shape = config.validate()?;
        let kind = config.activation;
        let mut stages = Vec::new();
        let (mut c, mut d) = (config.input.0, config.input.1);
        let feats = config.effective_features();
        for (i, f) in feats.iter().enumerate() {
            match *f {
                Feature::Conv {
                    filters,
                    kernel,
                    stride,
                    padding,
                } => {
                    let mut r = Pcg32::new(config.seed, i as u64);
                    let b = bound(
                        config.init,
                        kind,
                        c * kernel * kernel,
                        filters * kernel * kernel,
                    );
                    let w = uniform((filters, c, kernel, kernel), b, &mut r);
                    let conv = Conv2d::new(
                        format!("conv_encoder_{i:02}"),
                        w,
                        config.bias.then(|| ndarray::Array1::zeros(filters)),
                        stride,
                        padding,
                    )?;
                    let (dout, _) = conv.output_size(d, d)?;
                    let g = head_geometry(filters, dout, config.decoder_dim);
                    let mut r = Pcg32::new(config.seed, 1000 + i as u64);
                    let hb = bound(config.init, kind, g.features, config.classes);
                    let head = Linear::new(
                        format!("linear_pred_{i:02}"),
                        uniform((config.classes, g.features), hb, &mut r),
                        config.bias.then(|| ndarray::Array1::zeros(config.classes)),
                    )?;
                    stages.push(Stage::Block(LocalConv2dBlock::from_layers(
                        conv,
                        head,
                        d,
                        config.decoder_dim,
                        config.head_pool,
                        kind,
                    )?));
                    c = filters;
                    d = dout;
                }
                Feature::MaxPool(k) => {
                    stages.push(Stage::Pool(Pool2d::new(PoolKind::Max, (k, k), (0, 0))?));
                    d /= k;
                }
                Feature::AvgPool(k) => {
                    stages.push(Stage::Pool(Pool2d::new(PoolKind::Avg, (k, k), (0, 0))?));
                    d /= k;
                }
                Feature::Dropout(r) => stages.push(Stage::Dropout(Dropout::new(
                    r,
                    config.seed,
                    3000 + i as u64,
                )?)),
            }
        }
        let nf = feats.len();
        let mut blocks = Vec::new();
        let mut prev = feature_shape.0 * feature_shape.1 * feature_shape.2;
        for (j, &w) in config.classifier.iter().enumerate() {
            blocks.push(LocalLinearBlock::new(
                nf + j,
                prev,
                w,
                config.classes,
                kind,
                config.init,
                config.bias,
                config.seed,
            )?);
            prev = w;
        }
        let n = nf + blocks.len();
        let mut r = Pcg32::new(config.seed, 2000);
        let out = Linear::new(
            format!("linear_{n:02}"),
            uniform(
                (config.classes, prev),
                bound(config.init, kind, prev, config.classes),
                &mut r,
            ),
            config.bias.then(|| ndarray::Array1::zeros(config.classes)),
        )?;
        let dropouts = (0..blocks.len())
            .map(|j| {
                (config.dropout_pct > 0)
                    .then(|| Dropout::new(config.dropout_pct, config.seed, 3000 + (nf + j) as u64))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Cnn {
            out_scale: Scaling::for_fan_in(out.in_features())?,
            config,
            stages,
            blocks,
            dropouts,
            out,
            feature_shape,
            normalization: None,
            hyper: None,
        })
    }

    /// The conv blocks, in order.
    pub fn conv_blocks(&self) -> Vec<&LocalConv2dBlock> {
        self.stages
            .iter()
            .filter_map(|s| match s {
                Stage::Block(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    /// All convolutions, in order.
    pub fn convs(&self) -> Vec<&Conv2d> {
        self.conv_blocks().into_iter().map(|b| &b.conv).collect()
    }

    /// All linear layers in a fixed order: conv heads, classifier blocks (forward, head), output.
    pub fn linears(&self) -> Vec<&Linear> {
        let mut v: Vec<&Linear> = self.conv_blocks().into_iter().map(|b| &b.head).collect();
        for b in &self.blocks {
            v.push(&b.fwd);
            v.push(&b.head);
        }
        v.push(&self.out);
        v
    }

    /// Mutable access to the convolution called `name`.
    pub fn conv_mut(&mut self, name: &str) -> Option<&mut Conv2d> {
        self.stages.iter_mut().find_map(|s| match s {
            Stage::Block(b) if b.conv.name == name => Some(&mut b.conv),
            _ => None,
        })
    }

    /// Mutable access to the linear layer called `name`.
    pub fn linear_mut(&mut self, name: &str) -> Option<&mut Linear> {
        if self.out.name == name {
            return Some(&mut self.out);
        }
        for s in &mut self.stages {
            if let Stage::Block(b) = s {
                if b.head.name == name {
                    return Some(&mut b.head);
                }
            }
        }
        self.blocks.iter_mut().find_map(|b| {
            if b.fwd.name == name {
                Some(&mut b.fwd)
            } else if b.head.name == name {
                Some(&mut b.head)
            } else {
                None
            }
        })
    }

    /// Number of local-loss blocks (conv blocks, then classifier blocks).
    pub fn num_local_blocks(&self) -> usize {
        self.conv_blocks().len() + self.blocks.len()
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> usize {
        let c: usize = self
            .convs()
            .iter()
            .map(|l| l.weight.len() + l.bias.as_ref().map_or(0, |b| b.len()))
            .sum();
        c + self
            .linears()
            .iter()
            .map(|l| l.weight.len() + l.bias.as_ref().map_or(0, |b| b.len()))
            .sum::<usize>()
    }

    /// Reshape rows `N × (C·H·W)` into NCHW, checking the geometry.
    pub fn images<'a>(&self, x: ArrayView2<'a, i8>) -> Result<ArrayView4<'a, i8>> {
        let (c, h, w) = self.config.input;
        if x.nrows() == 0 {
            return Err(Error::shape("empty batch"));
        }
        if x.ncols() != c * h * w {
            return Err(Error::shape(format!(
                "model expects {} values per image ({c}×{h}×{w}), got {}",
                c * h * w,
                x.ncols()
            )));
        }
        x.into_shape_with_order((x.nrows(), c, h, w))
            .map_err(|_| Error::shape("input rows must be contiguous (standard layout)"))
    }

    fn check_images(&self, x: &ArrayView4<'_, i8>, labels: Option<&[usize]>) -> Result<()> {
        let (n, c, h, w) = x.dim();
        if n == 0 {
            return Err(Error::shape("empty batch"));
        }
        if (c, h, w) != self.config.input {
            return Err(Error::shape(format!(
                "model expects images {:?}, got {:?}",
                self.config.input,
                (c, h, w)
            )));
        }
        if let Some(l) = labels {
            if l.len() != n {
                return Err(Error::shape(format!("{n} samples but {} labels", l.len())));
            }
        }
        Ok(())
    }

    /// Feature-extractor forward (training mode saves in each block).
    fn features_forward(
        &mut self,
        x: ArrayView4<'_, i8>,
        train: bool,
        compat: Compat,
    ) -> Result<Array4<i16>> {
        let mut cur: Array4<i16> = x.mapv(i16::from);
        for s in &mut self.stages {
            cur = match s {
                Stage::Block(b) => b.forward(cur.view(), train)?.mapv(i16::from),
                Stage::Pool(p) => p.apply(cur.view(), compat)?.0,
                Stage::Dropout(d) => d.forward(&to_i8(&cur)?, train),
            };
        }
        Ok(cur)
    }

    fn features_infer(&self, x: ArrayView4<'_, i8>, compat: Compat) -> Result<Array4<i16>> {
        let mut cur: Array4<i16> = x.mapv(i16::from);
        for s in &self.stages {
            cur = match s {
                Stage::Block(b) => b.infer(cur.view())?.mapv(i16::from),
                Stage::Pool(p) => p.apply(cur.view(), compat)?.0,
                Stage::Dropout(_) => cur,
            };
        }
        Ok(cur)
    }

    fn compat(&self) -> Compat {
        self.hyper.map_or(Compat::Exact, |h| h.compat)
    }

    /// Evaluation-mode logits for NCHW images.
    pub fn predict_logits(&self, x: ArrayView4<'_, i8>) -> Result<Array2<i8>> {
        self.check_images(&x, None)?;
        let mut cur: Array2<i16> = flatten(self.features_infer(x, self.compat())?);
        for b in &self.blocks {
            cur = b.infer(cur.view())?.mapv(i16::from);
        }
        Ok(self.out_scale.forward(&self.out.infer(cur.view())?))
    }

    /// Predicted classes for rows `N × (C·H·W)` (arg-max, first on ties; SPEC §4.4).
    pub fn predict(&self, x: ArrayView2<'_, i8>) -> Result<Vec<usize>> {
        let x = x.as_standard_layout();
        Ok(argmax_rows(&self.predict_logits(self.images(x.view())?)?))
    }

    /// Number of correct predictions on rows `x`, evaluated in chunks of `chunk` rows.
    pub fn count_correct(
        &self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        chunk: usize,
    ) -> Result<u64> {
        if labels.len() != x.nrows() {
            return Err(Error::shape("samples and labels differ in number"));
        }
        crate::block::count_correct_chunked(x, labels, chunk, |rows| self.predict(rows))
    }

    /// One training step of SPEC §4.3 on NCHW images. In [`Compat::Reference`] the classifier
    /// blocks are updated twice (SPEC §12 item 1), errors wrap to `i8` (item 2) and the heads'
    /// max-pool padding is 0 (item 3).
    pub fn train_step(
        &mut self,
        x: ArrayView4<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> Result<StepStats> {
        self.check_images(&x, Some(labels))?;
        let target = one_hot(labels, self.config.classes)?;
        let (fwd_sgd, sub_sgd) = hyper.sgds()?;
        let compat = hyper.compat;
        // 1. Forward in training mode.
        let mut input: Array2<i16> = flatten(self.features_forward(x, true, compat)?);
        for (b, d) in self.blocks.iter_mut().zip(self.dropouts.iter_mut()) {
            let h = b.forward_owned(input, true)?;
            input = match d {
                Some(d) => d.forward(&h, true),
                None => h.mapv(i16::from),
            };
        }
        let pred = self
            .out_scale
            .forward(&self.out.forward_owned(input, true)?);
        // 2. Output layer.
        let (loss, correct) = loss_and_correct(&pred, &target, labels);
        let delta = output_error(&pred, &target, compat);
        self.out.backward(delta.view(), false, &sub_sgd)?;
        // 3. Every block's local update, independently.
        let adjust = self.config.conv_amp_adjust;
        let conv_update = |b: &mut &mut LocalConv2dBlock| -> Result<LocalStats> {
            let sgd = if adjust {
                let amp = fwd_sgd
                    .amp
                    .checked_mul(b.amp_adjustment())
                    .ok_or_else(|| Error::config("amplification overflows i64"))?;
                Sgd::new(fwd_sgd.lr_inv, amp, fwd_sgd.decay_inv)?
            } else {
                fwd_sgd
            };
            b.local_update(&target, labels, &sgd, &sub_sgd, compat)
        };
        let repeat = compat == Compat::Reference;
        let lin_update = |b: &mut LocalLinearBlock| {
            b.local_update(&target, labels, &fwd_sgd, &sub_sgd, compat, repeat)
        };
        let mut convs: Vec<&mut LocalConv2dBlock> = self
            .stages
            .iter_mut()
            .filter_map(|s| match s {
                Stage::Block(b) => Some(b),
                _ => None,
            })
            .collect();
        #[cfg(feature = "parallel")]
        let (cs, ls): (Vec<Result<LocalStats>>, Vec<Result<LocalStats>>) = {
            use rayon::prelude::*;
            let blocks = &mut self.blocks;
            rayon::join(
                || convs.par_iter_mut().map(conv_update).collect(),
                || blocks.par_iter_mut().map(lin_update).collect(),
            )
        };
        #[cfg(not(feature = "parallel"))]
        let (cs, ls): (Vec<Result<LocalStats>>, Vec<Result<LocalStats>>) = (
            convs.iter_mut().map(conv_update).collect(),
            self.blocks.iter_mut().map(lin_update).collect(),
        );
        let blocks = cs.into_iter().chain(ls).collect::<Result<Vec<_>>>()?;
        Ok(StepStats {
            loss,
            correct,
            total: labels.len() as u64,
            blocks,
        })
    }

    /// A short human-readable description, e.g. `1×28×28 C8 M2 C16 M2 | 32 → 10 nitro_relu`.
    pub fn describe(&self) -> String {
        let (c, h, w) = self.config.input;
        let mut s = format!("{c}×{h}×{w}");
        for f in self.config.effective_features() {
            s += &match f {
                Feature::Conv {
                    filters, kernel, ..
                } => format!(" C{filters}k{kernel}"),
                Feature::MaxPool(k) => format!(" M{k}"),
                Feature::AvgPool(k) => format!(" A{k}"),
                Feature::Dropout(r) => format!(" D{r}"),
            };
        }
        s += " |";
        for wd in &self.config.classifier {
            s += &format!(" {wd}");
        }
        s + &format!(
            " → {} {}",
            self.config.classes,
            self.config.activation.name()
        )
    }
}

/// Narrow an `i16` tensor holding `i8` values (dropout input).
fn to_i8(x: &Array4<i16>) -> Result<Array4<i8>> {
    let mut out = Array4::<i8>::zeros(x.raw_dim());
    for (o, &v) in out.iter_mut().zip(x.iter()) {
        *o = i8::try_from(v).map_err(|_| {
            Error::config("a Dropout feature must follow a conv block or pool, not another dropout")
        })?;
    }
    Ok(out)
}

impl crate::train::Trainable for Cnn {
    fn step(
        &mut self,
        x: ArrayView2<'_, i8>,
        labels: &[usize],
        hyper: &Hyper,
    ) -> Result<StepStats> {
        let x = x.as_standard_layout();
        let imgs = self.images(x.view())?;
        self.train_step(imgs, labels, hyper)
    }
    fn num_blocks(&self) -> usize {
        self.num_local_blocks()
    }
    fn set_hyper(&mut self, hyper: Hyper) {
        self.hyper = Some(hyper);
    }
}

/// CNN presets (SPEC §4.2, §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CnnPreset {
    /// VGG8B: `C128 C256 P C256 C512 P C512 P C512 P`, classifier `[1024]`, decoder 4096.
    Vgg8b,
    /// VGG11B: `C128 C128 C128 C256 P C256 C512 P C512 C512 P C512 P`, classifier `[1024]`.
    Vgg11b,
    /// A small, fast demo CNN (ours, not the paper's): `C32 P C64 P`, classifier `[256]`,
    /// decoder 2048, with VGG8B's per-dataset decays and augmentation. 860,256 parameters (most in
    /// the learning heads); a Fashion-MNIST epoch takes minutes instead of VGG8B's hours.
    Small,
}

/// A CNN preset's architecture and training settings.
#[derive(Clone, Debug)]
pub struct CnnPresetSpec {
    /// Architecture.
    pub config: CnnConfig,
    /// IntegerSGD settings (the paper's CNN runs used [`Compat::Reference`] behaviour; the
    /// default here is [`Compat::Exact`]).
    pub hyper: Hyper,
    /// Augmentation (SPEC §2: pad 2 for MNIST/Fashion-MNIST, 4 for CIFAR-10; flips except MNIST).
    pub augment: Option<Augment>,
}

impl CnnPreset {
    /// Parse `vgg8b`, `vgg11b` or `small`.
    pub fn from_name(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "vgg8b" => Ok(CnnPreset::Vgg8b),
            "vgg11b" => Ok(CnnPreset::Vgg11b),
            "small" | "small_cnn" | "small-cnn" => Ok(CnnPreset::Small),
            o => Err(Error::config(format!(
                "unknown CNN preset {o:?}; expected vgg8b, vgg11b or small"
            ))),
        }
    }

    /// The paper's settings for `dataset` (`mnist`, `fashion-mnist` or `cifar10`; SPEC §7).
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
                CnnPreset::Small => {
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
