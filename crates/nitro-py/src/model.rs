//! `nitrod_rs._core.Model`: one Python class over the engine's model of either kind
//! (`nitro_core::io::Model`, an MLP or a CNN). Use `nitrod_rs.MLP` / `nitrod_rs.CNN`, which
//! check arguments; methods that only one kind has raise a `TypeError` naming the kind.

use std::path::PathBuf;

use ndarray::{Array1, Array2};
use nitro_core::layers::PoolKind;
use nitro_core::train::{DataParallel, Evaluate, Trainable};
use nitro_core::{
    io, ActivationKind, Cnn, CnnConfig, Gradients, Init, Mlp, MlpConfig, NamedParams,
    Normalization, Share,
};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArrayDyn,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::convert::labels_to_usize;
use crate::convert::{
    cnn_config_dict, feature_from, feature_spec, hyper_dict, hyper_from, mlp_config_dict,
    step_dict, FeatureSpec,
};
use crate::errors::{to_py, value_err};
use crate::fit::run_step;
use crate::parallel::{rng_parts, rngs_from, RngParts};
use crate::threads::{in_pool, pool_for};

/// `$body` with `$m` bound to the model inside `$model`, whichever its kind.
macro_rules! either {
    ($model:expr, $m:ident => $body:expr) => {
        match $model {
            io::Model::Mlp($m) => $body,
            io::Model::Cnn($m) => $body,
        }
    };
}

/// Per conv block: `(conv name, head kernel, head padding, pooled dims, D)` (docs/algorithm.md §4.1).
type HeadInfo = (
    String,
    (usize, usize),
    (usize, usize),
    (usize, usize),
    usize,
);

/// A CNN feature-extractor entry and the `(channels, size)` it reads and writes.
type EntryShape = (FeatureSpec, (usize, usize), (usize, usize));

/// A local-loss integer network, MLP or CNN (`nitro_core::io::Model`).
#[pyclass(module = "nitrod_rs._core", name = "Model")]
pub struct Model {
    pub(crate) inner: io::Model,
}

impl Model {
    /// The Python object over an engine model.
    pub(crate) fn from_inner(inner: io::Model) -> Self {
        Model { inner }
    }

    /// The architecture's kind, as the `kind` of a saved file's metadata (docs/algorithm.md §8).
    fn kind_name(&self) -> &'static str {
        match self.inner {
            io::Model::Mlp(_) => "mlp",
            io::Model::Cnn(_) => "cnn",
        }
    }

    /// The MLP, or a `TypeError` saying that `what` needs one.
    fn mlp(&self, what: &str) -> PyResult<&Mlp> {
        match &self.inner {
            io::Model::Mlp(m) => Ok(m),
            io::Model::Cnn(_) => Err(PyTypeError::new_err(format!(
                "{what} needs an MLP; this model is a CNN"
            ))),
        }
    }

    /// The CNN, or a `TypeError` saying that `what` needs one.
    fn cnn(&self, what: &str) -> PyResult<&Cnn> {
        match &self.inner {
            io::Model::Cnn(m) => Ok(m),
            io::Model::Mlp(_) => Err(PyTypeError::new_err(format!(
                "{what} needs a CNN; this model is an MLP"
            ))),
        }
    }

    /// An error unless the model's recorded IntegerSGD settings (if any) are usable: a file
    /// holding unusable ones would be refused when loaded (`Hyper::sgds`), so none is written.
    pub(crate) fn check_saveable(&self) -> PyResult<()> {
        let h = either!(&self.inner, m => m.hyper.as_ref());
        match h.map(|h| h.sgds()) {
            Some(Err(e)) => Err(crate::errors::ConfigError::new_err(format!(
                "the model's recorded IntegerSGD settings are not usable ({e}), so a file of it \
                 could not be loaded again; nothing was written (train it with usable settings \
                 first)"
            ))),
            _ => Ok(()),
        }
    }

    /// Evaluation-mode logits of `x`, GIL released, in the chosen thread pool.
    fn logits_in_pool(
        &self,
        py: Python<'_>,
        x: &PyReadonlyArray2<'_, i8>,
        threads: Option<usize>,
    ) -> PyResult<Array2<i8>> {
        let pool = pool_for(threads)?;
        let (model, xv) = (&self.inner, x.as_array());
        py.detach(|| in_pool(pool.as_deref(), || model.logits(xv)))
            .map_err(to_py)
    }
}

