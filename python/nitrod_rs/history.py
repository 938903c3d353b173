"""The :class:`History` of a training run, and the conversion of the engine's epoch metrics."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ._paths import PathLike

__all__ = ["History"]


def _ratio(correct: int, total: int) -> float:
    return correct / total if total else 0.0


def epoch_entry(d: Mapping[str, Any]) -> dict[str, Any]:
    """One :attr:`History.epochs` entry from the engine's integer metrics of an epoch."""
    tc, tt = int(d["train_correct"]), int(d["train_total"])
    test = d.get("test")
    entry: dict[str, Any] = {
        "epoch": int(d["epoch"]),
        "train_accuracy": _ratio(tc, tt),
        "train_loss": d["train_loss"] / tt if tt else 0.0,
        "train_loss_sum": int(d["train_loss"]),
        "train_correct": tc,
        "train_total": tt,
        "block_accuracy": [_ratio(c, t) for c, t in d["blocks"]],
        "val_accuracy": _ratio(*test) if test else None,
        "val_loss": d["test_loss"] / test[1] if test and d.get("test_loss") is not None
        else None,
        "val_loss_sum": d.get("test_loss") if test else None,
        "val_correct": int(test[0]) if test else None,
        "val_total": int(test[1]) if test else None,
        "lr_inv": int(d["lr_inv"]),
        "seconds": (int(d["train_millis"]) + int(d["eval_millis"])) / 1000.0,
        "train_seconds": int(d["train_millis"]) / 1000.0,
    }
    return entry


class History:
    """Per-epoch metrics of a :meth:`MLP.fit` or :meth:`CNN.fit` run.

    ``epochs`` is a list of dicts with ``epoch``, ``train_accuracy``, ``train_loss`` (mean
    ``Σ(y − ŷ)²`` per sample), ``train_loss_sum``, ``train_correct``, ``train_total``,
    ``block_accuracy`` (each block head's local training accuracy), ``val_accuracy``,
    ``val_loss`` (mean per sample), ``val_loss_sum``, ``val_correct``, ``val_total``
    (``None`` without validation data), ``lr_inv``, ``seconds`` (training and validation)
    and ``train_seconds``. ``history["val_accuracy"]`` gives one metric over the epochs.
    """

    def __init__(
        self,
        epochs: Sequence[Mapping[str, Any]] = (),
        *,
        cancelled: bool = False,
        early_stopped: bool = False,
    ) -> None:
        self.epochs: list[dict[str, Any]] = [dict(e) for e in epochs]
        self.cancelled = cancelled
        self.early_stopped = early_stopped

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, metric: str) -> list[Any]:
        return [e.get(metric) for e in self.epochs]

    def __repr__(self) -> str:
        last = self.epochs[-1] if self.epochs else {}
        return (f"History(epochs={len(self.epochs)}, last_val_accuracy="
                f"{last.get('val_accuracy')}, cancelled={self.cancelled})")

    @property
    def best_val_accuracy(self) -> float | None:
        """The best validation accuracy over the epochs (the paper's reported metric)."""
        vals = [v for v in self["val_accuracy"] if v is not None]
        return max(vals) if vals else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "epochs": [dict(e) for e in self.epochs],
            "cancelled": self.cancelled,
            "early_stopped": self.early_stopped,
            "best_val_accuracy": self.best_val_accuracy,
        }

    def plot(self, path: PathLike) -> None:
        """Save accuracy curves (train, validation, each block head) as an image.

        Needs matplotlib (``pip install matplotlib``).
        """
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "History.plot needs matplotlib: pip install matplotlib "
                "(or pip install 'nitrod-rs[plot]')"
            ) from exc
        ep = self["epoch"]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(ep, [100 * a for a in self["train_accuracy"]], label="train")
        if any(v is not None for v in self["val_accuracy"]):
            ax.plot(ep, [None if v is None else 100 * v for v in self["val_accuracy"]],
                    label="validation")
        blocks = self["block_accuracy"]
        for i in range(len(blocks[0]) if blocks else 0):
            ax.plot(ep, [100 * b[i] for b in blocks], "--", alpha=0.6, label=f"block {i} head")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.fspath(path))
        plt.close(fig)
