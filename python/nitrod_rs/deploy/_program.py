"""A trained model's inference path as a flat list of integer steps (docs/algorithm.md §2–§4.4).

Both exporters (:mod:`.onnx_export`, :mod:`.c_export`) translate this one description, so
they cannot disagree on what the model computes. Only the forward layers appear: learning
heads are training-only, and Dropout is the identity at inference (docs/algorithm.md §3.6).

Every lookup table is computed by the engine itself — the normalisation (docs/algorithm.md §2) by
``_core.normalize`` on all 256 pixel values, the activations (docs/algorithm.md §3.4) by
``_core.ops.activation_forward`` on every scaling output — so nothing here re-implements a
rounding rule. :func:`run` evaluates a program with numpy in ``int64``: a reference that the
tests hold against the engine's ``predict_logits``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _core

#: Largest value of the signed 32-bit accumulators (``INT32_MAX``).
INT32_MAX = (1 << 31) - 1
#: Largest value of the signed 64-bit accumulators (``INT64_MAX``).
INT64_MAX = (1 << 63) - 1
#: Bound on |x| for every layer input: normalised pixels are in [-128, 127] (docs/algorithm.md §2),
#: activations and pooled values in [-127, 127].
INPUT_ABS = 128


@dataclass(frozen=True)
class Normalize:
    """``uint8`` pixel → ``int8`` (docs/algorithm.md §2): ``table[c, p]`` for channel ``c`` and pixel ``p``;
    ``plane`` values per channel in the row-major input."""

    table: np.ndarray  # int8, channels x 256
    plane: int


@dataclass(frozen=True)
class Activation:
    """An activation on scaling outputs ``x`` in ``[-127, 127]`` (docs/algorithm.md §3.4), as tables indexed
    by ``x + 128`` (entry 0, ``x = -128``, never occurs and repeats entry 1).

    ``masked`` is ``None`` or, for the bipolar kinds, the table of the positions the bipolar
    mask negates (``-f(-x)``); ``mask`` tells those positions: ``"features"`` (odd feature
    index of a ``batch x features`` tensor) or ``"nchw"`` (``i + j`` odd)."""

    name: str
    table: np.ndarray  # int8, 256
    masked: np.ndarray | None
    mask: str


@dataclass(frozen=True)
class Dense:
    """``IntegerLinear`` (+ bias) → Scaling ``clip8(tdiv(z, factor))`` → activation (``None``
    for the output layer, whose scaled values are the scores)."""

    name: str
    weight: np.ndarray  # int64, out x in
    bias: np.ndarray | None  # int64, out
    factor: int
    act: Activation | None


@dataclass(frozen=True)
class Conv:
    """``IntegerConv2d`` (stride 1, zero padding, + bias) → Scaling → activation on
    ``in_shape = (C, H, W)`` giving ``out_shape = (F, Ho, Wo)``."""

    name: str
    weight: np.ndarray  # int64, F x C x k x k
    bias: np.ndarray | None
    padding: int
    factor: int
    act: Activation
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]


@dataclass(frozen=True)
class Pool:
    """MaxPool2d / IntegerAvgPool2d with kernel = stride = ``k``, no padding, floor size
    (the feature extractor's pools, docs/algorithm.md §3.5, §4.2)."""

    kind: str  # "max" or "avg"
    k: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]


@dataclass(frozen=True)
class Flatten:
    """NCHW → ``N x (C·H·W)`` row-major (docs/algorithm.md §3.5)."""

    in_shape: tuple[int, int, int]


Step = Dense | Conv | Pool | Flatten


