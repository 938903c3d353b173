"""nitrod_rs.ops convolution and pooling against numpy int64 oracles written from algorithm.md §3.2,
§3.5 (hypothesis over shapes, kernels, paddings and magnitudes, ties included)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nitrod_rs import ops


def ref_tdiv(a, b):  # type: ignore[no-untyped-def]
    a = np.asarray(a, dtype=np.int64)
    q = np.abs(a) // abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def ref_conv(x, w, b, p):  # type: ignore[no-untyped-def]
    x = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (p, p), (p, p)))
    n, c, h, ww = x.shape
    f, _, k, _ = w.shape
    ho, wo = h - k + 1, ww - k + 1
    out = np.zeros((n, f, ho, wo), np.int64)
    for u in range(k):
        for v in range(k):
            out += np.einsum("nchw,fc->nfhw", x[:, :, u:u + ho, v:v + wo],
                             w[:, :, u, v].astype(np.int64))
    if b is not None:
        out += b.astype(np.int64)[None, :, None, None]
    return out


def ref_conv_grad(x, w, d, p):  # type: ignore[no-untyped-def]
    x = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (p, p), (p, p)))
    f, c, k, _ = w.shape
    ho, wo = d.shape[2], d.shape[3]
    g = np.zeros((f, c, k, k), np.int64)
    d64 = d.astype(np.int64)
    for u in range(k):
        for v in range(k):
            g[:, :, u, v] = np.einsum("nfhw,nchw->fc", d64, x[:, :, u:u + ho, v:v + wo])
    return g, d64.sum(axis=(0, 2, 3))


def ref_pool(x, kind, k, p, compat="exact"):  # type: ignore[no-untyped-def]
    """Forward output and, for max, the flat input index routed to (-1 for padding)."""
    (kh, kw), (ph, pw) = k, p
    n, c, h, w = x.shape
    ho, wo = (h + 2 * ph - kh) // kh + 1, (w + 2 * pw - kw) // kw + 1
    pad_val = np.iinfo(x.dtype).min if compat == "exact" else 0
    out = np.zeros((n, c, ho, wo), np.int64)
    arg = np.full((n, c, ho, wo), -1, np.int64)
    for m in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    vals, idx = [], []
                    for u in range(kh):
                        for v in range(kw):
                            y, xx = i * kh + u - ph, j * kw + v - pw
                            if 0 <= y < h and 0 <= xx < w:
                                vals.append(int(x[m, ch, y, xx]))
                                idx.append(((m * c + ch) * h + y) * w + xx)
                            else:
                                vals.append(pad_val if kind == "max" else 0)
                                idx.append(-1)
                    if kind == "max":
                        a = int(np.argmax(vals))  # first maximum in row-major order
                        out[m, ch, i, j] = vals[a]
                        arg[m, ch, i, j] = idx[a]
                    else:
                        out[m, ch, i, j] = ref_tdiv(sum(vals), kh * kw)
    return out, arg


geometry = st.tuples(
    st.integers(1, 4),            # batch
    st.integers(1, 8),            # channels
    st.integers(1, 8),            # filters
    st.sampled_from([1, 3, 5]),   # kernel
    st.sampled_from([0, 1, 2]),   # padding
    st.integers(1, 9),            # size
)


@settings(max_examples=60, deadline=None)
@given(geometry, st.sampled_from(["small", "large"]), st.booleans(), st.integers(0, 2**32 - 1))
def test_conv2d_and_weight_grad_match_oracle(g, magnitude, with_bias, seed):  # type: ignore[no-untyped-def]
    n, c, f, k, p, d = g
    if d + 2 * p < k:
        d = k
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(n, c, d, d), dtype=np.int8)
    hi = 2**31 - 1 if magnitude == "large" else 1000
    w = rng.integers(-hi, hi, size=(f, c, k, k), dtype=np.int64).astype(np.int32)
    b = rng.integers(-hi, hi, size=f, dtype=np.int64).astype(np.int32) if with_bias else None
    z = ops.conv2d(x, w, b, padding=p)
    assert z.dtype == np.int64
    np.testing.assert_array_equal(z, ref_conv(x, w, b, p))
    ho = d + 2 * p - k + 1
    delta = rng.integers(-hi, hi, size=(n, f, ho, ho), dtype=np.int64).astype(np.int32)
    gw, gb = ops.conv2d_weight_grad(x, w, delta, padding=p)
    rw, rb = ref_conv_grad(x, w, delta, p)
    np.testing.assert_array_equal(gw, rw)
    np.testing.assert_array_equal(gb, rb)


def test_conv2d_extreme_magnitudes_take_the_wide_paths():  # type: ignore[no-untyped-def]
    # Every product at its extreme: sums far beyond int32 must come out exact.
    x = np.full((4, 8, 12, 12), -128, np.int8)
    w = np.full((3, 8, 5, 5), -2**31, np.int32)
    np.testing.assert_array_equal(ops.conv2d(x, w, padding=2), ref_conv(x, w, None, 2))
    d = np.full((4, 3, 12, 12), 2**31 - 1, np.int32)
    gw, gb = ops.conv2d_weight_grad(x, w, d, padding=2)
    rw, rb = ref_conv_grad(x, w, d, 2)
    np.testing.assert_array_equal(gw, rw)
    np.testing.assert_array_equal(gb, rb)


def test_conv2d_bad_shapes():  # type: ignore[no-untyped-def]
    x = np.zeros((1, 2, 5, 5), np.int8)
    with pytest.raises(ValueError):
        ops.conv2d(x, np.zeros((3, 1, 3, 3), np.int32))   # channel mismatch
    with pytest.raises(ValueError):
        ops.conv2d(x, np.zeros((3, 2, 3, 2), np.int32))   # not square
    with pytest.raises(ValueError):
        ops.conv2d(x, np.zeros((3, 2, 7, 7), np.int32))   # kernel larger than input
    with pytest.raises(ValueError):
        ops.conv2d(x[0], np.zeros((3, 2, 3, 3), np.int32))  # 3-D input
    with pytest.raises(ValueError):
        ops.conv2d_weight_grad(x, np.zeros((3, 2, 3, 3), np.int32),
                               np.zeros((1, 3, 4, 4), np.int32))  # wrong delta shape
    with pytest.raises(TypeError):
        ops.conv2d(x.astype(np.float32), np.zeros((3, 2, 3, 3), np.int32))


pool_geometry = st.tuples(
    st.integers(1, 3), st.integers(1, 3),          # batch, channels
    st.integers(1, 4), st.integers(1, 4),          # kernel h, w
    st.integers(1, 9), st.integers(1, 9),          # input h, w
)


@settings(max_examples=80, deadline=None)
@given(pool_geometry, st.data(), st.sampled_from([np.int8, np.int16, np.int32]),
       st.sampled_from(["exact", "reference"]), st.booleans(), st.integers(0, 2**32 - 1))
def test_pooling_forward_backward_match_oracle(g, data, dtype, compat, ties,
                                               seed):  # type: ignore[no-untyped-def]
    n, c, kh, kw, h, w = g
    h, w = max(h, kh), max(w, kw)
    ph = data.draw(st.integers(0, kh // 2))
    pw = data.draw(st.integers(0, kw // 2))
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    if ties:  # few distinct values (incl. the type's minimum): many ties
        x = rng.choice(np.array([info.min, -1, 0, 3], dtype=dtype), size=(n, c, h, w))
    else:
        x = rng.integers(info.min, int(info.max) + 1, size=(n, c, h, w), dtype=np.int64)
        x = x.astype(dtype)
    k, p = (kh, kw), (ph, pw)
    y = ops.maxpool2d(x, k, p, compat=compat)
    ry, arg = ref_pool(x, "max", k, p, compat)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ry)
    delta = rng.integers(-2**31, 2**31, size=ry.shape, dtype=np.int64).astype(np.int32)
    back = ops.maxpool2d_backward(x, delta, k, p, compat=compat)
    want = np.zeros(x.size, np.int64)
    for a, dv in zip(arg.ravel(), delta.ravel()):
        if a >= 0:
            want[a] = dv
    np.testing.assert_array_equal(back, want.reshape(x.shape))
    # Average pooling (padding counts as 0, tdiv by the full window).
    ya = ops.avgpool2d(x, k, p)
    np.testing.assert_array_equal(ya, ref_pool(x, "avg", k, p)[0])
    ba = ops.avgpool2d_backward(delta, x.shape, k, p)
    want_a = np.zeros(x.shape, np.int64)
    for yy in range(h):
        for xx in range(w):
            oi, oj = (yy + ph) // kh, (xx + pw) // kw
            if oi < ry.shape[2] and oj < ry.shape[3]:
                want_a[:, :, yy, xx] = ref_tdiv(delta[:, :, oi, oj], kh * kw)
    np.testing.assert_array_equal(ba, want_a)


def test_maxpool_ties_route_to_the_first_in_row_major_order():  # type: ignore[no-untyped-def]
    x = np.array([[[[5, 5], [5, 5]]]], np.int8)
    back = ops.maxpool2d_backward(x, np.array([[[[7]]]], np.int32), 2)
    np.testing.assert_array_equal(back, [[[[7, 0], [0, 0]]]])


def test_pooling_bad_arguments():  # type: ignore[no-untyped-def]
    x = np.zeros((1, 1, 4, 4), np.int8)
    with pytest.raises(ValueError):
        ops.maxpool2d(x, 2, padding=2)          # padding over half the kernel
    with pytest.raises(ValueError):
        ops.maxpool2d(x, 0)
    with pytest.raises(ValueError):
        ops.maxpool2d(x[0], 2)                  # 3-D
    with pytest.raises(ValueError):
        ops.maxpool2d_backward(x, np.zeros((1, 1, 3, 3), np.int32), 2)
    with pytest.raises(ValueError):
        ops.maxpool2d(x, 2, compat="fast")
