"""Small data sets written as files for the tests: MNIST-style IDX sets, built with ``struct``
(independently of the readers in ``nitrod_rs.datasets``)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

# IDX type code of each supported dtype (written independently of the module).
IDX_CODES: dict[str, int] = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def idx_bytes(arr: np.ndarray, code: int | None = None) -> bytes:
    """Serialise ``arr`` as IDX (big-endian), built with struct, not the module."""
    if code is None:
        code = IDX_CODES[arr.dtype.str[1:]]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_file(path: Path, data: bytes, gz: bool) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx_set(
    d: Path, n_train: int, n_test: int, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write a small, complete MNIST-style IDX set into ``d``; return the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    write_idx_arrays(d, arrays, gz)
    return arrays


def write_idx_arrays(d: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> None:
    """Write the four arrays ``x_train`` … ``y_test`` into ``d`` as an MNIST-style IDX set."""
    d.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_NAMES.items():
        write_file(d / (stem + (".gz" if gz else "")), idx_bytes(arrays[key]), gz)


def learnable_arrays(n_train: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A 28 x 28 ``uint8`` set that a small MLP learns within an epoch or two: noise, with a
    bright 6 x 6 patch at a place given by the label (10 classes), so that accuracies differ
    between seeds and settings (unlike random labels, where every model stays near 10 %)."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n, dtype=np.uint8)
        x = rng.integers(0, 140, (n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(y):
            r, c = 2 + 12 * (int(label) // 5), 1 + 5 * (int(label) % 5)
            x[i, r:r + 6, c:c + 6] = rng.integers(120, 256, (6, 6), dtype=np.uint8)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    return arrays
