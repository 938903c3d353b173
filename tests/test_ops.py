"""nitrod_rs.ops against small numpy int64 references written here from algorithm.md §1, §3, §5."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nitrod_rs
from nitrod_rs import ops

MU = {3: 31, 4: 36, 5: 38, 7: 40, 8: 42, 10: 43, 15: 44, 16: 44, 20: 45}
SLOPES = sorted(MU)


def ref_tdiv(a, b):
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def ints(dtype, shape, lo=None, hi=None):
    info = np.iinfo(dtype)
    return hnp.arrays(dtype, shape, elements=st.integers(
        info.min if lo is None else lo, info.max if hi is None else hi))


# -- tdiv (algorithm.md §1) ------------------------------------------------------------------------


@pytest.mark.parametrize("a,b,q", [(7, 2, 3), (-7, 2, -3), (7, -2, -3), (-7, -2, 3),
                                   (0, 5, 0), (6, 3, 2), (-6, 3, -2), (1, -7, 0)])
def test_tdiv_sign_combinations(a, b, q):
    assert ops.tdiv(a, b) == q
    assert ops.tdiv(a, b) == ref_tdiv(a, b)


@given(ints(np.int64, st.integers(1, 50), -(2**62), 2**62),
       ints(np.int64, st.integers(1, 50), -(2**40), 2**40))
def test_tdiv_property(a, b):
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    b = np.where(b == 0, 1, b)
    np.testing.assert_array_equal(ops.tdiv(a, b), ref_tdiv(a, b))


def test_tdiv_by_zero_and_floats():
    with pytest.raises(ZeroDivisionError):
        ops.tdiv(np.array([1, 2]), np.array([1, 0]))
    with pytest.raises(TypeError):
        ops.tdiv(1.5, 2)


# -- linear (algorithm.md §3.1) --------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 8), st.data())
def test_linear_matches_reference(n, k, m, data):
    x = data.draw(ints(np.int8, (n, k)))
    w = data.draw(ints(np.int32, (m, k), -(2**20), 2**20))
    b = data.draw(ints(np.int32, (m,), -(2**20), 2**20))
    ref = x.astype(np.int64) @ w.astype(np.int64).T
    np.testing.assert_array_equal(ops.linear(x, w), ref)
    np.testing.assert_array_equal(ops.linear(x, w, b), ref + b)
    delta = data.draw(ints(np.int32, (n, m), -(2**15), 2**15))
    din, grad = ops.linear_backward(x, w, delta)
    np.testing.assert_array_equal(din, delta.astype(np.int64) @ w.astype(np.int64))
    np.testing.assert_array_equal(grad, delta.astype(np.int64).T @ x.astype(np.int64))


def test_linear_large_weights_exact():
    # Products that cannot be accumulated in int32 must still be exact (algorithm.md §10).
    x = np.full((2, 4096), 127, dtype=np.int8)
    w = np.full((3, 4096), 2**31 - 1, dtype=np.int32)
    assert (ops.linear(x, w) == 127 * (2**31 - 1) * 4096).all()


def test_linear_shape_mismatch():
    with pytest.raises(ValueError):
        ops.linear(np.zeros((2, 3), np.int8), np.zeros((4, 5), np.int32))


# -- scaling (algorithm.md §3.3) -------------------------------------------------------------------


@given(ints(np.int64, hnp.array_shapes(max_dims=3, max_side=6), -(2**40), 2**40),
       st.integers(1, 5000))
def test_scaling(z, fan_in):
    ref = np.clip(ref_tdiv(z, 256 * fan_in), -127, 127)
    out = ops.scaling(z, fan_in)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, ref)


def test_scaling_never_minus_128():
    assert ops.scaling(np.array([-(10**12)]), 1)[0] == -127


# -- activations (algorithm.md §3.4) ---------------------------------------------------------------


def ref_forward(kind, x, a=4):
    x = x.astype(np.int64)
    if kind == "nitro_relu":
        return np.clip(x, 0, 127) + ref_tdiv(np.clip(x, -127, 0), a) - MU[a]
    if kind == "pocket_leaky_relu":
        return np.clip(x, 0, 127) + ref_tdiv(np.clip(x, -127, 0), a)
    if kind == "pocket_relu":
        return np.clip(x, 0, 127)
    if kind == "pocket_tanh":
        return np.select(
            [x >= 127, x >= 75, x >= 32, x >= -31, x >= -74, x >= -127],
            [127, ref_tdiv(x, 3) + 83, x + 32, 2 * x, x - 32, ref_tdiv(x, 3) - 83], -127)
    raise AssertionError(kind)


def ref_inv_slope(kind, x, a=4):
    """Inverse slope per element; 0 stands for ∞."""
    x = x.astype(np.int64)
    if kind in ("nitro_relu", "pocket_leaky_relu"):
        return np.select([(x >= 0) & (x < 127), (x >= -127) & (x < 0)], [1, a], 0)
    if kind == "pocket_relu":
        return np.where((x > 0) & (x <= 127), 1, 0)
    if kind == "pocket_tanh":
        return np.select([x >= 127, x >= 75, x >= 32, x >= -31, x >= -74, x >= -127],
                         [0, 8, 2, 1, 2, 8], 0)
    raise AssertionError(kind)


def ref_backward(kind, x, d, a=4):
    s = ref_inv_slope(kind, x, a)
    return np.where(s == 0, 0, ref_tdiv(d, np.where(s == 0, 1, s)))


def bipolar_mask(shape):
    if len(shape) == 4:
        i = np.arange(shape[2])[:, None]
        j = np.arange(shape[3])[None, :]
        return np.broadcast_to(np.where((i + j) % 2 == 1, -1, 1), shape)
    return np.broadcast_to(np.where(np.arange(shape[-1]) % 2 == 1, -1, 1), shape)


KINDS = ["nitro_relu", "pocket_leaky_relu", "pocket_relu", "pocket_tanh"]


@pytest.mark.parametrize("kind", KINDS)
def test_activation_exhaustive(kind):
    x = np.arange(-128, 128, dtype=np.int8)
    for a in SLOPES if "leaky" in kind or kind == "nitro_relu" else [4]:
        y = ops.activation(x, kind, a)
        np.testing.assert_array_equal(y, ref_forward(kind, x, a))
        for d in (-1000, -37, -1, 0, 1, 5, 159, 99999):
            delta = np.full(x.shape, d, dtype=np.int32)
            np.testing.assert_array_equal(ops.activation_backward(x, delta, kind, a),
                                          ref_backward(kind, x, delta, a))


def test_nitro_relu_spec_examples():
    assert ops.nitro_relu(np.array([127, 0, -127], np.int8)).tolist() == [91, -36, -67]
    # x = 127 passes no error; negatives divide by a.
    d = np.array([100, 100, 100], np.int32)
    assert ops.nitro_relu_backward(np.array([127, 5, -5], np.int8), d).tolist() == [0, 100, 25]


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(KINDS), hnp.array_shapes(min_dims=1, max_dims=4, max_side=5),
       st.sampled_from(SLOPES), st.data())
def test_activation_property(kind, shape, a, data):
    x = data.draw(ints(np.int8, shape))
    d = data.draw(ints(np.int32, shape, -(2**31), 2**31 - 1))
    np.testing.assert_array_equal(ops.activation(x, kind, a), ref_forward(kind, x, a))
    np.testing.assert_array_equal(ops.activation_backward(x, d, kind, a),
                                  ref_backward(kind, x, d, a))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([("bipolar_pocket_relu", "pocket_relu"),
                        ("bipolar_pocket_leaky_relu", "pocket_leaky_relu")]),
       st.sampled_from([2, 4]), st.data())
def test_bipolar(kinds, ndim, data):
    kind, inner = kinds
    shape = data.draw(st.tuples(*[st.integers(1, 5)] * ndim))
    x = data.draw(ints(np.int8, shape, -127, 127))
    d = data.draw(ints(np.int32, shape, -(2**20), 2**20))
    m = bipolar_mask(shape)
    np.testing.assert_array_equal(ops.activation(x, kind), m * ref_forward(inner, m * x))
    np.testing.assert_array_equal(ops.activation_backward(x, d, kind),
                                  ref_backward(inner, m * x, d))


def test_activation_bad_arguments():
    with pytest.raises(ValueError, match="slope"):
        ops.nitro_relu(np.zeros(3, np.int8), a=6)
    with pytest.raises(ValueError, match="unknown activation"):
        ops.activation(np.zeros(3, np.int8), "relu")
    with pytest.raises(ValueError):
        ops.activation(np.array([300]), "pocket_relu")
    with pytest.raises(ValueError):
        ops.activation_backward(np.zeros(3, np.int8), np.zeros(4, np.int32))


# -- IntegerSGD (algorithm.md §5) ------------------------------------------------------------------


def ref_sgd(p, g, lr_inv, amp, decay_inv):
    p = p.astype(np.int64)
    delta = ref_tdiv(g, lr_inv * amp)
    if decay_inv > 0:
        delta = delta + ref_tdiv(p, decay_inv)
    return p - delta


@settings(max_examples=80, deadline=None)
@given(hnp.array_shapes(max_dims=2, max_side=8), st.integers(1, 4096), st.integers(1, 1000),
       st.sampled_from([0, 1, 7, 500, 10000]), st.data())
def test_integer_sgd_update(shape, lr_inv, amp, decay_inv, data):
    p = data.draw(ints(np.int32, shape, -(2**24), 2**24))
    g = data.draw(ints(np.int64, shape, -(2**40), 2**40))
    ref = ref_sgd(p, g, lr_inv, amp, decay_inv)
    if ref.size and (ref.min() < -(2**31) or ref.max() > 2**31 - 1):
        with pytest.raises(nitrod_rs.IntegerOverflowError):
            ops.integer_sgd_update(p, g, lr_inv=lr_inv, amp=amp, decay_inv=decay_inv)
        return
    out = ops.integer_sgd_update(p, g, lr_inv=lr_inv, amp=amp, decay_inv=decay_inv)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, ref)


def test_integer_sgd_update_spec_example_and_overflow():
    out = ops.integer_sgd_update(np.array([25_000], np.int32), np.array([-1_000_000]),
                                 lr_inv=512, amp=640, decay_inv=10_000)
    assert out.tolist() == [25_001]
    p = np.array([2**31 - 1], np.int32)
    with pytest.raises(nitrod_rs.IntegerOverflowError):
        ops.integer_sgd_update(p, np.array([-10]), lr_inv=1)
    assert p.tolist() == [2**31 - 1]
    with pytest.raises(ValueError):
        ops.integer_sgd_update(p, np.array([1]), lr_inv=0)
