"""Importing float weights (nitrod_rs.deploy.float_import): the exact round-half-away-from-zero
rule, its range checks, and round trips through float weights that give back the same bits."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from deploy_helpers import moderate_weights, random_images
from hypothesis import given, settings
from hypothesis import strategies as st

import nitrod_rs
from nitrod_rs.deploy import float_state_dict, from_float_weights, quantize


def exact(w: float, s: Any) -> int:
    v = Fraction(w) * Fraction(s)
    q = int(abs(v) + Fraction(1, 2))  # floor of a non-negative Fraction
    return -q if v < 0 else q


def test_halves_round_away_from_zero() -> None:
    w = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.0, -0.0, 0.49999999999999994, -0.49999999999999994,
         2.5000000000000004, -2.4999999999999996, 1e-300, 126.5, -127.5]
    np.testing.assert_array_equal(quantize(w, 1),
                                  [1, -1, 2, -2, 3, -3, 0, 0, 0, 0, 3, -2, 0, 127, -128])


def test_the_exact_product_not_the_float_product_is_rounded() -> None:
    # 0.15 is 0.1499999999999999944…: times 10 it is just below 1.5, though 0.15 * 10 == 1.5
    # in floating point.
    assert 0.15 * 10 == 1.5
    assert quantize([0.15], 10)[0] == 1
    assert quantize([-0.15], 10)[0] == -1
    assert quantize([0.15], Fraction(10))[0] == 1
    # float32 inputs are exact too: float32(0.1) = 0.100000001490116…
    assert quantize(np.array([0.1, 0.25], np.float32), 10).tolist() == [1, 3]
    # A Fraction scale that is not a binary fraction: 1/3.
    assert quantize([1.5, -4.5, 7.5], Fraction(1, 3)).tolist() == [1, -2, 3]
    # Integer inputs.
    assert quantize(np.array([3, -3, 5]), Fraction(1, 2)).tolist() == [2, -2, 3]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1,
                max_size=40),
       st.one_of(st.integers(1, 5000), st.floats(1e-3, 1e3),
                 st.fractions(min_value=Fraction(1, 1000), max_value=1000)))
def test_matches_exact_rational_rounding(ws: list[float], s: Any) -> None:
    want = [exact(w, s) for w in ws]
    if any(abs(v) > 2**31 - 1 for v in want):
        with pytest.raises(ValueError, match="outside"):
            quantize(ws, s)
    else:
        assert quantize(ws, s).tolist() == want


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**20), 2**20), st.sampled_from([1, 3, 10, 100, 1000, 4096, 7]))
def test_halfway_points_of_decimal_scales(k: int, s: int) -> None:
    # w = (k + 1/2) / s as a float: the exact product lies just above or below the half, or on
    # it; the result must be the exact one either way.
    w = (k + 0.5) / s
    assert quantize([w], s)[0] == exact(w, s)


def test_range_and_finiteness_are_checked() -> None:
    with pytest.raises(ValueError, match=r"element \(1,\).*outside \[-2147483647"):
        quantize([1.0, 2.2e9], 1)
    with pytest.raises(ValueError, match="outside"):
        quantize([-2147483647.5], 1)  # rounds to -2^31
    assert quantize([-2147483647.4], 1)[0] == -(2**31 - 1)
    with pytest.raises(ValueError, match=r"outside \[-1000, 1000\]"):
        quantize([10.0], 100.06, max_abs=1000)
    assert quantize([10.0], 100.04, max_abs=1000)[0] == 1000
    with pytest.raises(ValueError, match="not a finite number"):
        quantize([1.0, float("nan")], 2)
    with pytest.raises(ValueError, match="not a finite number"):
        quantize([float("-inf")], 2)
    with pytest.raises(ValueError, match="positive"):
        quantize([1.0], 0)
    with pytest.raises(TypeError, match="scale"):
        quantize([1.0], "2")
    with pytest.raises(TypeError, match="real numbers"):
        quantize(np.array(["1"]), 2)


def float_copy(model: Any, scale: Any) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) / float(scale) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("scale", [256, 1000, 2.0**-3])
def test_round_trip_mlp_gives_the_same_bits(scale: Any) -> None:
    src = nitrod_rs.MLP([64, 32, 16, 10], bias=True, seed=1)
    x = random_images((64,), 200, 0)
    src.fit_normalization(x)
    moderate_weights(src, 2)
    weights = float_copy(src, scale)  # what a float framework would hold
    dst = nitrod_rs.MLP([64, 32, 16, 10], bias=True, seed=9)
    from_float_weights(dst, weights, scale, normalization=src.normalization)
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], v)
    np.testing.assert_array_equal(dst.predict_logits(x), src.predict_logits(x))
    # …and back to floats: within half a step of the float weights.
    for k, v in dst.state_dict().items():
        assert np.max(np.abs(v / float(scale) - weights[k])) <= 0.5 / float(scale)


def test_round_trip_cnn_with_per_tensor_scales() -> None:
    src = nitrod_rs.CNN([4, "M", ("conv", 6, 5, 1, 2)], [12], input_shape=(1, 12, 12),
                        decoder_dim=128, seed=0)
    x = random_images((1, 12, 12), 50, 1)
    src.fit_normalization(x)
    moderate_weights(src, 3)
    scales = {k: 2 ** (i % 4) * 100 for i, k in enumerate(src.state_dict())}
    weights = {k: v / scales[k] for k, v in src.state_dict().items()}
    dst = nitrod_rs.CNN([4, "M", ("conv", 6, 5, 1, 2)], [12], input_shape=(1, 12, 12),
                        decoder_dim=128, seed=5)
    dst.load_float_state_dict(weights, scales, normalization=src.normalization)
    np.testing.assert_array_equal(dst.predict_logits(x), src.predict_logits(x))
    assert float_state_dict(dst, weights, scales).keys() == src.state_dict().keys()


def test_mismatch_or_out_of_range_changes_nothing() -> None:
    model = nitrod_rs.MLP([8, 4, 3], seed=0)
    before = model.state_dict()
    good = {k: np.zeros(v.shape) for k, v in before.items()}
    with pytest.raises(ValueError, match="missing"):
        from_float_weights(model, {"linear_01": good["linear_01"]}, 1)
    with pytest.raises(ValueError, match="unexpected"):
        from_float_weights(model, {**good, "extra": np.zeros(2)}, 1)
    with pytest.raises(ValueError, match="shape"):
        from_float_weights(model, {**good, "linear_01": np.zeros((4, 3))}, 1)
    bad = {**good, "linear_01": np.full(good["linear_01"].shape, 3e9)}
    with pytest.raises(ValueError, match="linear_01.*outside"):
        from_float_weights(model, bad, 1, normalization=([1], [50]))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert model.normalization is None
