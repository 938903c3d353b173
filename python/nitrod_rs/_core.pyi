"""Typed stubs of the compiled extension ``nitrod_rs._core`` (checked by mypy.stubtest)."""

from collections.abc import Callable
from os import PathLike
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "__version__",
    "NitroError",
    "FormatError",
    "IntegerOverflowError",
    "Model",
    "fit_normalization",
    "normalize",
    "read_metadata",
    "preset_spec",
    "tdiv",
    "linear",
    "linear_i16",
    "linear_backward",
    "gemm_bench",
    "scaling",
    "activation_forward",
    "activation_backward",
    "integer_sgd_update",
    "CnnModel",
    "model_from_bytes",
    "load_model",
    "cnn_preset_spec",
    "conv2d",
    "conv2d_weight_grad",
    "pool2d_i8",
    "pool2d_i16",
    "pool2d_i32",
    "pool2d_backward_i8",
    "pool2d_backward_i16",
    "pool2d_backward_i32",
    "defaults",
    "presets",
    "preset",
]

__version__: str

class NitroError(ValueError): ...
class FormatError(NitroError): ...
class IntegerOverflowError(NitroError): ...

@final
class Model:
    def __new__(
        cls,
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
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def hyper(self) -> dict[str, Any] | None: ...
    @property
    def normalization(self) -> tuple[list[int], list[int]] | None: ...
    def set_normalization(self, stats: tuple[list[int], list[int]] | None) -> None: ...
    def describe(self) -> str: ...
    def num_parameters(self) -> int: ...
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
    def predict_logits(
        self, x: npt.NDArray[np.int8], *, threads: int | None = None
    ) -> npt.NDArray[np.int8]: ...
    def predict(
        self, x: npt.NDArray[np.int8], *, threads: int | None = None
    ) -> npt.NDArray[np.int64]: ...
    def fit(
        self,
        x: npt.NDArray[np.int8],
        y: npt.NDArray[np.int64],
        chw: tuple[int, int, int],
        *,
        x_test: npt.NDArray[np.int8] | None = None,
        y_test: npt.NDArray[np.int64] | None = None,
        epochs: int,
        batch_size: int = 64,
        lr_inv: int = 512,
        lr_amp_factor: int = 640,
        fwd_decay_inv: int = 0,
        subnet_decay_inv: int = 0,
        compat: str = "exact",
        augment: tuple[int, bool] | None = None,
        shuffle: bool = True,
        plateau: bool = False,
        early_stopping: bool = False,
        seed: int = 0,
        on_batch: Callable[[int, int, int, int, int, int], object] | None = None,
        on_epoch: Callable[[dict[str, Any]], object] | None = None,
        threads: int | None = None,
    ) -> tuple[dict[str, Any], BaseException | None]: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> Model: ...
    def save(self, path: str | PathLike[str]) -> None: ...
    @staticmethod
    def load(path: str | PathLike[str]) -> Model: ...
    def to_blob(self) -> bytes: ...
    @staticmethod
    def from_blob(data: bytes) -> Model: ...
    def to_rust_source(self, name: str = "model") -> str: ...

_FeatureSpec = tuple[str, list[int]]
_HeadInfo = tuple[str, tuple[int, int], tuple[int, int], tuple[int, int], int]

@final
class CnnModel:
    def __new__(
        cls,
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
    ) -> CnnModel: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def feature_shape(self) -> tuple[int, int, int]: ...
    def head_geometries(self) -> list[_HeadInfo]: ...
    @property
    def hyper(self) -> dict[str, Any] | None: ...
    @property
    def normalization(self) -> tuple[list[int], list[int]] | None: ...
    def set_normalization(self, stats: tuple[list[int], list[int]] | None) -> None: ...
    def describe(self) -> str: ...
    def num_parameters(self) -> int: ...
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
    def predict_logits(
        self, x: npt.NDArray[np.int8], *, threads: int | None = None
    ) -> npt.NDArray[np.int8]: ...
    def predict(
        self, x: npt.NDArray[np.int8], *, threads: int | None = None
    ) -> npt.NDArray[np.int64]: ...
    def fit(
        self,
        x: npt.NDArray[np.int8],
        y: npt.NDArray[np.int64],
        chw: tuple[int, int, int],
        *,
        x_test: npt.NDArray[np.int8] | None = None,
        y_test: npt.NDArray[np.int64] | None = None,
        epochs: int,
        batch_size: int = 64,
        lr_inv: int = 512,
        lr_amp_factor: int = 640,
        fwd_decay_inv: int = 0,
        subnet_decay_inv: int = 0,
        compat: str = "exact",
        augment: tuple[int, bool] | None = None,
        shuffle: bool = True,
        plateau: bool = False,
        early_stopping: bool = False,
        seed: int = 0,
        on_batch: Callable[[int, int, int, int, int, int], object] | None = None,
        on_epoch: Callable[[dict[str, Any]], object] | None = None,
        threads: int | None = None,
    ) -> tuple[dict[str, Any], BaseException | None]: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> CnnModel: ...
    def save(self, path: str | PathLike[str]) -> None: ...

def model_from_bytes(data: bytes) -> Model | CnnModel: ...
def load_model(path: str | PathLike[str]) -> Model | CnnModel: ...
def cnn_preset_spec(name: str, dataset: str = "fashion-mnist") -> dict[str, Any]: ...
def conv2d(
    x: npt.NDArray[np.int8],
    weight: npt.NDArray[np.int32],
    bias: npt.NDArray[np.int32] | None = None,
    padding: int = 0,
) -> npt.NDArray[np.int64]: ...
def conv2d_weight_grad(
    x: npt.NDArray[np.int8],
    weight: npt.NDArray[np.int32],
    delta: npt.NDArray[np.int32],
    padding: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def pool2d_i8(
    x: npt.NDArray[np.int8],
    kind: str,
    kernel: tuple[int, int],
    padding: tuple[int, int] = ...,
    compat: str = "exact",
) -> npt.NDArray[np.int8]: ...
def pool2d_i16(
    x: npt.NDArray[np.int16],
    kind: str,
    kernel: tuple[int, int],
    padding: tuple[int, int] = ...,
    compat: str = "exact",
) -> npt.NDArray[np.int16]: ...
def pool2d_i32(
    x: npt.NDArray[np.int32],
    kind: str,
    kernel: tuple[int, int],
    padding: tuple[int, int] = ...,
    compat: str = "exact",
) -> npt.NDArray[np.int32]: ...
def pool2d_backward_i8(
    x: npt.NDArray[np.int8],
    delta: npt.NDArray[np.int32],
    kind: str,
    kernel: tuple[int, int],
    padding: tuple[int, int] = ...,
    compat: str = "exact",
) -> npt.NDArray[np.int32]: ...
def pool2d_backward_i16(
    x: npt.NDArray[np.int16],
    delta: npt.NDArray[np.int32],
    kind: str,
    kernel: tuple[int, int],
    padding: tuple[int, int] = ...,
    compat: str = "exact",
) -> npt.NDArray[np.int32]: ...
def pool2d_backward_i32(
    x: npt.NDArray[np.int32],
    delta: npt.NDArray[np.int32],
    kind: str,
    kernel: tuple[int, int],
    padding: tuple[int, int] = ...,
    compat: str = "exact",
) -> npt.NDArray[np.int32]: ...

def fit_normalization(
    images: npt.NDArray[np.uint8], channels: int
) -> tuple[list[int], list[int]]: ...
def normalize(
    images: npt.NDArray[np.uint8], mean: list[int], mad: list[int]
) -> npt.NDArray[np.int8]: ...
def read_metadata(data: bytes) -> list[tuple[str, str]]: ...
def preset_spec(name: str, dataset: str = "fashion-mnist") -> dict[str, Any]: ...
def tdiv(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
def linear(
    x: npt.NDArray[np.int8],
    weight: npt.NDArray[np.int32],
    bias: npt.NDArray[np.int32] | None = None,
) -> npt.NDArray[np.int64]: ...
def linear_i16(
    x: npt.NDArray[np.int16],
    weight: npt.NDArray[np.int32],
    bias: npt.NDArray[np.int32] | None = None,
) -> npt.NDArray[np.int64]: ...
def linear_backward(
    x: npt.NDArray[np.int8], weight: npt.NDArray[np.int32], delta: npt.NDArray[np.int32]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
def gemm_bench(
    x: npt.NDArray[np.int8],
    weight: npt.NDArray[np.int32],
    repeats: int,
    threads: int | None = None,
) -> list[int]: ...
def scaling(z: npt.NDArray[np.int64], fan_in: int) -> npt.NDArray[np.int8]: ...
def activation_forward(
    x: npt.NDArray[np.int8], kind: str = "nitro_relu", slope: int = 4
) -> npt.NDArray[np.int8]: ...
def activation_backward(
    x: npt.NDArray[np.int8],
    delta: npt.NDArray[np.int32],
    kind: str = "nitro_relu",
    slope: int = 4,
) -> npt.NDArray[np.int32]: ...
def integer_sgd_update(
    params: npt.NDArray[np.int32],
    grads: npt.NDArray[np.int64],
    *,
    lr_inv: int,
    amp: int = 1,
    decay_inv: int = 0,
) -> npt.NDArray[np.int32]: ...

# Engine facts (crates/nitro-py/src/facts.rs): defaults, names and presets, read by the package.
def defaults() -> dict[str, Any]: ...
def presets() -> list[tuple[str, str, str]]: ...
def preset(name: str, dataset: str) -> dict[str, Any]: ...
