"""The one place that builds and loads the engine's model (``_core.Model``, of either kind),
including the model of a resumed training run (``_core.Run.from_checkpoint``).

Everything else in the package holds an :data:`EngineModel` and calls its methods; building,
loading and telling the kinds apart happens only here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .. import _core
from .._paths import PathLike

EngineModel = _core.Model


def new_mlp(inputs: int, hidden: Sequence[int], classes: int, **options: Any) -> EngineModel:
    """An MLP; ``options`` are the keyword arguments of ``_core.Model.mlp``."""
    return _core.Model.mlp(inputs, list(hidden), classes, **options)


def new_cnn(input_shape: tuple[int, int, int], features: Sequence[tuple[str, list[int]]],
            classifier: Sequence[int], classes: int, **options: Any) -> EngineModel:
    """A CNN; ``features`` in the engine's ``(kind, [numbers])`` encoding, ``options`` the
    keyword arguments of ``_core.Model.cnn``."""
    return _core.Model.cnn(input_shape, list(features), list(classifier), classes, **options)


def from_config(config: Mapping[str, Any], seed: int) -> EngineModel:
    """A fresh model of the architecture ``config`` (as a model's ``config`` or a preset's)."""
    common = {k: config[k] for k in ("activation", "slope", "dropout_pct", "bias", "init")}
    if config["kind"] == "cnn":
        c, h, w = config["input"]
        return new_cnn((int(c), int(h), int(w)), config["features"], config["classifier"],
                       int(config["classes"]), seed=seed, decoder_dim=config["decoder_dim"],
                       head_pool=config["head_pool"],
                       conv_amp_adjust=config["conv_amp_adjust"], **common)
    return new_mlp(int(config["inputs"]), config["hidden"], int(config["classes"]), seed=seed,
                   **common)


def is_cnn(m: EngineModel) -> bool:
    return m.kind == "cnn"


def from_bytes(data: bytes, kind: str | None = None) -> EngineModel:
    """A model from ``.safetensors`` bytes: of either kind, or only ``"mlp"`` / ``"cnn"``."""
    return _core.Model.from_bytes(bytes(data), kind)


def load(path: PathLike) -> EngineModel:
    """A model of either kind from a ``.safetensors`` file."""
    return _core.Model.load(os.fspath(path))


def from_blob(data: bytes, kind: str | None = None) -> EngineModel:
    """A model rebuilt by the device loader ``nitro_core::export::from_blob``: of either kind,
    or only ``"mlp"`` / ``"cnn"``."""
    return _core.Model.from_blob(bytes(data), kind)


def checkpoint_model(path: PathLike) -> EngineModel:
    """The model of the checkpoint file ``path`` (an error if it is not a checkpoint)."""
    return _core.Run.checkpoint_model(os.fspath(path))


def resume(path: PathLike, x: Any, y: Any, chw: tuple[int, int, int],
           settings: _core.TrainSettings, **sets: Any) -> tuple[EngineModel, _core.Run]:
    """The model and the run saved in the checkpoint ``path``, continued on the same data
    with ``settings`` (the engine checks both; ``sets``: ``x_val`` … ``y_test``)."""
    return _core.Run.from_checkpoint(os.fspath(path), x, y, chw, settings=settings, **sets)
