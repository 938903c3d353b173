"""Argument checks of the model API, each check and its message written once.

The engine checks everything again (and is the authority); these run first so a mistake is
reported in the caller's words (``x``, ``validation_data[1]``, ``features[2]``) before any work.
The accepted names and defaults come from the engine (:data:`DEFAULTS`, ``_core.defaults``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _core

#: The engine's defaults and accepted names (``crates/nitro-py/src/facts.rs``).
DEFAULTS: dict[str, Any] = _core.defaults()

#: The activation names the engine accepts.
ACTIVATIONS: tuple[str, ...] = tuple(DEFAULTS["activations"])

Geometry = tuple[int, int, int]


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of "
                         + ", ".join(ACTIVATIONS))
    return activation


def check_compat(compat: Any) -> str:
    if compat not in DEFAULTS["compats"]:
        raise ValueError(f"compat must be 'exact' or 'reference', got {compat!r}")
    return str(compat)


def check_head_pool(head_pool: Any) -> str:
    if head_pool not in DEFAULTS["head_pools"]:
        raise ValueError(f"head_pool must be 'max' or 'avg', got {head_pool!r}")
    return str(head_pool)


def sequence(value: Any, name: str, what: str) -> Sequence[Any]:
    """``value`` if it is a sequence (not a string); ``what`` describes its items."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of {what}")
    return value


def dropout_pct(dropout: Any) -> int:
    """A dropout given as a percentage (5..95 step 5) or a float rate, as a percentage."""
    if isinstance(dropout, bool):
        raise TypeError("dropout must be a percentage (int, 5..95 step 5) or a rate (float < 1)")
    if isinstance(dropout, (float, np.floating)):
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"a float dropout rate must be in [0, 1), got {dropout}")
        return int(round(float(dropout) * 100))
    pct = check_int(dropout, "dropout", minimum=0)
    if pct != 0 and (pct > 95 or pct % 5):
        raise ValueError(f"dropout must be 0 or a percentage 5..95 in steps of 5, got {pct}")
    return pct


def shared_options(slope: Any, dropout: Any, bias: Any, init: str | None,
                   seed: Any) -> dict[str, Any]:
    """The keyword arguments that ``_core.Model.mlp`` and ``_core.Model.cnn`` share (besides
    ``activation``), checked in this order: slope, dropout, seed."""
    return {
        "slope": check_int(slope, "slope", minimum=1),
        "dropout_pct": dropout_pct(dropout),
        "bias": bool(bias),
        "init": init,
        "seed": check_int(seed, "seed", minimum=0),
    }


def hyper(base: Mapping[str, Any]) -> dict[str, Any]:
    """Check a complete set of IntegerSGD settings (``lr_inv`` … ``compat``)."""
    h = dict(base)
    for k in ("lr_inv", "lr_amp_factor"):
        h[k] = check_int(h[k], k, minimum=1)
    for k in ("fwd_decay_inv", "subnet_decay_inv"):
        h[k] = check_int(h[k], k, minimum=0)
    h["compat"] = check_compat(h["compat"])
    return h


# -- arrays ------------------------------------------------------------------------------------


def parameter_mapping(values: Any, shapes: Mapping[str, Any], what: str) -> None:
    """``values`` is a mapping whose keys are exactly the parameter names of ``shapes``
    (``what`` names it in the messages: "state", "weights")."""
    if not isinstance(values, Mapping):
        raise TypeError(f"{what} must be a mapping of parameter name -> array, "
                        f"got {type(values).__name__}")
    missing = [k for k in shapes if k not in values]
    extra = [k for k in values if k not in shapes]
    if missing or extra:
        raise ValueError(f"{what} keys do not match the model's parameters: missing "
                         f"{missing}, unexpected {extra}")


def _pixels(x: Any, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray of dtype uint8 or int8, got {type(x).__name__}"
        )
    if x.dtype not in (np.uint8, np.int8):
        raise TypeError(
            f"{name} must have dtype uint8 (raw pixels) or int8 (already normalised), "
            f"got {x.dtype}"
        )
    return x


def _rows(x: np.ndarray, name: str, chw: Geometry) -> tuple[np.ndarray, Geometry]:
    """The 2-D (N x C·H·W) view of a checked, non-empty, C-contiguous ``x``."""
    if not x.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous; pass np.ascontiguousarray({name}) instead"
        )
    return x.reshape(x.shape[0], chw[0] * chw[1] * chw[2]), chw


def _non_empty(x: np.ndarray, name: str) -> None:
    if x.shape[0] == 0 or 0 in x.shape:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); expected at least one sample")


