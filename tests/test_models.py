"""nitrod_rs.MLP: learning on real data, exact steps, persistence, presets, bad inputs."""

from __future__ import annotations

import time

import numpy as np
import pytest

import nitrod_rs
from nitrod_rs import MLP

LAYERS = ["linear_encoder_00", "linear_pred_00", "linear_encoder_01", "linear_pred_01",
          "linear_encoder_02", "linear_pred_02", "linear_03"]


def small_data(n=256, features=784, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(-127, 128, size=(n, features), dtype=np.int8)
    y = rng.integers(0, classes, size=n).astype(np.int64)
    return x, y


# -- learning on real data ----------------------------------------------------------------------


def test_fit_learns_fashion_mnist_subset(fmnist):
    x, y = fmnist.x_train[:12000], fmnist.y_train[:12000]
    model = MLP([784, 100, 10], seed=0)
    start = time.monotonic()
    history = model.fit(x, y, epochs=3, lr_inv=256, lr_amp_factor=64,
                        validation_data=(fmnist.x_test, fmnist.y_test), progress=False)
    elapsed = time.monotonic() - start
    result = model.evaluate(fmnist.x_test, fmnist.y_test)
    assert result["accuracy"] > 0.70, result
    assert elapsed < 60, f"took {elapsed:.1f}s"
    # History is complete and consistent with evaluate (same engine, same bits).
    assert len(history) == 3 and not history.cancelled
    assert history.epochs[-1]["val_correct"] == result["correct"]
    assert history.epochs[-1]["val_loss_sum"] == result["loss_sum"]
    assert history.epochs[-1]["val_loss"] == pytest.approx(result["loss"])
    assert history["epoch"] == [1, 2, 3]
    assert all(len(e["block_accuracy"]) == 1 for e in history.epochs)
    assert history.epochs[-1]["train_accuracy"] > 0.6
    # Normalisation statistics were fitted on the training data and stored (docs/algorithm.md §2).
    mean, mad = model.normalization
    assert abs(mean[0] - (-54)) <= 3 and abs(mad[0] - 82) <= 3
    pred = model.predict(fmnist.x_test[:500])
    assert pred.dtype == np.int64 and pred.shape == (500,)
    logits = model.predict_logits(fmnist.x_test[:500])
    assert logits.dtype == np.int8 and logits.shape == (500, 10)
    np.testing.assert_array_equal(pred, logits.argmax(axis=1))
    d = history.to_dict()
    assert d["epochs"][0]["epoch"] == 1 and d["best_val_accuracy"] == history.best_val_accuracy


# -- train_batch is exactly one step of fit ------------------------------------------------------


@pytest.mark.parametrize("dropout,decays,uint8", [(0, (0, 0), False), (10, (10000, 8000), False),
                                                  (0, (10000, 8000), True)])
def test_train_batch_equals_fit_without_shuffle(dropout, decays, uint8):
    if uint8:
        rng = np.random.default_rng(1)
        x = rng.integers(0, 256, size=(256, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=256)
    else:
        x, y = small_data()
    kw = dict(lr_inv=64, lr_amp_factor=8, fwd_decay_inv=decays[0], subnet_decay_inv=decays[1])
    a = MLP([784, 32, 16, 10], dropout=dropout, seed=3)
    b = MLP([784, 32, 16, 10], dropout=dropout, seed=3)
    assert all((a.state_dict()[k] == b.state_dict()[k]).all() for k in a.state_dict())
    a.fit(x, y, epochs=1, batch_size=64, shuffle=False, progress=False, **kw)
    if uint8:
        b.fit_normalization(x)
    changed = False
    before = b.state_dict()
    for i in range(4):
        stats = b.train_batch(x[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64], **kw)
        assert stats["total"] == 64 and len(stats["block_correct"]) == 2
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
        changed |= bool((sb[k] != before[k]).any())
    assert changed
    # Training history of fit agrees with the per-step statistics too.
    assert a.hyper == b.hyper


def test_golden_fixture_from_python(golden):
    """docs/algorithm.md §11: 100 steps of the original implementation, reproduced bit for bit."""
    model = MLP([784, 200, 100, 50, 10], seed=12345)
    model.load_state_dict({k: golden[f"init/{k}"] for k in LAYERS})
    x, y = golden["x"], golden["y"]
    bs = int(golden["batch_size"])
    for step in range(1, 101):
        model.train_batch(x[(step - 1) * bs:step * bs], y[(step - 1) * bs:step * bs],
                          lr_inv=512, lr_amp_factor=640, fwd_decay_inv=10000,
                          subnet_decay_inv=8000)
        if step in (1, 10, 100):
            sd = model.state_dict()
            for k in LAYERS:
                diff = int((sd[k] != golden[f"after_{step}/{k}"]).sum())
                assert diff == 0, f"{k} differs in {diff} entries after step {step}"


def test_state_dict_replays_a_trajectory():
    x, y = small_data(192)
    a = MLP([784, 24, 10], seed=5)
    init = a.state_dict()
    for i in range(3):
        a.train_batch(x[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64])
    b = MLP([784, 24, 10], seed=99)
    b.load_state_dict(init)
    for i in range(3):
        b.train_batch(x[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64])
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])
    # state_dict returns copies with exact dtypes.
    sd = a.state_dict()
    assert all(v.dtype == np.int32 for v in sd.values())
    sd["linear_01"][:] = 0
    assert (a.state_dict()["linear_01"] != 0).any()


