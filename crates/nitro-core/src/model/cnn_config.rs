//! The architecture of a local-loss CNN (algorithm.md §4.2): its feature extractor entries, the
//! configuration, and the one walk through the feature stack that gives every entry's shapes.

use super::classifier::{self, config_with, settings_of, Settings};
use super::limits::{self, Count, MAX_PARAMETERS};
use crate::block::{head_geometry, HeadGeometry};
use crate::error::{Error, Result};
use crate::init::Init;
use crate::layers::{ActivationKind, Dropout, PoolKind};
use crate::names;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// One entry of a CNN feature extractor (algorithm.md §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// A [`crate::block::LocalConv2dBlock`] with `filters` square `kernel×kernel` filters.
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

/// Architecture of a local-loss CNN (algorithm.md §4.2).
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
    /// Classifier dropout in percent (0 = none). Per algorithm.md §7 a non-zero rate also puts one
    /// Dropout layer just before the last entry of the feature extractor.
    pub dropout_pct: u32,
    /// Whether conv and linear layers have a bias (paper: no).
    pub bias: bool,
    /// Initialisation.
    pub init: Init,
    /// Seed of initialisation and dropout.
    pub seed: u64,
    /// Largest flattened learning-head input of a conv block (algorithm.md §4.1; default 2048).
    pub decoder_dim: usize,
    /// Pooling of the conv blocks' learning heads.
    pub head_pool: PoolKind,
    /// Multiply each conv block's amplification by `d²/(kh·kw)` (algorithm.md §5; default off,
    /// which reproduces the paper).
    pub conv_amp_adjust: bool,
}

/// Where one entry of the feature extractor sits in the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureShape {
    /// Position in [`CnnConfig::effective_features`] (it names the entry's layers).
    pub index: usize,
    /// The entry.
    pub feature: Feature,
    /// Channels and (square) spatial size `(C, d)` it reads.
    pub input: (usize, usize),
    /// Channels and spatial size `(C, d)` it writes.
    pub output: (usize, usize),
    /// A conv block's learning-head pooling (algorithm.md §4.1); `None` for other entries.
    pub head: Option<HeadGeometry>,
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
        config_with!(
            CnnConfig {
                input: input,
                features: features.to_vec(),
                classifier: classifier.to_vec(),
                decoder_dim: 2048,
                head_pool: PoolKind::Max,
                conv_amp_adjust: false,
            },
            Settings::paper(classes)
        )
    }

    /// The feature list as built: with classifier dropout, one Dropout is placed just before
    /// the last entry (algorithm.md §7). Layer names are indexed by position in this list.
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
        self.feature_shapes().map(|(_, shape)| shape)
    }

    /// Check sizes and settings, and walk the feature stack: every entry's shapes, and the
    /// flattened feature geometry `(C, d, d)` the classifier reads.
    pub fn feature_shapes(&self) -> Result<(Vec<FeatureShape>, (usize, usize, usize))> {
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
        limits::feature_map(&"the CNN input", c0, h)?;
        let bias = self.bias;
        let mut count = Count::zero();
        let mut shapes = Vec::new();
        let (mut c, mut d) = (c0, h);
        for (index, &feature) in self.effective_features().iter().enumerate() {
            let input = (c, d);
            let mut head = None;
            match feature {
                Feature::Conv {
                    filters,
                    kernel,
                    stride,
                    padding,
                } => {
                    let i = index;
                    if stride != 1 {
                        return Err(Error::config(format!(
                            "feature {i}: convolution stride {stride} is not supported (only 1; \
                             docs/algorithm.md §3.2)"
                        )));
                    }
                    if filters == 0 || kernel == 0 {
                        return Err(Error::config(format!(
                            "feature {i}: Conv({filters}, k{kernel}) needs positive filters and \
                             kernel"
                        )));
                    }
                    // The padded size, checked: a huge padding is an error, never a wrap.
                    let padded = padding
                        .checked_mul(2)
                        .and_then(|p| p.checked_add(d))
                        .ok_or_else(|| {
                            Error::config(format!(
                                "feature {i}: Conv padding {padding} is too large for a {d}×{d} \
                                 input"
                            ))
                        })?;
                    if padded < kernel {
                        return Err(Error::config(format!(
                            "feature {i}: Conv({filters}, k{kernel}, p{padding}) does not fit a \
                             {d}×{d} input: kernel {kernel} is larger than the padded size \
                             {padded}"
                        )));
                    }
                    let fan_in = kernel
                        .checked_mul(kernel)
                        .and_then(|kk| kk.checked_mul(c))
                        .filter(|&f| f <= MAX_PARAMETERS)
                        .ok_or_else(|| {
                            Error::config(format!(
                                "feature {i}: Conv kernel {kernel} gives too many weights per \
                                 filter ({c}×{kernel}×{kernel})"
                            ))
                        })?;
                    d = padded - kernel + 1;
                    c = filters;
                    limits::feature_map(
                        &format_args!("feature {i} (Conv, padding {padding})"),
                        c,
                        d,
                    )?;
                    let g = head_geometry(filters, d, self.decoder_dim);
                    count =
                        count
                            .layer(filters, fan_in, bias)
                            .layer(self.classes, g.features, bias);
                    head = Some(g);
                }
                Feature::MaxPool(k) | Feature::AvgPool(k) => {
                    if k == 0 || k > d {
                        return Err(Error::config(format!(
                            "feature {index}: pooling {k} does not fit a {d}×{d} input"
                        )));
                    }
                    d /= k;
                }
                Feature::Dropout(r) => {
                    Dropout::new(r, 0, 0)?;
                }
            }
            shapes.push(FeatureShape {
                index,
                feature,
                input,
                output: (c, d),
                head,
            });
        }
        let mut prev = limits::feature_map(&"the CNN features", c, d)?;
        for &wd in &self.classifier {
            count = count.layer(wd, prev, bias).layer(self.classes, wd, bias);
            prev = wd;
        }
        count.layer(self.classes, prev, bias).check(&format_args!(
            "a CNN with features {:?} and classifier {:?}",
            self.features, self.classifier
        ))?;
        Ok((shapes, (c, d, d)))
    }

    /// Name and shape of every parameter tensor this architecture has (weights, then
    /// `<name>.bias` when `bias` is set), in the order of [`super::Cnn::convs`] then
    /// [`super::Cnn::linears`]. Computed from the configuration alone, without allocating any
    /// weights.
    pub fn tensor_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let (features, (fc, fd, _)) = self.feature_shapes()?;
        let mut convs = Vec::new();
        let mut heads = Vec::new();
        for f in &features {
            if let (
                Feature::Conv {
                    filters, kernel, ..
                },
                Some(g),
            ) = (f.feature, f.head)
            {
                let weight = alloc::vec![filters, f.input.0, kernel, kernel];
                convs.push((names::conv_encoder(f.index), weight, filters));
                let head = alloc::vec![self.classes, g.features];
                heads.push((names::linear_pred(f.index), head, self.classes));
            }
        }
        let linears =
            classifier::linear_shapes(features.len(), fc * fd * fd, &self.classifier, self.classes);
        let linears = linears
            .into_iter()
            .map(|(name, (o, i))| (name, alloc::vec![o, i], o));
        let mut out = Vec::new();
        for (name, shape, outs) in convs.into_iter().chain(heads).chain(linears) {
            if self.bias {
                out.push((names::bias(&name), alloc::vec![outs]));
            }
            out.push((name, shape));
        }
        Ok(out)
    }

    pub(super) fn settings(&self) -> Settings {
        settings_of!(self)
    }
}
