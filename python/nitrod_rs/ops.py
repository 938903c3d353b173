"""The engine's integer primitives on numpy arrays (docs/algorithm.md §1, §3, §5).

Every function here calls the same Rust code the models use (``Linear`` and its exact GEMM,
``Conv2d`` (im2col + GEMM), ``Pool2d``, ``Scaling``, ``ActivationKind``, ``Sgd``); only argument
checking happens in Python.

Dtypes: ``linear`` takes ``int8`` (or ``int16``) inputs and ``int32`` weights and returns
``int64``; ``scaling`` takes any integer array and returns ``int8``; activations take ``int8``
inputs and ``int32`` errors; ``integer_sgd_update`` takes ``int32`` parameters and integer
gradients. Integer arrays of other widths are converted when their values fit; floats are a
``TypeError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core

__all__ = [
    "tdiv",
    "linear",
    "linear_backward",
    "scaling",
    "activation",
    "activation_backward",
    "nitro_relu",
    "nitro_relu_backward",
    "pocket_leaky_relu",
    "pocket_leaky_relu_backward",
    "pocket_relu",
    "pocket_relu_backward",
    "pocket_tanh",
    "pocket_tanh_backward",
    "bipolar_pocket_relu",
    "bipolar_pocket_relu_backward",
    "bipolar_pocket_leaky_relu",
    "bipolar_pocket_leaky_relu_backward",
    "integer_sgd_update",
    "conv2d",
    "conv2d_weight_grad",
    "maxpool2d",
    "maxpool2d_backward",
    "avgpool2d",
    "avgpool2d_backward",
]


def _int_array(a: Any, name: str, dtype: type[np.signedinteger[Any]],
               ndim: int | None = None) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if arr.dtype != dtype:
        info = np.iinfo(dtype)
        if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
            raise ValueError(f"{name} has values outside {np.dtype(dtype).name} "
                             f"[{info.min}, {info.max}]")
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def tdiv(a: Any, b: Any) -> Any:
    """Division truncating toward zero (``tdiv(-7, 2) == -3``), element-wise with
    broadcasting; ints in, ``int64`` out (a Python int for two scalars).
    ``ZeroDivisionError`` for a zero divisor."""
    a_arr = _int_array(a, "a", np.int64)
    b_arr = _int_array(b, "b", np.int64)
    a_b, b_b = np.broadcast_arrays(a_arr, b_arr)
    out = _core.ops.tdiv(np.ascontiguousarray(a_b).ravel(), np.ascontiguousarray(b_b).ravel())
    out = out.reshape(a_b.shape)
    if out.ndim == 0:
        return int(out)
    return out


def linear(x: Any, weight: Any, bias: Any = None) -> np.ndarray:
    """``z = x · weightᵀ (+ bias)`` exactly in ``int64`` (docs/algorithm.md §3.1). ``x``: ``N x in`` int8
    (int16 allowed), ``weight``: ``out x in`` int32, ``bias``: ``out`` int32."""
    w = _int_array(weight, "weight", np.int32, 2)
    b = None if bias is None else _int_array(bias, "bias", np.int32, 1)
    xa = np.asarray(x)
    if xa.dtype == np.int16:
        return _core.ops.linear_i16(_int_array(xa, "x", np.int16, 2), w, b)
    return _core.ops.linear(_int_array(xa, "x", np.int8, 2), w, b)


def linear_backward(x: Any, weight: Any, delta: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(δ · W, δᵀ · x)``: a linear layer's input error and weight gradient, ``int64``."""
    return _core.ops.linear_backward(_int_array(x, "x", np.int8, 2),
                                 _int_array(weight, "weight", np.int32, 2),
                                 _int_array(delta, "delta", np.int32, 2))


def scaling(z: Any, fan_in: int) -> np.ndarray:
    """``clip8(tdiv(z, 2⁸ · fan_in))`` as ``int8`` (docs/algorithm.md §3.3)."""
    return _core.ops.scaling(_int_array(z, "z", np.int64), int(fan_in))


