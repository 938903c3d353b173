//! `nitrod_rs._core.ops`: the engine's primitives (docs/algorithm.md §1, §3, §5) on numpy arrays, each
//! through the same engine layer or kernel that training uses. `nitrod_rs.ops` checks the
//! arguments and picks the dtype-specific function.

use ndarray::{Array1, IxDyn};
use nitro_core::layers::activation::backward_with_input;
use nitro_core::layers::{Activation, Conv2d, Linear, Pool2d, PoolKind, Scaling};
use nitro_core::{ActivationKind, Compat, Sgd};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyMemoryError;
use pyo3::prelude::*;

use crate::errors::{to_py, value_err, IntegerOverflowError};
use crate::threads::{in_pool, pool_for};

/// Element-wise truncating division (docs/algorithm.md §1) of two equally long `int64` vectors.
#[pyfunction]
fn tdiv<'py>(
    py: Python<'py>,
    a: PyReadonlyArray1<'py, i64>,
    b: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (a, b) = (a.as_array(), b.as_array());
    if a.len() != b.len() {
        return Err(value_err(format!(
            "tdiv: {} dividends but {} divisors",
            a.len(),
            b.len()
        )));
    }
    let mut out = Array1::<i64>::zeros(a.len());
    for (i, ((o, &x), &y)) in out.iter_mut().zip(a.iter()).zip(b.iter()).enumerate() {
        *o = nitro_core::arith::checked_tdiv(x, y).ok_or_else(|| {
            if y == 0 {
                pyo3::exceptions::PyZeroDivisionError::new_err(format!(
                    "tdiv: division by zero at index {i}"
                ))
            } else {
                IntegerOverflowError::new_err(format!("tdiv: {x} / {y} overflows int64"))
            }
        })?;
    }
    Ok(out.into_pyarray(py))
}

fn linear_layer(
    w: &PyReadonlyArray2<'_, i32>,
    b: Option<&PyReadonlyArray1<'_, i32>>,
) -> PyResult<Linear> {
    Linear::new(
        "ops.linear",
        w.as_array().to_owned(),
        b.map(|b| b.as_array().to_owned()),
    )
    .map_err(to_py)
}

/// A `#[pyfunction]` `$name(x, weight, bias=None)` over `$t` inputs.
macro_rules! linear_fn {
    ($(#[$doc:meta])* $name:ident, $t:ty) => {
        $(#[$doc])*
        #[pyfunction]
        #[pyo3(signature = (x, weight, bias=None))]
        fn $name<'py>(
            py: Python<'py>,
            x: PyReadonlyArray2<'py, $t>,
            weight: PyReadonlyArray2<'py, i32>,
            bias: Option<PyReadonlyArray1<'py, i32>>,
        ) -> PyResult<Bound<'py, PyArray2<i64>>> {
            let l = linear_layer(&weight, bias.as_ref())?;
            let xv = x.as_array();
            let z = py.detach(|| l.infer(xv)).map_err(to_py)?;
            Ok(z.into_pyarray(py))
        }
    };
}

linear_fn!(
    /// `z = x·Wᵀ (+ b)` in `int64`, through the engine's exact GEMM (docs/algorithm.md §3.1). `x` is `int8`.
    linear,
    i8
);
linear_fn!(
    /// [`linear`] for `int16` inputs (outputs of an integer dropout layer).
    linear_i16,
    i16
);