# -- persistence -------------------------------------------------------------------------------


def test_save_load_roundtrip_and_safetensors(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(256, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=256)
    model = MLP([784, 40, 20, 10], seed=1, bias=True)
    model.fit(x, y, epochs=1, progress=False, fwd_decay_inv=1000)
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = nitrod_rs.load(path)
    assert loaded.config == model.config and loaded.hyper == model.hyper
    assert loaded.normalization == model.normalization
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, loaded.state_dict()[k])
        assert loaded.state_dict()[k].dtype == np.int32
    np.testing.assert_array_equal(model.predict_logits(x), loaded.predict_logits(x))
    tensors = safetensors_numpy.load_file(str(path))
    assert set(tensors) == set(model.state_dict())
    for k, v in tensors.items():
        assert v.dtype == np.int32
        np.testing.assert_array_equal(v, model.state_dict()[k])
    assert MLP.from_bytes(model.to_bytes()).state_dict().keys() == model.state_dict().keys()
    # No temporary files are left behind by the atomic write.
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        nitrod_rs.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(nitrod_rs.FormatError):
        nitrod_rs.load(bad)
    good = MLP([16, 8, 4]).to_bytes()
    for cut in (4, 20, len(good) // 2, len(good) - 1):
        with pytest.raises(nitrod_rs.NitroError):
            MLP.from_bytes(good[:cut])
    assert issubclass(nitrod_rs.FormatError, ValueError)


# -- presets -----------------------------------------------------------------------------------


def test_presets_follow_spec_section_7():
    m, s = nitrod_rs.presets.mlp2()
    assert m.layers == [784, 200, 100, 50, 10]
    assert (s["fwd_decay_inv"], s["subnet_decay_inv"]) == (10000, 8000)
    assert s["lr_inv"] == 512 and s["lr_amp_factor"] == 640 and s["batch_size"] == 64
    assert s["epochs"] == 150 and s["plateau"] and s["early_stopping"] and not s["augment"]
    m1, s1 = nitrod_rs.presets.mlp1()
    assert m1.layers == [784, 100, 50, 10] and s1["fwd_decay_inv"] == 12000
    m3, s3 = nitrod_rs.presets.mlp3("fashion-mnist")
    assert m3.layers == [784, 1024, 1024, 1024, 10] and s3["fwd_decay_inv"] == 29000
    assert s3["augment"] == (2, True)
    assert nitrod_rs.presets.mlp3("mnist")[1]["augment"] == (2, False)
    m4, s4 = nitrod_rs.presets.mlp4()
    assert m4.layers == [784 * 0 + 3072, 3000, 3000, 3000, 10] and m4.config["dropout_pct"] == 10
    assert s4["augment"] == (4, True) and s4["subnet_decay_inv"] == 7500


def test_fit_with_augmentation_plateau_and_callbacks():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, size=(128, 8, 8), dtype=np.uint8)
    y = rng.integers(0, 3, size=128)
    model = MLP([64, 16, 3], seed=0)
    seen = []
    h = model.fit(x, y, epochs=5, batch_size=32, augment=True, plateau=True,
                  early_stopping=True, validation_data=(x, y), progress=False,
                  callbacks=[lambda e: seen.append(e["epoch"]) or e["epoch"] == 2])
    assert seen == [1, 2] and len(h) == 2 and h.cancelled


