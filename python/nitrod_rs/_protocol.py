"""The selection protocol of a training run's settings, shared by ``nitrod train`` and
:mod:`nitrod_rs.sweep`: which set selects the best epoch and drives the plateau rule and early
stopping (README "Command line")."""

from __future__ import annotations

from typing import Any

from . import _core


def default_split() -> tuple[int, int]:
    """The presets' validation split ``(permille, seed)`` (``nitro_core::Split::PRESET``)."""
    permille, seed = _core.defaults()["validation_split"]
    return int(permille), int(seed)


def apply(settings: dict[str, Any], *, paper_protocol: bool,
          validation_split: float | None) -> tuple[str | None, bool]:
    """Set the validation split and protocol of the ``fit`` keywords ``settings``.

    ``validation_split`` is a share of the training set, ``None`` for the presets' (10 %, seed
    0) and 0 for none, which also turns the plateau rule and early stopping off;
    ``paper_protocol`` selects on the test set instead, without a split (then
    ``validation_split`` must be ``None``). Returns the history entry prefix of the watched set
    (``"val"``, ``"test"`` or ``None``) and whether the plateau rule or early stopping was
    turned off for want of a validation set.
    """
    if paper_protocol:
        if validation_split is not None:
            raise ValueError("the paper's protocol trains on the whole training set and "
                             "selects on the test set: give no validation split with it")
        settings.update(validation_split=None, paper_protocol=True)
        return "test", False
    share = validation_split if validation_split is not None else default_split()[0] / 1000
    if share == 0:
        settings["validation_split"] = None
        turned_off = bool(settings.get("plateau") or settings.get("early_stopping"))
        if turned_off:
            settings.update(plateau=False, early_stopping=False)
        return None, turned_off
    settings["validation_split"] = share
    settings.setdefault("validation_seed", default_split()[1])
    return "val", False