fn init_for(kind: ActivationKind, init: Option<&str>) -> PyResult<Init> {
    match init {
        Some(s) => Init::from_name(s).map_err(to_py),
        None => Ok(Init::default_for(kind)),
    }
}

#[pymethods]
impl Model {
    /// A freshly initialised MLP `inputs → hidden… → classes`.
    #[staticmethod]
    #[pyo3(name = "mlp", signature = (inputs, hidden, classes, *, activation="nitro_relu", slope=4, dropout_pct=0, bias=false, init=None, seed=0))]
    #[allow(clippy::too_many_arguments)]
    fn mlp_new(
        inputs: usize,
        hidden: Vec<usize>,
        classes: usize,
        activation: &str,
        slope: u8,
        dropout_pct: u32,
        bias: bool,
        init: Option<&str>,
        seed: u64,
    ) -> PyResult<Self> {
        let kind = ActivationKind::from_name(activation, slope).map_err(to_py)?;
        let config = MlpConfig {
            inputs,
            hidden,
            classes,
            activation: kind,
            dropout_pct,
            bias,
            init: init_for(kind, init)?,
            seed,
        };
        let m = Mlp::new(config).map_err(to_py)?;
        Ok(Model {
            inner: io::Model::Mlp(m),
        })
    }

    /// A freshly initialised CNN: `input` is `(C, H, W)` with `H = W`, `features` the
    /// feature-extractor entries, `classifier` the hidden widths of the MLP classifier.
    #[staticmethod]
    #[pyo3(name = "cnn", signature = (input, features, classifier, classes, *, activation="nitro_relu", slope=4, dropout_pct=0, bias=false, init=None, seed=0, decoder_dim=2048, head_pool="max", conv_amp_adjust=false))]
    #[allow(clippy::too_many_arguments)]
    fn cnn_new(
        input: (usize, usize, usize),
        features: Vec<FeatureSpec>,
        classifier: Vec<usize>,
        classes: usize,
        activation: &str,
        slope: u8,
        dropout_pct: u32,
        bias: bool,
        init: Option<&str>,
        seed: u64,
        decoder_dim: usize,
        head_pool: &str,
        conv_amp_adjust: bool,
    ) -> PyResult<Self> {
        let kind = ActivationKind::from_name(activation, slope).map_err(to_py)?;
        let features = features
            .iter()
            .enumerate()
            .map(|(i, f)| feature_from(f, i))
            .collect::<PyResult<Vec<_>>>()?;
        let mut config = CnnConfig::new(input, &features, &classifier, classes);
        config.activation = kind;
        config.dropout_pct = dropout_pct;
        config.bias = bias;
        config.init = init_for(kind, init)?;
        config.seed = seed;
        config.decoder_dim = decoder_dim;
        config.head_pool = PoolKind::from_name(head_pool).map_err(to_py)?;
        config.conv_amp_adjust = conv_amp_adjust;
        let m = Cnn::new(config).map_err(to_py)?;
        Ok(Model {
            inner: io::Model::Cnn(m),
        })
    }

