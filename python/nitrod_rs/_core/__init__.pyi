"""Typed stubs of the compiled extension ``nitrod_rs._core`` (checked by mypy.stubtest)."""

from collections.abc import Callable
from os import PathLike
from typing import Any, final

import numpy as np
import numpy.typing as npt

from . import ops as ops

__all__ = [
    "__version__",
    "NitroError",
    "FormatError",
    "IntegerOverflowError",
    "ShapeError",
    "ConfigError",
    "Model",
    "TrainSettings",
    "Run",
    "split_indices",
    "sum_gradients",
    "read_metadata",
    "cached_pools",
    "fit_normalization",
    "normalize",
    "defaults",
    "presets",
    "preset",
    "ops",
]

__version__: str

class NitroError(ValueError): ...
class FormatError(NitroError): ...
class IntegerOverflowError(NitroError): ...
class ShapeError(NitroError): ...
class ConfigError(NitroError): ...

_FeatureSpec = tuple[str, list[int]]
_HeadInfo = tuple[str, tuple[int, int], tuple[int, int], tuple[int, int], int]

@final
class Model:
    @staticmethod
    def mlp(
        inputs: int,
        hidden: list[int],
        classes: int,
        *,
        activation: str = "nitro_relu",
        slope: int = 4,
        dropout_pct: int = 0,
        bias: bool = False,
        init: str | None = None,
        seed: int = 0,
    ) -> Model: ...
    @staticmethod
    def cnn(
        input: tuple[int, int, int],
        features: list[_FeatureSpec],
        classifier: list[int],
        classes: int,
        *,
        activation: str = "nitro_relu",
        slope: int = 4,
        dropout_pct: int = 0,
        bias: bool = False,
        init: str | None = None,
        seed: int = 0,
        decoder_dim: int = 2048,
        head_pool: str = "max",
        conv_amp_adjust: bool = False,
    ) -> Model: ...
    @property
    def kind(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def hyper(self) -> dict[str, Any] | None: ...
    @property
    def normalization(self) -> tuple[list[int], list[int]] | None: ...
    def set_normalization(self, stats: tuple[list[int], list[int]] | None) -> None: ...
    def describe(self) -> str: ...
    def num_parameters(self) -> int: ...
    @property
    def feature_shape(self) -> tuple[int, int, int]: ...
    def head_geometries(self) -> list[_HeadInfo]: ...
    def feature_shapes(self) -> list[tuple[_FeatureSpec, tuple[int, int], tuple[int, int]]]: ...
    def parameter_shapes(self) -> list[tuple[str, list[int]]]: ...
    def state_dict(self) -> dict[str, npt.NDArray[np.int32]]: ...
    def load_state_dict(self, params: list[tuple[str, npt.NDArray[np.int32]]]) -> None: ...
    def train_step(
        self,
        x: npt.NDArray[np.int8],
        labels: npt.NDArray[np.int64],
        *,
        lr_inv: int = 512,
        lr_amp_factor: int = 640,
        fwd_decay_inv: int = 0,
        subnet_decay_inv: int = 0,
        compat: str = "exact",
        threads: int | None = None,
    ) -> dict[str, Any]: ...
    def gradients(
        self,
        x: npt.NDArray[np.int8],
        labels: npt.NDArray[np.int64],
        start: int,
        total: int,
        *,
        lr_inv: int = 512,
        lr_amp_factor: int = 640,
        fwd_decay_inv: int = 0,
        subnet_decay_inv: int = 0,
        compat: str = "exact",
        dropout_rngs: list[tuple[int, int]] | None = None,
        threads: int | None = None,
    ) -> bytes: ...
    def apply_gradients(
        self,
        data: bytes,
        *,
        lr_inv: int = 512,
        lr_amp_factor: int = 640,
        fwd_decay_inv: int = 0,
        subnet_decay_inv: int = 0,
        compat: str = "exact",
        threads: int | None = None,
    ) -> dict[str, Any]: ...
    @property
    def dropout_rngs(self) -> list[tuple[int, int]]: ...
    def predict_logits(
        self, x: npt.NDArray[np.int8], *, threads: int | None = None
    ) -> npt.NDArray[np.int8]: ...
    def predict(
        self, x: npt.NDArray[np.int8], *, threads: int | None = None
    ) -> npt.NDArray[np.int64]: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes, kind: str | None = None) -> Model: ...
    def save(self, path: str | PathLike[str]) -> None: ...
    @staticmethod
    def load(path: str | PathLike[str]) -> Model: ...
    def to_blob(self, heads: bool = True) -> bytes: ...
    @staticmethod
    def from_blob(data: bytes, kind: str | None = None) -> Model: ...
    @property
    def has_heads(self) -> bool: ...
    def to_rust_source(self, name: str = "model") -> str: ...