@dataclass(frozen=True)
class Program:
    """A model's whole inference path: ``uint8`` input of ``input_shape`` (``(C, H, W)`` for a
    CNN, ``(features,)`` for an MLP) → normalisation → ``steps`` → ``classes`` scores."""

    kind: str
    input_shape: tuple[int, ...]
    normalize: Normalize
    steps: list[Step]
    classes: int
    description: str

    def activation_sizes(self) -> list[int]:
        """Elements of every intermediate tensor, the normalised input first (the scores
        excluded)."""
        sizes = [int(np.prod(self.input_shape))]
        for s in self.steps[:-1]:
            if isinstance(s, Dense):
                sizes.append(int(s.weight.shape[0]))
            elif isinstance(s, (Conv, Pool)):
                sizes.append(int(np.prod(s.out_shape)))
        return sizes


# -- building ----------------------------------------------------------------------------


def _activation(name: str, slope: int, mask: str) -> Activation:
    x = np.arange(-127, 128, dtype=np.int8)
    if name.startswith("bipolar"):
        # Columns 0 and 1 of a batch x 2 tensor: the engine leaves feature 0 unmasked and
        # negates feature 1 (docs/algorithm.md §3.4), so one call gives both tables.
        both = _core.ops.activation_forward(np.ascontiguousarray(np.stack([x, x], 1)),
                                            name, int(slope))
        plain, masked = both[:, 0], both[:, 1]
    else:
        plain, masked = _core.ops.activation_forward(x, name, int(slope)), None

    def table(v: np.ndarray) -> np.ndarray:
        return np.concatenate([v[:1], v]).astype(np.int8)

    return Activation(name, table(plain), None if masked is None else table(masked), mask)


