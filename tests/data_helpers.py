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
    d.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_NAMES.items():
        write_file(d / (stem + (".gz" if gz else "")), idx_bytes(arrays[key]), gz)
    return arrays
