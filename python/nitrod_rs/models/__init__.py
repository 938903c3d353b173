"""Models: the local-loss integer MLP and CNN with ``fit`` / ``predict`` / ``evaluate`` /
``save``.

Everything numeric runs in the Rust engine (``nitrod_rs._core``); the package checks
arguments, converts inputs, draws progress bars and assembles the :class:`History`.
``_base`` holds what both kinds share, ``mlp`` and ``cnn`` what each adds, and ``_engine``
is the one place that names the engine's model classes.

Accepted inputs (``x``), for ``fit``, ``predict``, ``evaluate`` and the rest alike:

* ``uint8`` raw pixels: normalised inside (per channel, ``pixel - 128`` minus the channel's mean,
  times 51, divided by its mean absolute deviation, clamped to ``int8``) with statistics fitted
  on the training data by :meth:`MLP.fit` (or :meth:`MLP.fit_normalization`) and stored with the
  model;
* ``int8``: values already normalised, the engine's input as it is (no statistics applied, no
  copy) — the rule that tells the two apart is the dtype alone;
* any other integer dtype (``int16`` … ``uint64``) holding 0..255: pixels, read as ``uint8``
  (values outside are an error; ``x.astype(np.int8)`` passes normalised values);
* floats: an image in [0, 1] when its largest value is at most 1, read as ``round(x·255)``;
  otherwise an image in [0, 255], read as ``round(x)`` (both round half to even, computed in
  float64, where ``x·255`` of a float32 is exact). NaN, infinities and values outside [0, 255]
  are an error, never clipped. To avoid the guess for a dark [0, 255] image, pass
  ``x.astype(np.uint8)``;
* lists and other array-likes, by the same rules.

Shapes: ``N x C x H x W``, ``N x H x W`` (one channel) or, for an MLP, ``N x features``.
``N x H x W x C`` is recognised (a CNN: by its ``input_shape``; an MLP: when the last axis has at
most 4 entries and the second more, or by the channels of its normalisation statistics),
transposed, and noted once per process with a ``UserWarning``. ``predict`` and
``predict_scores`` also take one sample (``H x W``, ``C x H x W``, ``H x W x C``, a feature
vector) and give one row. Any strides, Fortran order and read-only arrays are accepted; a copy
is made only when the data are not already C-ordered ``uint8``/``int8``.

Labels are integer class indices ``0 <= y < classes`` of any integer dtype (a list, or an
``N x 1`` column, too). Floats appear only in reported accuracies and mean losses, never in the
computation.
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