def _act_input(x: Any, kind: str) -> np.ndarray:
    xa = _int_array(x, "x", np.int8)
    if kind.startswith("bipolar") and xa.size and int(xa.min()) < -127:
        # docs/algorithm.md §3.4: activation inputs come from a scaling layer, so x ∈ [−127, 127]; the
        # bipolar mask negates x, which −128 would not survive in int8.
        raise ValueError("bipolar activations take x in [-127, 127] (scaling-layer output)")
    return xa


def activation(x: Any, kind: str = "nitro_relu", slope: int = 4) -> np.ndarray:
    """Forward of activation ``kind`` on ``int8`` input (docs/algorithm.md §3.4)."""
    return _core.ops.activation_forward(_act_input(x, kind), kind, int(slope))


def activation_backward(x: Any, delta: Any, kind: str = "nitro_relu",
                        slope: int = 4) -> np.ndarray:
    """``δ_in = tdiv(δ, s(x))`` of activation ``kind`` (0 where the inverse slope is ∞)."""
    return _core.ops.activation_backward(_act_input(x, kind),
                                     _int_array(delta, "delta", np.int32), kind, int(slope))


def nitro_relu(x: Any, a: int = 4) -> np.ndarray:
    """NITRO-ReLU with inverse negative slope ``a`` and mean correction."""
    return activation(x, "nitro_relu", a)


def nitro_relu_backward(x: Any, delta: Any, a: int = 4) -> np.ndarray:
    return activation_backward(x, delta, "nitro_relu", a)


def pocket_leaky_relu(x: Any, a: int = 4) -> np.ndarray:
    return activation(x, "pocket_leaky_relu", a)


def pocket_leaky_relu_backward(x: Any, delta: Any, a: int = 4) -> np.ndarray:
    return activation_backward(x, delta, "pocket_leaky_relu", a)


def pocket_relu(x: Any) -> np.ndarray:
    return activation(x, "pocket_relu")


def pocket_relu_backward(x: Any, delta: Any) -> np.ndarray:
    return activation_backward(x, delta, "pocket_relu")


def pocket_tanh(x: Any) -> np.ndarray:
    return activation(x, "pocket_tanh")


def pocket_tanh_backward(x: Any, delta: Any) -> np.ndarray:
    return activation_backward(x, delta, "pocket_tanh")


def bipolar_pocket_relu(x: Any) -> np.ndarray:
    return activation(x, "bipolar_pocket_relu")


def bipolar_pocket_relu_backward(x: Any, delta: Any) -> np.ndarray:
    return activation_backward(x, delta, "bipolar_pocket_relu")


def bipolar_pocket_leaky_relu(x: Any, a: int = 4) -> np.ndarray:
    return activation(x, "bipolar_pocket_leaky_relu", a)


def bipolar_pocket_leaky_relu_backward(x: Any, delta: Any, a: int = 4) -> np.ndarray:
    return activation_backward(x, delta, "bipolar_pocket_leaky_relu", a)


def integer_sgd_update(params: Any, grads: Any, *, lr_inv: int, amp: int = 1,
                       decay_inv: int = 0) -> np.ndarray:
    """One IntegerSGD step (docs/algorithm.md §5): ``P − (tdiv(G, lr_inv·amp) + tdiv(P, decay_inv))`` as a
    new ``int32`` array; ``nitrod_rs.IntegerOverflowError`` if a value would leave int32."""
    return _core.ops.integer_sgd_update(_int_array(params, "params", np.int32),
                                    _int_array(grads, "grads", np.int64),
                                    lr_inv=int(lr_inv), amp=int(amp), decay_inv=int(decay_inv))


# ---------------------------------------------------------------------------
# Convolution and pooling (docs/algorithm.md §3.2, §3.5)
# ---------------------------------------------------------------------------


def _pair(v: Any, name: str) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {v!r}")
        a, b = v
    else:
        a = b = v
    for t in (a, b):
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or int(t) < 0:
            raise ValueError(f"{name} must hold non-negative integers, got {v!r}")
    return (int(a), int(b))


def _nchw(a: Any, name: str, dtype: type[np.signedinteger[Any]]) -> np.ndarray:
    return _int_array(a, name, dtype, 4)


