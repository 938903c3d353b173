"""The CIFAR-10 "python version" batch reader and the loader of the six-batch set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._dataset import CLASSES, Dataset, PathLike, labels_to_int64
from ._gzip import open_maybe_gzip
from ._unpickle import restricted_load

#: The folder the official archive unpacks to.
CIFAR_DIRNAME = "cifar-10-batches-py"
#: The five training batches, then the test batch.
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"


def _get_key(d: dict[Any, Any], key: str) -> Any:
    """``d[b"key"]``, falling back to ``d["key"]`` (pickles written by Python 3)."""
    if key.encode() in d:
        return d[key.encode()]
    if key in d:
        return d[key]
    raise KeyError(key)


def read_cifar10_batch(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 "python version" batch file.

    The file is a pickled dict with ``b"data"`` (``uint8``, ``N x 3072``: the
    1024 red, then 1024 green, then 1024 blue values of each image, each
    plane row-major) and ``b"labels"`` (a list of ``N`` ints in 0..9).  It is
    unpickled with a restricted unpickler (``encoding="bytes"``); a pickle
    referencing anything beyond NumPy array reconstruction raises
    :class:`pickle.UnpicklingError`.

    Args:
        path: batch file (``data_batch_1`` ... ``test_batch``), raw or gzip.

    Returns:
        ``(x, y)``: ``x`` is ``uint8`` of shape ``N x 3 x 32 x 32``, ``y`` is
        ``int64`` of shape ``N``.
    """
    p = Path(path)
    where = str(p)
    with open_maybe_gzip(p) as f:
        obj = restricted_load(f, "bytes", where)
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    try:
        data = _get_key(obj, "data")
        labels = _get_key(obj, "labels")
    except KeyError as exc:
        raise ValueError(f"{where}: missing key {exc.args[0]!r} in CIFAR-10 batch") from exc
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        dt = getattr(data, "dtype", type(data).__name__)
        raise ValueError(f"{where}: 'data' must be a uint8 array, got {dt}")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{where}: 'data' must have shape N x 3072, got {data.shape}")
    n = data.shape[0]
    y = labels_to_int64(labels, n, 10, where)
    x = np.ascontiguousarray(data).reshape(n, 3, 32, 32).copy()
    return x, y


def load_cifar_set(files: Sequence[Path], source: str) -> Dataset:
    """Read the five training batches and the test batch of CIFAR-10."""
    xs, ys = [], []
    for p in files[:-1]:
        x, y = read_cifar10_batch(p)
        xs.append(x)
        ys.append(y)
    x_test, y_test = read_cifar10_batch(files[-1])
    return Dataset(
        x_train=np.concatenate(xs),
        y_train=np.concatenate(ys),
        x_test=x_test,
        y_test=y_test,
        name="cifar10",
        source=source,
        classes=list(CLASSES["cifar10"]),
    )
