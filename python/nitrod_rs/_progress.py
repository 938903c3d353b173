"""Progress display of ``fit``: tqdm on a terminal when installed, else plain lines. Both show
the training accuracy so far, the rate (batches per second since ``fit`` started, evaluation
included) and the estimated time left in the epoch and in the whole run; at the end of an epoch
its result line (:func:`epoch_line`), unless the caller prints the results itself
(:func:`results_printed_elsewhere`, as the ``nitrod`` command does with its table)."""

from __future__ import annotations

import contextvars
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

_EPOCH_LINES: contextvars.ContextVar[bool] = contextvars.ContextVar("epoch_lines", default=True)


@contextmanager
def results_printed_elsewhere() -> Iterator[None]:
    """Within this block, progress bars print no result line per epoch: the caller prints each
    epoch's result itself (once), and the bars only show progress."""
    token = _EPOCH_LINES.set(False)
    try:
        yield
    finally:
        _EPOCH_LINES.reset(token)


def clock(seconds: float) -> str:
    """``seconds`` as ``m:ss`` or ``h:mm:ss``."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


#: The least time between two progress reports from the engine (``Run.epoch``'s ``every_ms``):
#: enough for the bars (a terminal's is redrawn at most ten times a second, a log's line comes
#: every 10 % of an epoch), and each report costs a trip through the GIL.
EVERY_MS = 20


class _Rate:
    """Batches per second since the first batch seen, and the time left. Reports may skip
    batches (:data:`EVERY_MS`): the rate counts the batches between them, not the reports."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.start: float | None = None
        self.first = (0, 0)  # (epoch, batch) of the first report

    def update(self, epoch: int, batch: int, batches: int) -> tuple[float, float, float]:
        """``(batches/s, seconds left in the epoch, seconds left in the run)``."""
        now = time.monotonic()
        if self.start is None:
            # The first batch's own time is unknown: count from the call that reports it.
            self.start = now
            self.first = (epoch, batch)
            return 0.0, 0.0, 0.0
        seen = (epoch - self.first[0]) * batches + batch - self.first[1]
        rate = max(seen, 0) / max(now - self.start, 1e-9)
        if rate <= 0.0:
            return 0.0, 0.0, 0.0
        left_epoch = (batches - batch) / rate
        left_run = left_epoch + (self.epochs - epoch) * batches / rate
        return rate, left_epoch, left_run

    @staticmethod
    def text(rate: float, left_epoch: float, left_run: float) -> str:
        if rate <= 0.0:
            return ""
        return (f", {rate:.1f} batches/s, epoch ETA {clock(left_epoch)}, "
                f"run ETA {clock(left_run)}")


class _PlainBar:
    """A dependency-free progress display. On a terminal: one line redrawn in place; otherwise
    (logs, pipes, CI) a new line at every 10 % of an epoch, so the output stays readable."""

    def __init__(self, epochs: int, file: TextIO | None = None,
                 epoch_lines: bool = True) -> None:
        self.epochs = epochs
        self.epoch_lines = epoch_lines
        self.file = file if file is not None else sys.stderr
        self.tty = bool(getattr(self.file, "isatty", lambda: False)())
        self.last_draw = 0.0
        self.last_decile = -1
        self.drawn = False  # a bar line is on the terminal, not ended yet
        self.rate = _Rate(epochs)

    def batch(self, epoch: int, batch: int, batches: int, correct: int, total: int) -> None:
        acc = 100.0 * correct / total if total else 0.0
        speed = _Rate.text(*self.rate.update(epoch, batch, batches))
        if self.tty:
            now = time.monotonic()
            if batch != batches and now - self.last_draw < 0.1:
                return
            self.last_draw = now
            width = 30
            filled = width * batch // batches
            bar = "#" * filled + "." * (width - filled)
            self.file.write(f"\repoch {epoch}/{self.epochs} [{bar}] {batch}/{batches} "
                            f"train acc {acc:5.1f}%{speed}\x1b[K")
            self.file.flush()
            self.drawn = True
        else:
            decile = 10 * batch // batches
            if decile != self.last_decile and decile > 0:
                self.last_decile = decile
                self.file.write(f"epoch {epoch}/{self.epochs}: {batch}/{batches} batches "
                                f"({10 * decile}%), train acc {acc:.1f}%{speed}\n")
                self.file.flush()

    def epoch_end(self, line: str) -> None:
        self.last_decile = -1
        self.drawn = False
        if self.tty:
            # Without a result line the bar is cleared: what is printed next starts the line.
            self.file.write("\n" if self.epoch_lines else "\r\x1b[K")
        if self.epoch_lines:
            self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.drawn:  # stopped inside an epoch: end the bar's line
            self.file.write("\n")
            self.drawn = False
        self.file.flush()


