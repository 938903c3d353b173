"""The :class:`History` of a training run, and the conversion of the engine's epoch metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._paths import PathLike

__all__ = ["History"]

#: The sets that select the best epoch, by the engine's name (``_core.Run.watched``), and the
#: prefix of their entries.
_PREFIX = {"validation": "val", "test": "test"}

#: The measures of an evaluated set (``<prefix>_<measure>`` entries).
_SET_MEASURES = ("accuracy", "loss", "loss_sum", "correct", "total")

#: The entries of every epoch, in order (what :func:`epoch_entry` writes).
ENTRIES: tuple[str, ...] = (
    "epoch", "train_accuracy", "train_loss", "train_loss_sum", "train_correct", "train_total",
    "block_accuracy",
    *(f"{p}_{k}" for p in ("val", "test") for k in _SET_MEASURES),
    "lr_inv", "seconds", "train_seconds",
)

#: Keras' names of the training metrics, and the entries they are.
ALIASES = {"loss": "train_loss", "accuracy": "train_accuracy"}


def _ratio(correct: int, total: int) -> float:
    return correct / total if total else 0.0


def _set_metrics(entry: dict[str, Any], prefix: str, frac: Any, loss: Any) -> None:
    """The ``<prefix>_accuracy``, ``_loss``, ``_loss_sum``, ``_correct``, ``_total`` entries of
    one evaluated set (all ``None`` when it was not evaluated)."""
    if frac is None:
        for k in _SET_MEASURES:
            entry[f"{prefix}_{k}"] = None
        return
    c, t = int(frac[0]), int(frac[1])
    entry[f"{prefix}_accuracy"] = _ratio(c, t)
    entry[f"{prefix}_loss"] = int(loss) / t if loss is not None and t else None
    entry[f"{prefix}_loss_sum"] = int(loss) if loss is not None else None
    entry[f"{prefix}_correct"] = c
    entry[f"{prefix}_total"] = t


def epoch_entry(d: Mapping[str, Any]) -> dict[str, Any]:
    """One :attr:`History.epochs` entry from the engine's integer metrics of an epoch
    (``nitro_core::io::metrics_json``, as ``_core.Run.epoch`` returns them)."""
    tc, tt = (int(v) for v in d["train"])
    entry: dict[str, Any] = {
        "epoch": int(d["epoch"]),
        "train_accuracy": _ratio(tc, tt),
        "train_loss": int(d["train_loss"]) / tt if tt else 0.0,
        "train_loss_sum": int(d["train_loss"]),
        "train_correct": tc,
        "train_total": tt,
        "block_accuracy": [_ratio(int(c), int(t)) for c, t in d["blocks"]],
    }
    _set_metrics(entry, "val", d.get("val"), d.get("val_loss"))
    _set_metrics(entry, "test", d.get("test"), d.get("test_loss"))
    entry["lr_inv"] = int(d["lr_inv"])
    entry["seconds"] = (int(d["train_millis"]) + int(d["eval_millis"])) / 1000.0
    entry["train_seconds"] = int(d["train_millis"]) / 1000.0
    return entry


def require_matplotlib() -> None:
    """Raise an ``ImportError`` naming ``pip install matplotlib`` unless it is importable."""
    try:
        import matplotlib  # noqa: F401
        import matplotlib.pyplot  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "plotting needs matplotlib: pip install matplotlib "
            "(or pip install 'nitrod-rs[plot]')"
        ) from exc


class History:
    """Per-epoch metrics of a :meth:`MLP.fit` or :meth:`CNN.fit` run.

    ``epochs`` is a list of dicts with ``epoch``, ``train_accuracy``, ``train_loss`` (mean
    ``Σ(y − ŷ)²`` per sample), ``train_loss_sum``, ``train_correct``, ``train_total``,
    ``block_accuracy`` (each block head's local training accuracy), the validation set's
    ``val_accuracy``, ``val_loss`` (mean per sample), ``val_loss_sum``, ``val_correct``,
    ``val_total``, the same five ``test_*`` entries of the test set (each ``None`` when that set
    was not given), ``lr_inv``, ``seconds`` (training and evaluation) and ``train_seconds``.
    ``history["val_accuracy"]`` gives one entry over the epochs (``None`` where not measured;
    ``KeyError`` for a name that is not an entry).

    As Keras' ``History``: :attr:`history` is a dict of lists, one per metric that was measured
    (``loss`` and ``accuracy`` are the training ones, also under their own names).

    ``watched`` names the set that selected the best epoch and drove the plateau rule and
    early stopping: ``"validation"``, ``"test"`` (the paper's protocol) or ``None``.
    """

    def __init__(
        self,
        epochs: Sequence[Mapping[str, Any]] = (),
        *,
        cancelled: bool = False,
        early_stopped: bool = False,
        watched: str | None = None,
    ) -> None:
        if watched is not None and watched not in _PREFIX:
            raise ValueError(f"watched must be 'validation', 'test' or None, got {watched!r}")
        self.epochs: list[dict[str, Any]] = [dict(e) for e in epochs]
        self.cancelled = cancelled
        self.early_stopped = early_stopped
        self.watched = watched

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, metric: str) -> list[Any]:
        key = ALIASES.get(metric, metric)
        if key not in ENTRIES and not any(key in e for e in self.epochs):
            raise KeyError(f"{metric!r} is not an entry of the history; use one of "
                           + ", ".join([*ENTRIES, *ALIASES]))
        return [e.get(key) for e in self.epochs]

    def __contains__(self, metric: object) -> bool:
        return isinstance(metric, str) and metric in self.history

    @property
    def history(self) -> dict[str, list[Any]]:
        """Keras' ``History.history``: each metric measured in this run, over the epochs (an
        entry that is ``None`` in every epoch, such as ``val_loss`` without a validation set,
        is left out: ``history.history["val_loss"]`` is then a ``KeyError``)."""
        keys = [k for k in ENTRIES if k != "epoch"]
        out = {k: self[k] for k in keys if any(e.get(k) is not None for e in self.epochs)}
        for alias, key in ALIASES.items():
            if key in out:
                out[alias] = list(out[key])
        return out

    @property
    def epoch(self) -> list[int]:
        """The numbers of the epochs (1-based, as the entries' ``epoch``)."""
        return [int(e["epoch"]) for e in self.epochs]

    def __repr__(self) -> str:
        last = self.epochs[-1] if self.epochs else {}
        return (f"History(epochs={len(self.epochs)}, last_val_accuracy="
                f"{last.get('val_accuracy')}, last_test_accuracy={last.get('test_accuracy')}, "
                f"watched={self.watched!r}, cancelled={self.cancelled})")

    @property
    def best(self) -> dict[str, Any] | None:
        """The entry of the best epoch by the watched set's accuracy (exact: correct/total),
        the earliest on ties; ``None`` when no set was watched."""
        if self.watched is None:
            return None
        p = _PREFIX[self.watched]
        best: dict[str, Any] | None = None
        for e in self.epochs:
            c, t = e.get(f"{p}_correct"), e.get(f"{p}_total")
            if c is None or not t:
                continue
            if best is None or c * best[f"{p}_total"] > best[f"{p}_correct"] * t:
                best = e
        return best

    @property
    def best_epoch(self) -> int | None:
        """The number of the best epoch by the watched set (see :attr:`best`)."""
        b = self.best
        return None if b is None else int(b["epoch"])

    @property
    def best_val_accuracy(self) -> float | None:
        """The best validation accuracy over the epochs (``None`` without validation)."""
        vals = [v for v in self["val_accuracy"] if v is not None]
        return max(vals) if vals else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "epochs": [dict(e) for e in self.epochs],
            "cancelled": self.cancelled,
            "early_stopped": self.early_stopped,
            "watched": self.watched,
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_val_accuracy,
        }

    def plot(self, path: PathLike, title: str | None = None) -> None:
        """Save the training curves as an image (the format from the extension): accuracy
        (train, validation, test) and loss panels over the epochs, the best epoch marked, under
        ``title`` — the plot ``nitrod train --plot`` draws.

        Needs matplotlib (``pip install matplotlib`` or ``nitrod-rs[plot]``).
        """
        from ._plot import plot_history  # it imports this module: only when asked for

        plot_history(self, path, title)
