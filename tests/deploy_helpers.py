"""Models and images shared by the deployment tests (test_deploy_onnx.py, test_deploy_c.py).

Random weights are set through ``load_state_dict``: a "moderate" regime whose products land
inside the scaling layers' range (so scores take many values and a wrong digit shows), and a
"near the int16 limits" regime (|w| close to 32767, every weight a two-digit split).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nitrod_rs

IN_CI = os.environ.get("CI", "").strip().lower() == "true"
#: Where conftest.py's ``fmnist`` fixture looks for Fashion-MNIST.
FMNIST_DIR = Path(os.environ.get("NITROD_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))


def need(what: str, fix: str) -> None:
    """Skip (visibly) because ``what`` is missing; under ``CI=true`` fail instead."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true; {fix}")
    pytest.skip(f"{what} not available ({fix})")


def random_images(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """``n`` uint8 images: uniform noise, plus the all-0 and all-255 images and a
    checkerboard of the extremes (the normalisation's clamps)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x[0] = 0
    x[1] = 255
    flat = x[2].reshape(-1)
    flat[:] = np.where(np.arange(flat.size) % 2 == 0, 0, 255)
    return x


def moderate_weights(model: Any, seed: int) -> None:
    """Weights with |w| up to ~2·256·sqrt(fan_in) (beyond int8: two digits), so that
    ``tdiv(z, 2^8·fan_in)`` spreads over [-127, 127] instead of saturating."""
    rng = np.random.default_rng(seed)
    state = {}
    for k, v in model.state_dict().items():
        fan = int(np.prod(v.shape[1:])) if v.ndim > 1 else 1
        lim = int(2 * 256 * np.sqrt(fan)) if v.ndim > 1 else 200_000
        state[k] = rng.integers(-lim, lim + 1, size=v.shape).astype(np.int32)
    model.load_state_dict(state)


def near_int16_limits(model: Any, seed: int) -> None:
    """Every weight in ±[30000, 32767] (and a few exactly -32768 / 32767), random signs."""
    rng = np.random.default_rng(seed)
    state = {}
    for k, v in model.state_dict().items():
        mag = rng.integers(30000, 32768, size=v.shape)
        w = np.where(rng.integers(0, 2, size=v.shape) == 1, mag, -mag)
        flat = w.reshape(-1)
        flat[:3] = [-32768, 32767, -32767][: flat.size]
        state[k] = w.astype(np.int32)
    model.load_state_dict(state)


def mlp2(seed: int = 0) -> Any:
    """MLP2 (784-200-100-50-10, algorithm.md §4.2) with moderate random weights and statistics
    fitted on random images."""
    m = nitrod_rs.MLP([784, 200, 100, 50, 10], seed=seed)
    m.fit_normalization(random_images((784,), 256, seed + 1))
    moderate_weights(m, seed + 2)
    return m


def small_cnn(seed: int = 0) -> Any:
    """The small CNN preset (``C32 M C64 M | 256``) with moderate random weights."""
    m, _ = nitrod_rs.presets.small_cnn("fashion-mnist", seed=seed)
    m.fit_normalization(random_images((1, 28, 28), 256, seed + 1))
    moderate_weights(m, seed + 2)
    return m


#: A VGG-shaped feature extractor on 28x28 that uses every feature the CNN constructor has:
#: 3x3/5x5/1x1 kernels, padding 0/1/2, max and average pooling (also of odd sizes, so the
#: floor drops a row), and classifier dropout (which also puts one Dropout before the last
#: feature, algorithm.md §7).
#: Near the int16 limits, the 5x5 conv's bound 128·800·32767 exceeds 2^31 (int64 path).
VGG_FEATURES: list[Any] = [("conv", 16, 3, 1, 1), ("conv", 32, 3, 1, 1), "M",
                           ("conv", 32, 5, 1, 2), ("conv", 32, 3, 1, 1), ("avgpool", 2),
                           ("conv", 32, 3, 1, 0), ("maxpool", 2), ("conv", 24, 1, 1, 0)]


def vgg_shaped(seed: int = 0, *, bias: bool = True, activation: str = "nitro_relu") -> Any:
    m = nitrod_rs.CNN(VGG_FEATURES, [64, 32], input_shape=(1, 28, 28), dropout=10, bias=bias,
                      activation=activation, decoder_dim=512, seed=seed)
    m.fit_normalization(random_images((1, 28, 28), 128, seed + 1))
    return m


_REAL: dict[str, Any] = {}


def real_models(fmnist: Any) -> dict[str, Any]:
    """MLP2 trained one epoch on Fashion-MNIST and a small CNN one epoch on its first 10,000
    images (once per test run; about 71 % and 49 % test accuracy)."""
    if not _REAL:
        mlp = nitrod_rs.MLP([784, 200, 100, 50, 10], seed=0)
        mlp.fit(fmnist.x_train, fmnist.y_train, epochs=1, progress=False,
                fwd_decay_inv=10000, subnet_decay_inv=8000)
        cnn = nitrod_rs.CNN([8, "M", 16, "M"], [32], input_shape=(1, 28, 28), seed=0,
                            decoder_dim=784)
        cnn.fit(fmnist.x_train[:10000], fmnist.y_train[:10000], epochs=1, progress=False,
                fwd_decay_inv=28000, subnet_decay_inv=3500)
        _REAL.update(mlp=mlp, cnn=cnn)
    return _REAL