/// Benchmark hook: runs exactly what [`linear`] runs on the Rust side (`Linear::infer`: the
/// bound proof, the exact GEMM and the `int64` output allocation) `repeats` times and returns
/// each call's wall time in nanoseconds (`std::time::Instant`). Unlike timing `ops.linear` from
/// Python, this leaves out argument checking, the weight copy and the numpy wrapping of the
/// result. `threads`: as in `Model.train_step` (`None` = rayon's global pool).
#[pyfunction]
#[pyo3(signature = (x, weight, repeats, threads=None))]
fn gemm_bench(
    py: Python<'_>,
    x: PyReadonlyArray2<'_, i8>,
    weight: PyReadonlyArray2<'_, i32>,
    repeats: usize,
    threads: Option<usize>,
) -> PyResult<Vec<u64>> {
    if repeats == 0 {
        return Err(value_err("repeats must be a positive integer"));
    }
    let l = linear_layer(&weight, None)?;
    let pool = pool_for(threads)?;
    let xv = x.as_array();
    let mut times = Vec::new();
    times.try_reserve_exact(repeats).map_err(|_| {
        PyMemoryError::new_err(format!("gemm_bench: no memory for {repeats} timings"))
    })?;
    py.detach(|| {
        in_pool(pool.as_deref(), || {
            for _ in 0..repeats {
                let t = std::time::Instant::now();
                let z = std::hint::black_box(l.infer(std::hint::black_box(xv))?);
                times.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                drop(z);
            }
            Ok(times)
        })
    })
    .map_err(to_py)
}

/// Two `int64` matrices returned together.
type MatrixPair<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<i64>>);

/// The input error `δ·W` and weight gradient `δᵀ·x` of a linear layer (docs/algorithm.md §3.1), `int64`.
#[pyfunction]
fn linear_backward<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, i8>,
    weight: PyReadonlyArray2<'py, i32>,
    delta: PyReadonlyArray2<'py, i32>,
) -> PyResult<MatrixPair<'py>> {
    let (xv, wv, dv) = (x.as_array(), weight.as_array(), delta.as_array());
    if dv.nrows() != xv.nrows() || dv.ncols() != wv.nrows() || xv.ncols() != wv.ncols() {
        return Err(value_err(format!(
            "linear_backward: x {:?}, weight {:?} and delta {:?} do not fit (need N×in, out×in, N×out)",
            xv.shape(),
            wv.shape(),
            dv.shape()
        )));
    }
    let (din, grad) = py
        .detach(|| -> nitro_core::Result<_> {
            Ok((
                nitro_core::kernels::gemm_nn(dv, wv)?,
                nitro_core::kernels::gemm_tn(dv, xv)?,
            ))
        })
        .map_err(to_py)?;
    Ok((din.into_pyarray(py), grad.into_pyarray(py)))
}

/// `clip8(tdiv(z, 2⁸·fan_in))` element-wise (docs/algorithm.md §3.3).
#[pyfunction]
fn scaling<'py>(
    py: Python<'py>,
    z: PyReadonlyArrayDyn<'py, i64>,
    fan_in: usize,
) -> PyResult<Bound<'py, PyArrayDyn<i8>>> {
    let s = Scaling::for_fan_in(fan_in).map_err(to_py)?;
    let z = z.as_array().to_owned();
    let y = py.detach(|| s.forward(&z));
    Ok(y.into_pyarray(py))
}

/// The activation `kind` with inverse slope `slope`; a slope beyond `u8` is a `ValueError`
/// naming its range (the engine then checks it is one of its slopes).
fn activation_kind(kind: &str, slope: i64) -> PyResult<ActivationKind> {
    let a = u8::try_from(slope)
        .map_err(|_| value_err(format!("slope must be an integer in 0..=255, got {slope}")))?;
    ActivationKind::from_name(kind, a).map_err(to_py)
}

/// An activation's forward pass on `int8` input (docs/algorithm.md §3.4), via the engine's layer.
#[pyfunction]
#[pyo3(signature = (x, kind="nitro_relu", slope=4))]
fn activation_forward<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, i8>,
    kind: &str,
    slope: i64,
) -> PyResult<Bound<'py, PyArrayDyn<i8>>> {
    let layer = Activation::new(activation_kind(kind, slope)?).map_err(to_py)?;
    let x = x.as_array().to_owned();
    let y = py.detach(|| layer.infer(&x));
    Ok(y.into_pyarray(py))
}

