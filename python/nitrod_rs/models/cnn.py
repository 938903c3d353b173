"""The integer-only local-loss CNN and its feature-extractor syntax."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import _checks
from .._checks import DEFAULTS, USIZE_MAX, Geometry, check_int
from . import _engine
from ._base import HYPER, Model
from ._engine import EngineModel

# Shorthand names of the pooling entries, to the engine's feature kinds.
_POOL_NAMES = {"m": "maxpool", "max": "maxpool", "maxpool": "maxpool", "p": "maxpool",
               "a": "avgpool", "avg": "avgpool", "avgpool": "avgpool"}
# The pooling size of "M" / "A" / ("maxpool",): 2, the paper's only one (docs/algorithm.md §4.2).
_POOL_SIZE = 2
# ``[kernel, stride, padding]`` of a conv entry given by its filter count alone
# (``nitro_core::Feature::conv3``).
_CONV = tuple(int(v) for v in DEFAULTS["conv"])


def _feature_arg(f: Any, i: int) -> tuple[str, list[int]]:
    """One feature-extractor entry, as the engine's ``(kind, [numbers])``."""
    where = f"features[{i}]"
    if isinstance(f, (int, np.integer)) and not isinstance(f, bool):
        return ("conv", [check_int(f, where, minimum=1, maximum=USIZE_MAX), *_CONV])
    if isinstance(f, str):
        key = f.lower()
        if key in _POOL_NAMES:
            return (_POOL_NAMES[key], [_POOL_SIZE])
        raise ValueError(f"{where}: unknown feature {f!r}; use an int (3x3 conv filters), "
                         "'M' (max-pool 2), 'A' (avg-pool 2) or a tuple")
    if isinstance(f, (tuple, list)) and f and isinstance(f[0], str):
        kind = f[0].lower()
        nums = [check_int(v, f"{where} value", minimum=0, maximum=USIZE_MAX) for v in f[1:]]
        if kind == "conv":
            if not 1 <= len(nums) <= 4:
                raise ValueError(f"{where}: ('conv', filters[, kernel[, stride[, padding]]]), "
                                 f"got {f!r}")
            filters = nums[0]
            kernel = nums[1] if len(nums) > 1 else _CONV[0]
            stride = nums[2] if len(nums) > 2 else _CONV[1]
            padding = nums[3] if len(nums) > 3 else kernel // 2
            if filters < 1 or kernel < 1:
                raise ValueError(f"{where}: filters and kernel must be positive, got {f!r}")
            if stride != 1:
                raise ValueError(f"{where}: convolution stride {stride} is not supported "
                                 "(NITRO-D convolutions use stride 1; pool to downsample)")
            return ("conv", [filters, kernel, stride, padding])
        if kind in _POOL_NAMES or kind == "dropout":
            if len(nums) > 1:
                raise ValueError(f"{where}: ({kind!r}, size) takes one number, got {f!r}")
            if kind == "dropout":
                if not nums:
                    raise ValueError(f"{where}: ('dropout', percent) needs the percent")
                return ("dropout", [_checks.dropout_pct(int(nums[0]))])
            k = nums[0] if nums else _POOL_SIZE
            if k < 1:
                raise ValueError(f"{where}: pooling size must be positive")
            return (_POOL_NAMES[kind], [k])
    raise TypeError(f"{where} must be an int (conv filters), 'M', 'A', or a tuple such as "
                    f"('conv', 64, 3, 1, 1), ('maxpool', 2), ('avgpool', 2), ('dropout', 10); "
                    f"got {f!r}")


