//! Parameters by name: a view of a model's trainable tensors keyed by the names they carry in
//! saved files (algorithm.md §8), like candle-nn's `VarMap` — list `(name, shape)`, read a copy,
//! write checked values — for MLPs and CNNs alike.
//!
//! A layer's weight is named after the layer (`linear_encoder_00`, `conv_encoder_00`, …), its
//! bias `<layer>.bias`. Writing checks every name, shape and value before changing anything, so
//! a failing [`NamedParams::load`] leaves the model as it was.

use crate::error::{Error, Result};
use crate::layers::{Conv2d, Linear};
use crate::model::Mlp;
use crate::model::{Cnn, Stage};
use crate::names::{self, BIAS_SUFFIX};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ndarray::{Array1, Array2, Array4, ArrayD, ArrayViewD};

/// A layer that owns parameters.
enum Layer<'a> {
    Linear(&'a Linear),
    Conv(&'a Conv2d),
}

/// Mutable access to a layer that owns parameters.
enum LayerMut<'a> {
    Linear(&'a mut Linear),
    Conv(&'a mut Conv2d),
}

impl Layer<'_> {
    fn name(&self) -> &str {
        match self {
            Layer::Linear(l) => &l.name,
            Layer::Conv(c) => &c.name,
        }
    }
    fn weight_shape(&self) -> Vec<usize> {
        match self {
            Layer::Linear(l) => l.weight.shape().to_vec(),
            Layer::Conv(c) => c.weight.shape().to_vec(),
        }
    }
    fn bias(&self) -> Option<&Array1<i32>> {
        match self {
            Layer::Linear(l) => l.bias.as_ref(),
            Layer::Conv(c) => c.bias.as_ref(),
        }
    }
    /// The layer's parameter `part` (weight or bias), as a copy.
    fn read(&self, part: Part) -> Option<ArrayD<i32>> {
        match (self, part) {
            (Layer::Linear(l), Part::Weight) => Some(l.weight.clone().into_dyn()),
            (Layer::Conv(c), Part::Weight) => Some(c.weight.clone().into_dyn()),
            (_, Part::Bias) => self.bias().map(|b| b.clone().into_dyn()),
        }
    }
    /// The shape of the layer's parameter `part`, if it has one.
    fn shape(&self, part: Part) -> Option<Vec<usize>> {
        match part {
            Part::Weight => Some(self.weight_shape()),
            Part::Bias => self.bias().map(|b| alloc::vec![b.len()]),
        }
    }
}

impl LayerMut<'_> {
    /// Replace parameter `part` by `values` (row-major, already checked against its shape) in a
    /// fresh standard-layout array, and drop what the layer saved for its backward pass.
    fn write(&mut self, part: Part, values: Vec<i32>) -> Result<()> {
        let bad = |e: ndarray::ShapeError| Error::shape(format!("{e}"));
        match (self, part) {
            (LayerMut::Linear(l), Part::Weight) => {
                l.weight = Array2::from_shape_vec(l.weight.dim(), values).map_err(bad)?;
                l.clear();
            }
            (LayerMut::Linear(l), Part::Bias) => {
                l.bias = Some(Array1::from(values));
                l.clear();
            }
            (LayerMut::Conv(c), Part::Weight) => {
                c.weight = Array4::from_shape_vec(c.weight.dim(), values).map_err(bad)?;
                c.clear();
            }
            (LayerMut::Conv(c), Part::Bias) => {
                c.bias = Some(Array1::from(values));
                c.clear();
            }
        }
        Ok(())
    }
}

/// Which of a layer's two tensors a name denotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Weight,
    Bias,
}

/// Split a parameter name into its layer name and part.
fn split(name: &str) -> (&str, Part) {
    match name.strip_suffix(BIAS_SUFFIX) {
        Some(layer) => (layer, Part::Bias),
        None => (name, Part::Weight),
    }
}

/// The layers of a model that own parameters, in the fixed order of saved files.
trait ParamLayers {
    fn layers(&self) -> Vec<Layer<'_>>;
    fn layer_mut(&mut self, name: &str) -> Option<LayerMut<'_>>;
    /// Drop every block's saved training state (stale once a parameter changed).
    fn clear_blocks(&mut self);
}