class _TqdmBar:
    """tqdm's bar per epoch (it shows the epoch's rate and ETA); the run's ETA in its
    postfix."""

    def __init__(self, epochs: int, tqdm: Any, epoch_lines: bool = True) -> None:
        self.epochs = epochs
        self.epoch_lines = epoch_lines
        self.tqdm = tqdm
        self.bar: Any = None
        self.rate = _Rate(epochs)

    def batch(self, epoch: int, batch: int, batches: int, correct: int, total: int) -> None:
        rate, _, left_run = self.rate.update(epoch, batch, batches)
        if self.bar is None:
            # A resumed run may start inside an epoch.
            self.bar = self.tqdm(total=batches, initial=batch - 1,
                                 desc=f"epoch {epoch}/{self.epochs}", unit="batch",
                                 leave=False, dynamic_ncols=True)
        self.bar.update(batch - self.bar.n)  # reports may skip batches
        run = f", run ETA {clock(left_run)}" if rate > 0 else ""
        self.bar.set_postfix_str(f"train acc {100.0 * correct / max(total, 1):.1f}%{run}",
                                 refresh=False)

    def epoch_end(self, line: str) -> None:
        self.close()  # leave=False: the bar disappears
        if self.epoch_lines:
            self.tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress(enabled: bool, epochs: int) -> _PlainBar | _TqdmBar | None:
    if not enabled:
        return None
    lines = _EPOCH_LINES.get()
    if not sys.stderr.isatty():
        # tqdm redraws with carriage returns, unreadable in logs: use one line per 10 %.
        return _PlainBar(epochs, epoch_lines=lines)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainBar(epochs, epoch_lines=lines)
    return _TqdmBar(epochs, tqdm, epoch_lines=lines)


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def epoch_line(e: Mapping[str, Any], epochs: int) -> str:
    blocks = " ".join(f"{100 * b:.1f}" for b in e["block_accuracy"])
    sets = "".join(f", {name} acc {_pct(e[key])}"
                   for name, key in (("val", "val_accuracy"), ("test", "test_accuracy"))
                   if e.get(key) is not None)
    return (f"epoch {e['epoch']}/{epochs}: train acc {100 * e['train_accuracy']:.2f}%{sets}"
            f", blocks [{blocks}], lr_inv {e['lr_inv']}, {e['seconds']:.1f}s")


# -- a count of finished items (the runs of a sweep) ------------------------------------------


class _PlainCount:
    """Result lines with an overall bar below them. On a terminal the bar (``[###...] 3/10
    runs, ETA 1:05``) is redrawn on the last line, each result line printed above it; elsewhere
    there is no bar line, and each result line starts with the count (``[3/10]``)."""

    def __init__(self, total: int, done: int, unit: str, file: TextIO | None = None,
                 bar: bool = True) -> None:
        self.total, self.done, self.unit = total, done, unit
        self.file = file if file is not None else sys.stderr
        self.tty = bar and bool(getattr(self.file, "isatty", lambda: False)())
        self.first = done  # the items done before this display started do not count in the ETA
        self.start = time.monotonic()
        self._draw()

    def _eta(self) -> str:
        new = self.done - self.first
        if new <= 0 or self.done >= self.total:
            return ""
        per_item = (time.monotonic() - self.start) / new
        return f", ETA {clock(per_item * (self.total - self.done))}"

    def _draw(self) -> None:
        if not self.tty:
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        self.file.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                        f"{self.unit}{self._eta()}\x1b[K")
        self.file.flush()

    def advance(self, line: str) -> None:
        """One more item done; ``line`` is its result."""
        self.done += 1
        count = f"[{self.done}/{self.total}] "
        self.file.write(("\r\x1b[K" if self.tty else "") + count + line + "\n")
        self._draw()
        self.file.flush()

    def close(self) -> None:
        if self.tty:  # the bar's line is cleared: what is printed next starts the line
            self.file.write("\r\x1b[K")
            self.file.flush()


class _TqdmCount:
    """tqdm's bar of the items, each result line written above it."""

    def __init__(self, total: int, done: int, unit: str, tqdm: Any) -> None:
        self.total, self.done = total, done
        self.tqdm = tqdm
        self.bar = tqdm(total=total, initial=done, unit=unit.rstrip("s") or unit,
                        desc=unit, leave=False, dynamic_ncols=True)

    def advance(self, line: str) -> None:
        self.done += 1
        self.tqdm.write(f"[{self.done}/{self.total}] {line}", file=sys.stderr)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def count(total: int, done: int, unit: str, enabled: bool) -> _PlainCount | _TqdmCount:
    """The display of ``total`` items of which ``done`` are done already: one result line per
    item that ends (:meth:`advance`), on stderr, and, when ``enabled``, an overall bar — tqdm's
    on a terminal when it is installed, else the plain one (on a terminal only)."""
    if enabled and sys.stderr.isatty():
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            return _TqdmCount(total, done, unit, tqdm)
    return _PlainCount(total, done, unit, bar=enabled)
