"""The training curves of a :class:`~nitrod_rs.History` as an image: accuracy and loss over the
epochs, the best epoch marked, under a title. Needs matplotlib (optional: ``pip install
matplotlib`` or ``nitrod-rs[plot]``); nothing imports it before a plot is asked for."""

from __future__ import annotations

import os
from typing import Any

from ._paths import PathLike
from .history import History, require_matplotlib

__all__ = ["check_path", "figure", "plot_history"]

#: The sets drawn, by history key prefix, and their names in the legend.
_SETS = (("train", "train"), ("val", "validation"), ("test", "test"))


def _complete(history: History) -> list[dict[str, Any]]:
    """The finished epochs: a run stopped inside an epoch ends with a partial entry, whose
    training metrics cover only part of the data and whose sets were not evaluated."""
    entries = history.epochs
    if entries and history.cancelled and len(entries) > 1:
        last, prev = entries[-1], entries[-2]
        if any(prev.get(f"{p}_total") is not None and last.get(f"{p}_total") is None
               for p in ("val", "test")):
            return entries[:-1]
    return entries


def check_path(path: PathLike) -> None:
    """Raise a ``ValueError`` unless matplotlib can write an image named ``path`` (its format
    comes from the extension), so that a bad name fails before a run, not after its first
    epoch."""
    require_matplotlib()
    from matplotlib.figure import Figure

    kinds = Figure().canvas.get_supported_filetypes()
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if ext not in kinds:
        raise ValueError(f"cannot write a plot named {os.fspath(path)!r}: the extension must "
                         f"be one of {', '.join(sorted(kinds))}")


def figure(history: History, title: str | None = None) -> Any:
    """The matplotlib ``Figure``: accuracy (%) on top, mean loss per sample (Σ(y − ŷ)² of the
    output layer) below, integer epochs on the shared x axis."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    entries = _complete(history)
    ep = [int(e["epoch"]) for e in entries]
    fig, (acc, loss) = plt.subplots(2, 1, sharex=True, figsize=(7, 6.5),
                                    gridspec_kw={"height_ratios": (3, 2)})
    for prefix, label in _SETS:
        a = [e.get(f"{prefix}_accuracy") for e in entries]
        if any(v is not None for v in a):
            acc.plot(ep, [None if v is None else 100 * v for v in a], marker=".", label=label)
        lo = [e.get(f"{prefix}_loss") for e in entries]
        if any(v is not None for v in lo):
            loss.plot(ep, lo, marker=".", label=label)
    n_blocks = len(entries[0]["block_accuracy"]) if entries else 0
    for i in range(n_blocks):
        acc.plot(ep, [100 * e["block_accuracy"][i] for e in entries], "--", alpha=0.5,
                 label=f"block {i} head (train)")
    best = history.best_epoch
    if best is not None:
        for ax in (acc, loss):
            ax.axvline(best, color="grey", linestyle=":",
                       label=f"best epoch {best} (by {history.watched})" if ax is acc else None)
    acc.set_ylabel("accuracy (%)")
    loss.set_ylabel("loss per sample")
    loss.set_xlabel("epoch")
    loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (acc, loss):
        ax.grid(alpha=0.3)
    acc.legend(fontsize="small")
    loss.legend(fontsize="small")
    fig.suptitle(title or f"training curves, {len(entries)} epochs")
    fig.tight_layout()
    return fig


def plot_history(history: History, path: PathLike, title: str | None = None) -> None:
    """Save :func:`figure` of ``history`` to ``path`` (the format from its extension)."""
    fig = figure(history, title)
    import matplotlib.pyplot as plt

    try:
        fig.savefig(os.fspath(path))
    finally:
        plt.close(fig)
