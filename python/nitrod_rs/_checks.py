"""Argument checks of the model API, each check and its message written once.

The engine checks everything again (and is the authority); these run first so a mistake is
reported in the caller's words (``x``, ``validation_data[1]``, ``features[2]``) before any work.
The accepted names and defaults come from the engine (:data:`DEFAULTS`, ``_core.defaults``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _core

#: The engine's defaults and accepted names (``crates/nitro-py/src/facts.rs``).
DEFAULTS: dict[str, Any] = _core.defaults()

#: The activation names the engine accepts.
ACTIVATIONS: tuple[str, ...] = tuple(DEFAULTS["activations"])

#: The most worker threads a call may ask for (four per CPU; ``threads.rs``).
MAX_THREADS: int = int(DEFAULTS["max_threads"])

# The ranges of the engine's integer types: an argument outside its type's range is a
# ValueError naming the argument and the range (never the conversion's OverflowError).
U8_MAX = 2**8 - 1
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
I64_MAX = 2**63 - 1
USIZE_MAX = U64_MAX

Geometry = tuple[int, int, int]


def check_int(value: Any, name: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``value`` as an ``int`` in ``minimum..maximum`` (a ``TypeError`` for a non-integer, a
    ``ValueError`` naming the range otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        if maximum is None:
            raise ValueError(f"{name} must be >= {minimum}, got {v}")
        lo = "" if minimum is None else f"{minimum}"
        raise ValueError(f"{name} must be an integer in {lo}..{maximum}, got {v}")
    return v


def check_threads(threads: Any) -> int | None:
    """``threads``: ``None`` (the shared pool) or a worker count in ``1..MAX_THREADS``."""
    if threads is None:
        return None
    return check_int(threads, "threads", minimum=1, maximum=MAX_THREADS)


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
    pct = check_int(dropout, "dropout", minimum=0, maximum=U32_MAX)
    if pct != 0 and (pct > 95 or pct % 5):
        raise ValueError(f"dropout must be 0 or a percentage 5..95 in steps of 5, got {pct}")
    return pct


def shared_options(slope: Any, dropout: Any, bias: Any, init: str | None,
                   seed: Any) -> dict[str, Any]:
    """The keyword arguments that ``_core.Model.mlp`` and ``_core.Model.cnn`` share (besides
    ``activation``), checked in this order: slope, dropout, seed."""
    return {
        "slope": check_int(slope, "slope", minimum=1, maximum=U8_MAX),
        "dropout_pct": dropout_pct(dropout),
        "bias": bool(bias),
        "init": init,
        "seed": check_int(seed, "seed", minimum=0, maximum=U64_MAX),
    }


def hyper(base: Mapping[str, Any]) -> dict[str, Any]:
    """Check a complete set of IntegerSGD settings (``lr_inv`` … ``compat``)."""
    h = dict(base)
    for k in ("lr_inv", "lr_amp_factor"):
        h[k] = check_int(h[k], k, minimum=1, maximum=I64_MAX)
    for k in ("fwd_decay_inv", "subnet_decay_inv"):
        h[k] = check_int(h[k], k, minimum=0, maximum=I64_MAX)
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


# -- images --------------------------------------------------------------------------------------
#
# What ``x`` may be (the one statement of the rule; the models' docstrings cite it):
#
# * ``uint8``: raw pixels, normalised inside with the model's statistics;
# * ``int8``: values already normalised (the engine's input as it is, no statistics applied);
# * any other integer dtype with values 0..255: pixels, read as ``uint8`` (a copy);
# * a float dtype: an image in [0, 1] when its largest value is at most 1, read as
#   ``round(x·255)``, else an image in [0, 255], read as ``round(x)`` (round half to even,
#   ``numpy.rint``, computed in float64, where ``x·255`` is exact for float16/float32 input);
#   NaN, infinities and values outside [0, 255] are errors;
# * a list or anything ``numpy.asarray`` takes, by the same rules.
#
# Layouts: any strides, Fortran order and read-only arrays are accepted (copied into C order only
# when they are not already). Images are ``N x C x H x W`` or, for one channel, ``N x H x W``;
# ``N x H x W x C`` is recognised, transposed and noted once per process (CNNs: by the model's
# input shape; MLPs: see ``_mlp_channels_last``).

#: Layout notes already given in this process (each is given once).
_NOTED: set[str] = set()


def _note_once(key: str, message: str) -> None:
    if key not in _NOTED:
        _NOTED.add(key)
        warnings.warn(message, UserWarning, stacklevel=4)


def as_array(x: Any, name: str, what: str) -> np.ndarray:
    """``x`` as a plain ``numpy.ndarray`` (no copy when it is one); ``what`` describes it."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array; fill the masked entries first, e.g. "
                        f"{name}.filled(0)")
    if isinstance(x, np.ndarray):
        return x if type(x) is np.ndarray else x.view(np.ndarray)
    if x is None or isinstance(x, (str, bytes, Mapping)):
        raise TypeError(f"{name} must be {what} (a numpy array or a nested list), "
                        f"got {type(x).__name__}")
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} cannot be read as {what}: {exc}") from None
    if a.dtype == np.object_ or a.dtype.kind in "USV":
        raise TypeError(f"{name} cannot be read as {what}: it gives a numpy array of dtype "
                        f"{a.dtype} (ragged nesting, or items that are not numbers)")
    return a


