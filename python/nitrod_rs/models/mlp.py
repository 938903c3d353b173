"""The integer-only local-loss MLP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _checks
from .._checks import DEFAULTS, USIZE_MAX, Geometry, check_int
from . import _engine
from ._base import Model
from ._engine import EngineModel


class MLP(Model):
    """An integer-only local-loss MLP (NITRO-D ``IntegerLocalLossMLP``, docs/algorithm.md §4.2).

    Args:
        layers: widths ``[inputs, hidden..., classes]``; the paper's MLP2 is the default.
        activation: one of ``nitro_relu`` (paper), ``pocket_leaky_relu``, ``pocket_relu``,
            ``pocket_tanh``, ``bipolar_pocket_relu``, ``bipolar_pocket_leaky_relu``.
        slope: inverse negative slope ``a`` of the leaky activations (3, 4, 5, 7, 8, 10, 15,
            16 or 20; paper 4).
        dropout: dropout after each block, as an integer percentage (5..95 step 5) or a float
            rate such as ``0.1``; 0 disables it.
        seed: seed of initialisation and dropout (and the default seed of ``fit``).
        bias: linear layers with bias (paper: no).
        init: ``"kaiming"``, ``"xavier"`` or ``"std"``; default Xavier for pocket_tanh,
            Kaiming otherwise (docs/algorithm.md §6).
    """

    def __init__(
        self,
        layers: Sequence[int] = (784, 200, 100, 50, 10),
        *,
        activation: str = DEFAULTS["activation"],
        slope: int = DEFAULTS["slope"],
        dropout: int | float = 0,
        seed: int = 0,
        bias: bool = False,
        init: str | None = None,
    ) -> None:
        seq = _checks.sequence(layers, "layers", "integers [inputs, hidden..., classes]")
        widths = [check_int(w, "layer width", minimum=1, maximum=USIZE_MAX) for w in seq]
        if len(widths) < 2:
            raise ValueError("layers needs at least [inputs, classes]")
        self._m = _engine.new_mlp(
            widths[0],
            widths[1:-1],
            widths[-1],
            activation=_checks.check_activation(activation),
            **_checks.shared_options(slope, dropout, bias, init, seed),
        )
        self.history = None

    @classmethod
    def _from_engine(cls, core: EngineModel) -> MLP:
        self = cls.__new__(cls)
        self._m = core
        self.history = None
        return self

    @property
    def layers(self) -> list[int]:
        c = self._m.config
        return [c["inputs"], *c["hidden"], c["classes"]]

    def __repr__(self) -> str:
        return f"MLP({self._m.describe()}, parameters={self._m.num_parameters()})"

    def _check(self, x: Any, name: str, *, single: bool = False,
               core: Any = None) -> tuple[np.ndarray, Geometry]:
        stats = (self._m if core is None else core).normalization
        return _checks.mlp_images(x, name, self._m.config["inputs"],
                                  channels=len(stats[0]) if stats else None, single=single)

    @classmethod
    def from_bytes(cls, data: bytes) -> MLP:
        return cls._from_engine(_engine.from_bytes(data, "mlp"))

    # -- export for devices (nitro_core::export) --------------------------------------------

    @classmethod
    def from_blob(cls, data: bytes) -> MLP:
        """A model rebuilt by the device loader ``nitro_core::export::from_blob``."""
        return cls._from_engine(_engine.from_blob(data, "mlp"))

    def to_rust_source(self, name: str = "model") -> str:
        """Rust source with the model as ``const`` arrays (``export::to_rust_source``)."""
        return self._m.to_rust_source(name)
