"""Import weights trained elsewhere in floating point into an integer model.

The rule, exactly: a float weight ``w`` with scale ``s`` becomes the integer

    q = round_half_away_from_zero(w · s) = sign(w·s) · ⌊|w·s| + ½⌋

where ``w · s`` is the *exact* product of the two numbers (a float is an exact binary
fraction; ``s`` may be an ``int``, a ``float`` or a ``fractions.Fraction``), not a rounded
floating-point product: ``0.5 → 1``, ``-0.5 → -1``, ``2.5 → 3``, ``-2.5 → -3``,
``0.49999999999999994 → 0``. A result outside ``[-max_abs, max_abs]`` (default ``2³¹ − 1``,
the ``int32`` storage, docs/algorithm.md §10) or a non-finite weight is an error naming the tensor and the
first offending element; nothing is clipped silently.

Most elements take a vectorised path: the floating-point product ``v`` differs from the exact
one by at most half an ulp, so unless ``v`` lies within a few ulps of a half-integer both
round to the same integer. The elements that do lie that close are recomputed exactly with
:class:`fractions.Fraction`.

The integer network keeps its fixed scaling layers (``SF = 2⁸ · fan_in``, docs/algorithm.md §3.3), so a
float network maps onto it when it computes ``y = act(clip(z / (2⁸ · fan_in)))`` with the
same ``z = Σ (w·s)·x`` on inputs normalised as in docs/algorithm.md §2; choosing ``s`` (per tensor if
needed) is the user's part.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from .. import _checks

#: The default range limit: the ``int32`` weight storage.
INT32_LIMIT = (1 << 31) - 1


def _exact_scale(scale: Any, name: str) -> Fraction:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, Fraction, np.integer,
                                                          np.floating)):
        raise TypeError(f"scale of {name!r} must be an int, float or Fraction, "
                        f"got {type(scale).__name__}")
    f = Fraction(scale) if not isinstance(scale, np.generic) else Fraction(scale.item())
    if f <= 0:
        raise ValueError(f"scale of {name!r} must be positive, got {scale!r}")
    return f


def _round_exact(w: int | float, s: Fraction) -> int:
    v = Fraction(w) * s
    q = int((abs(v) + Fraction(1, 2)).__floor__())
    return -q if v < 0 else q


def _out_of_range(name: str, a: np.ndarray, i: int, q: int, scale: Any, max_abs: int) -> None:
    raise ValueError(f"{name}: element {tuple(int(v) for v in np.unravel_index(i, a.shape))} = "
                     f"{a.reshape(-1)[i].item()!r} times scale {scale!r} rounds to {q}, outside "
                     f"[-{max_abs}, {max_abs}]; use a smaller scale")


def quantize(weights: Any, scale: Any, *, max_abs: int = INT32_LIMIT,
             name: str = "weights") -> np.ndarray:
    """``round_half_away_from_zero(weights · scale)`` exactly, range-checked, as ``int32``
    (the module docstring states the rule)."""
    a = np.asarray(weights)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected real numbers, got dtype {a.dtype}")
    if isinstance(max_abs, bool) or not isinstance(max_abs, int) or \
            not 0 < max_abs <= INT32_LIMIT:
        raise ValueError(f"max_abs must be an int in [1, {INT32_LIMIT}], got {max_abs!r}")
    s = _exact_scale(scale, name)
    flat_in = a.reshape(-1)
    out = np.zeros(flat_in.shape, dtype=np.int64)
    exact: Any
    if a.dtype.kind in "iu":
        exact = range(flat_in.size)  # every element by the exact rule
    else:
        w = flat_in.astype(np.float64)  # exact for every float type up to float64
        if not np.all(np.isfinite(w)):
            bad = int(np.flatnonzero(~np.isfinite(w))[0])
            raise ValueError(f"{name}: element "
                             f"{tuple(int(v) for v in np.unravel_index(bad, a.shape))} is "
                             f"{w[bad]}, not a finite number")
        try:
            fs = float(s)
        except OverflowError:
            raise ValueError(f"scale of {name!r} is too large: {scale!r}") from None
        with np.errstate(over="ignore", invalid="ignore"):
            v = w * fs  # within ~1.5 ulp of the exact product
            mag = np.abs(v)
            floor = np.floor(mag)
            frac = mag - floor  # exact below 2^52
            near = ~(mag < 2.0 ** 52) | (np.abs(frac - 0.5) <= 4 * np.spacing(mag))
            fast = ~near
            q = np.where(frac >= 0.5, floor + 1, floor) * np.sign(v)
        big = fast & (np.abs(q) > max_abs)
        if big.any():
            i = int(np.flatnonzero(big)[0])
            _out_of_range(name, a, i, int(q[i]), scale, max_abs)
        out[fast] = q[fast].astype(np.int64)  # integers below 2^31: exact
        exact = np.flatnonzero(near)
    for i in exact:
        qi = _round_exact(flat_in[i].item(), s)
        if abs(qi) > max_abs:
            _out_of_range(name, a, int(i), qi, scale, max_abs)
        out[i] = qi
    return out.astype(np.int32).reshape(a.shape)


def float_state_dict(model: Any, weights: Mapping[str, Any],
                     scale: Any | Mapping[str, Any], *,
                     max_abs: int = INT32_LIMIT) -> dict[str, np.ndarray]:
    """The ``int32`` state dict of ``model`` from float ``weights`` keyed like
    :meth:`~nitrod_rs.MLP.state_dict` (every parameter, nothing else), each quantised by
    :func:`quantize` with ``scale`` (one number, or a mapping from parameter name to number)."""
    shapes = dict(model._m.parameter_shapes())
    _checks.parameter_mapping(weights, shapes, "weights")
    out = {}
    for k, want in shapes.items():
        s = scale[k] if isinstance(scale, Mapping) else scale
        a = np.asarray(weights[k])
        if tuple(a.shape) != tuple(want):
            raise ValueError(f"{k!r} has shape {tuple(a.shape)}, expected {tuple(want)}")
        out[k] = quantize(a, s, max_abs=max_abs, name=k)
    return out


def from_float_weights(model: Any, weights: Mapping[str, Any],
                       scale: Any | Mapping[str, Any], *,
                       normalization: tuple[list[int], list[int]] | None = None,
                       max_abs: int = INT32_LIMIT) -> Any:
    """Set ``model``'s parameters from float ``weights`` (see :func:`float_state_dict` and the
    module docstring for the rounding rule) and, if given, its normalisation statistics
    ``(mean, mad)`` (docs/algorithm.md §2, integers per channel). Returns ``model``. Nothing changes when a
    weight is out of range or a name or shape does not match."""
    state = float_state_dict(model, weights, scale, max_abs=max_abs)
    if normalization is not None:
        mean, mad = normalization
        stats = ([int(v) for v in mean], [int(v) for v in mad])
        previous = model.normalization
        model._m.set_normalization(stats)
        try:
            model.load_state_dict(state)
        except Exception:
            model._m.set_normalization(previous)
            raise
    else:
        model.load_state_dict(state)
    return model
