"""Callbacks for :meth:`MLP.fit` / :meth:`CNN.fit`.

A callback is any callable; after every epoch ``fit`` calls it with that epoch's entry of the
:class:`~nitrod_rs.History` (a dict), and a truthy result stops training. Between epochs the
model is free: a callback may save it, evaluate it or predict with it. A callback that has a
``set_model(model)`` method is given the model at the start of ``fit`` (after
``model.history`` has been set to the epochs the run has already done: none, or those of the
resumed checkpoint).

    best = nitrod_rs.callbacks.ModelCheckpoint("best.safetensors")
    model.fit(x, y, epochs=20, validation_split=0.1, callbacks=[best])
    model = nitrod_rs.load("best.safetensors")      # the best epoch's model
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from ._paths import PathLike

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint:
    """Save the model (a plain model file, :meth:`MLP.save`) after the epochs where it is the
    best so far by ``monitor``, or after every epoch with ``save_best_only=False``.

    Args:
        path: the file; with ``save_best_only=False`` it may name entries of the epoch, as in
            ``"model-{epoch:03d}.safetensors"``.
        monitor: the entry of the history that ranks the epochs: ``"val_accuracy"`` (default),
            ``"test_accuracy"`` (the paper's protocol), ``"val_loss"``, ….
        save_best_only: only save when ``monitor`` improves (strictly: the earliest of equal
            epochs is kept).
        mode: ``"max"``, ``"min"`` or ``"auto"`` (``"min"`` for a loss, else ``"max"``).

    After ``fit``, ``best`` holds the best value and ``best_epoch`` its epoch. On a resumed run
    the epochs before the checkpoint count too (their best model is the file the first part
    saved).
    """

    def __init__(self, path: PathLike, monitor: str = "val_accuracy", save_best_only: bool = True,
                 mode: str = "auto") -> None:
        self.path = os.fspath(path)
        self.monitor = str(monitor)
        self.save_best_only = bool(save_best_only)
        if mode == "auto":
            mode = "min" if "loss" in self.monitor else "max"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.mode = mode
        self.model: Any = None
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._warned = False

    def set_model(self, model: Any) -> None:
        """Called by ``fit`` at its start: the model to save, and the epochs already done."""
        self.model = model
        self.best = None
        self.best_epoch = None
        history = getattr(model, "history", None)
        for entry in history.epochs if history is not None else []:
            self._improves(entry)

    def _value(self, entry: dict[str, Any]) -> float | None:
        if self.monitor not in entry:
            raise ValueError(f"ModelCheckpoint: monitor {self.monitor!r} is not an entry of "
                             f"the history; use one of " + ", ".join(sorted(entry)))
        v = entry[self.monitor]
        return None if v is None else float(v)

    def _improves(self, entry: dict[str, Any]) -> bool:
        v = self._value(entry)
        if v is None:
            return False
        better = (self.best is None or (v > self.best if self.mode == "max" else v < self.best))
        if better:
            self.best, self.best_epoch = v, int(entry["epoch"])
        return better

    def __call__(self, entry: dict[str, Any]) -> None:
        if self.model is None:
            raise RuntimeError("ModelCheckpoint has no model: pass it to fit(callbacks=[...]) "
                               "(fit calls set_model) or call set_model(model) first")
        if self._value(entry) is None and not self._warned:
            self._warned = True
            warnings.warn(f"ModelCheckpoint: {self.monitor} is not measured in this run "
                          "(no such set given); nothing is saved", stacklevel=2)
        if self._improves(entry) or not self.save_best_only:
            self.model.save(self.path.format(**entry) if not self.save_best_only
                            else self.path)
