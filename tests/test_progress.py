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