/// An activation's backward pass `δ_in = tdiv(δ, s(x))` (docs/algorithm.md §3.4), via the engine's layer.
#[pyfunction]
#[pyo3(signature = (x, delta, kind="nitro_relu", slope=4))]
fn activation_backward<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, i8>,
    delta: PyReadonlyArrayDyn<'py, i32>,
    kind: &str,
    slope: i64,
) -> PyResult<Bound<'py, PyArrayDyn<i32>>> {
    let kind = activation_kind(kind, slope)?;
    if x.shape() != delta.shape() {
        return Err(value_err(format!(
            "activation_backward: x has shape {:?} but delta has shape {:?}",
            x.shape(),
            delta.shape()
        )));
    }
    let xv = x.as_array();
    let d = delta.as_array().to_owned();
    let out = py.detach(|| backward_with_input::<IxDyn>(kind, xv, d));
    Ok(out.into_pyarray(py))
}

/// One IntegerSGD update (docs/algorithm.md §5): returns `P − (tdiv(G, lr_inv·amp) + tdiv(P, decay_inv))`.
#[pyfunction]
#[pyo3(signature = (params, grads, *, lr_inv, amp=1, decay_inv=0))]
fn integer_sgd_update<'py>(
    py: Python<'py>,
    params: PyReadonlyArrayDyn<'py, i32>,
    grads: PyReadonlyArrayDyn<'py, i64>,
    lr_inv: i64,
    amp: i64,
    decay_inv: i64,
) -> PyResult<Bound<'py, PyArrayDyn<i32>>> {
    let sgd = Sgd::new(lr_inv, amp, decay_inv).map_err(to_py)?;
    if params.shape() != grads.shape() {
        return Err(value_err(format!(
            "integer_sgd_update: params have shape {:?} but grads have shape {:?}",
            params.shape(),
            grads.shape()
        )));
    }
    let mut p = params.as_array().as_standard_layout().into_owned();
    let g = grads.as_array().as_standard_layout().into_owned();
    py.detach(|| match (p.as_slice_mut(), g.as_slice()) {
        (Some(ps), Some(gs)) => sgd.apply(ps, gs, "integer_sgd_update"),
        _ => Ok(()),
    })
    .map_err(to_py)?;
    Ok(p.into_pyarray(py))
}

fn conv_layer(
    weight: &PyReadonlyArrayDyn<'_, i32>,
    bias: Option<Array1<i32>>,
    padding: usize,
) -> PyResult<Conv2d> {
    let w = weight.as_array();
    let w = w
        .as_standard_layout()
        .into_owned()
        .into_dimensionality::<ndarray::Ix4>()
        .map_err(|_| {
            value_err(format!(
                "conv2d: weight must be F×C×k×k, got shape {:?}",
                weight.shape()
            ))
        })?;
    Conv2d::new("ops.conv2d", w, bias, 1, padding).map_err(to_py)
}

/// An error unless the buffers the engine's `Conv2d` builds for `x` fit: the padded input
/// (`N·C·(H+2p)·(W+2p)` `i16`), the patches (`N·Ho·Wo × C·k·k` `i16`) and the output
/// (`N·F·Ho·Wo` `i64`). A padding beyond what any memory holds is a `ValueError` (sizes that
/// overflow) or a `MemoryError` (a fallible reservation of the total fails), never the panic or
/// abort of an infallible allocation.
fn check_conv_buffers(x: &ndarray::ArrayView4<'_, i8>, layer: &Conv2d) -> PyResult<()> {
    let (n, c, h, w) = x.dim();
    let (f, k, p) = (layer.filters(), layer.kernel(), layer.padding);
    let side = |d: usize| p.checked_mul(2).and_then(|q| q.checked_add(d));
    // (A kernel larger than the padded input is the engine's error to report.)
    let out = |d: usize| side(d).map(|s| s.saturating_sub(k).saturating_add(1));
    // ndarray also refuses (panics on) a shape whose non-zero lengths multiply past isize, even
    // when another length is 0: check both products.
    let mul = |v: &[Option<usize>], nonzero: bool| {
        v.iter().try_fold(1usize, |acc, &x| {
            x.and_then(|x| acc.checked_mul(if nonzero { x.max(1) } else { x }))
        })
    };
    let (n, c, f, kk) = (Some(n), Some(c), Some(f), k.checked_mul(k));
    let buffers = [
        [n, c, side(h), side(w), Some(2), Some(1)],
        [n, out(h), out(w), c, kk, Some(2)],
        [n, f, out(h), out(w), Some(8), Some(1)],
    ];
    let total = |nonzero: bool| {
        buffers
            .iter()
            .try_fold(0usize, |acc, b| {
                mul(b, nonzero).and_then(|b| acc.checked_add(b))
            })
            .filter(|&b| b <= isize::MAX as usize)
    };
    let bytes = total(true).and(total(false)).ok_or_else(|| {
        value_err(format!(
            "conv2d: padding {p} makes the {h}×{w} input's buffers larger than any memory"
        ))
    })?;
    let mut probe: Vec<u8> = Vec::new();
    probe.try_reserve_exact(bytes).map_err(|_| {
        PyMemoryError::new_err(format!(
            "conv2d: padding {p} of a {h}×{w} input needs {bytes} bytes of buffers"
        ))
    })
}

