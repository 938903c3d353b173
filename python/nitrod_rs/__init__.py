"""nitrod-rs: NITRO-D integer-only neural-network training, a Rust engine with a numpy API.

    import nitrod_rs
    model = nitrod_rs.MLP([784, 200, 100, 50, 10], seed=0)
    history = model.fit(x_train, y_train, epochs=5, validation_split=0.1,
                        test_data=(x_test, y_test), checkpoint="run.safetensors")
    model.save("mlp2.safetensors")

    cnn = nitrod_rs.CNN([32, "M", 64, "M"], [256], input_shape=(1, 28, 28))

See ``nitrod_rs.presets`` for the paper's models, ``nitrod_rs.callbacks`` for
``ModelCheckpoint``, ``nitrod_rs.ops`` for the integer primitives, ``nitrod_rs.datasets`` for
MNIST / Fashion-MNIST / CIFAR-10 loaders and ``nitrod_rs.deploy`` for the bit-exact ONNX and C
exports and the float-weight import. ``nitrod_rs.sweep(...)`` runs seed and hyper-parameter
sweeps on Ray (:mod:`nitrod_rs.sweep`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._core import (
    ConfigError,
    FormatError,
    IntegerOverflowError,
    NitroError,
    ShapeError,
    __version__,
)

if TYPE_CHECKING:
    from . import callbacks, datasets, deploy, ops, presets
    from .models import CNN, MLP, History, from_bytes, load
    from .sweep import sweep

__all__ = [
    "MLP",
    "CNN",
    "History",
    "load",
    "from_bytes",
    "NitroError",
    "FormatError",
    "IntegerOverflowError",
    "ShapeError",
    "ConfigError",
    "callbacks",
    "datasets",
    "deploy",
    "ops",
    "presets",
    "sweep",
    "__version__",
]

# The submodules and the model classes are imported on first use (PEP 562): numpy's import
# dominates the cost of the rest, and the ``nitrod`` command, which imports this package before
# its own code runs, then starts in milliseconds and handles a Ctrl-C from its first statement.
# ``sweep`` is a module that is called as the function of its name (see its documentation).
_SUBMODULES = frozenset({"callbacks", "datasets", "deploy", "ops", "presets", "sweep"})
_FROM_MODELS = frozenset({"MLP", "CNN", "History", "from_bytes", "load"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FROM_MODELS:
        value = getattr(importlib.import_module(f"{__name__}.models"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
