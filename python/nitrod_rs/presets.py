"""The paper's presets (docs/algorithm.md §4.2, §7): a fresh model plus its training settings.

MLPs ``mlp1`` … ``mlp4`` and CNNs ``vgg8b``, ``vgg11b`` and ``small_cnn`` (ours, for demos:
``C32 M C64 M | 256``).

    model, settings = nitrod_rs.presets.mlp2()
    model.fit(x_train, y_train, test_data=(x_test, y_test), **settings)

``settings`` holds ``epochs`` (150), ``batch_size``, ``lr_inv``, ``lr_amp_factor``,
``fwd_decay_inv``, ``subnet_decay_inv``, ``augment``, ``plateau``, ``early_stopping`` and the
validation split the plateau rule watches (``validation_split`` 0.1, ``validation_seed`` 0:
``nitro_core::Split::PRESET``). Override any of them with keyword arguments, either of the
preset (``nitrod_rs.presets.mlp2(epochs=5)``) or of ``fit`` next to ``settings=``:

    model.fit(x_train, y_train, settings=settings, epochs=5)

(``fit(..., **settings, epochs=5)`` is a Python ``TypeError``: ``epochs`` would be given twice.)
The paper's own protocol selects on the test set instead:
``settings.update(validation_split=0, paper_protocol=True)`` with ``test_data``.
The architecture and settings come from the engine (``nitro_core::Preset``), so Python and
Rust agree.
"""

from __future__ import annotations

from typing import Any

from . import _checks, _core
from .datasets import canonical_name
from .models import CNN, MLP, _from_config

__all__ = ["mlp1", "mlp2", "mlp3", "mlp4", "vgg8b", "vgg11b", "small_cnn", "preset",
           "PRESETS", "MLP_PRESETS", "CNN_PRESETS", "DEFAULT_DATASET"]

_TABLE = _core.presets()
MLP_PRESETS = tuple(name for name, kind, _ in _TABLE if kind == "mlp")
CNN_PRESETS = tuple(name for name, kind, _ in _TABLE if kind == "cnn")
PRESETS = MLP_PRESETS + CNN_PRESETS

#: The data set each preset was evaluated on in the paper (MLP3 also on Fashion-MNIST).
DEFAULT_DATASET = {name: ds for name, _, ds in _TABLE}


def preset(name: str, dataset: str | None = None, *, seed: int = 0,
           epochs: int = 150, **overrides: Any) -> tuple[MLP | CNN, dict[str, Any]]:
    """A preset by name (``mlp1`` … ``mlp4``, ``vgg8b``, ``vgg11b``, ``small-cnn``) for
    ``dataset`` (default: the paper's): the model (initialised with ``seed``) and its ``fit``
    settings, with ``epochs`` and any ``overrides`` (keyword arguments of ``fit``) in place of
    the preset's values."""
    unknown = sorted(k for k in overrides if k not in _checks.FIT_DEFAULTS)
    if unknown:
        raise TypeError(f"{', '.join(unknown)}: not keyword arguments of fit, so not "
                        f"settings a preset can take")
    key = name.lower().replace("_", "-")
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    ds = canonical_name(dataset) if dataset is not None else DEFAULT_DATASET[key]
    spec = _core.preset(key, ds)
    model = _from_config(spec["config"],
                         _checks.check_int(seed, "seed", minimum=0, maximum=_checks.U64_MAX))
    settings: dict[str, Any] = {"epochs": epochs, **spec["settings"]}
    # fit's ``augment`` takes False for none; the engine says None.
    augment = settings["augment"]
    settings["augment"] = tuple(augment) if augment is not None else False
    permille, split_seed = _core.defaults()["validation_split"]
    settings["validation_split"] = permille / 1000
    settings["validation_seed"] = int(split_seed)
    settings.update(overrides)
    return model, settings


def _mlp(name: str, dataset: str, seed: int,
         overrides: dict[str, Any]) -> tuple[MLP, dict[str, Any]]:
    model, settings = preset(name, dataset, seed=seed, **overrides)
    assert isinstance(model, MLP)
    return model, settings


def _cnn(name: str, dataset: str, seed: int,
         overrides: dict[str, Any]) -> tuple[CNN, dict[str, Any]]:
    model, settings = preset(name, dataset, seed=seed, **overrides)
    assert isinstance(model, CNN)
    return model, settings


def mlp1(dataset: str = "mnist", *, seed: int = 0,
         **overrides: Any) -> tuple[MLP, dict[str, Any]]:
    """MLP1 784-100-50-10 (paper: MNIST, 97.36 %)."""
    return _mlp("mlp1", dataset, seed, overrides)


def mlp2(dataset: str = "fashion-mnist", *, seed: int = 0,
         **overrides: Any) -> tuple[MLP, dict[str, Any]]:
    """MLP2 784-200-100-50-10 (paper: Fashion-MNIST, 88.66 %)."""
    return _mlp("mlp2", dataset, seed, overrides)


def mlp3(dataset: str = "mnist", *, seed: int = 0,
         **overrides: Any) -> tuple[MLP, dict[str, Any]]:
    """MLP3 784-1024×3-10 with augmentation (paper: MNIST 98.28 %, Fashion-MNIST 89.13 %)."""
    return _mlp("mlp3", dataset, seed, overrides)


def mlp4(dataset: str = "cifar10", *, seed: int = 0,
         **overrides: Any) -> tuple[MLP, dict[str, Any]]:
    """MLP4 3072-3000×3-10, dropout 10 %, augmentation (paper: CIFAR-10, 61.03 %)."""
    return _mlp("mlp4", dataset, seed, overrides)


def vgg8b(dataset: str = "fashion-mnist", *, seed: int = 0,
          **overrides: Any) -> tuple[CNN, dict[str, Any]]:
    """VGG8B ``C128 C256 M C256 C512 M C512 M C512 M | 1024``, decoder 4096, with the
    dataset's decays, dropout and augmentation (paper: MNIST 99.45 %, Fashion-MNIST 93.66 %,
    CIFAR-10 87.96 %)."""
    return _cnn("vgg8b", dataset, seed, overrides)


def vgg11b(dataset: str = "cifar10", *, seed: int = 0,
           **overrides: Any) -> tuple[CNN, dict[str, Any]]:
    """VGG11B ``C128×3 C256 M C256 C512 M C512 C512 M C512 M | 1024`` (paper: CIFAR-10
    87.39 %; on other data sets CIFAR-10's decays)."""
    return _cnn("vgg11b", dataset, seed, overrides)


def small_cnn(dataset: str = "fashion-mnist", *, seed: int = 0,
              **overrides: Any) -> tuple[CNN, dict[str, Any]]:
    """Our small demo CNN ``C32 M C64 M | 256`` (decoder 2048) with VGG8B's per-dataset
    decays and augmentation; not from the paper."""
    return _cnn("small-cnn", dataset, seed, overrides)
