"""The progress display of fit (nitrod_rs._progress): the plain bar's rate and time left, and
the epoch result lines a caller that prints its own results turns off."""

from __future__ import annotations

import io
import re

import pytest

from nitrod_rs import _progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _epoch(bar: _progress._PlainBar, epoch: int, batches: int) -> None:
    for b in range(1, batches + 1):
        bar.batch(epoch, b, batches, correct=b, total=2 * b)
        bar.last_draw = 0.0  # draw every batch (the terminal bar redraws at most 10 times/s)


@pytest.mark.parametrize("tty", [False, True])
def test_plain_bar_shows_rate_and_time_left(tty):
    f: io.StringIO = _Terminal() if tty else io.StringIO()
    bar = _progress._PlainBar(3, file=f)
    _epoch(bar, 1, 20)
    text = f.getvalue()
    m = re.findall(r"([\d.]+) batches/s, epoch ETA (\d+:\d\d), run ETA (\d+:\d\d)", text)
    assert m, text
    rate, left_epoch, left_run = m[-1]
    assert float(rate) > 0
    # At the last batch of epoch 1 of 3 nothing is left in the epoch; two epochs in the run.
    assert left_epoch == "0:00"
    assert "train acc 50.0%" in text or "train acc  50.0%" in text


def test_epoch_lines_are_printed_unless_results_go_elsewhere():
    f = io.StringIO()
    bar = _progress._PlainBar(2, file=f)
    _epoch(bar, 1, 4)
    bar.epoch_end("RESULT 1")
    assert f.getvalue().count("RESULT 1") == 1
    with _progress.results_printed_elsewhere():
        for terminal in (False, True):
            f = _Terminal() if terminal else io.StringIO()
            bar = _progress.progress(True, 2)
            assert bar is not None and not getattr(bar, "epoch_lines")
            quiet = _progress._PlainBar(2, file=f, epoch_lines=False)
            _epoch(quiet, 1, 4)
            quiet.epoch_end("RESULT 1")
            assert "RESULT" not in f.getvalue()
            if terminal:  # the bar's line is cleared for what the caller prints next
                assert f.getvalue().endswith("\r\x1b[K")
    bar = _progress.progress(True, 2)
    assert bar is not None and getattr(bar, "epoch_lines")  # the default again after the block


def test_a_bar_stopped_inside_an_epoch_ends_its_line():
    f = _Terminal()
    bar = _progress._PlainBar(2, file=f)
    _epoch(bar, 1, 3)
    bar.close()
    assert f.getvalue().endswith("\n")


def test_the_rate_counts_batches_not_reports(monkeypatch):
    """The engine reports every ``EVERY_MS`` only: the rate is batches per second over the
    batches between two reports, however many of them were skipped."""
    now = [100.0]
    monkeypatch.setattr(_progress.time, "monotonic", lambda: now[0])
    r = _progress._Rate(epochs=2)
    assert r.update(1, 1, 100) == (0.0, 0.0, 0.0)
    now[0] += 2.0
    rate, left_epoch, left_run = r.update(1, 41, 100)  # 40 batches in 2 s, 39 unreported
    assert rate == pytest.approx(20.0)
    assert left_epoch == pytest.approx(2.95) and left_run == pytest.approx(7.95)
    now[0] += 4.0
    rate, _, _ = r.update(2, 1, 100)  # across the epoch boundary: 100 batches in 6 s
    assert rate == pytest.approx(100 / 6)


def test_the_engine_reports_batches_at_most_every_every_ms():
    """``Run.epoch(..., every_ms=)``: with a long interval the callback sees an epoch's first
    and last batch only; with 0, every batch."""
    import numpy as np

    from nitrod_rs import _core

    rng = np.random.default_rng(1)
    x = rng.integers(-127, 128, size=(96, 6), dtype=np.int8)
    y = rng.integers(0, 3, size=96).astype(np.int64)
    settings = _core.TrainSettings(epochs=2, batch_size=16, lr_inv=32, seed=4)
    for every_ms, want in [(10**6, [(1, 1), (1, 6), (2, 1), (2, 6)]),
                           (0, [(e, b) for e in (1, 2) for b in range(1, 7)])]:
        seen: list[tuple[int, int]] = []
        m = _core.Model.mlp(6, [8], 3, seed=1)
        run = _core.Run(settings, x, y, (1, 2, 3))
        while not run.finished:
            run.epoch(m, lambda e, b, *rest: seen.append((e, b)), every_ms=every_ms)
        assert seen == want, every_ms
