"""Progress display of ``fit``: tqdm on a terminal when installed, else plain lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO


class _PlainBar:
    """A dependency-free progress display. On a terminal: one line redrawn in place; otherwise
    (logs, pipes, CI) a new line at every 10 % of an epoch, so the output stays readable."""

    def __init__(self, epochs: int, file: TextIO | None = None) -> None:
        self.epochs = epochs
        self.file = file if file is not None else sys.stderr
        self.tty = bool(getattr(self.file, "isatty", lambda: False)())
        self.last_draw = 0.0
        self.last_decile = -1

    def batch(self, epoch: int, batch: int, batches: int, correct: int, total: int) -> None:
        acc = 100.0 * correct / total if total else 0.0
        if self.tty:
            now = time.monotonic()
            if batch != batches and now - self.last_draw < 0.1:
                return
            self.last_draw = now
            width = 30
            filled = width * batch // batches
            bar = "#" * filled + "." * (width - filled)
            self.file.write(f"\repoch {epoch}/{self.epochs} [{bar}] {batch}/{batches} "
                            f"train acc {acc:5.1f}%")
            self.file.flush()
        else:
            decile = 10 * batch // batches
            if decile != self.last_decile and decile > 0:
                self.last_decile = decile
                self.file.write(f"epoch {epoch}/{self.epochs}: {batch}/{batches} batches "
                                f"({10 * decile}%), train acc {acc:.1f}%\n")
                self.file.flush()

    def epoch_end(self, line: str) -> None:
        if self.tty:
            self.file.write("\n")
        self.last_decile = -1
        self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.flush()


class _TqdmBar:
    def __init__(self, epochs: int, tqdm: Any) -> None:
        self.epochs = epochs
        self.tqdm = tqdm
        self.bar: Any = None

    def batch(self, epoch: int, batch: int, batches: int, correct: int, total: int) -> None:
        if self.bar is None:
            self.bar = self.tqdm(total=batches, desc=f"epoch {epoch}/{self.epochs}",
                                 unit="batch", leave=False, dynamic_ncols=True)
        self.bar.update(1)
        if batch % 20 == 0 or batch == batches:
            self.bar.set_postfix_str(f"train acc {100.0 * correct / max(total, 1):.1f}%",
                                     refresh=False)

    def epoch_end(self, line: str) -> None:
        self.close()
        self.tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress(enabled: bool, epochs: int) -> _PlainBar | _TqdmBar | None:
    if not enabled:
        return None
    if not sys.stderr.isatty():
        # tqdm redraws with carriage returns, unreadable in logs: use one line per 10 %.
        return _PlainBar(epochs)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainBar(epochs)
    return _TqdmBar(epochs, tqdm)


def epoch_line(e: Mapping[str, Any], epochs: int) -> str:
    val = e["val_accuracy"]
    blocks = " ".join(f"{100 * b:.1f}" for b in e["block_accuracy"])
    return (f"epoch {e['epoch']}/{epochs}: train acc {100 * e['train_accuracy']:.2f}%"
            + (f", val acc {100 * val:.2f}%" if val is not None else "")
            + f", blocks [{blocks}], lr_inv {e['lr_inv']}, {e['seconds']:.1f}s")

