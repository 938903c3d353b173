"""Models: the local-loss integer MLP and CNN with ``fit`` / ``predict`` / ``evaluate`` /
``save``.

Everything numeric runs in the Rust engine (``nitrod_rs._core``); the package checks
arguments, converts inputs, draws progress bars and assembles the :class:`History`.
``_base`` holds what both kinds share, ``mlp`` and ``cnn`` what each adds, and ``_engine``
is the one place that names the engine's model classes.

Accepted inputs (``x``):

* ``uint8`` raw pixels ``N x H x W`` (one channel), ``N x C x H x W`` or ``N x features``
  (one channel): normalised inside (SPEC §2) with statistics fitted on the training data by
  :meth:`MLP.fit` (or :meth:`MLP.fit_normalization`) and stored with the model;
* ``int8`` already-normalised values of the same shapes: used as they are, without a copy.

Arrays must be C-contiguous. Labels are integer class indices ``0 <= y < classes``.
Floats appear only in reported accuracies and mean losses, never in the computation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._checks import ACTIVATIONS  # noqa: F401 - nitrod_rs.models.ACTIVATIONS, as before
from .._paths import PathLike
from ..history import History
from . import _engine
from ._engine import EngineModel
from .cnn import CNN
from .mlp import MLP

__all__ = ["MLP", "CNN", "History", "load", "from_bytes", "PathLike"]


def _wrap(core: EngineModel) -> MLP | CNN:
    if _engine.is_cnn(core):
        return CNN._from_engine(core)
    return MLP._from_engine(core)


def load(path: PathLike) -> MLP | CNN:
    """Load a model saved with :meth:`MLP.save` or :meth:`CNN.save` (either kind)."""
    return _wrap(_engine.load(path))


def from_bytes(data: bytes) -> MLP | CNN:
    """A model of either kind from ``.safetensors`` bytes."""
    return _wrap(_engine.from_bytes(data))


def _from_config(config: Mapping[str, Any], seed: int) -> MLP | CNN:
    """A fresh model of the architecture ``config`` (a preset's, from ``_core.preset``)."""
    return _wrap(_engine.from_config(config, seed))