def test_plain_progress_bar_is_readable(capsys):
    x, y = small_data(128)
    MLP([784, 8, 10]).fit(x, y, epochs=2, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "100%" in err


# -- bad inputs ---------------------------------------------------------------------------------

X, Y = small_data(128)
U8 = np.zeros((128, 28, 28), np.uint8)


def _fit(x=X, y=Y, **kw):
    return lambda m: m.fit(x, y, progress=False, **{"epochs": 1, **kw})


BAD_INPUTS = {
    "x list of normalised values": (_fit(x=X.tolist()), ValueError, r"astype\(np.int8\)"),
    "x standardised float": (_fit(x=X.astype(np.float32)), ValueError, "float values in"),
    "x int16 normalised": (_fit(x=X.astype(np.int16)), ValueError, r"astype\(np.int8\)"),
    "x 1-D": (_fit(x=X.ravel()), ValueError, "1-dimensional"),
    "x 5-D": (_fit(x=X.reshape(128, 1, 1, 28, 28)), ValueError, "N x C x H x W"),
    "x wrong features": (_fit(x=X[:, :700].copy()), ValueError, "expects 784"),
    "x empty": (_fit(x=X[:0]), ValueError, "empty"),
    "y float": (_fit(y=Y.astype(float)), TypeError, "integer"),
    "y bool": (_fit(y=Y > 3), TypeError, "integer"),
    "y 2-D": (_fit(y=Y.reshape(64, 2)), ValueError, "1-dimensional"),
    "y length": (_fit(y=Y[:100]), ValueError, "labels"),
    "y too large": (_fit(y=np.full(128, 10)), ValueError, "0..9"),
    "y negative": (_fit(y=np.full(128, -1)), ValueError, "0..9"),
    "epochs 0": (_fit(epochs=0), ValueError, "epochs"),
    "batch too large": (_fit(batch_size=1000), ValueError, "fewer than one batch"),
    "bad lr_inv": (_fit(lr_inv=0), ValueError, "lr_inv"),
    "bad compat": (_fit(compat="nope"), ValueError, "compat"),
    "bad validation": (_fit(validation_data=(X, Y[:3])), ValueError, "labels"),
    "uint8 without stats": (lambda m: m.predict(U8), ValueError, "normalisation"),
    "predict standardised float": (lambda m: m.predict(X.astype(np.float64)), ValueError,
                                   "float values in"),
    "evaluate labels": (lambda m: m.evaluate(X, Y[:5]), ValueError, "labels"),
    "train_batch shape": (lambda m: m.train_batch(X[:, :10].copy(), Y), ValueError, "784"),
    "state dtype": (lambda m: m.load_state_dict(
        {k: v.astype(np.int64) for k, v in m.state_dict().items()}), TypeError, "int32"),
    "state shape": (lambda m: m.load_state_dict(
        {k: v[:1] for k, v in m.state_dict().items()}), ValueError, "shape"),
    "state keys": (lambda m: m.load_state_dict({}), ValueError, "missing"),
    "state type": (lambda m: m.load_state_dict([1, 2]), TypeError, "mapping"),
    "threads 0": (lambda m: m.predict(X, threads=0), ValueError, "threads"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_inputs_raise_documented_exceptions(name):
    call, exc, words = BAD_INPUTS[name]
    model = MLP([784, 16, 10], seed=0)
    before = model.state_dict()
    with pytest.raises(exc, match=words):
        call(model)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("kwargs,exc", [
    (dict(layers=[784]), ValueError), (dict(layers="784"), TypeError),
    (dict(layers=[784, 0, 10]), ValueError), (dict(activation="relu"), ValueError),
    (dict(dropout=7), ValueError), (dict(dropout=1.5), ValueError), (dict(slope=6), ValueError),
    (dict(seed=-1), ValueError), (dict(init="he"), ValueError), (dict(layers=[784, 10.5]), TypeError),
])
def test_bad_constructor_arguments(kwargs, exc):
    with pytest.raises(exc):
        MLP(**kwargs)


# -- threads, fork safety, plotting ---------------------------------------------------------------


def test_same_bits_on_any_thread_count():
    x, y = small_data(512)
    states = []
    for threads in (1, 2, None):
        m = MLP([784, 48, 24, 10], seed=7)
        m.fit(x, y, epochs=2, progress=False, threads=threads, fwd_decay_inv=5000)
        states.append(m.state_dict())
    for s in states[1:]:
        for k in s:
            np.testing.assert_array_equal(s[k], states[0][k])


def test_forked_child_can_use_the_engine():
    import multiprocessing as mp

    x, y = small_data(256)
    model = MLP([784, 32, 10], seed=0)
    model.fit(x, y, epochs=1, progress=False)  # starts the global rayon pool in the parent
    expected = model.predict(x)
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_predict_in_child, (model.to_bytes(), x)).get(timeout=60)
    np.testing.assert_array_equal(got, expected)


def test_forked_child_after_explicit_thread_counts():
    """Pools built for ``threads=N`` are kept for later calls; a forked child must not use the
    parent's (they have no threads there) and still gets the same bits."""
    import multiprocessing as mp

    x, y = small_data(256)
    model = MLP([784, 32, 10], seed=1)
    for threads in (1, 2, 2, 1):  # builds, then reuses, the 1- and 2-thread pools
        model.fit(x, y, epochs=1, progress=False, threads=threads)
    expected = model.predict(x, threads=2)
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_predict_threads_in_child, (model.to_bytes(), x)).get(timeout=60)
    np.testing.assert_array_equal(got, expected)


def _predict_threads_in_child(data, x):
    m = MLP.from_bytes(data)
    m.fit(x, np.zeros(len(x), dtype=np.int64), epochs=1, progress=False, threads=2)
    return MLP.from_bytes(data).predict(x, threads=2)


def _predict_in_child(data, x):
    m = MLP.from_bytes(data)
    m.fit(x, np.zeros(len(x), dtype=np.int64), epochs=1, progress=False)  # uses the pool
    return MLP.from_bytes(data).predict(x)


def test_history_plot(tmp_path):
    x, y = small_data(128)
    h = MLP([784, 8, 10]).fit(x, y, epochs=2, validation_data=(x, y), progress=False)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install matplotlib"):
            h.plot(tmp_path / "c.png")
    else:
        h.plot(tmp_path / "c.png")
        assert (tmp_path / "c.png").stat().st_size > 0


def test_callback_exception_propagates_with_history():
    x, y = small_data(128)
    model = MLP([784, 8, 10])

    def boom(entry):
        raise RuntimeError(f"stop at {entry['epoch']}")

    with pytest.raises(RuntimeError, match="stop at 1") as info:
        model.fit(x, y, epochs=3, progress=False, callbacks=[boom])
    assert model.history is not None and len(model.history) == 1
    assert info.value.history is model.history  # type: ignore[attr-defined]


def test_save_into_missing_directory_is_oserror(tmp_path):
    with pytest.raises(OSError):
        MLP([16, 4, 2]).save(tmp_path / "no" / "such" / "dir" / "m.safetensors")
