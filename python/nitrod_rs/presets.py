"""The paper's MLP presets (SPEC §4.2, §7): a fresh model plus its training settings.

    model, settings = nitrod_rs.presets.mlp2()
    model.fit(x_train, y_train, validation_data=(x_test, y_test), **settings)

``settings`` holds ``epochs`` (150), ``batch_size``, ``lr_inv``, ``lr_amp_factor``,
``fwd_decay_inv``, ``subnet_decay_inv``, ``augment``, ``plateau`` and ``early_stopping``;
override any of them with keyword arguments to ``fit``. The architecture and settings come
from the engine (``nitro_core::Preset``), so Python and Rust agree.
"""

from __future__ import annotations

from typing import Any

from . import _core
from .datasets import canonical_name
from .models import MLP

__all__ = ["mlp1", "mlp2", "mlp3", "mlp4", "preset", "PRESETS", "DEFAULT_DATASET"]

PRESETS = ("mlp1", "mlp2", "mlp3", "mlp4")

#: The data set each preset was evaluated on in the paper (MLP3 also on Fashion-MNIST).
DEFAULT_DATASET = {"mlp1": "mnist", "mlp2": "fashion-mnist", "mlp3": "mnist", "mlp4": "cifar10"}


def preset(name: str, dataset: str | None = None, *, seed: int = 0,
           epochs: int = 150) -> tuple[MLP, dict[str, Any]]:
    """A preset by name (``mlp1`` … ``mlp4``) for ``dataset`` (default: the paper's)."""
    key = name.lower()
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    ds = canonical_name(dataset) if dataset is not None else DEFAULT_DATASET[key]
    spec = _core.preset_spec(key, ds)
    model = MLP(spec["layers"], dropout=int(spec["dropout_pct"]), seed=seed)
    augment: Any = False
    if spec["augment"]:
        # SPEC §2: pad 2 (MNIST, Fashion-MNIST) or 4 (CIFAR-10); no flips for MNIST.
        augment = (4 if ds == "cifar10" else 2, ds != "mnist")
    settings: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": 64,
        "lr_inv": int(spec["lr_inv"]),
        "lr_amp_factor": int(spec["lr_amp_factor"]),
        "fwd_decay_inv": int(spec["fwd_decay_inv"]),
        "subnet_decay_inv": int(spec["subnet_decay_inv"]),
        "augment": augment,
        "plateau": True,
        "early_stopping": True,
    }
    return model, settings


def mlp1(dataset: str = "mnist", *, seed: int = 0) -> tuple[MLP, dict[str, Any]]:
    """MLP1 784-100-50-10 (paper: MNIST, 97.36 %)."""
    return preset("mlp1", dataset, seed=seed)


def mlp2(dataset: str = "fashion-mnist", *, seed: int = 0) -> tuple[MLP, dict[str, Any]]:
    """MLP2 784-200-100-50-10 (paper: Fashion-MNIST, 88.66 %)."""
    return preset("mlp2", dataset, seed=seed)


def mlp3(dataset: str = "mnist", *, seed: int = 0) -> tuple[MLP, dict[str, Any]]:
    """MLP3 784-1024×3-10 with augmentation (paper: MNIST 98.28 %, Fashion-MNIST 89.13 %)."""
    return preset("mlp3", dataset, seed=seed)


def mlp4(dataset: str = "cifar10", *, seed: int = 0) -> tuple[MLP, dict[str, Any]]:
    """MLP4 3072-3000×3-10, dropout 10 %, augmentation (paper: CIFAR-10, 61.03 %)."""
    return preset("mlp4", dataset, seed=seed)
