"""fit as a Keras user expects it: preset settings with keyword overrides, default epochs,
verbose, validation_data as a list, validation_split=0, initial_epoch (continuing a run bit for
bit), lr_inv schedules and the plateau / early-stopping settings; History.history; scores,
score, summary, the tie rule; the hyper-parameters explained in words."""

from __future__ import annotations

import re

import numpy as np
import pytest

import nitrod_rs
from nitrod_rs import MLP, History, presets

RNG = np.random.default_rng(2)
X = RNG.integers(0, 256, size=(160, 8, 8), dtype=np.uint8)
Y = RNG.integers(0, 3, size=160)
XV = RNG.integers(0, 256, size=(40, 8, 8), dtype=np.uint8)
YV = RNG.integers(0, 3, size=40)
KW = dict(batch_size=32, lr_inv=64, lr_amp_factor=8, progress=False)


def mlp(seed: int = 0) -> MLP:
    return MLP([64, 12, 3], seed=seed)


def same_state(a: MLP, b: MLP) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])


# -- preset settings and keyword overrides -------------------------------------------------------


def test_preset_settings_with_a_keyword_override():
    model, settings = presets.mlp1()
    assert settings["epochs"] == 150
    x = RNG.integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
    y = RNG.integers(0, 10, size=64)
    h = model.fit(x, y, settings=settings, epochs=1, batch_size=16, progress=False)
    assert len(h) == 1 and h.watched == "validation"  # the preset's validation split
    # The preset's SGD settings were used; only the overridden ones changed.
    assert model.hyper["fwd_decay_inv"] == settings["fwd_decay_inv"]
    assert h.epochs[0]["train_total"] == 64 * 9 // 10 // 16 * 16


def test_preset_functions_take_overrides():
    _, s = presets.mlp2(epochs=3, lr_inv=1024)
    assert s["epochs"] == 3 and s["lr_inv"] == 1024
    _, s = presets.preset("small-cnn", epochs=2, plateau=False)
    assert s["epochs"] == 2 and s["plateau"] is False
    with pytest.raises(TypeError, match="not keyword arguments of fit"):
        presets.mlp1(epoch=3)
    with pytest.raises(ValueError, match=r"seed must be an integer in 0..18446744073709551615"):
        presets.mlp1(seed=2**64)


def test_settings_must_be_fit_keywords():
    with pytest.raises(TypeError, match="not keyword arguments of fit: nope"):
        mlp().fit(X, Y, settings={"nope": 1}, **KW)
    with pytest.raises(TypeError, match="settings must be a mapping"):
        mlp().fit(X, Y, settings=[("epochs", 1)], **KW)


def test_default_epochs_is_one():
    assert len(mlp().fit(X, Y, **KW)) == 1


# -- display -------------------------------------------------------------------------------------


def test_verbose_levels(capsys):  # type: ignore[no-untyped-def]
    kw = {k: v for k, v in KW.items() if k != "progress"}
    mlp().fit(X, Y, epochs=2, verbose=0, **kw)
    assert capsys.readouterr().err == ""
    mlp().fit(X, Y, epochs=2, verbose=2, **kw)
    err = capsys.readouterr().err
    assert "epoch 1/2: train acc" in err and "epoch 2/2: train acc" in err
    assert "batches" not in err  # no progress bar
    mlp().fit(X, Y, epochs=1, verbose=1, **kw)
    assert "batches" in capsys.readouterr().err
    with pytest.raises(ValueError, match="disagree"):
        mlp().fit(X, Y, verbose=0, progress=True, **kw)
    with pytest.raises(ValueError, match=r"verbose must be an integer in 0..2"):
        mlp().fit(X, Y, verbose=3, **kw)


# -- sets ----------------------------------------------------------------------------------------


def test_validation_data_as_list_and_split_zero():
    a = mlp().fit(X, Y, epochs=1, validation_data=[XV, YV], **KW)
    b = mlp().fit(X, Y, epochs=1, validation_data=(XV, YV), **KW)
    assert a.epochs[0]["val_correct"] == b.epochs[0]["val_correct"] and a.watched == "validation"
    h = mlp().fit(X, Y, epochs=1, validation_split=0, **KW)
    assert h.watched is None and h.epochs[0]["train_total"] == 160
    with pytest.raises(TypeError, match=r"pair \(x_val, y_val\), got a sequence of 3"):
        mlp().fit(X, Y, validation_data=(XV, YV, None), **KW)


# -- initial_epoch: continuing a run ---------------------------------------------------------------


def test_initial_epoch_continues_the_last_fit_bit_for_bit():
    whole = mlp()
    hw = whole.fit(X, Y, epochs=4, validation_data=(XV, YV), fwd_decay_inv=3000, **KW)
    part = mlp()
    part.fit(X, Y, epochs=2, validation_data=(XV, YV), fwd_decay_inv=3000, **KW)
    hp = part.fit(X, Y, epochs=4, initial_epoch=2, validation_data=(XV, YV),
                  fwd_decay_inv=3000, **KW)
    same_state(whole, part)
    assert hp["epoch"] == [1, 2, 3, 4]
    assert hp["val_correct"] == hw["val_correct"] and hp["lr_inv"] == hw["lr_inv"]


