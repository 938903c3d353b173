"""The result type of :func:`nitrod_rs.datasets.load` and the names of the data sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._paths import PathLike

__all__ = ["CLASSES", "DATASET_NAMES", "Dataset", "PathLike", "canonical_name", "labels_to_int64"]

#: Canonical data set names accepted by :func:`load`.
DATASET_NAMES: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10")

_ALIASES: dict[str, str] = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
}

#: Class names of each data set, indexed by label.
CLASSES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "cifar10": (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
}


def canonical_name(name: str) -> str:
    """Map a data set name or alias (case-insensitive) to its canonical name.

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise ValueError(
            f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)} "
            f"(aliases: {', '.join(sorted(k for k in _ALIASES if k not in DATASET_NAMES))})"
        )
    return _ALIASES[key]


@dataclass(frozen=True, repr=False)
class Dataset:
    """A loaded data set: train/test images and integer labels.

    Attributes:
        x_train: ``uint8`` images, ``N x 28 x 28`` (MNIST, Fashion-MNIST) or
            ``N x 3 x 32 x 32`` (CIFAR-10, channel planes R, G, B).
        y_train: ``int64`` labels in ``0 .. len(classes) - 1``.
        x_test: test images, same layout as ``x_train``.
        y_test: test labels, same dtype as ``y_train``.
        name: canonical data set name (one of :data:`DATASET_NAMES`).
        source: human-readable description of where the data were read.
        classes: class names, indexed by label.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    source: str
    classes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, "
            f"x_train={self.x_train.dtype}{list(self.x_train.shape)}, "
            f"x_test={self.x_test.dtype}{list(self.x_test.shape)}, "
            f"classes={len(self.classes)}, source={self.source!r})"
        )


def labels_to_int64(labels: Any, n: int, n_classes: int, where: str) -> np.ndarray:
    """Validate a label sequence (length ``n``, integers in range) and return int64."""
    try:
        y = np.asarray(labels)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a format error
        raise ValueError(f"{where}: labels are not an array-like of integers: {exc}") from exc
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{where}: expected {n} labels, got shape {y.shape}")
    if n and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{where}: labels must lie in 0..{n_classes - 1}, got range {y.min()}..{y.max()}"
        )
    return y
