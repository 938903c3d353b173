"""nitrod_rs.CNN: the golden fixture, persistence, presets, bad inputs, learning on real data."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import nitrod_rs
from nitrod_rs import CNN, presets

FIXTURE_LAYERS = ["conv_encoder_00", "linear_pred_00", "conv_encoder_02", "linear_pred_02",
                  "linear_encoder_04", "linear_pred_04", "linear_05"]


def tiny_cnn(**kw):  # type: ignore[no-untyped-def]
    return CNN([8, "M", 16, "M"], [32], decoder_dim=784, **kw)


def random_images(n=64, shape=(1, 28, 28), seed=0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    return x, y


# -- the golden fixture (docs/algorithm.md §11, §12 compatibility mode), from Python ----------------------


def test_golden_cnn_fixture_from_python(golden_cnn):  # type: ignore[no-untyped-def]
    g = golden_cnn
    hyper = json.loads(str(g["hyper"]))
    model = CNN([8, "M", 16, "M"], hyper["classifier"], decoder_dim=hyper["decoder_dim"],
                compat="reference")
    assert [n for n, _ in model._m.parameter_shapes()] == sorted(
        FIXTURE_LAYERS, key=lambda n: (not n.startswith("conv"), FIXTURE_LAYERS.index(n)))
    model.load_state_dict({k: g[f"init/{k}"] for k in FIXTURE_LAYERS})
    bs = int(g["batch_size"])
    x, y = g["x"], g["y"]
    for step in range(1, 21):
        sl = slice((step - 1) * bs, step * bs)
        model.train_batch(x[sl], y[sl], lr_inv=hyper["lr_inv"],
                          lr_amp_factor=hyper["lr_amp_factor"],
                          fwd_decay_inv=hyper["fwd_decay_inv"],
                          subnet_decay_inv=hyper["subnet_decay_inv"], compat="reference")
        if f"after_{step}/linear_05" in g.files:
            state = model.state_dict()
            for k in FIXTURE_LAYERS:
                np.testing.assert_array_equal(state[k], g[f"after_{step}/{k}"],
                                              err_msg=f"{k} after {step} steps")
    assert model.hyper is not None and model.hyper["compat"] == "reference"


def test_golden_cnn_fixture_detects_a_change(golden_cnn):  # type: ignore[no-untyped-def]
    # The same replay in the exact mode must differ: the test above can fail.
    g = golden_cnn
    model = CNN([8, "M", 16, "M"], [32], decoder_dim=784)
    model.load_state_dict({k: g[f"init/{k}"] for k in FIXTURE_LAYERS})
    for step in range(5):
        sl = slice(64 * step, 64 * (step + 1))
        model.train_batch(g["x"][sl], g["y"][sl], fwd_decay_inv=10000, subnet_decay_inv=3000,
                          compat="exact")
    state = model.state_dict()
    assert any(not np.array_equal(state[k], g[f"after_5/{k}"]) for k in FIXTURE_LAYERS)


# -- persistence ------------------------------------------------------------------------------


def test_cnn_save_load_roundtrip(tmp_path):  # type: ignore[no-untyped-def]
    x, y = random_images(128)
    model = tiny_cnn(dropout=10, seed=3)
    model.fit(x, y, epochs=1, batch_size=32, progress=False, fwd_decay_inv=10000,
              subnet_decay_inv=3000, augment=True)
    p = tmp_path / "cnn.safetensors"
    model.save(p)
    back = nitrod_rs.load(p)
    assert isinstance(back, CNN)
    assert back.config == model.config
    assert back.hyper == model.hyper and back.normalization == model.normalization
    np.testing.assert_array_equal(back.predict_logits(x), model.predict_logits(x))
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)
    # Bytes round trip, and nitrod_rs.load still loads MLPs.
    again = nitrod_rs.from_bytes(model.to_bytes())
    assert isinstance(again, CNN)
    # (The safetensors metadata map has no fixed key order, so compare contents, not bytes.)
    assert dict(nitrod_rs._core.read_metadata(again.to_bytes())) == dict(
        nitrod_rs._core.read_metadata(model.to_bytes()))
    np.testing.assert_array_equal(again.predict_logits(x), model.predict_logits(x))
    mlp = nitrod_rs.MLP([784, 10])
    mlp.save(tmp_path / "mlp.safetensors")
    assert isinstance(nitrod_rs.load(tmp_path / "mlp.safetensors"), nitrod_rs.MLP)
    # Training continues identically from a loaded copy (without dropout: the dropout
    # generator's position is not part of the file).
    plain = tiny_cnn()
    plain.fit(x, y, epochs=1, batch_size=32, progress=False)
    plain.save(tmp_path / "plain.safetensors")
    copy = nitrod_rs.load(tmp_path / "plain.safetensors")
    for _ in range(2):
        assert plain.train_batch(x[:32], y[:32]) == copy.train_batch(x[:32], y[:32])
    for k, v in plain.state_dict().items():
        np.testing.assert_array_equal(copy.state_dict()[k], v)


def test_cnn_int8_and_nchw_inputs_agree():  # type: ignore[no-untyped-def]
    x, y = random_images(64)
    model = tiny_cnn()
    model.fit_normalization(x)
    mean, mad = model.normalization  # type: ignore[misc]
    xn = nitrod_rs._core.normalize(x.reshape(64, -1), mean, mad).reshape(64, 1, 28, 28)
    np.testing.assert_array_equal(model.predict_logits(x), model.predict_logits(xn))
    np.testing.assert_array_equal(model.predict_logits(x[:, 0]), model.predict_logits(x))


# -- presets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,dataset,shape,decays,dropout,augment", [
    ("vgg8b", "mnist", (1, 28, 28), (30000, 3000), 0, (2, False)),
    ("vgg8b", "fashion-mnist", (1, 28, 28), (28000, 3500), 10, (2, True)),
    ("vgg8b", "cifar10", (3, 32, 32), (25000, 3000), 15, (4, True)),
    ("vgg11b", "cifar10", (3, 32, 32), (28000, 4500), 0, (4, True)),
    ("small_cnn", "fashion-mnist", (1, 28, 28), (28000, 3500), 0, (2, True)),
])
def test_cnn_presets_follow_spec_section_7(name, dataset, shape, decays, dropout,
                                           augment):  # type: ignore[no-untyped-def]
    model, settings = getattr(presets, name)(dataset)
    assert isinstance(model, CNN)
    assert model.input_shape == shape
    assert (settings["fwd_decay_inv"], settings["subnet_decay_inv"]) == decays
    assert settings["augment"] == augment
    assert model.config["dropout_pct"] == dropout
    assert settings["lr_inv"] == 512 and settings["lr_amp_factor"] == 640
    assert settings["batch_size"] == 64 and settings["plateau"] and settings["early_stopping"]
    if name != "small_cnn":
        assert model.config["decoder_dim"] == 4096 and model.config["classifier"] == [1024]
        heads = model.head_geometries()
        # docs/algorithm.md §4.1: first block 128×d×d with decoder 4096.
        d = shape[1]
        assert heads[0]["features"] <= 4096
        if d == 28:
            assert heads[0]["kernel"] == (8, 4) and heads[0]["padding"] == (4, 0)
            assert heads[0]["features"] == 3584


# -- bad inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    np.zeros((4, 784), np.uint8),            # rows, not images
    np.zeros((4, 3, 28, 28), np.uint8),      # wrong channels
    np.zeros((4, 1, 32, 32), np.uint8),      # wrong size
    np.zeros((4, 28, 27), np.int8),          # not square / wrong size
    np.zeros((0, 1, 28, 28), np.int8),       # empty
    np.zeros((2, 1, 1, 28, 28), np.int8),    # 5-D
])
def test_bad_input_shapes_raise_value_error(bad):  # type: ignore[no-untyped-def]
    model = tiny_cnn()
    with pytest.raises(ValueError):
        model.predict(bad)
    with pytest.raises(ValueError):
        model.train_batch(bad, np.zeros(len(bad), np.int64))


def test_bad_input_types_and_constructor_arguments():  # type: ignore[no-untyped-def]
    model = tiny_cnn()
    with pytest.raises(TypeError):
        model.predict(np.zeros((2, 1, 28, 28), np.complex64))
    with pytest.raises(TypeError):
        model.predict([[0], [0, 1]])                   # ragged
    with pytest.raises(ValueError):
        CNN([("conv", 8, 3, 2)])                      # stride 2
    with pytest.raises(ValueError):
        CNN([8], input_shape=(1, 28, 30))              # not square
    with pytest.raises(ValueError):
        CNN([8, "X"])
    with pytest.raises(TypeError):
        CNN([8.5])
    with pytest.raises(ValueError):
        CNN([8], head_pool="median")
    with pytest.raises(ValueError):
        CNN([8, ("maxpool", 64)])                     # pooling larger than the input
    with pytest.raises(ValueError):
        tiny_cnn().load_state_dict({"conv_encoder_00": np.zeros((8, 1, 3, 3), np.int32)})
    state = tiny_cnn().state_dict()
    state["conv_encoder_00"] = np.zeros((8, 1, 5, 5), np.int32)
    with pytest.raises(ValueError):
        model.load_state_dict(state)


# -- learning on real data --------------------------------------------------------------------


def test_tiny_cnn_learns_fashion_mnist_subset(fmnist):  # type: ignore[no-untyped-def]
    x, y = fmnist.x_train[:12000], fmnist.y_train[:12000]
    xt, yt = fmnist.x_test[:2000], fmnist.y_test[:2000]
    model = CNN([8, "M", 16, "M"], [64], decoder_dim=784, seed=0)
    start = time.monotonic()
    history = model.fit(x, y, epochs=2, batch_size=32, validation_data=(xt, yt),
                        progress=False, fwd_decay_inv=10000, subnet_decay_inv=3000)
    elapsed = time.monotonic() - start
    result = model.evaluate(xt, yt)
    assert result["accuracy"] > 0.60, result
    assert elapsed < 60, f"took {elapsed:.1f}s"
    assert history.epochs[-1]["val_correct"] == result["correct"]
    assert len(history.epochs[-1]["block_accuracy"]) == 3


def test_cnn_same_bits_on_any_thread_count_and_fit_equals_train_batch():  # type: ignore[no-untyped-def]
    x, y = random_images(96)
    a, b, c = tiny_cnn(seed=4), tiny_cnn(seed=4), tiny_cnn(seed=4)
    for m in (a, b, c):
        m.fit_normalization(x)
    for i in range(3):
        sl = slice(32 * i, 32 * (i + 1))
        assert a.train_batch(x[sl], y[sl], threads=1) == b.train_batch(x[sl], y[sl], threads=2)
    c.fit(x, y, epochs=1, batch_size=32, shuffle=False, progress=False)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)
        np.testing.assert_array_equal(c.state_dict()[k], v)