def _geometry(x: np.ndarray, name: str) -> Geometry:
    if x.ndim == 2:
        return (1, 1, int(x.shape[1]))
    if x.ndim == 3:
        return (1, int(x.shape[1]), int(x.shape[2]))
    if x.ndim == 4:
        return (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
    raise ValueError(
        f"{name} must have shape N x features, N x H x W or N x C x H x W; "
        f"got {x.ndim} dimension(s) {tuple(x.shape)}"
    )


def mlp_images(x: Any, name: str, inputs: int) -> tuple[np.ndarray, Geometry]:
    """Validate MLP input ``x``; return a 2-D (N x features) view and its (C, H, W)."""
    x = _pixels(x, name)
    chw = _geometry(x, name)
    _non_empty(x, name)
    features = chw[0] * chw[1] * chw[2]
    if features != inputs:
        raise ValueError(
            f"{name} has {features} values per sample (shape {tuple(x.shape)}), "
            f"the model expects {inputs}"
        )
    return _rows(x, name, chw)


def cnn_images(x: Any, name: str, shape: Geometry) -> tuple[np.ndarray, Geometry]:
    """Validate CNN input ``N x C x H x W`` (or ``N x H x W`` for one channel) of geometry
    ``shape``; return a 2-D (N x C·H·W) view and the geometry."""
    x = _pixels(x, name)
    c, h, w = shape
    if x.ndim == 4:
        got = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
    elif x.ndim == 3 and c == 1:
        got = (1, int(x.shape[1]), int(x.shape[2]))
    else:
        want = "N x C x H x W" + (" or N x H x W" if c == 1 else "")
        raise ValueError(f"{name} must have shape {want} for this CNN (input {shape}); "
                         f"got {x.ndim} dimension(s) {tuple(x.shape)}")
    if got != (c, h, w):
        raise ValueError(f"{name} has images of shape {got} (array {tuple(x.shape)}), "
                         f"the model expects {(c, h, w)}")
    _non_empty(x, name)
    return _rows(x, name, got)


def labels(y: Any, n: int, classes: int, name: str) -> np.ndarray:
    """Class indices ``0 <= y < classes``, one per sample, as a contiguous int64 array."""
    if not isinstance(y, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of integer class indices, "
                        f"got {type(y).__name__}")
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must have an integer dtype (class indices), got {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional (N class indices), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but there are {n} samples")
    if n and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(
            f"{name} must hold class indices in 0..{classes - 1}, "
            f"got values in {int(y.min())}..{int(y.max())}"
        )
    return np.ascontiguousarray(y, dtype=np.int64)


def augment(value: Any, chw: Geometry) -> tuple[int, bool] | None:
    """``fit``'s ``augment`` as the engine's ``(pad, flip)``, or ``None`` for none."""
    if value is False or value is None:
        return None
    if chw[1] == 1:
        raise ValueError(
            "augmentation needs images (N x H x W or N x C x H x W), not N x features rows"
        )
    if value is True:
        # SPEC §2's pads: 4 for 32-pixel images (CIFAR-10), 2 for 28-pixel (MNIST-like).
        return (4 if chw[2] >= 32 else 2, True)
    if isinstance(value, Mapping):
        return (check_int(value.get("pad", 2), "augment['pad']", minimum=0),
                bool(value.get("flip", True)))
    if isinstance(value, tuple) and len(value) == 2:
        return (check_int(value[0], "augment pad", minimum=0), bool(value[1]))
    raise TypeError("augment must be a bool, a (pad, flip) tuple or a dict with 'pad' and 'flip'")


# -- fit's sets, protocol and files --------------------------------------------------------------


def pair(value: Any, name: str, what: str) -> tuple[Any, Any]:
    """``validation_data`` / ``test_data``: a tuple ``(x_<what>, y_<what>)``."""
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError(f"{name} must be a tuple (x_{what}, y_{what}), "
                        f"got {type(value).__name__}")
    return value


def validation_split(value: Any) -> int | None:
    """``validation_split`` as the engine's share in thousandths (1..999), or ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (float, int, np.floating, np.integer)):
        raise TypeError(f"validation_split must be a fraction such as 0.1, "
                        f"got {type(value).__name__}")
    permille = int(round(float(value) * 1000))
    if not 1 <= permille <= 999:
        raise ValueError(f"validation_split must give 1..999 thousandths of the training set "
                         f"(0.001 to 0.999), got {value!r}")
    return permille


def selection(validation_data: Any, permille: int | None, test_data: Any, paper_protocol: bool,
              watches: bool) -> None:
    """Which sets ``fit`` is given fit together with the protocol (``watches``: the plateau
    rule or early stopping is on)."""
    if validation_data is not None and permille is not None:
        raise ValueError("give validation_data or validation_split, not both")
    if paper_protocol:
        if test_data is None:
            raise ValueError("paper_protocol selects on the test set: give "
                             "test_data=(x_test, y_test)")
        if permille is not None:
            raise ValueError("paper_protocol trains on the whole training set and selects on "
                             "the test set: pass validation_split=None")
    elif watches and validation_data is None and permille is None:
        raise ValueError("plateau and early_stopping watch a validation set: give "
                         "validation_data or validation_split, or paper_protocol=True to "
                         "watch the test set (the paper's protocol)")


def checkpoint_path(path: Any) -> str:
    """``checkpoint``: a file in an existing directory."""
    p = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"checkpoint {p!r}: the directory {parent!r} does not exist")
    return p


def same_architecture(saved: Mapping[str, Any], own: Mapping[str, Any], path: str) -> None:
    """A checkpoint's model must have this model's architecture (its seed may differ: the
    checkpoint's replaces it)."""
    diff = [f"{k} {saved.get(k)!r} there, {own.get(k)!r} here"
            for k in sorted(set(saved) | set(own)) if k != "seed" and saved.get(k) != own.get(k)]
    if diff:
        raise ValueError(f"the checkpoint {path!r} holds another architecture than this "
                         f"model: " + "; ".join(diff))
