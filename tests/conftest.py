"""Shared fixtures: the repository root, the golden fixtures, real Fashion-MNIST and Ctrl-C.

Under ``CI=true`` missing real data is a failure, never a skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "data"  # the golden fixtures; tests/data/README.md
FMNIST_DIR = Path(os.environ.get("NITROD_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))

# A shell without job control starts background commands with SIGINT ignored, and every
# process they start inherits that: the Ctrl-C tests' children would then ignore the Ctrl-C
# they test (and time out). A handler, unlike an ignore, is reset to the default at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


def _golden(name: str):  # type: ignore[no-untyped-def]
    """The golden fixture ``name`` from ``tests/data`` (part of the repository: never skipped)."""
    p = FIXTURES / name
    if not p.is_file():
        pytest.fail(f"golden fixture {p} is missing from the repository checkout")
    return np.load(p)


@pytest.fixture(scope="session")
def golden():  # type: ignore[no-untyped-def]
    return _golden("mlp2_fmnist_100.npz")


@pytest.fixture(scope="session")
def golden_cnn():  # type: ignore[no-untyped-def]
    return _golden("cnn_small_fmnist_20.npz")


def _interrupt(proc: subprocess.Popen[str], ready: Callable[[], None],
               timeout: float) -> tuple[str, str]:
    """Ctrl-C to ``proc`` 2 s after ``ready()`` returns; its ``(stdout, stderr)`` once it exits
    (within ``timeout`` s). ``proc`` is killed if it is still running when this returns."""
    try:
        ready()
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def interrupt() -> Callable[[subprocess.Popen[str], Callable[[], None], float], tuple[str, str]]:
    return _interrupt
