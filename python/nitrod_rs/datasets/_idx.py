"""The IDX reader (MNIST, Fashion-MNIST) and the loader of a four-file IDX set.

This is a second IDX parser beside the engine's ``nitro_core::data::idx``: the engine reads
``uint8`` only and the binding does not expose it, while :func:`read_idx` reads every IDX type
code and keeps ``nitrod_rs.datasets`` free of the compiled extension.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ._dataset import CLASSES, Dataset, PathLike, labels_to_int64
from ._gzip import is_gzip

#: The four IDX files of MNIST and Fashion-MNIST (same names for both).
IDX_FILES: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# IDX type code -> big-endian NumPy dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

_CHUNK = 1 << 24


def _read_upto(f: BinaryIO, n: int) -> bytes:
    """Read at most ``n`` bytes, in bounded chunks (no up-front allocation of ``n``)."""
    if n <= _CHUNK:
        return f.read(n)
    parts: list[bytes] = []
    remaining = n
    while remaining > 0:
        chunk = f.read(min(remaining, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _parse_idx_stream(f: BinaryIO, where: str, raw_size: int | None) -> np.ndarray:
    """Parse an IDX stream; ``raw_size`` is the total size when known (uncompressed file)."""
    header = f.read(4)
    if len(header) < 4:
        raise ValueError(f"{where}: truncated IDX file: header has {len(header)} of 4 bytes")
    if header[0] != 0 or header[1] != 0:
        raise ValueError(
            f"{where}: bad IDX magic {header.hex()}: the first two bytes must be 00 00"
        )
    code, ndim = header[2], header[3]
    if code not in _IDX_DTYPES:
        raise ValueError(
            f"{where}: unsupported IDX type code 0x{code:02x} "
            f"(supported: {', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)})"
        )
    if ndim == 0:
        raise ValueError(f"{where}: IDX file declares 0 dimensions")
    dim_bytes = f.read(4 * ndim)
    if len(dim_bytes) < 4 * ndim:
        raise ValueError(
            f"{where}: truncated IDX file: expected {ndim} dimension sizes "
            f"({4 * ndim} bytes), got {len(dim_bytes)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", dim_bytes)
    dtype = np.dtype(_IDX_DTYPES[code])
    count = 1
    for d in dims:
        count *= d
    expected = count * dtype.itemsize
    header_len = 4 + 4 * ndim
    if raw_size is not None and raw_size != header_len + expected:
        # Fail before reading anything large.
        got = raw_size - header_len
        problem = "truncated" if got < expected else "trailing garbage"
        raise ValueError(
            f"{where}: {problem}: dimensions {list(dims)} of {dtype.name} need "
            f"{expected} payload bytes, file has {got}"
        )
    payload = _read_upto(f, expected)
    if len(payload) < expected:
        raise ValueError(
            f"{where}: truncated: dimensions {list(dims)} of {dtype.name} need "
            f"{expected} payload bytes, only {len(payload)} present"
        )
    extra = f.read(1)
    if extra:
        raise ValueError(
            f"{where}: trailing garbage: data continue past the {expected} payload "
            f"bytes declared by dimensions {list(dims)}"
        )
    arr = np.frombuffer(payload, dtype=dtype, count=count).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a NumPy array.

    Compression is detected from the gzip magic bytes ``1f 8b``, not from
    the file name.  The header is validated (``00 00 <type> <ndim>``, then
    ``ndim`` big-endian ``uint32`` sizes) and the payload must hold exactly
    ``prod(dims)`` items: a truncated file, a bad magic, an unknown type code
    or trailing bytes raise :class:`ValueError` naming the file.

    Supported type codes: ``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16,
    ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64 (big-endian on disk).

    Args:
        path: file to read.

    Returns:
        A C-contiguous, writable array in native byte order with the
        file's dimensions.
    """
    p = Path(path)
    where = str(p)
    if is_gzip(p):
        try:
            with gzip.open(p, "rb") as f:
                return _parse_idx_stream(f, where, None)  # type: ignore[arg-type]
        except (OSError, EOFError, zlib.error) as exc:
            # gzip.BadGzipFile is an OSError subclass.
            raise ValueError(f"{where}: corrupt gzip stream: {exc}") from exc
    with open(p, "rb") as f:
        return _parse_idx_stream(f, where, os.fstat(f.fileno()).st_size)


def load_idx_set(name: str, files: dict[str, Path], source: str) -> Dataset:
    """Read and cross-check the four IDX files of an MNIST-like data set."""
    arrays = {k: read_idx(p) for k, p in files.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        xp, yp = files[f"x_{split}"], files[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(f"{xp}: expected uint8 images N x 28 x 28, got {x.dtype} {x.shape}")
        if y.dtype != np.uint8 or y.ndim != 1:
            raise ValueError(f"{yp}: expected 1-D uint8 labels, got {y.dtype} {y.shape}")
        arrays[f"y_{split}"] = labels_to_int64(y, x.shape[0], 10, f"{yp} (vs {xp.name})")
    return Dataset(
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        name=name,
        source=source,
        classes=list(CLASSES[name]),
    )