impl ParamLayers for Mlp {
    fn layers(&self) -> Vec<Layer<'_>> {
        self.linears().into_iter().map(Layer::Linear).collect()
    }
    fn layer_mut(&mut self, name: &str) -> Option<LayerMut<'_>> {
        self.linear_mut(name).map(LayerMut::Linear)
    }
    fn clear_blocks(&mut self) {
        for b in &mut self.blocks {
            b.clear();
        }
    }
}

/// Convolutions first, then linear layers (conv heads, classifier blocks, output).
impl ParamLayers for Cnn {
    fn layers(&self) -> Vec<Layer<'_>> {
        let convs = self.convs().into_iter().map(Layer::Conv);
        convs
            .chain(self.linears().into_iter().map(Layer::Linear))
            .collect()
    }
    fn layer_mut(&mut self, name: &str) -> Option<LayerMut<'_>> {
        if self.convs().iter().any(|c| c.name == name) {
            return self.conv_mut(name).map(LayerMut::Conv);
        }
        self.linear_mut(name).map(LayerMut::Linear)
    }
    fn clear_blocks(&mut self) {
        for s in &mut self.stages {
            if let Stage::Block(b) = s {
                b.clear();
            }
        }
        for b in &mut self.blocks {
            b.clear();
        }
    }
}

fn no_such(name: &str) -> Error {
    Error::config(format!("the model has no parameter {name:?}"))
}

/// A parameter's layer and part, or a clear error.
fn find<'a>(layers: &'a [Layer<'a>], name: &str) -> Result<(&'a Layer<'a>, Part)> {
    let (layer, part) = split(name);
    let l = layers
        .iter()
        .find(|l| l.name() == layer)
        .ok_or_else(|| no_such(name))?;
    if part == Part::Bias && l.bias().is_none() {
        return Err(Error::config(format!(
            "the model has no parameter {name:?} ({layer} was built without bias)"
        )));
    }
    Ok((l, part))
}

/// Values of type `T` narrowed to the `i32` of parameters, in row-major order, or an
/// [`Error::Overflow`] naming the first that does not fit.
fn narrow<T>(name: &str, values: &ArrayViewD<'_, T>) -> Result<Vec<i32>>
where
    T: Copy + core::fmt::Display,
    i32: TryFrom<T>,
{
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            i32::try_from(v).map_err(|_| {
                Error::overflow(
                    name,
                    "parameter write",
                    format!("value {v} at flat index {i} does not fit int32"),
                )
            })
        })
        .collect()
}

