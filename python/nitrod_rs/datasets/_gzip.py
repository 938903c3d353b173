"""Opening a data file that may be gzip-compressed, told by its magic bytes, not its name."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import BinaryIO

_GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: Path) -> bool:
    """Return True when the file starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def open_maybe_gzip(path: Path) -> BinaryIO:
    """Open ``path`` for reading, transparently decompressing gzip (by magic)."""
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")