def _float_pixels(a: np.ndarray, name: str) -> np.ndarray:
    f = a.astype(np.float64, copy=False)
    finite = np.isfinite(f)
    if not finite.all():
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(f"{name} holds NaN or infinite values (the first at index {first}); "
                         f"replace them (e.g. np.nan_to_num({name})) before passing it")
    lo, hi = float(f.min()), float(f.max())
    if lo < 0.0 or hi > 255.0:
        raise ValueError(
            f"{name} has float values in [{lo:g}, {hi:g}]; float images must lie in [0, 1] "
            f"(read as round(x*255)) or [0, 255] (read as round(x)). Standardised floats "
            f"cannot be read exactly: pass the uint8 pixels, or values you normalised "
            f"yourself as int8, e.g. np.clip(np.rint({name}), -128, 127).astype(np.int8)")
    return np.rint(f * 255.0 if hi <= 1.0 else f).astype(np.uint8)


def pixels(x: Any, name: str) -> np.ndarray:
    """``x`` as ``uint8`` pixels or ``int8`` normalised values, by the rules above."""
    a = as_array(x, name, "images")
    dt = a.dtype
    if dt == np.uint8 or dt == np.int8:
        return a
    if dt == np.bool_:
        raise TypeError(f"{name} has dtype bool; images are uint8 pixels: pass "
                        f"{name}.astype(np.uint8) * 255 for black-and-white images")
    if a.size == 0:
        return a.astype(np.uint8)
    if np.issubdtype(dt, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            hint = (f"; if it holds values already normalised to -128..127, pass "
                    f"{name}.astype(np.int8)" if -128 <= lo and hi <= 127 else "")
            raise ValueError(f"{name} has dtype {dt} with values in {lo}..{hi}; integer "
                             f"images other than int8 are pixels and must lie in 0..255 "
                             f"(they are read as uint8){hint}")
        return a.astype(np.uint8)
    if np.issubdtype(dt, np.floating):
        return _float_pixels(a, name)
    raise TypeError(f"{name} has dtype {dt}; pass uint8 pixels (0..255), int8 normalised "
                    f"values, or float images in [0, 1] or [0, 255]")


def _non_empty(x: np.ndarray, name: str) -> None:
    if x.ndim == 0 or x.shape[0] == 0 or 0 in x.shape:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); expected at least one sample")


def _rows(x: np.ndarray) -> np.ndarray:
    """The 2-D (N x C·H·W) C-contiguous rows of ``x`` (samples first, C x H x W order);
    a copy only when ``x`` is not C-contiguous."""
    return np.ascontiguousarray(x).reshape(x.shape[0], -1)


def _channels_last(x: np.ndarray, name: str) -> np.ndarray:
    """``N x H x W x C`` images as ``N x C x H x W``, with the once-per-process note."""
    _note_once("nhwc", f"{name} has shape {tuple(x.shape)}, read as N x H x W x C images "
                       f"and transposed to N x C x H x W; pass {name}.transpose(0, 3, 1, 2) "
                       f"to avoid this copy and note")
    return x.transpose(0, 3, 1, 2)