def test_initial_epoch_errors():
    with pytest.raises(ValueError, match="it has none: pass resume="):
        mlp().fit(X, Y, epochs=3, initial_epoch=1, **KW)
    m = mlp()
    m.fit(X, Y, epochs=2, **KW)
    with pytest.raises(ValueError, match="completed 2 epochs: pass initial_epoch=2"):
        m.fit(X, Y, epochs=3, initial_epoch=1, **KW)
    with pytest.raises(ValueError, match="lr_inv"):  # the settings must be the run's
        m.fit(X, Y, epochs=3, initial_epoch=2, **{**KW, "lr_inv": 128})


def test_initial_epoch_with_resume_must_match_the_checkpoint(tmp_path):  # type: ignore[no-untyped-def]
    p = tmp_path / "run.safetensors"
    mlp().fit(X, Y, epochs=2, checkpoint=p, **KW)
    with pytest.raises(ValueError, match="has completed 2 epochs: pass initial_epoch=2"):
        mlp().fit(X, Y, epochs=3, resume=p, initial_epoch=1, **KW)
    h = mlp().fit(X, Y, epochs=3, resume=p, initial_epoch=2, **KW)
    assert h["epoch"] == [1, 2, 3]


# -- schedules, plateau and early stopping -------------------------------------------------------


@pytest.mark.parametrize("schedule,want", [
    (("halving", 1, 256), [64, 128, 256, 256]),
    (("linear", 50, 150), [64, 96, 128, 150]),
    ({"kind": "exponential", "pct": 100, "max": 400}, [64, 128, 256, 400]),
    (None, [64, 64, 64, 64]),
    ("constant", [64, 64, 64, 64]),
])
def test_lr_schedules_reach_the_engine(schedule, want):  # type: ignore[no-untyped-def]
    h = mlp().fit(X, Y, epochs=4, lr_schedule=schedule, **KW)
    assert h["lr_inv"] == want


def test_a_scheduled_run_resumes_bit_for_bit(tmp_path):  # type: ignore[no-untyped-def]
    p = tmp_path / "run.safetensors"
    kw = dict(lr_schedule=("halving", 2, 512), **KW)
    whole = mlp()
    whole.fit(X, Y, epochs=4, **kw)
    part = mlp()
    part.fit(X, Y, epochs=2, checkpoint=p, **kw)
    h = part.fit(X, Y, epochs=4, resume=p, **kw)
    same_state(whole, part)
    assert h["lr_inv"] == [64, 64, 128, 128]
    with pytest.raises(ValueError, match="schedule"):
        mlp().fit(X, Y, epochs=4, resume=p, **{**kw, "lr_schedule": ("halving", 1, 512)})


@pytest.mark.parametrize("schedule,exc,words", [
    (("step", 1, 100), ValueError, "kind must be one of linear, exponential, halving"),
    (("halving", 0, 100), ValueError, r"lr_schedule every must be an integer in 1.."),
    (("halving", 2**32, 100), ValueError, r"every must be an integer in 1..4294967295"),
    (("linear", 10, 32), ValueError, "below the starting lr_inv=64"),
    (("linear", 10, 2**62), ValueError, "not a usable lr_inv"),
    ({"kind": "linear", "every": 3, "max": 100}, ValueError, "takes 'kind', 'pct' and 'max'"),
    (5, TypeError, r"\('halving', every, max\)"),
])
def test_bad_schedules(schedule, exc, words):  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=words):
        mlp().fit(X, Y, epochs=2, lr_schedule=schedule, **KW)


def test_plateau_settings_reach_the_engine():
    """``min_delta`` 100 points is never reached: from ``start_epoch`` 1 with ``patience`` 1,
    every epoch after the first multiplies ``lr_inv`` by ``factor``."""
    h = mlp().fit(X, Y, epochs=4, validation_data=(XV, YV),
                  plateau={"patience": 1, "factor": 2, "start_epoch": 1, "min_delta": 100}, **KW)
    assert h["lr_inv"] == [64, 64, 128, 256] and not h.early_stopped
    # The paper's settings: nothing happens in 4 epochs.
    assert mlp().fit(X, Y, epochs=4, validation_data=(XV, YV), plateau=True,
                     **KW)["lr_inv"] == [64] * 4


def test_early_stopping_settings_reach_the_engine():
    h = mlp().fit(X, Y, epochs=10, validation_data=(XV, YV),
                  early_stopping={"patience": 2, "start_epoch": 1, "min_delta": 100}, **KW)
    assert len(h) == 3 and h.early_stopped and h["lr_inv"] == [64] * 3