def conv2d(x: Any, weight: Any, bias: Any = None, padding: int = 0) -> np.ndarray:
    """``IntegerConv2d`` forward, stride 1, zero ``padding`` on each side (docs/algorithm.md §3.2), exact
    in ``int64``. ``x``: ``N x C x H x W`` int8, ``weight``: ``F x C x k x k`` int32,
    ``bias``: ``F`` int32. Returns ``N x F x Ho x Wo`` int64."""
    w = _nchw(weight, "weight", np.int32)
    b = None if bias is None else _int_array(bias, "bias", np.int32, 1)
    pad = _pair(padding, "padding")[0]
    return _core.ops.conv2d(_nchw(x, "x", np.int8), w, b, pad)


def conv2d_weight_grad(x: Any, weight: Any, delta: Any,
                       padding: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The weight and bias gradients of ``IntegerConv2d`` for error ``delta``
    (``N x F x Ho x Wo`` int32): ``(grad_w F x C x k x k, grad_b F)``, both int64, reduced over
    batch x H x W with the engine's proven accumulators. (NITRO-D conv blocks do not pass an
    error to their input, so there is no input gradient.)"""
    pad = _pair(padding, "padding")[0]
    return _core.ops.conv2d_weight_grad(_nchw(x, "x", np.int8), _nchw(weight, "weight", np.int32),
                                    _nchw(delta, "delta", np.int32), pad)


def _pool_input(x: Any) -> np.ndarray:
    """The narrowest engine dtype (int8, int16, int32) that holds ``x``; the model pools
    int8 block outputs and int16 pooled features."""
    arr = np.asarray(x)
    if arr.dtype in (np.int8, np.int16, np.int32):
        return _nchw(arr, "x", arr.dtype.type)
    return _nchw(arr, "x", np.int32)


def _pool(x: Any, kind: str, kernel: Any, padding: Any, compat: str) -> np.ndarray:
    xa = _pool_input(x)
    k, p = _pair(kernel, "kernel"), _pair(padding, "padding")
    if xa.dtype == np.int8:
        return _core.ops.pool2d_i8(xa, kind, k, p, compat)
    if xa.dtype == np.int16:
        return _core.ops.pool2d_i16(xa, kind, k, p, compat)
    return _core.ops.pool2d_i32(xa, kind, k, p, compat)


def _pool_backward(x: Any, delta: Any, kind: str, kernel: Any, padding: Any,
                   compat: str) -> np.ndarray:
    xa = _pool_input(x)
    d = _nchw(delta, "delta", np.int32)
    k, p = _pair(kernel, "kernel"), _pair(padding, "padding")
    if xa.dtype == np.int8:
        return _core.ops.pool2d_backward_i8(xa, d, kind, k, p, compat)
    if xa.dtype == np.int16:
        return _core.ops.pool2d_backward_i16(xa, d, kind, k, p, compat)
    return _core.ops.pool2d_backward_i32(xa, d, kind, k, p, compat)


def maxpool2d(x: Any, kernel: Any = 2, padding: Any = 0, compat: str = "exact") -> np.ndarray:
    """MaxPool2d with kernel = stride (an int or ``(kh, kw)``) and ``padding`` (≤ half the
    kernel; padded cells never win in ``"exact"`` mode, count as 0 in ``"reference"``), on
    ``N x C x H x W`` integers; same dtype out."""
    return _pool(x, "max", kernel, padding, compat)


def maxpool2d_backward(x: Any, delta: Any, kernel: Any = 2, padding: Any = 0,
                       compat: str = "exact") -> np.ndarray:
    """Routes each ``delta`` (int32, pooled shape) to its window's arg-max in ``x`` (first in
    row-major order on ties); int32, shaped like ``x``."""
    return _pool_backward(x, delta, "max", kernel, padding, compat)


def avgpool2d(x: Any, kernel: Any = 2, padding: Any = 0) -> np.ndarray:
    """IntegerAvgPool2d: ``tdiv(window sum, kh·kw)`` (padding counts as 0), kernel = stride."""
    return _pool(x, "avg", kernel, padding, "exact")


def avgpool2d_backward(delta: Any, input_shape: Any, kernel: Any = 2,
                       padding: Any = 0) -> np.ndarray:
    """``tdiv(δ, kh·kw)`` to every input of the window; int32 of ``input_shape``
    (``N x C x H x W``)."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W), got {input_shape!r}")
    return _pool_backward(np.zeros(shape, np.int8), delta, "avg", kernel, padding, "exact")
