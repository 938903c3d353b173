"""Resumable training: a checkpoint continues a run bit for bit (after an epoch or inside one,
on any thread count), broken checkpoints and mismatched runs are clear errors, callbacks use
the model during fit, validation splits are disjoint and reproducible, and the selection
protocol is checked."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import nitrod_rs
from nitrod_rs import CNN, MLP, _core, _progress
from nitrod_rs.callbacks import ModelCheckpoint

N = 384
SPLIT = 0.25  # 96 validation rows of 384


def images(n: int, hw: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, hw, hw), dtype=np.uint8)
    y = rng.integers(0, classes, size=n).astype(np.int64)
    return x, y


X, Y = images(N, 8, 4, 0)
XT, YT = images(100, 8, 4, 1)
# Small steps that change the weights every batch; dropout draws on the model's generators.
KW: dict[str, Any] = dict(batch_size=32, lr_inv=64, lr_amp_factor=8, fwd_decay_inv=5000,
                          validation_split=SPLIT, validation_seed=1, test_data=(XT, YT),
                          progress=False)


def mlp(**kw: Any) -> MLP:
    return MLP([64, 32, 16, 4], dropout=10, seed=3, **kw)


def entries(h: nitrod_rs.History) -> list[dict[str, Any]]:
    """The history without wall-clock times."""
    return [{k: v for k, v in e.items() if "seconds" not in k} for e in h.epochs]


def assert_same_run(a: Any, b: Any, ha: nitrod_rs.History, hb: nitrod_rs.History) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    assert a.hyper == b.hyper and a.normalization == b.normalization
    assert entries(ha) == entries(hb)
    assert (ha.early_stopped, ha.watched, ha.best_epoch) == (hb.early_stopped, hb.watched,
                                                            hb.best_epoch)


def assert_differs(a: Any, b: Any) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert any((sa[k] != sb[k]).any() for k in sa)


# -- resume equals the uninterrupted run -----------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_mlp_resume_equals_uninterrupted_run(tmp_path, k, threads):
    p = tmp_path / "run.safetensors"
    first = mlp()
    # checkpoint_every > epochs: the checkpoint written at the end.
    first.fit(X, Y, epochs=k, checkpoint=p, checkpoint_every=5, threads=threads, **KW)
    # A fresh model (no normalisation yet): the checkpoint's model replaces it. The second
    # part runs on the other thread count.
    resumed = mlp()
    h = resumed.fit(X, Y, epochs=4, resume=p, threads=3 - threads, **KW)
    whole = mlp()
    hw = whole.fit(X, Y, epochs=4, threads=threads, **KW)
    assert_same_run(resumed, whole, h, hw)
    assert [e["epoch"] for e in h.epochs] == [1, 2, 3, 4]
    assert_differs(first, whole)  # the resumed part did train


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k", [1, 2])
def test_cnn_with_augmentation_and_dropout_resumes_exactly(tmp_path, k, threads):
    x, y = images(256, 12, 3, 2)
    xt, yt = images(60, 12, 3, 3)

    def cnn() -> CNN:
        return CNN([4, "M", 8, "M"], [16], input_shape=(1, 12, 12), classes=3, dropout=10,
                   decoder_dim=64, seed=2)

    kw = dict(batch_size=32, lr_inv=64, lr_amp_factor=8, augment=True,
              validation_split=0.25, test_data=(xt, yt), progress=False, threads=threads)
    p = tmp_path / "cnn.safetensors"
    first = cnn()
    first.fit(x, y, epochs=k, checkpoint=p, **kw)
    resumed = cnn()
    h = resumed.fit(x, y, epochs=3, resume=p, **kw)
    whole = cnn()
    hw = whole.fit(x, y, epochs=3, **kw)
    assert_same_run(resumed, whole, h, hw)
    assert_differs(first, whole)


class _Bar:
    """A progress display that records the batches it is shown and raises ``KeyboardInterrupt``
    (as Ctrl-C does) at one of them."""

    def __init__(self, stop_at: tuple[int, int] | None = None) -> None:
        self.stop_at = stop_at
        self.seen: list[tuple[int, int]] = []

    def batch(self, epoch: int, batch: int, batches: int, correct: int, total: int) -> None:
        self.seen.append((epoch, batch))
        if (epoch, batch) == self.stop_at:
            raise KeyboardInterrupt

    def epoch_end(self, line: str) -> None:
        pass

    def close(self) -> None:
        pass


def _use_bar(monkeypatch, bar: _Bar) -> None:
    monkeypatch.setattr(_progress, "progress", lambda enabled, epochs: bar)
    # Shown every batch (a real bar is shown a few times a second): the stop lands on one.
    monkeypatch.setattr(_progress, "EVERY_MS", 0)


def test_stop_inside_an_epoch_then_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    p = tmp_path / "run.safetensors"
    kw = {**KW, "progress": True}
    _use_bar(monkeypatch, _Bar(stop_at=(2, 3)))
    a = mlp()
    with pytest.raises(KeyboardInterrupt) as info:
        a.fit(X, Y, epochs=3, checkpoint=p, **kw)
    h = info.value.history  # type: ignore[attr-defined]
    assert h is a.history and h.cancelled
    # Epoch 1 and the first three batches of epoch 2 (a partial entry, not evaluated).
    assert [e["epoch"] for e in h.epochs] == [1, 2]
    assert h.epochs[1]["train_total"] == 3 * 32 and h.epochs[1]["val_total"] is None
    # The checkpoint continues from the next batch.
    bar = _Bar()
    _use_bar(monkeypatch, bar)
    b = mlp()
    hb = b.fit(X, Y, epochs=3, resume=p, **kw)
    assert bar.seen[0] == (2, 4)
    whole = mlp()
    assert_same_run(b, whole, hb, whole.fit(X, Y, epochs=3, **KW))


def test_callback_exception_checkpoints_the_epoch_then_resume(tmp_path, monkeypatch):
    p = tmp_path / "run.safetensors"

    def boom(e: dict[str, Any]) -> None:
        if e["epoch"] == 2:
            raise RuntimeError("stop after epoch 2")

    a = mlp()
    with pytest.raises(RuntimeError, match="stop after epoch 2") as info:
        a.fit(X, Y, epochs=4, checkpoint=p, checkpoint_every=3, callbacks=[boom], **KW)
    assert len(info.value.history) == 2  # type: ignore[attr-defined]
    bar = _Bar()
    _use_bar(monkeypatch, bar)
    b = mlp()
    hb = b.fit(X, Y, epochs=4, resume=p, **{**KW, "progress": True})
    assert bar.seen[0] == (3, 1)  # written at the stop, although checkpoint_every=3
    whole = mlp()
    assert_same_run(b, whole, hb, whole.fit(X, Y, epochs=4, **KW))


def test_callback_returning_true_stops_and_checkpoints(tmp_path):
    p = tmp_path / "run.safetensors"
    a = mlp()
    h = a.fit(X, Y, epochs=4, checkpoint=p, checkpoint_every=10,
              callbacks=[lambda e: e["epoch"] == 1], **KW)
    assert h.cancelled and len(h) == 1
    b = mlp()
    hb = b.fit(X, Y, epochs=2, resume=p, **KW)
    whole = mlp()
    assert_same_run(b, whole, hb, whole.fit(X, Y, epochs=2, **KW))


def test_run_stopped_by_on_batch_continues_from_the_next_batch(tmp_path):
    """The binding's own loop: ``Run.epoch`` returns the callback's exception with the partial
    epoch; the checkpoint holds the batch reached."""
    rng = np.random.default_rng(5)
    x = rng.integers(-127, 128, size=(160, 6), dtype=np.int8)
    y = rng.integers(0, 3, size=160).astype(np.int64)
    chw = (1, 2, 3)
    settings = _core.TrainSettings(epochs=3, batch_size=16, lr_inv=32, lr_amp_factor=4, seed=4)

    def fresh() -> _core.Model:
        return _core.Model.mlp(6, [8], 3, dropout_pct=20, seed=1)

    def stop(epoch: int, batch: int, *rest: int) -> None:
        if (epoch, batch) == (2, 3):
            raise ValueError("stop here")

    m, run = fresh(), _core.Run(settings, x, y, chw)
    d, err = run.epoch(m, stop)
    assert err is None and run.epochs_done == 1 and run.batch == 0
    d, err = run.epoch(m, stop)
    assert isinstance(err, ValueError) and "stop here" in str(err)
    assert (run.epochs_done, run.batch) == (1, 3) and d["train"][1] == 48
    assert d["val"] is None and not run.finished
    p = tmp_path / "ck.safetensors"
    run.save_checkpoint(m, p)
    m2, run2 = _core.Run.from_checkpoint(p, x, y, chw)  # the checkpoint's settings
    assert (run2.epochs_done, run2.batch) == (1, 3) and run2.config == run.config
    while not run2.finished:
        run2.epoch(m2)
    m3, run3 = fresh(), _core.Run(settings, x, y, chw)
    while not run3.finished:
        run3.epoch(m3)
    for k, v in m3.state_dict().items():
        np.testing.assert_array_equal(v, m2.state_dict()[k], err_msg=k)
    strip = [{k: v for k, v in e.items() if "millis" not in k} for e in run3.history]
    assert [{k: v for k, v in e.items() if "millis" not in k} for e in run2.history] == strip


# -- broken checkpoints and runs that do not continue ----------------------------------------------


def _flip(data: bytes, at: int, n: int = 4) -> bytes:
    b = bytearray(data)
    for i in range(at, at + n):
        b[i] ^= 0xFF
    return bytes(b)


def test_broken_checkpoints_are_clear_errors_and_change_nothing(tmp_path):
    good = tmp_path / "run.safetensors"
    mlp().fit(X, Y, epochs=1, checkpoint=good, **KW)
    before = good.read_bytes()
    header = int.from_bytes(before[:8], "little")
    meta = before.index(b'"checkpoint"')
    plain = tmp_path / "plain.safetensors"
    mlp().save(plain)
    cases = {
        "truncated": (before[: len(before) // 2], nitrod_rs.FormatError, None),
        "empty": (b"", nitrod_rs.FormatError, None),
        "header bytes flipped": (_flip(before, 8 + header // 2), nitrod_rs.NitroError, None),
        "run state flipped": (_flip(before, meta + 20), nitrod_rs.NitroError, None),
        "a plain model file": (plain.read_bytes(), nitrod_rs.FormatError, "not a checkpoint"),
    }
    for name, (data, exc, words) in cases.items():
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(data)
        m = mlp()
        sd = m.state_dict()
        with pytest.raises(exc, match=words) as info:
            m.fit(X, Y, epochs=3, resume=bad, checkpoint=good, **KW)
        assert isinstance(info.value, ValueError), name
        assert good.read_bytes() == before, name  # the previous checkpoint is intact
        assert bad.read_bytes() == data, name
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(v, sd[k], err_msg=name)


def test_resume_with_other_data_or_settings_names_the_difference(tmp_path):
    p = tmp_path / "run.safetensors"
    mlp().fit(X, Y, epochs=2, checkpoint=p, **KW)
    before = p.read_bytes()
    x_other = X.copy()
    x_other[5, 3, 3] ^= 0x80  # a change that survives the normalisation to int8
    cases: dict[str, tuple[Any, dict[str, Any], str]] = {
        "one pixel": (mlp, {"x": x_other}, "training set"),
        "fewer rows": (mlp, {"x": X[:-32], "y": Y[:-32]}, "training set"),
        "labels": (mlp, {"y": (Y + 1) % 4}, "training set"),
        "test set": (mlp, {"test_data": (XT[:50], YT[:50])}, "test set"),
        "no test set": (mlp, {"test_data": None}, "test set"),
        "lr_inv": (mlp, {"lr_inv": 128}, "lr_inv=64 in the checkpoint, lr_inv=128 given"),
        "split": (mlp, {"validation_split": 0.2}, "validation_permille=250 in the checkpoint"),
        "seed": (mlp, {"seed": 9}, "seed"),
        "batch size": (mlp, {"batch_size": 16}, "batch_size"),
        "augment": (mlp, {"augment": True}, "augment"),
        "fewer epochs": (mlp, {"epochs": 1}, "reached epoch 2"),
        "architecture": (lambda: MLP([64, 16, 4], dropout=10, seed=3), {}, "hidden"),
        "kind": (lambda: CNN([4, "M"], [8], input_shape=(1, 8, 8), classes=4), {}, "kind"),
    }
    for name, (make, change, words) in cases.items():
        args = {"x": X, "y": Y, "epochs": 3, **KW, **change}
        m = make()
        sd = m.state_dict()
        with pytest.raises(ValueError, match=words):
            m.fit(args.pop("x"), args.pop("y"), resume=p, checkpoint=p, **args)
        assert p.read_bytes() == before, name
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(v, sd[k], err_msg=name)


# -- the model is free between epochs --------------------------------------------------------------


def test_callbacks_save_evaluate_and_predict_during_fit(tmp_path):
    m = mlp()
    seen: list[tuple[int, int]] = []

    def cb(e: dict[str, Any]) -> None:
        m.save(tmp_path / f"e{e['epoch']}.safetensors")
        r = m.evaluate(XT, YT)
        assert (r["correct"], r["loss_sum"]) == (e["test_correct"], e["test_loss_sum"])
        assert m.predict(XT[:5]).shape == (5,)
        assert m.history is not None and len(m.history) == e["epoch"]
        seen.append((e["epoch"], r["correct"]))

    h = m.fit(X, Y, epochs=3, callbacks=[cb], **KW)
    assert [s[0] for s in seen] == [1, 2, 3] and len(h) == 3
    last = nitrod_rs.load(tmp_path / "e3.safetensors")
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, last.state_dict()[k])
    assert_differs(nitrod_rs.load(tmp_path / "e1.safetensors"), last)


def test_model_checkpoint_keeps_the_best_epoch_across_a_resume(tmp_path):
    every = ModelCheckpoint(tmp_path / "m-{epoch}.safetensors", save_best_only=False)
    best = ModelCheckpoint(tmp_path / "best.safetensors")
    whole = mlp()
    h = whole.fit(X, Y, epochs=4, callbacks=[every, best], **KW)
    assert best.best_epoch == h.best_epoch and h.watched == "validation"
    assert best.best == h.best["val_accuracy"]  # type: ignore[index]
    want = (tmp_path / f"m-{h.best_epoch}.safetensors").read_bytes()
    assert (tmp_path / "best.safetensors").read_bytes() == want
    # The best model is the one whose validation score is the best epoch's.
    _, val_rows = _core.split_indices(N, 250, 1)
    r = nitrod_rs.load(tmp_path / "best.safetensors").evaluate(X[val_rows], Y[val_rows])
    assert r["correct"] == h.best["val_correct"]  # type: ignore[index]
    # The same best file from a run stopped after 2 epochs and resumed (a new callback object).
    (tmp_path / "best.safetensors").unlink()
    p = tmp_path / "run.safetensors"
    mlp().fit(X, Y, epochs=2, checkpoint=p, callbacks=[ModelCheckpoint(tmp_path / "b.st")],
              **KW)
    again = ModelCheckpoint(tmp_path / "b.st")
    mlp().fit(X, Y, epochs=4, resume=p, callbacks=[again], **KW)
    assert again.best_epoch == h.best_epoch
    assert (tmp_path / "b.st").read_bytes() == want


def test_model_checkpoint_errors():
    with pytest.raises(RuntimeError, match="set_model"):
        ModelCheckpoint("x.safetensors")({"epoch": 1, "val_accuracy": 0.5})
    with pytest.raises(ValueError, match="monitor 'val_acc'"):
        mlp().fit(X, Y, epochs=1, callbacks=[ModelCheckpoint("x.st", monitor="val_acc")], **KW)
    with pytest.raises(ValueError, match="mode"):
        ModelCheckpoint("x.st", mode="up")


# -- validation split and protocol -----------------------------------------------------------------


def test_validation_split_is_disjoint_reproducible_and_seeded():
    train, val = _core.split_indices(N, 250, 1)
    assert len(val) == N * 250 // 1000 and not set(train) & set(val)
    assert sorted(train + val) == list(range(N))
    assert _core.split_indices(N, 250, 1) == (train, val)
    assert _core.split_indices(N, 250, 2)[1] != val
    a = mlp()
    h = a.fit(X, Y, epochs=2, **KW)
    assert all(e["val_total"] == 96 and e["test_total"] == 100 for e in h.epochs)
    assert all(e["train_total"] == (N - 96) // 32 * 32 for e in h.epochs)
    # The validation metrics are those of the held-out rows.
    r = a.evaluate(X[val], Y[val])
    assert (r["correct"], r["loss_sum"]) == (h.epochs[-1]["val_correct"],
                                            h.epochs[-1]["val_loss_sum"])
    b = mlp()
    assert_same_run(a, b, h, b.fit(X, Y, epochs=2, **KW))
    c = mlp()
    c.fit(X, Y, epochs=2, **{**KW, "validation_seed": 2})
    assert_differs(a, c)


def test_validation_data_is_the_validation_set_and_test_data_is_only_reported():
    m = mlp()
    kw = {**KW, "validation_split": None}
    h = m.fit(X, Y, epochs=2, validation_data=(XT[:40], YT[:40]), **kw)
    last = h.epochs[-1]
    assert last["val_total"] == 40 and last["test_total"] == 100 and h.watched == "validation"
    assert last["train_total"] == N // 32 * 32
    h = mlp().fit(X, Y, epochs=2, **kw)
    assert h.watched is None and h.best_epoch is None and h.epochs[0]["val_accuracy"] is None


def test_paper_protocol_selects_on_the_test_set():
    m = mlp()
    h = m.fit(X, Y, epochs=3, paper_protocol=True, **{**KW, "validation_split": None})
    assert h.watched == "test" and all(e["val_total"] is None for e in h.epochs)
    assert all(e["train_total"] == N // 32 * 32 for e in h.epochs)
    fracs = [e["test_correct"] for e in h.epochs]
    assert h.best_epoch == 1 + fracs.index(max(fracs))


@pytest.mark.parametrize("kw,exc,words", [
    ({"plateau": True, "validation_split": None}, ValueError, "watch a validation set"),
    ({"early_stopping": True, "validation_split": None}, ValueError, "watch a validation set"),
    ({"paper_protocol": True, "test_data": None, "validation_split": None}, ValueError,
     "give test_data"),
    ({"paper_protocol": True}, ValueError, "validation_split=None"),
    ({"validation_data": (XT, YT)}, ValueError, "not both"),
    ({"validation_split": 0.0004}, ValueError, "1..999 thousandths"),
    ({"validation_split": 1.0}, ValueError, "1..999 thousandths"),
    ({"validation_split": "10%"}, TypeError, "fraction"),
    ({"test_data": XT}, TypeError, "x_test, y_test"),
    ({"checkpoint_every": 0}, ValueError, "checkpoint_every"),
    ({"checkpoint": "/no/such/dir/c.safetensors"}, FileNotFoundError, "does not exist"),
])
def test_bad_protocol_arguments(kw, exc, words):
    m = mlp()
    sd = m.state_dict()
    with pytest.raises(exc, match=words):
        m.fit(X, Y, epochs=1, **{**KW, **kw})
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])


def test_the_engine_refuses_a_plateau_without_a_watched_set():
    x = np.zeros((64, 6), np.int8)
    y = np.zeros(64, np.int64)
    with pytest.raises(nitrod_rs.ConfigError, match="validation set"):
        _core.Run(_core.TrainSettings(epochs=1, plateau=True), x, y, (1, 2, 3))
    with pytest.raises(nitrod_rs.ConfigError, match="test set"):
        _core.Run(_core.TrainSettings(epochs=1, plateau=True, select_on_test=True), x, y,
                  (1, 2, 3))
    run = _core.Run(_core.TrainSettings(epochs=1, plateau=True, select_on_test=True), x, y,
                    (1, 2, 3), x_test=x[:8], y_test=y[:8])
    assert run.watched == "test" and run.config["plateau"] and run.config["select_on_test"]


def _fnv_print(x: np.ndarray, y: np.ndarray, chw: tuple[int, int, int]) -> str:
    """The data fingerprint of algorithm.md's checkpoints, written out here as an oracle:
    FNV-1a over 64-bit words — rows and geometry, the pixels eight at a time (little-endian,
    the last word zero-padded), the labels."""
    mask, prime = (1 << 64) - 1, 0x100000001B3
    h = 0xCBF29CE484222325
    raw = x.tobytes()
    raw += bytes(-len(raw) % 8)
    words = [len(y), *chw, *np.frombuffer(raw, dtype="<u8").tolist(), *y.tolist()]
    for w in words:
        h = ((h ^ int(w)) * prime) & mask
    return f"{h:016x}"


def test_a_large_set_is_fingerprinted_while_it_is_copied(tmp_path):
    """From 1 MB of pixels a run's sets are fingerprinted on a thread beside their copy: the
    checkpoint holds the fingerprints of the oracle, the run resumes on the same data and
    refuses data with one pixel changed."""
    import json
    import struct
    rng = np.random.default_rng(8)
    x = rng.integers(-127, 128, size=(1400, 784), dtype=np.int8)  # 1.1 MB
    y = rng.integers(0, 10, size=1400).astype(np.int64)
    chw = (1, 28, 28)
    settings = _core.TrainSettings(epochs=2, batch_size=200, lr_inv=512, seed=2)
    m, run = _core.Model.mlp(784, [16], 10, seed=1), _core.Run(settings, x, y, chw,
                                                              x_test=x[:700], y_test=y[:700])
    run.epoch(m)
    p = tmp_path / "ck.safetensors"
    run.save_checkpoint(m, p)
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    data = json.loads(json.loads(raw[8:8 + n])["__metadata__"]["checkpoint"])["data"]
    assert data["train"] == {"rows": 1400, "fingerprint": _fnv_print(x, y, chw)}
    assert data["test"] == {"rows": 700, "fingerprint": _fnv_print(x[:700], y[:700], chw)}
    _, again = _core.Run.from_checkpoint(p, x, y, chw, x_test=x[:700], y_test=y[:700])
    assert again.epochs_done == 1
    changed = x.copy()
    changed[1399, 783] ^= 1
    with pytest.raises(Exception, match="training set"):
        _core.Run.from_checkpoint(p, changed, y, chw, x_test=x[:700], y_test=y[:700])
