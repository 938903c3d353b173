"""Shared fixtures: the repository root, the golden fixtures and real Fashion-MNIST.

Under ``CI=true`` missing real data is a failure, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures"
FMNIST_DIR = Path(os.environ.get("NITROD_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fmnist():  # type: ignore[no-untyped-def]
    """Fashion-MNIST from the Debian package dataset-fashion-mnist."""
    from nitrod_rs import datasets

    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        _missing(f"Fashion-MNIST in {FMNIST_DIR} (apt-get install dataset-fashion-mnist)")
    return datasets.load("fashion-mnist", FMNIST_DIR, download=False)


@pytest.fixture(scope="session")
def golden():  # type: ignore[no-untyped-def]
    p = FIXTURES / "mlp2_fmnist_100.npz"
    if not p.is_file():
        _missing(f"golden fixture {p}")
    return np.load(p)


@pytest.fixture(scope="session")
def golden_cnn():  # type: ignore[no-untyped-def]
    p = FIXTURES / "cnn_small_fmnist_20.npz"
    if not p.is_file():
        _missing(f"golden fixture {p}")
    return np.load(p)