@final
class TrainSettings:
    def __new__(
        cls,
        *,
        epochs: int,
        batch_size: int = 64,
        lr_inv: int = 512,
        lr_amp_factor: int = 640,
        fwd_decay_inv: int = 0,
        subnet_decay_inv: int = 0,
        compat: str = "exact",
        schedule: tuple[str, int, int] | None = None,
        augment: tuple[int, bool] | None = None,
        shuffle: bool = True,
        plateau: bool = False,
        early_stopping: bool = False,
        plateau_start: int | None = None,
        plateau_patience: int | None = None,
        plateau_factor: int | None = None,
        min_delta_points: int | None = None,
        early_stopping_start: int | None = None,
        early_stopping_patience: int | None = None,
        seed: int = 0,
        validation_permille: int | None = None,
        validation_seed: int = 0,
        select_on_test: bool = False,
    ) -> TrainSettings: ...
    @property
    def config(self) -> dict[str, Any]: ...

@final
class Run:
    def __new__(
        cls,
        settings: TrainSettings,
        x: npt.NDArray[np.int8],
        y: npt.NDArray[np.int64],
        chw: tuple[int, int, int],
        *,
        x_val: npt.NDArray[np.int8] | None = None,
        y_val: npt.NDArray[np.int64] | None = None,
        x_test: npt.NDArray[np.int8] | None = None,
        y_test: npt.NDArray[np.int64] | None = None,
    ) -> Run: ...
    @staticmethod
    def from_checkpoint(
        path: str | PathLike[str],
        x: npt.NDArray[np.int8],
        y: npt.NDArray[np.int64],
        chw: tuple[int, int, int],
        *,
        x_val: npt.NDArray[np.int8] | None = None,
        y_val: npt.NDArray[np.int64] | None = None,
        x_test: npt.NDArray[np.int8] | None = None,
        y_test: npt.NDArray[np.int64] | None = None,
        settings: TrainSettings | None = None,
        epochs: int | None = None,
    ) -> tuple[Model, Run]: ...
    @staticmethod
    def checkpoint_model(path: str | PathLike[str]) -> Model: ...
    def epoch(
        self,
        model: Model,
        on_batch: Callable[[int, int, int, int, int, int], object] | None = None,
        threads: int | None = None,
        exchange: Callable[
            [npt.NDArray[np.int8], npt.NDArray[np.int64], dict[str, Any], list[tuple[int, int]]],
            bytes,
        ]
        | None = None,
        every_ms: int = 0,
    ) -> tuple[dict[str, Any], BaseException | None]: ...
    def save_checkpoint(self, model: Model, path: str | PathLike[str]) -> None: ...
    @property
    def finished(self) -> bool: ...
    @property
    def epochs_done(self) -> int: ...
    @property
    def batch(self) -> int: ...
    @property
    def epochs(self) -> int: ...
    @property
    def early_stopped(self) -> bool: ...
    @property
    def history(self) -> list[dict[str, Any]]: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def watched(self) -> str | None: ...
    @property
    def train_rows(self) -> int: ...

def split_indices(n: int, permille: int, seed: int) -> tuple[list[int], list[int]]: ...
def sum_gradients(parts: list[bytes]) -> bytes: ...
def read_metadata(data: bytes) -> list[tuple[str, str]]: ...
def cached_pools() -> int: ...
def fit_normalization(
    images: npt.NDArray[np.uint8], channels: int
) -> tuple[list[int], list[int]]: ...
def normalize(
    images: npt.NDArray[np.uint8], mean: list[int], mad: list[int]
) -> npt.NDArray[np.int8]: ...

# Engine facts (crates/nitro-py/src/facts.rs): defaults, names and presets, read by the package.
def defaults() -> dict[str, Any]: ...
def presets() -> list[tuple[str, str, str]]: ...
def preset(name: str, dataset: str) -> dict[str, Any]: ...