class CNN(Model):
    """An integer-only local-loss CNN (NITRO-D ``IntegerLocalLossCNN``, docs/algorithm.md §4.1, §4.2).

    Args:
        features: the feature extractor. An int ``n`` is a ``LocalConv2dBlock`` with ``n``
            3x3 filters, padding 1; ``"M"`` / ``"A"`` a max / average pooling of 2; tuples
            ``("conv", filters, kernel=3, stride=1, padding=kernel//2)``, ``("maxpool", k)``,
            ``("avgpool", k)``, ``("dropout", percent)``.
        classifier: hidden widths of the MLP classifier (local-loss linear blocks).
        input_shape: ``(C, H, W)`` with ``H == W``; ``(1, 28, 28)`` for (Fashion-)MNIST,
            ``(3, 32, 32)`` for CIFAR-10.
        classes: number of classes.
        decoder_dim: the largest input a conv block's learning head may have: the block's
            output is max- (or average-) pooled until ``filters × h × w`` is at most this,
            then flattened into the head's linear layer (2048; the paper's VGG presets 4096).
        head_pool: ``"max"`` or ``"avg"`` pooling in the conv blocks' learning heads.
        activation, slope, bias, init, seed: as for :class:`MLP`.
        dropout: classifier dropout (percentage or rate); as in the paper, it also puts one
            Dropout just before the last feature-extractor entry.
        conv_amp_adjust: multiply each conv block's ``lr_amp_factor`` by ``d²/(k·k)`` (its
            output size squared over its kernel area), the adjustment the original code
            computes but never applies; off (the default) reproduces the paper.
        compat: the training mode ``fit``/``train_batch`` use when none is given: ``"exact"``
            (the clean algorithm) or ``"reference"``, which reproduces the original
            implementation bit for bit — its classifier blocks updated twice per step, errors
            wrapped to ``int8``, max-pool padding 0 — as the paper's CNN results were made.
    """

    def __init__(
        self,
        features: Sequence[Any] = (32, "M", 64, "M"),
        classifier: Sequence[int] = (1024,),
        *,
        input_shape: Sequence[int] = (1, 28, 28),
        classes: int = 10,
        decoder_dim: int = DEFAULTS["decoder_dim"],
        head_pool: str = DEFAULTS["head_pool"],
        activation: str = DEFAULTS["activation"],
        slope: int = DEFAULTS["slope"],
        dropout: int | float = 0,
        seed: int = 0,
        bias: bool = False,
        init: str | None = None,
        conv_amp_adjust: bool = False,
        compat: str = HYPER["compat"],
    ) -> None:
        feats = [_feature_arg(f, i) for i, f in
                 enumerate(_checks.sequence(features, "features", "feature entries"))]
        widths = [check_int(w, "classifier width", minimum=1, maximum=USIZE_MAX) for w in
                  _checks.sequence(classifier, "classifier", "hidden widths")]
        if (isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence)
                or len(input_shape) != 3):
            raise TypeError("input_shape must be a (C, H, W) tuple")
        c, h, w = (check_int(v, "input_shape entry", minimum=1, maximum=USIZE_MAX)
                   for v in input_shape)
        if h != w:
            raise ValueError(f"input_shape must be square (H == W), got {(c, h, w)}")
        activation = _checks.check_activation(activation)
        head_pool = _checks.check_head_pool(head_pool)
        self._compat = _checks.check_compat(compat)
        self._m = _engine.new_cnn(
            (c, h, w), feats, widths, check_int(classes, "classes", minimum=2, maximum=USIZE_MAX),
            activation=activation,
            **_checks.shared_options(slope, dropout, bias, init, seed),
            decoder_dim=check_int(decoder_dim, "decoder_dim", minimum=1, maximum=USIZE_MAX),
            head_pool=head_pool,
            conv_amp_adjust=bool(conv_amp_adjust),
        )
        self.history = None

    @classmethod
    def _from_engine(cls, core: EngineModel) -> CNN:
        self = cls.__new__(cls)
        self._m = core
        hyper = core.hyper
        self._compat = str((hyper or HYPER)["compat"])
        self.history = None
        return self

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self._m.config["input"]
        return (int(c), int(h), int(w))

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """``(C, d, d)`` of the flattened features entering the classifier."""
        return self._m.feature_shape

    def head_geometries(self) -> list[dict[str, Any]]:
        """Per conv block: its name, the learning head's pooling ``kernel`` and ``padding``,
        pooled ``dims`` and flattened size ``features`` (docs/algorithm.md §4.1)."""
        return [{"block": n, "kernel": k, "padding": p, "dims": d, "features": f}
                for n, k, p, d, f in self._m.head_geometries()]

    def __repr__(self) -> str:
        return f"CNN({self._m.describe()}, parameters={self._m.num_parameters()})"

    def _check(self, x: Any, name: str, *, single: bool = False,
               core: Any = None) -> tuple[np.ndarray, Geometry]:
        return _checks.cnn_images(x, name, self.input_shape, single=single)

    def _fit_compat(self) -> str:
        return self._compat

    def _hyper(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        if overrides.get("compat") is None:
            overrides = {**overrides, "compat": self._compat}
        h = super()._hyper(overrides)
        self._compat = h["compat"]
        return h

    @classmethod
    def from_bytes(cls, data: bytes) -> CNN:
        return cls._from_engine(_engine.from_bytes(data, "cnn"))

    @classmethod
    def from_blob(cls, data: bytes) -> CNN:
        """A model rebuilt by the device loader ``nitro_core::export::from_blob``."""
        return cls._from_engine(_engine.from_blob(data, "cnn"))