def _mlp_channels_last(shape: tuple[int, ...], channels: int | None) -> bool:
    """Whether a 4-D MLP input is ``N x H x W x C``. With normalisation statistics of more than
    one channel, the axis of that size tells; otherwise the last axis is the channels' when it
    has at most 4 entries (grey, RGB, RGBA) and the second more than 4."""
    if channels is not None and channels > 1 and shape[1] != channels:
        return shape[3] == channels
    return shape[3] <= 4 < shape[1]


def mlp_images(x: Any, name: str, inputs: int, *, channels: int | None = None,
               single: bool = False) -> tuple[np.ndarray, Geometry]:
    """Validate MLP input ``x`` (``N x features``, ``N x H x W``, ``N x C x H x W`` or
    ``N x H x W x C``; with ``single``, also one sample of those shapes); return the 2-D
    (N x features) rows and the (C, H, W) the normalisation reads. ``channels``: the model's
    normalisation channels, if it has statistics."""
    a = pixels(x, name)
    if single and a.ndim >= 1 and a.size == inputs and (
            a.ndim == 1 or int(np.prod(a.shape[1:])) != inputs):
        a = a[None]
    if a.ndim == 1:
        raise ValueError(f"{name} is 1-dimensional {tuple(a.shape)}; pass N samples as an "
                         f"N x {inputs} array ({name}.reshape(1, -1) for one sample)")
    if a.ndim == 4 and _mlp_channels_last(a.shape, channels):
        a = _channels_last(a, name)
    if a.ndim == 2:
        chw = (1, 1, int(a.shape[1]))
    elif a.ndim == 3:
        chw = (1, int(a.shape[1]), int(a.shape[2]))
    elif a.ndim == 4:
        chw = (int(a.shape[1]), int(a.shape[2]), int(a.shape[3]))
    else:
        raise ValueError(f"{name} must have shape N x features, N x H x W or N x C x H x W; "
                         f"got {a.ndim} dimension(s) {tuple(a.shape)}")
    _non_empty(a, name)
    features = chw[0] * chw[1] * chw[2]
    if features != inputs:
        one = (f" (it holds one sample: add the sample axis, {name}[None])"
               if a.size == inputs else "")
        raise ValueError(f"{name} has {features} values per sample (shape {tuple(a.shape)}), "
                         f"the model expects {inputs}{one}")
    return _rows(a), chw


def cnn_images(x: Any, name: str, shape: Geometry, *,
               single: bool = False) -> tuple[np.ndarray, Geometry]:
    """Validate CNN input of geometry ``shape`` = (C, H, W): ``N x C x H x W``, ``N x H x W``
    (one channel) or ``N x H x W x C`` (transposed, noted); with ``single``, also one image
    ``C x H x W``, ``H x W x C`` or ``H x W``. Returns the 2-D (N x C·H·W) rows and ``shape``."""
    a = pixels(x, name)
    c, h, w = shape
    if single and (a.shape in ((c, h, w), (h, w, c)) or (c == 1 and a.shape == (h, w))):
        a = a[None]
    if a.ndim == 3 and c == 1 and a.shape[1:] == (h, w):
        a = a[:, None]
    if a.ndim == 4 and a.shape[1:] != (c, h, w) and a.shape[1:] == (h, w, c):
        a = _channels_last(a, name)
    if a.ndim != 4 or a.shape[1:] != (c, h, w):
        want = "N x C x H x W" + (" or N x H x W" if c == 1 else "")
        raise ValueError(
            f"{name} must hold images of shape {(c, h, w)} for this CNN, as {want} (or "
            f"N x H x W x C, which is transposed); got {a.ndim} dimension(s) {tuple(a.shape)}")
    _non_empty(a, name)
    return _rows(a), shape


# -- labels --------------------------------------------------------------------------------------


def labels(y: Any, n: int, classes: int, name: str) -> np.ndarray:
    """Class indices ``0 <= y < classes``, one per sample (any integer dtype, a list, or an
    ``N x 1`` column), as a contiguous int64 array."""
    a = as_array(y, name, "integer class indices")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must have an integer dtype (class indices), got {a.dtype}; "
                        f"convert whole-number labels with {name}.astype(np.int64)")
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        hint = (f"; it looks one-hot: pass {name}.argmax(axis=1)"
                if a.ndim == 2 and a.shape == (n, classes) else "")
        raise ValueError(f"{name} must be 1-dimensional (N class indices), got shape "
                         f"{a.shape}{hint}")
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} labels but there are {n} samples")
    if n and (int(a.min()) < 0 or int(a.max()) >= classes):
        raise ValueError(
            f"{name} must hold class indices in 0..{classes - 1}, "
            f"got values in {int(a.min())}..{int(a.max())}"
        )
    return np.ascontiguousarray(a, dtype=np.int64)