fn view4<'a, T>(
    a: &'a PyReadonlyArrayDyn<'_, T>,
    name: &str,
) -> PyResult<ndarray::ArrayView4<'a, T>>
where
    T: numpy::Element,
{
    a.as_array()
        .into_dimensionality::<ndarray::Ix4>()
        .map_err(|_| value_err(format!("{name} must be N×C×H×W, got shape {:?}", a.shape())))
}

/// `IntegerConv2d` forward (stride 1, zero padding; docs/algorithm.md §3.2) in `int64`, through the
/// engine's `Conv2d` (im2col + exact GEMM). `x` is `int8` N×C×H×W, `weight` `int32` F×C×k×k.
#[pyfunction]
#[pyo3(signature = (x, weight, bias=None, padding=0))]
fn conv2d<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, i8>,
    weight: PyReadonlyArrayDyn<'py, i32>,
    bias: Option<PyReadonlyArray1<'py, i32>>,
    padding: usize,
) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
    let layer = conv_layer(&weight, bias.map(|b| b.as_array().to_owned()), padding)?;
    let xv = view4(&x, "x")?;
    check_conv_buffers(&xv, &layer)?;
    let z = py.detach(|| layer.infer(xv)).map_err(to_py)?;
    Ok(z.into_dyn().into_pyarray(py))
}

/// A convolution's weight gradient (`F×C×k×k`) and bias gradient (`F`), `int64`.
type ConvGrads<'py> = (Bound<'py, PyArrayDyn<i64>>, Bound<'py, PyArray1<i64>>);

/// The weight and bias gradients of `IntegerConv2d` (docs/algorithm.md §3.2): `(Σ δ ⋆ x, Σ δ)` in `int64`,
/// reduced over batch × H × W with the engine's proven accumulators. `delta` is `int32`
/// N×F×Ho×Wo.
#[pyfunction]
#[pyo3(signature = (x, weight, delta, padding=0))]
fn conv2d_weight_grad<'py>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, i8>,
    weight: PyReadonlyArrayDyn<'py, i32>,
    delta: PyReadonlyArrayDyn<'py, i32>,
    padding: usize,
) -> PyResult<ConvGrads<'py>> {
    let f = weight.shape().first().copied().unwrap_or(0);
    let mut layer = conv_layer(&weight, Some(Array1::zeros(f)), padding)?;
    let xv = view4(&x, "x")?;
    check_conv_buffers(&xv, &layer)?;
    let dv = view4(&delta, "delta")?;
    let (g, gb) = py
        .detach(|| -> nitro_core::Result<_> {
            layer.forward(xv, true)?;
            layer.gradients(dv)
        })
        .map_err(to_py)?;
    let gb = gb.unwrap_or_else(|| Array1::zeros(f));
    Ok((g.into_dyn().into_pyarray(py), gb.into_pyarray(py)))
}

fn pool_layer(kind: &str, kernel: (usize, usize), padding: (usize, usize)) -> PyResult<Pool2d> {
    Pool2d::new(PoolKind::from_name(kind).map_err(to_py)?, kernel, padding).map_err(to_py)
}

