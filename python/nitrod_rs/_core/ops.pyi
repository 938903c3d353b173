"""Typed stubs of ``nitrod_rs._core.ops``, the engine's primitives (checked by mypy.stubtest)."""

import numpy as np
import numpy.typing as npt

__all__ = [
    "tdiv",
    "linear",
    "linear_i16",
    "linear_backward",
    "gemm_bench",
    "scaling",
    "activation_forward",
    "activation_backward",
    "integer_sgd_update",
    "conv2d",
    "conv2d_weight_grad",
    "pool2d_i8",
    "pool2d_i16",
    "pool2d_i32",
    "pool2d_backward_i8",
    "pool2d_backward_i16",
    "pool2d_backward_i32",
]

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