def augment(value: Any, chw: Geometry) -> tuple[int, bool] | None:
    """``fit``'s ``augment`` as the engine's ``(pad, flip)``, or ``None`` for none."""
    if value is False or value is None:
        return None
    if chw[1] == 1:
        raise ValueError(
            "augmentation needs images (N x H x W or N x C x H x W), not N x features rows"
        )
    if value is True:
        # docs/algorithm.md §2's pads: 4 for 32-pixel images (CIFAR-10), 2 for 28-pixel (MNIST-like).
        return (4 if chw[2] >= 32 else 2, True)
    if isinstance(value, Mapping):
        return (check_int(value.get("pad", 2), "augment['pad']", minimum=0, maximum=USIZE_MAX),
                bool(value.get("flip", True)))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (check_int(value[0], "augment pad", minimum=0, maximum=USIZE_MAX),
                bool(value[1]))
    raise TypeError("augment must be a bool, a (pad, flip) tuple or a dict with 'pad' and 'flip'")


# -- fit's sets, protocol and files --------------------------------------------------------------


def pair(value: Any, name: str, what: str) -> tuple[Any, Any]:
    """``validation_data`` / ``test_data``: a tuple (or list) ``(x_<what>, y_<what>)``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        got = (f"a sequence of {len(value)}" if isinstance(value, (tuple, list))
               else type(value).__name__)
        raise TypeError(f"{name} must be a pair (x_{what}, y_{what}), got {got}")
    return value[0], value[1]


def validation_split(value: Any) -> int | None:
    """``validation_split`` as the engine's share in thousandths (1..999), or ``None`` for
    none (``None`` or ``0``)."""
    if value is None or (not isinstance(value, bool) and isinstance(
            value, (float, int, np.floating, np.integer)) and value == 0):
        return None
    if isinstance(value, bool) or not isinstance(value, (float, int, np.floating, np.integer)):
        raise TypeError(f"validation_split must be a fraction such as 0.1, "
                        f"got {type(value).__name__}")
    try:
        share = float(value)
    except OverflowError:
        share = float("inf")
    permille = int(round(share * 1000)) if np.isfinite(share) else 0
    if not 1 <= permille <= 999:
        raise ValueError(f"validation_split must give 1..999 thousandths of the training set "
                         f"(0.001 to 0.999), got {value!r}")
    return permille


#: The keyword arguments of ``fit`` besides ``x``, ``y`` and ``settings``, with their defaults:
#: what a ``settings`` mapping (a preset's) may hold. ``None`` everywhere means "not given".
FIT_DEFAULTS: dict[str, Any] = {
    "epochs": int(DEFAULTS["epochs"]),
    "batch_size": int(DEFAULTS["batch_size"]),
    **{k: v for k, v in DEFAULTS["hyper"].items() if k != "compat"},
    "compat": None,  # the model's (a CNN's own compat, else the engine's default)
    "lr_schedule": None,
    "validation_data": None,
    "validation_split": None,
    "validation_seed": 0,
    "test_data": None,
    "paper_protocol": False,
    "augment": False,
    "shuffle": True,
    "plateau": False,
    "early_stopping": False,
    "verbose": None,
    "progress": None,
    "callbacks": None,
    "checkpoint": None,
    "checkpoint_every": 1,
    "resume": None,
    "initial_epoch": 0,
    "seed": None,  # the model's seed
    "threads": None,
    "workers": None,  # train in this process
}


def fit_options(settings: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """``fit``'s settings: :data:`FIT_DEFAULTS`, overridden by the entries of ``settings`` (a
    preset's, say), overridden by the keywords ``given`` explicitly (those not ``None``)."""
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise TypeError(f"settings must be a mapping of fit's keyword arguments (such as a "
                        f"preset's settings), got {type(settings).__name__}")
    unknown = sorted(str(k) for k in settings if k not in FIT_DEFAULTS)
    if unknown:
        raise TypeError(f"settings holds entries that are not keyword arguments of fit: "
                        f"{', '.join(unknown)}")
    out = dict(FIT_DEFAULTS)
    for source in (settings, given):
        out.update({k: v for k, v in source.items() if v is not None})
    return out