    /// `"mlp"` or `"cnn"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind_name()
    }

    /// The architecture as a dict (the `architecture` metadata of a saved file).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        match &self.inner {
            io::Model::Mlp(m) => mlp_config_dict(py, &m.config),
            io::Model::Cnn(m) => cnn_config_dict(py, &m.config),
        }
    }

    /// The IntegerSGD settings of the last training run, if any.
    #[getter]
    fn hyper<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let h = either!(&self.inner, m => m.hyper.as_ref());
        h.map(|h| hyper_dict(py, h)).transpose()
    }

    /// Per-channel normalisation statistics `(mean, mad)` stored with the model, if any.
    #[getter]
    fn normalization(&self) -> Option<(Vec<i64>, Vec<i64>)> {
        let n = either!(&self.inner, m => m.normalization.as_ref());
        n.map(|n| (n.mean.clone(), n.mad.clone()))
    }

    /// Store (or with `None`, clear) the normalisation statistics.
    #[pyo3(signature = (stats))]
    fn set_normalization(&mut self, stats: Option<(Vec<i64>, Vec<i64>)>) -> PyResult<()> {
        let n = match stats {
            None => None,
            Some((mean, mad)) => {
                let n = Normalization { mean, mad };
                n.validate().map_err(to_py)?;
                Some(n)
            }
        };
        either!(&mut self.inner, m => m.normalization = n);
        Ok(())
    }

    /// E.g. `784-200-100-50-10 nitro_relu`.
    fn describe(&self) -> String {
        either!(&self.inner, m => m.describe())
    }

    /// Number of trainable parameters.
    fn num_parameters(&self) -> usize {
        either!(&self.inner, m => m.num_parameters())
    }

    /// Geometry `(C, d, d)` of the flattened features entering a CNN's classifier.
    #[getter]
    fn feature_shape(&self) -> PyResult<(usize, usize, usize)> {
        Ok(self.cnn("feature_shape")?.feature_shape)
    }

    /// Per entry of a CNN's feature extractor as built (classifier dropout included):
    /// `(entry, (channels, size) read, (channels, size) written)`.
    fn feature_shapes(&self) -> PyResult<Vec<EntryShape>> {
        let (shapes, _) = self
            .cnn("feature_shapes")?
            .config
            .feature_shapes()
            .map_err(to_py)?;
        Ok(shapes
            .iter()
            .map(|f| (feature_spec(&f.feature), f.input, f.output))
            .collect())
    }

    /// Per conv block of a CNN: `(name, head pooling kernel, head padding, pooled dims, D)`.
    fn head_geometries(&self) -> PyResult<Vec<HeadInfo>> {
        let heads = self.cnn("head_geometries")?.conv_blocks();
        Ok(heads
            .iter()
            .map(|b| {
                let g = &b.geometry;
                (b.conv.name.clone(), g.kernel, g.padding, g.dims, g.features)
            })
            .collect())
    }

    /// Exactly one docs/algorithm.md §4.3 training step on a normalised batch; returns its statistics.
    #[pyo3(signature = (x, labels, *, lr_inv=512, lr_amp_factor=640, fwd_decay_inv=0, subnet_decay_inv=0, compat="exact", threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn train_step<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, i8>,
        labels: PyReadonlyArray1<'py, i64>,
        lr_inv: i64,
        lr_amp_factor: i64,
        fwd_decay_inv: i64,
        subnet_decay_inv: i64,
        compat: &str,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let hyper = hyper_from(
            lr_inv,
            lr_amp_factor,
            fwd_decay_inv,
            subnet_decay_inv,
            compat,
        )?;
        let stats = run_step(py, &mut self.inner, x, labels, hyper, threads)?;
        step_dict(py, &stats)
    }

    /// The gradient sums (bytes, `nitro_core::Gradients::to_bytes`) of one training step on
    /// the normalised rows `x` with `labels`, which are rows `start .. start + len(x)` of a
    /// batch of `total`, without any update: a data-parallel worker's share
    /// (`nitrod_rs._parallel`). `dropout_rngs` (`(state, inc)` pairs) sets the dropout
    /// generators the step starts from (the driver's), so that every worker draws the whole
    /// batch's masks as the driver's step would.
    #[pyo3(signature = (x, labels, start, total, *, lr_inv=512, lr_amp_factor=640, fwd_decay_inv=0, subnet_decay_inv=0, compat="exact", dropout_rngs=None, threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn gradients<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, i8>,
        labels: PyReadonlyArray1<'py, i64>,
        start: usize,
        total: usize,
        lr_inv: i64,
        lr_amp_factor: i64,
        fwd_decay_inv: i64,
        subnet_decay_inv: i64,
        compat: &str,
        dropout_rngs: Option<RngParts>,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let hyper = hyper_from(
            lr_inv,
            lr_amp_factor,
            fwd_decay_inv,
            subnet_decay_inv,
            compat,
        )?;
        let labels = labels_to_usize(&labels)?;
        if let Some(parts) = dropout_rngs {
            let rngs = rngs_from(&parts)?;
            DataParallel::set_dropout_rngs(&mut self.inner, &rngs).map_err(to_py)?;
        }
        let share = Share {
            start,
            rows: labels.len(),
            total,
        };
        let pool = pool_for(threads)?;
        let (model, xv) = (&mut self.inner, x.as_array());
        let g = py
            .detach(|| {
                in_pool(pool.as_deref(), || {
                    DataParallel::gradients(model, xv, &labels, &hyper, share)
                })
            })
            .map_err(to_py)?;
        let bytes = py.detach(|| g.to_bytes());
        Ok(PyBytes::new(py, &bytes))
    }

    /// Apply the gradient sums of a whole batch (`sum_gradients` of every share's
    /// `gradients`) with IntegerSGD — the update `train_step` makes of that batch, bit for bit
    /// — and take the dropout generators' states after the step from them; records the
    /// settings. All-or-nothing. Returns the step's statistics, as `train_step` does.
    #[pyo3(signature = (data, *, lr_inv=512, lr_amp_factor=640, fwd_decay_inv=0, subnet_decay_inv=0, compat="exact", threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn apply_gradients<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
        lr_inv: i64,
        lr_amp_factor: i64,
        fwd_decay_inv: i64,
        subnet_decay_inv: i64,
        compat: &str,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let hyper = hyper_from(
            lr_inv,
            lr_amp_factor,
            fwd_decay_inv,
            subnet_decay_inv,
            compat,
        )?;
        let pool = pool_for(threads)?;
        let model = &mut self.inner;
        let stats = py
            .detach(|| {
                let g = Gradients::from_bytes(data)?;
                in_pool(pool.as_deref(), || {
                    let s = DataParallel::apply_gradients(model, g, &hyper);
                    model.set_hyper(hyper);
                    s
                })
            })
            .map_err(to_py)?;
        step_dict(py, &stats)
    }

    /// The dropout layers' generator states, `(state, inc)` pairs in order (what a
    /// data-parallel worker's step starts from).
    #[getter]
    fn dropout_rngs(&self) -> RngParts {
        rng_parts(&DataParallel::dropout_rngs(&self.inner))
    }

    /// Evaluation-mode logits (`int8`, `N × classes`).
    #[pyo3(signature = (x, *, threads=None))]
    fn predict_logits<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, i8>,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<i8>>> {
        Ok(self.logits_in_pool(py, &x, threads)?.into_pyarray(py))
    }

    /// Predicted classes (`int64`; arg-max, first on ties).
    #[pyo3(signature = (x, *, threads=None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, i8>,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let classes = nitro_core::loss::argmax_rows(&self.logits_in_pool(py, &x, threads)?);
        // Class indices are < classes ≤ i32::MAX (validated), so they fit i64.
        let v: Array1<i64> = classes.iter().map(|&c| c as i64).collect();
        Ok(v.into_pyarray(py))
    }

    /// Parameter names in the fixed order of saved files (`nitro_core::params`) and their
    /// shapes: convolutions, then linear layers; `<layer>.bias` entries with biases.
    fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.inner.parameter_shapes()
    }

    /// Copies of every parameter as `int32` arrays, keyed by parameter name.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, _) in self.inner.parameter_shapes() {
            let p = self.inner.parameter(&name).map_err(to_py)?;
            d.set_item(name, p.into_pyarray(py))?;
        }
        Ok(d)
    }

    /// Replace parameters by `int32` arrays keyed by name. Everything is checked before
    /// anything is written, so a failing call leaves the model unchanged.
    fn load_state_dict(
        &mut self,
        params: Vec<(String, PyReadonlyArrayDyn<'_, i32>)>,
    ) -> PyResult<()> {
        let views: Vec<_> = params
            .iter()
            .map(|(name, a)| (name.as_str(), a.as_array()))
            .collect();
        self.inner.load(&views).map_err(to_py)
    }

    /// The model as `.safetensors` bytes (docs/algorithm.md §8).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.check_saveable()?;
        let b = self.inner.to_bytes().map_err(to_py)?;
        Ok(PyBytes::new(py, &b))
    }

    /// A model from `.safetensors` bytes: of either kind, or only of `kind` (`"mlp"`/`"cnn"`).
    #[staticmethod]
    #[pyo3(signature = (data, kind=None))]
    fn from_bytes(py: Python<'_>, data: &[u8], kind: Option<&str>) -> PyResult<Model> {
        let inner = match kind {
            None => py.detach(|| io::Model::from_bytes(data)),
            Some("mlp") => py.detach(|| io::from_bytes(data).map(io::Model::Mlp)),
            Some("cnn") => py.detach(|| io::cnn_from_bytes(data).map(io::Model::Cnn)),
            Some(o) => {
                return Err(value_err(format!(
                    "kind must be \"mlp\", \"cnn\" or None, got {o:?}"
                )))
            }
        };
        Ok(Model {
            inner: inner.map_err(to_py)?,
        })
    }

    /// Save atomically to a `.safetensors` file.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.check_saveable()?;
        let m = &self.inner;
        py.detach(|| m.save_file(&path)).map_err(to_py)
    }

    /// Load a `.safetensors` file written by `save` (either kind).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        let inner = py.detach(|| io::Model::load_file(&path)).map_err(to_py)?;
        Ok(Model { inner })
    }

    /// The compact `no_std`-loadable blob of either kind (`nitro_core::export::to_blob_with`),
    /// without the learning heads when `heads` is false (inference only).
    #[pyo3(signature = (heads=true))]
    fn to_blob<'py>(&self, py: Python<'py>, heads: bool) -> PyResult<Bound<'py, PyBytes>> {
        let options = nitro_core::export::BlobOptions { heads };
        let b = nitro_core::export::to_blob_with(&self.inner, options).map_err(to_py)?;
        Ok(PyBytes::new(py, &b))
    }

    /// A model rebuilt from a blob by `nitro_core::export::from_blob` (the device loader): of
    /// either kind, or only of `kind` (`"mlp"`/`"cnn"`).
    #[staticmethod]
    #[pyo3(signature = (data, kind=None))]
    fn from_blob(py: Python<'_>, data: &[u8], kind: Option<&str>) -> PyResult<Model> {
        let m = py
            .detach(|| nitro_core::export::from_blob(data))
            .map_err(to_py)?;
        let m = match kind {
            None => m,
            Some("mlp") => m.into_mlp().map_err(to_py)?.into(),
            Some("cnn") => m.into_cnn().map_err(to_py)?.into(),
            Some(o) => {
                return Err(value_err(format!(
                    "kind must be \"mlp\", \"cnn\" or None, got {o:?}"
                )))
            }
        };
        Ok(Model { inner: m })
    }

    /// Whether the model has its learning heads (`False`: loaded from a blob without them; it
    /// predicts but cannot be trained or saved as a model file).
    #[getter]
    fn has_heads(&self) -> bool {
        match &self.inner {
            io::Model::Mlp(m) => m.has_heads(),
            io::Model::Cnn(m) => m.has_heads(),
        }
    }

    /// Rust source with an MLP as `const` arrays (`nitro_core::export::to_rust_source`).
    #[pyo3(signature = (name="model"))]
    fn to_rust_source(&self, name: &str) -> PyResult<String> {
        nitro_core::export::to_rust_source(self.mlp("to_rust_source")?, name).map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!(
            "<nitrod_rs._core.Model {} {}>",
            self.kind_name(),
            self.describe()
        )
    }
}

/// The metadata of a `.safetensors` buffer as `(key, value)` string pairs.
#[pyfunction]
pub fn read_metadata(data: &[u8]) -> PyResult<Vec<(String, String)>> {
    io::read_metadata(data).map_err(to_py)
}