macro_rules! pool_fns {
    ($fwd:ident, $bwd:ident, $t:ty) => {
        /// Max or average pooling forward (kernel = stride; docs/algorithm.md §3.5) via the engine's
        /// `Pool2d`; returns the pooled tensor in the input's dtype.
        #[pyfunction]
        #[pyo3(signature = (x, kind, kernel, padding=(0, 0), compat="exact"))]
        fn $fwd<'py>(
            py: Python<'py>,
            x: PyReadonlyArrayDyn<'py, $t>,
            kind: &str,
            kernel: (usize, usize),
            padding: (usize, usize),
            compat: &str,
        ) -> PyResult<Bound<'py, PyArrayDyn<$t>>> {
            let layer = pool_layer(kind, kernel, padding)?;
            let compat = Compat::from_name(compat).map_err(to_py)?;
            let xv = view4(&x, "x")?;
            let (y, _) = py.detach(|| layer.apply(xv, compat)).map_err(to_py)?;
            Ok(y.into_dyn().into_pyarray(py))
        }

        /// Pooling backward via the engine's `Pool2d` (a training-mode forward on `x`, then
        /// backward of `delta`): max routes δ to the arg-max (first in row-major order on ties),
        /// average spreads `tdiv(δ, kh·kw)`; `int32` out, shaped like `x`.
        #[pyfunction]
        #[pyo3(signature = (x, delta, kind, kernel, padding=(0, 0), compat="exact"))]
        fn $bwd<'py>(
            py: Python<'py>,
            x: PyReadonlyArrayDyn<'py, $t>,
            delta: PyReadonlyArrayDyn<'py, i32>,
            kind: &str,
            kernel: (usize, usize),
            padding: (usize, usize),
            compat: &str,
        ) -> PyResult<Bound<'py, PyArrayDyn<i32>>> {
            let mut layer = pool_layer(kind, kernel, padding)?;
            let compat = Compat::from_name(compat).map_err(to_py)?;
            let xv = view4(&x, "x")?;
            let dv = view4(&delta, "delta")?;
            let out = py
                .detach(|| -> nitro_core::Result<_> {
                    layer.forward(xv, true, compat)?;
                    layer.backward(dv)
                })
                .map_err(to_py)?;
            Ok(out.into_dyn().into_pyarray(py))
        }
    };
}

pool_fns!(pool2d_i8, pool2d_backward_i8, i8);
pool_fns!(pool2d_i16, pool2d_backward_i16, i16);
pool_fns!(pool2d_i32, pool2d_backward_i32, i32);

/// The submodule `nitrod_rs._core.ops`, added to `parent` and importable by its full name.
pub fn register(parent: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = parent.py();
    let m = PyModule::new(py, "nitrod_rs._core.ops")?;
    m.add_function(wrap_pyfunction!(tdiv, &m)?)?;
    m.add_function(wrap_pyfunction!(linear, &m)?)?;
    m.add_function(wrap_pyfunction!(linear_i16, &m)?)?;
    m.add_function(wrap_pyfunction!(linear_backward, &m)?)?;
    m.add_function(wrap_pyfunction!(gemm_bench, &m)?)?;
    m.add_function(wrap_pyfunction!(scaling, &m)?)?;
    m.add_function(wrap_pyfunction!(activation_forward, &m)?)?;
    m.add_function(wrap_pyfunction!(activation_backward, &m)?)?;
    m.add_function(wrap_pyfunction!(integer_sgd_update, &m)?)?;
    m.add_function(wrap_pyfunction!(conv2d, &m)?)?;
    m.add_function(wrap_pyfunction!(conv2d_weight_grad, &m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_i8, &m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_i16, &m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_i32, &m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_backward_i8, &m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_backward_i16, &m)?)?;
    m.add_function(wrap_pyfunction!(pool2d_backward_i32, &m)?)?;
    parent.add("ops", &m)?;
    // A submodule of an extension is an attribute only; registering it makes
    // `import nitrod_rs._core.ops` (and so the stubs' checker) find it.
    py.import("sys")?
        .getattr("modules")?
        .set_item("nitrod_rs._core.ops", &m)?;
    Ok(())
}
