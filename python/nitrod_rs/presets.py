"""The paper's presets (SPEC §4.2, §7): a fresh model plus its training settings.

MLPs ``mlp1`` … ``mlp4`` and CNNs ``vgg8b``, ``vgg11b`` and ``small_cnn`` (ours, for demos:
``C32 M C64 M | 256``).

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
from .models import CNN, MLP

__all__ = ["mlp1", "mlp2", "mlp3", "mlp4", "vgg8b", "vgg11b", "small_cnn", "preset",
           "PRESETS", "MLP_PRESETS", "CNN_PRESETS", "DEFAULT_DATASET"]

MLP_PRESETS = ("mlp1", "mlp2", "mlp3", "mlp4")
CNN_PRESETS = ("vgg8b", "vgg11b", "small-cnn")
PRESETS = MLP_PRESETS + CNN_PRESETS

#: The data set each preset was evaluated on in the paper (MLP3 also on Fashion-MNIST).
DEFAULT_DATASET = {"mlp1": "mnist", "mlp2": "fashion-mnist", "mlp3": "mnist", "mlp4": "cifar10",
                   "vgg8b": "fashion-mnist", "vgg11b": "cifar10",
                   "small-cnn": "fashion-mnist"}


def _cnn_preset(key: str, ds: str, seed: int, epochs: int) -> tuple[CNN, dict[str, Any]]:
    spec = _core.cnn_preset_spec(key, ds)
    c = spec["config"]
    features = [(kind, *nums) for kind, nums in c["features"]]
    model = CNN(features, c["classifier"], input_shape=tuple(c["input"]),
                classes=int(c["classes"]), decoder_dim=int(c["decoder_dim"]),
                head_pool=str(c["head_pool"]), dropout=int(c["dropout_pct"]), seed=seed)
    augment: Any = tuple(spec["augment"]) if spec["augment"] is not None else False
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


def preset(name: str, dataset: str | None = None, *, seed: int = 0,
           epochs: int = 150) -> tuple[MLP | CNN, dict[str, Any]]:
    """A preset by name (``mlp1`` … ``mlp4``, ``vgg8b``, ``vgg11b``, ``small-cnn``) for
    ``dataset`` (default: the paper's)."""
    key = name.lower().replace("_", "-")
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    ds = canonical_name(dataset) if dataset is not None else DEFAULT_DATASET[key]
    if key in CNN_PRESETS:
        return _cnn_preset(key, ds, seed, epochs)
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


def _mlp(name: str, dataset: str, seed: int) -> tuple[MLP, dict[str, Any]]:
    model, settings = preset(name, dataset, seed=seed)
    assert isinstance(model, MLP)
    return model, settings


def _cnn(name: str, dataset: str, seed: int) -> tuple[CNN, dict[str, Any]]:
    model, settings = preset(name, dataset, seed=seed)
    assert isinstance(model, CNN)
    return model, settings


def mlp1(dataset: str = "mnist", *, seed: int = 0) -> tuple[MLP, dict[str, Any]]:
    """MLP1 784-100-50-10 (paper: MNIST, 97.36 %)."""
    return _mlp("mlp1", dataset, seed)


def mlp2(dataset: str = "fashion-mnist", *, seed: int = 0) -> tuple[MLP, dict[str, Any]]:
    """MLP2 784-200-100-50-10 (paper: Fashion-MNIST, 88.66 %)."""
    return _mlp("mlp2", dataset, seed)


def mlp3(dataset: str = "mnist", *, seed: int = 0) -> tuple[MLP, dict[str, Any]]:
    """MLP3 784-1024×3-10 with augmentation (paper: MNIST 98.28 %, Fashion-MNIST 89.13 %)."""
    return _mlp("mlp3", dataset, seed)


def mlp4(dataset: str = "cifar10", *, seed: int = 0) -> tuple[MLP, dict[str, Any]]:
    """MLP4 3072-3000×3-10, dropout 10 %, augmentation (paper: CIFAR-10, 61.03 %)."""
    return _mlp("mlp4", dataset, seed)


def vgg8b(dataset: str = "fashion-mnist", *, seed: int = 0) -> tuple[CNN, dict[str, Any]]:
    """VGG8B ``C128 C256 M C256 C512 M C512 M C512 M | 1024``, decoder 4096, with the
    dataset's decays, dropout and augmentation (paper: MNIST 99.45 %, Fashion-MNIST 93.66 %,
    CIFAR-10 87.96 %)."""
    return _cnn("vgg8b", dataset, seed)


def vgg11b(dataset: str = "cifar10", *, seed: int = 0) -> tuple[CNN, dict[str, Any]]:
    """VGG11B ``C128×3 C256 M C256 C512 M C512 C512 M C512 M | 1024`` (paper: CIFAR-10
    87.39 %; on other data sets CIFAR-10's decays)."""
    return _cnn("vgg11b", dataset, seed)


def small_cnn(dataset: str = "fashion-mnist", *, seed: int = 0) -> tuple[CNN, dict[str, Any]]:
    """Our small demo CNN ``C32 M C64 M | 256`` (decoder 2048) with VGG8B's per-dataset
    decays and augmentation; not from the paper."""
    return _cnn("small-cnn", dataset, seed)