/// Named access to a model's parameters (see the module docs).
pub trait NamedParams {
    /// Every parameter's name and shape, in the fixed order of saved files.
    fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)>;
    /// A copy of the parameter called `name`.
    fn parameter(&self, name: &str) -> Result<ArrayD<i32>>;
    /// Replace the named parameters by `values`. Every name must exist, every shape match
    /// ([`NamedParams::parameter_shapes`]) and every value fit `int32`; all of it is checked
    /// before anything is written, so on error the model is unchanged. Training state saved by
    /// the layers (stale after the write) is dropped.
    fn load<T>(&mut self, values: &[(&str, ArrayViewD<'_, T>)]) -> Result<()>
    where
        T: Copy + core::fmt::Display,
        i32: TryFrom<T>;
}

impl<M: ParamLayers> NamedParams for M {
    fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        for l in self.layers() {
            v.push((String::from(l.name()), l.weight_shape()));
            if let Some(b) = l.bias() {
                v.push((names::bias(l.name()), alloc::vec![b.len()]));
            }
        }
        v
    }

    fn parameter(&self, name: &str) -> Result<ArrayD<i32>> {
        let layers = self.layers();
        let (l, part) = find(&layers, name)?;
        l.read(part).ok_or_else(|| no_such(name))
    }

    fn load<T>(&mut self, values: &[(&str, ArrayViewD<'_, T>)]) -> Result<()>
    where
        T: Copy + core::fmt::Display,
        i32: TryFrom<T>,
    {
        let mut checked = Vec::with_capacity(values.len());
        {
            let layers = self.layers();
            for (name, v) in values {
                let (l, part) = find(&layers, name)?;
                let want = l.shape(part).ok_or_else(|| no_such(name))?;
                if v.shape() != want.as_slice() {
                    return Err(Error::shape(format!(
                        "parameter {name:?} has shape {:?}, expected {want:?}",
                        v.shape()
                    )));
                }
                checked.push((*name, part, narrow(name, v)?));
            }
        }
        for (name, part, vals) in checked {
            let (layer, _) = split(name);
            let mut l = self.layer_mut(layer).ok_or_else(|| no_such(name))?;
            l.write(part, vals).map_err(|e| e.in_layer(name))?;
        }
        self.clear_blocks();
        Ok(())
    }
}

/// The saved model of either kind has the parameters of its kind.
#[cfg(feature = "std")]
impl ParamLayers for crate::io::Model {
    fn layers(&self) -> Vec<Layer<'_>> {
        match self {
            crate::io::Model::Mlp(m) => m.layers(),
            crate::io::Model::Cnn(m) => m.layers(),
        }
    }
    fn layer_mut(&mut self, name: &str) -> Option<LayerMut<'_>> {
        match self {
            crate::io::Model::Mlp(m) => m.layer_mut(name),
            crate::io::Model::Cnn(m) => m.layer_mut(name),
        }
    }
    fn clear_blocks(&mut self) {
        match self {
            crate::io::Model::Mlp(m) => m.clear_blocks(),
            crate::io::Model::Cnn(m) => m.clear_blocks(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MlpConfig;
    use crate::model::{CnnConfig, Feature};
    use ndarray::IxDyn;

    fn mlp() -> Mlp {
        let mut c = MlpConfig::new(6, &[4], 3);
        c.bias = true;
        Mlp::new(c).unwrap()
    }

    #[test]
    fn mlp_names_shapes_and_round_trip() {
        let mut m = mlp();
        let shapes = m.parameter_shapes();
        assert!(shapes.contains(&("linear_encoder_00".into(), alloc::vec![4, 6])));
        assert!(shapes.contains(&("linear_encoder_00.bias".into(), alloc::vec![4])));
        let w = m.parameter("linear_encoder_00").unwrap();
        let w2 = w.mapv(|v| i64::from(v) + 1);
        m.load(&[("linear_encoder_00", w2.view())]).unwrap();
        assert_eq!(m.parameter("linear_encoder_00").unwrap(), w.mapv(|v| v + 1));
    }

    #[test]
    fn failed_load_changes_nothing() {
        let mut m = mlp();
        let before = m.clone();
        let ok = ArrayD::<i32>::zeros(IxDyn(&[4, 6]));
        let wrong = ArrayD::<i32>::zeros(IxDyn(&[4, 5]));
        let e = m
            .load(&[
                ("linear_encoder_00", ok.view()),
                ("linear_03", wrong.view()),
            ])
            .unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        let e = m
            .load(&[
                ("linear_encoder_00", ok.view()),
                ("linear_pred_00", wrong.view()),
            ])
            .unwrap_err();
        assert!(e.to_string().contains("expected [3, 4]"), "{e}");
        let big = ArrayD::<i64>::from_elem(IxDyn(&[4]), 1 << 40);
        let e = m
            .load(&[("linear_encoder_00.bias", big.view())])
            .unwrap_err();
        assert!(matches!(e, Error::Overflow { .. }), "{e}");
        assert_eq!(m.parameter_shapes(), before.parameter_shapes());
        for (name, _) in before.parameter_shapes() {
            assert_eq!(
                m.parameter(&name).unwrap(),
                before.parameter(&name).unwrap()
            );
        }
    }

    #[test]
    fn missing_bias_is_named() {
        let m = Mlp::new(MlpConfig::new(6, &[4], 3)).unwrap();
        let e = m.parameter("linear_01.bias").unwrap_err();
        assert!(e.to_string().contains("without bias"), "{e}");
    }

    #[test]
    fn cnn_convolutions_come_first() {
        let feats = [
            Feature::Conv {
                filters: 4,
                kernel: 3,
                stride: 1,
                padding: 1,
            },
            Feature::MaxPool(2),
        ];
        let mut c = Cnn::new(CnnConfig::new((1, 8, 8), &feats, &[8], 3)).unwrap();
        let shapes = c.parameter_shapes();
        assert_eq!(
            shapes[0],
            ("conv_encoder_00".into(), alloc::vec![4, 1, 3, 3])
        );
        let w = c.parameter("conv_encoder_00").unwrap().mapv(|v| v / 2);
        c.load(&[("conv_encoder_00", w.view())]).unwrap();
        assert_eq!(c.parameter("conv_encoder_00").unwrap(), w);
    }
}