def verbosity(verbose: Any, progress: Any) -> int:
    """The display of ``fit``: 0 nothing, 1 a progress bar and a line per epoch, 2 a line per
    epoch (``verbose``, as Keras'), or ``progress`` True (1) / False (0); default 1."""
    level = None if verbose is None else check_int(
        int(verbose) if isinstance(verbose, (bool, np.bool_)) else verbose, "verbose",
        minimum=0, maximum=2)
    if progress is None:
        return 1 if level is None else level
    if level is not None and (level > 0) != bool(progress):
        raise ValueError(f"verbose={level} and progress={progress!r} disagree; give one of them")
    return 1 if level is None and progress else (level or 0)


#: fit's ``plateau`` / ``early_stopping`` dict keys: the engine's setting, and its range.
_RULE_KEYS: dict[str, dict[str, tuple[str, int, int]]] = {
    "plateau": {"patience": ("plateau_patience", 0, U32_MAX),
                "factor": ("plateau_factor", 2, I64_MAX),
                "start_epoch": ("plateau_start", 1, U32_MAX),
                "min_delta": ("min_delta_points", 0, 100)},
    "early_stopping": {"patience": ("early_stopping_patience", 0, U32_MAX),
                       "start_epoch": ("early_stopping_start", 1, U32_MAX),
                       "min_delta": ("min_delta_points", 0, 100)},
}


def watch(plateau: Any, early_stopping: Any, paper_protocol: bool) -> dict[str, Any]:
    """``plateau`` and ``early_stopping`` (each a bool or a dict of settings) as the keyword
    arguments of ``_core.TrainSettings``; the paper's protocol switches both on."""
    out: dict[str, Any] = {}
    for rule, value in (("plateau", plateau), ("early_stopping", early_stopping)):
        keys = _RULE_KEYS[rule]
        if isinstance(value, (bool, np.bool_)) or value is None:
            out[rule] = bool(value) or paper_protocol
            continue
        if not isinstance(value, Mapping):
            raise TypeError(f"{rule} must be True, False or a dict with any of "
                            f"{', '.join(keys)}, got {type(value).__name__}")
        out[rule] = True
        for k, v in value.items():
            if k not in keys:
                raise ValueError(f"{rule} has no setting {k!r}; use any of {', '.join(keys)}")
            engine, lo, hi = keys[k]
            v = check_int(v, f"{rule}[{k!r}]", minimum=lo, maximum=hi)
            if engine in out and out[engine] != v:
                raise ValueError("plateau['min_delta'] and early_stopping['min_delta'] differ; "
                                 "the two rules watch one improvement threshold")
            out[engine] = v
    return out


def schedule(value: Any) -> tuple[str, int, int] | None:
    """``lr_schedule`` as the engine's ``(kind, a, max)``, or ``None`` for a constant
    ``lr_inv``."""
    forms = ("None, ('linear', pct, max), ('exponential', pct, max), ('halving', every, max) "
             "or a dict such as {'kind': 'halving', 'every': 10, 'max': 4096}")
    if value is None or value == "constant":
        return None
    if isinstance(value, Mapping):
        kind = value.get("kind")
        first = "every" if kind == "halving" else "pct"
        extra = sorted(str(k) for k in value if k not in ("kind", first, "max"))
        if extra or first not in value or "max" not in value:
            raise ValueError(f"lr_schedule {dict(value)!r}: a {kind!r} schedule takes 'kind', "
                             f"{first!r} and 'max'; use {forms}")
        a, cap = value[first], value["max"]
    elif isinstance(value, (tuple, list)) and len(value) == 3:
        kind, a, cap = value
    else:
        raise TypeError(f"lr_schedule must be {forms}; got {value!r}")
    if kind not in DEFAULTS["schedules"]:
        raise ValueError(f"lr_schedule kind must be one of {', '.join(DEFAULTS['schedules'])}, "
                         f"got {kind!r}")
    if kind == "halving":
        a = check_int(a, "lr_schedule every", minimum=1, maximum=U32_MAX)
    else:
        a = check_int(a, "lr_schedule pct", minimum=1, maximum=I64_MAX)
    return (str(kind), a, check_int(cap, "lr_schedule max", minimum=1, maximum=I64_MAX))


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