def _normalize(stats: tuple[list[int], list[int]] | None, channels: int, values: int) -> Normalize:
    if stats is None:
        raise ValueError(
            "the model has no normalisation statistics (docs/algorithm.md §2), so the exported code could "
            "not take uint8 images: train with fit() on uint8 images or call "
            "model.fit_normalization(x_train) before exporting")
    mean, mad = stats
    if len(mean) != channels:
        raise ValueError(f"the model's normalisation has {len(mean)} channels, its input "
                         f"{channels}")
    pixels = np.repeat(np.arange(256, dtype=np.uint8)[:, None], channels, axis=1)
    table = _core.normalize(np.ascontiguousarray(pixels), list(mean), list(mad))  # 256 x C
    if values % channels:
        raise ValueError(f"{values} input values do not split into {channels} channels")
    return Normalize(np.ascontiguousarray(table.T.astype(np.int8)), values // channels)


def _param(state: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in state:
        raise ValueError(f"the model has no parameter {name!r} (expected from its "
                         f"architecture; it has {sorted(state)})")
    return state[name].astype(np.int64)


def _bias(state: dict[str, np.ndarray], name: str, bias: bool) -> np.ndarray | None:
    return _param(state, f"{name}.bias") if bias else None


def _effective_features(config: dict[str, Any]) -> list[tuple[str, list[int]]]:
    """The feature list as the engine builds it: with classifier dropout, one Dropout just
    before the last entry (docs/algorithm.md §7; ``CnnConfig::effective_features``)."""
    feats = [(str(k), [int(v) for v in nums]) for k, nums in config["features"]]
    pct = int(config["dropout_pct"])
    if pct > 0 and feats:
        feats.insert(len(feats) - 1, ("dropout", [pct]))
    return feats


def _classifier(state: dict[str, np.ndarray], config: dict[str, Any], first: int, inputs: int,
                widths: Sequence[int]) -> list[Step]:
    """LocalLinearBlocks numbered from ``first`` then the output layer (docs/algorithm.md §4.2)."""
    act = _activation(config["activation"], config["slope"], "features")
    bias = bool(config["bias"])
    steps: list[Step] = []
    prev = inputs
    for j, w in enumerate(widths):
        name = f"linear_encoder_{first + j:02d}"
        weight = _param(state, name)
        if weight.shape != (w, prev):
            raise ValueError(f"{name} has shape {weight.shape}, expected {(w, prev)}")
        steps.append(Dense(name, weight, _bias(state, name, bias), 256 * prev, act))
        prev = w
    name = f"linear_{first + len(widths):02d}"
    weight = _param(state, name)
    steps.append(Dense(name, weight, _bias(state, name, bias), 256 * prev, None))
    return steps


def build(model: Any) -> Program:
    """The inference program of an :class:`~nitrod_rs.MLP` or :class:`~nitrod_rs.CNN`."""
    config = dict(model.config)
    state = model.state_dict()
    stats = model.normalization
    describe = str(model._m.describe())
    if config["kind"] == "mlp":
        inputs = int(config["inputs"])
        norm = _normalize(stats, len(stats[0]) if stats else 1, inputs)
        layers = _classifier(state, config, 0, inputs, [int(w) for w in config["hidden"]])
        return Program("mlp", (inputs,), norm, layers, int(config["classes"]), describe)
    if config["kind"] != "cnn":
        raise ValueError(f"unknown model kind {config['kind']!r}")
    c, h, w = (int(v) for v in config["input"])
    norm = _normalize(stats, c, c * h * w)
    act = _activation(config["activation"], config["slope"], "nchw")
    bias = bool(config["bias"])
    feats = _effective_features(config)
    steps: list[Step] = []
    shape = (c, h, w)
    for i, (kind, nums) in enumerate(feats):
        cc, d, _ = shape
        if kind == "conv":
            filters, k, stride, pad = nums
            if stride != 1:
                raise ValueError(f"feature {i}: stride {stride} (only 1 exists, docs/algorithm.md §3.2)")
            name = f"conv_encoder_{i:02d}"
            weight = _param(state, name)
            if weight.shape != (filters, cc, k, k):
                raise ValueError(f"{name} has shape {weight.shape}, expected "
                                 f"{(filters, cc, k, k)}")
            out = (filters, d + 2 * pad - k + 1, d + 2 * pad - k + 1)
            steps.append(Conv(name, weight, _bias(state, name, bias), pad, 256 * cc * k * k,
                              act, shape, out))
            shape = out
        elif kind in ("maxpool", "avgpool"):
            k = nums[0]
            out = (cc, d // k, d // k)
            steps.append(Pool("max" if kind == "maxpool" else "avg", k, shape, out))
            shape = out
        elif kind != "dropout":  # dropout: the identity at inference (docs/algorithm.md §3.6)
            raise ValueError(f"feature {i}: unknown kind {kind!r}")
    steps.append(Flatten(shape))
    steps += _classifier(state, config, len(feats), int(np.prod(shape)),
                         [int(v) for v in config["classifier"]])
    return Program("cnn", (c, h, w), norm, steps, int(config["classes"]), describe)


# -- exactness: digits and bounds --------------------------------------------------------


def narrowest_int(a: np.ndarray) -> str:
    """``"int8"``, ``"int16"`` or ``"int32"``: the narrowest type holding every value."""
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for name, bits in (("int8", 8), ("int16", 16), ("int32", 32)):
        if -(1 << (bits - 1)) <= lo and hi < (1 << (bits - 1)):
            return name
    raise ValueError(f"values {lo}..{hi} do not fit int32")


def digits(w: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Split integers exactly into base-256 digits stored as ``uint8`` with a zero point:
    ``w = Σ_k 256^k · (u_k − z_k)``. The low digits are ``w mod 256`` in ``[0, 255]``
    (``z = 0``); the top digit is signed, in ``[-128, 127]``, stored as ``+128`` (``z = 128``).
    A weight in ``[-128, 127]`` is one digit, one in the ``int16`` range two (``w = hi·256 +
    lo``), and so on."""
    w = w.astype(np.int64)
    n = 1
    while not np.all((w >= -(128 << (8 * (n - 1)))) & (w < (128 << (8 * (n - 1))))):
        n += 1
        if n > 8:
            raise ValueError("weights do not fit int64")
    out: list[tuple[np.ndarray, int]] = []
    rest = w.copy()
    for _ in range(n - 1):
        lo = rest & 0xFF  # w mod 256, also for negative w (two's complement)
        out.append((lo.astype(np.uint8), 0))
        rest = (rest - lo) >> 8  # exact: rest - lo is a multiple of 256
    assert np.all((rest >= -128) & (rest <= 127))
    out.append(((rest + 128).astype(np.uint8), 128))
    back = sum((u.astype(np.int64) - z) << (8 * k) for k, (u, z) in enumerate(out))
    assert np.array_equal(back, w), "digit split is not exact"
    return out


def layer_bound(weight: np.ndarray, bias: np.ndarray | None) -> int:
    """The largest ``|z|`` the layer can produce: ``max_o (128·Σ_i |W[o, i]| + |b[o]|)``,
    since every input has ``|x| ≤ 128``. A product accumulated in a type holding this bound
    never overflows, whatever the order of the additions."""
    per_out = np.abs(weight.reshape(weight.shape[0], -1)).sum(axis=1) * INPUT_ABS
    if bias is not None:
        per_out = per_out + np.abs(bias)
    b = int(per_out.max()) if per_out.size else 0
    if b > INT64_MAX:
        raise ValueError("a layer's products could exceed int64; weights this large are not "
                         "exportable")
    return b


# -- the numpy reference ------------------------------------------------------------------


def _tdiv(a: np.ndarray, b: int) -> np.ndarray:
    return np.sign(a) * (np.abs(a) // b)


def _apply_act(act: Activation, q: np.ndarray) -> np.ndarray:
    idx = q + 128
    y = act.table[idx]
    if act.masked is not None:
        if act.mask == "features":
            neg = (np.arange(q.shape[-1]) % 2 == 1)
        else:
            hh, ww = q.shape[-2:]
            neg = (np.add.outer(np.arange(hh), np.arange(ww)) % 2 == 1)
        y = np.where(neg, act.masked[idx], y)
    return y.astype(np.int64)


def _conv(x: np.ndarray, w: np.ndarray, pad: int) -> np.ndarray:
    n, c, h, _ = x.shape
    f, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho = h + 2 * pad - k + 1
    cols = np.empty((n, c, k, k, ho, ho), dtype=np.int64)
    for u in range(k):
        for v in range(k):
            cols[:, :, u, v] = xp[:, :, u:u + ho, v:v + ho]
    return np.einsum("ncuvij,fcuv->nfij", cols, w, optimize=True)


def run(p: Program, images: np.ndarray) -> np.ndarray:
    """Evaluate ``p`` on ``uint8`` images (``N x input_shape``) in ``int64``; the scores as
    ``int8``."""
    x: np.ndarray = np.asarray(images, dtype=np.uint8).reshape((-1, *p.input_shape))
    channel = (np.arange(int(np.prod(p.input_shape))) // p.normalize.plane)
    flat = x.reshape(x.shape[0], -1).astype(np.int64)
    t: np.ndarray = p.normalize.table.astype(np.int64)[channel[None, :], flat].reshape(x.shape)
    for s in p.steps:
        if isinstance(s, Flatten):
            t = t.reshape(t.shape[0], -1)
        elif isinstance(s, Pool):
            c, d2, _ = s.out_shape
            v = t[:, :, :d2 * s.k, :d2 * s.k].reshape(t.shape[0], c, d2, s.k, d2, s.k)
            t = v.max(axis=(3, 5)) if s.kind == "max" else _tdiv(v.sum(axis=(3, 5)), s.k * s.k)
        else:
            z = t @ s.weight.T if isinstance(s, Dense) else _conv(t, s.weight, s.padding)
            if s.bias is not None:
                z = z + (s.bias if isinstance(s, Dense) else s.bias[:, None, None])
            q = np.clip(_tdiv(z, s.factor), -127, 127)
            t = q if s.act is None else _apply_act(s.act, q)
    return t.astype(np.int8)