@pytest.mark.parametrize("kw,exc,words", [
    ({"plateau": True}, ValueError, "watch a validation set"),
    ({"early_stopping": {"patience": 3}}, ValueError, "watch a validation set"),
    ({"plateau": {"patience": 2}, "validation_split": 0}, ValueError, "watch a validation set"),
    ({"plateau": {"factor": 1}, "validation_data": (XV, YV)}, ValueError,
     r"plateau\['factor'\] must be an integer in 2.."),
    ({"plateau": {"wait": 1}, "validation_data": (XV, YV)}, ValueError, "no setting 'wait'"),
    ({"plateau": {"min_delta": 1}, "early_stopping": {"min_delta": 2},
      "validation_data": (XV, YV)}, ValueError, "differ"),
    ({"plateau": "yes", "validation_data": (XV, YV)}, TypeError, "True, False or a dict"),
    ({"early_stopping": {"patience": 2**32}, "validation_data": (XV, YV)}, ValueError,
     r"0..4294967295"),
])
def test_bad_watch_settings(kw, exc, words):  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=words):
        mlp().fit(X, Y, epochs=2, **kw, **KW)


# -- History --------------------------------------------------------------------------------------


def test_history_is_keras_like():
    h = mlp().fit(X, Y, epochs=2, validation_data=(XV, YV), **KW)
    hh = h.history
    assert isinstance(hh, dict) and all(isinstance(v, list) and len(v) == 2 for v in hh.values())
    assert hh["loss"] == hh["train_loss"] and hh["accuracy"] == hh["train_accuracy"]
    assert hh["val_accuracy"] == h["val_accuracy"] and "val_loss" in hh
    assert "test_accuracy" not in hh and "val_loss" in h and "test_loss" not in h
    with pytest.raises(KeyError):
        hh["test_accuracy"]
    with pytest.raises(KeyError, match="'val_acc' is not an entry"):
        h["val_acc"]
    assert h["test_accuracy"] == [None, None]  # an entry, not measured in this run
    assert h.epoch == [1, 2]
    with pytest.raises(KeyError):
        History()["nope"]
    assert History()["val_accuracy"] == [] and History().history == {}


# -- scores, ties, score, summary ----------------------------------------------------------------


def test_predict_scores_and_decision_function():
    m = mlp()
    m.fit(X, Y, epochs=1, **KW)
    s = m.predict_scores(X)
    assert s.dtype == np.int8 and s.shape == (160, 3)
    np.testing.assert_array_equal(m.decision_function(X), s)
    np.testing.assert_array_equal(m.predict_logits(X), s)
    np.testing.assert_array_equal(m.predict(X), s.argmax(axis=1))
    assert m.score(X, Y) == m.evaluate(X, Y)["accuracy"]
    assert m.score(X, Y) == pytest.approx(float((s.argmax(axis=1) == Y).mean()))


def test_ties_go_to_the_lowest_class():
    m = MLP([64, 4, 5], seed=0)
    m.fit_normalization(X)
    m.load_state_dict({k: np.zeros_like(v) for k, v in m.state_dict().items()})
    assert (m.predict_scores(X) == 0).all()  # every class ties
    assert (m.predict(X) == 0).all()
    assert m.evaluate(X, np.zeros(160, np.int64))["correct"] == 160
    assert "lowest index" in " ".join((m.predict.__doc__ or "").split())


def test_summary_lists_layers_shapes_parameters_and_bits():
    out: list[str] = []
    m = MLP([64, 12, 3], bias=True)
    text = m.summary(print_fn=out.append)
    assert out == [text]
    for name, shape in m._m.parameter_shapes():
        if "." not in name:
            assert name in text
    assert f"total parameters: {m.num_parameters:,}" in text
    assert re.search(r"linear_encoder_00 .* 12 int8 .* 780 .* int32, \d+ bits used", text)
    assert "lowest index on ties" in text
    c = nitrod_rs.CNN([4, "M"], [8], input_shape=(1, 8, 8), dropout=10)
    text = c.summary(print_fn=lambda s: None)
    assert "conv_encoder_00" in text and "4 x 8 x 8 int8" in text and "max-pool 2" in text
    assert "dropout 10%" in text and "linear_pred_00" in text
    assert f"total parameters: {c.num_parameters:,}" in text


# -- hyper-parameters explained in words ---------------------------------------------------------


@pytest.mark.parametrize("name,words", [
    ("lr_inv", "inverse learning rate"),
    ("lr_amp_factor", "forward layer"),
    ("fwd_decay_inv", "weight decay"),
    ("subnet_decay_inv", "learning heads"),
    ("compat", "original implementation"),
    ("lr_schedule", "doubles"),
    ("plateau", "patience"),
    ("initial_epoch", "continues"),
])
def test_fit_docstring_explains_each_setting_in_words(name, words):  # type: ignore[no-untyped-def]
    doc = " ".join((MLP.fit.__doc__ or "").split())
    after = [m.end() for m in re.finditer(f"``{name}", doc)]
    assert any(words in doc[i:i + 400] for i in after), name
