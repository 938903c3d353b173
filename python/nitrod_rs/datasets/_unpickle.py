"""The restricted unpickler: data-set pickles may only rebuild NumPy arrays.

A hostile pickle is refused (:class:`pickle.UnpicklingError`) instead of executed.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from typing import Any, BinaryIO

import numpy as np


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` as used by protocol-2 pickles of ``bytes``.

    Python 3 pickles ``bytes`` at protocol <= 2 as ``_codecs.encode(text,
    "latin1")``; only that (harmless) use is admitted.
    """
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(
            f"refusing to unpickle _codecs.encode with encoding {encoding!r}"
        )
    if not isinstance(obj, str):
        raise pickle.UnpicklingError("refusing to unpickle _codecs.encode of a non-string")
    return obj.encode("latin-1", errors)


def _safe_globals() -> dict[tuple[str, str], Any]:
    """The only globals a data-set pickle may reference.

    Both the NumPy 1.x (``numpy.core``) and 2.x (``numpy._core``) module
    paths are mapped to the objects of the installed NumPy, which avoids
    importing the deprecated ``numpy.core`` shim on NumPy 2.
    """
    try:
        from numpy._core import multiarray as _ma  # NumPy >= 2
        from numpy._core import numeric as _num
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import multiarray as _ma  # type: ignore[no-redef]
        from numpy.core import numeric as _num  # type: ignore[no-redef]
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for pkg in ("numpy.core", "numpy._core"):
        table[(f"{pkg}.multiarray", "_reconstruct")] = _ma._reconstruct
        table[(f"{pkg}.multiarray", "scalar")] = _ma.scalar
        frombuffer = getattr(_num, "_frombuffer", None)
        if frombuffer is not None:
            table[(f"{pkg}.numeric", "_frombuffer")] = frombuffer
    return table


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler admitting only the NumPy callables needed to rebuild arrays."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        allowed = type(self)._allowed
        if allowed is None:
            allowed = type(self)._allowed = _safe_globals()
        obj = allowed.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: only NumPy array "
                "reconstruction is allowed in data files"
            )
        return obj


def restricted_load(f: BinaryIO, encoding: str, where: str) -> Any:
    """Unpickle ``f`` with :class:`_RestrictedUnpickler`; format errors become ValueError."""
    try:
        return _RestrictedUnpickler(f, encoding=encoding).load()
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("refusing"):
            raise pickle.UnpicklingError(f"{where}: {exc}") from exc
        raise ValueError(f"{where}: corrupt pickle: {exc}") from exc
    except (EOFError, OSError, zlib.error, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error, MemoryError) as exc:
        raise ValueError(f"{where}: corrupt pickle: {type(exc).__name__}: {exc}") from exc
