"""The extension's own surface: its exception classes, the one ``_core.Model`` of either kind,
parameters by name and the ``_core.ops`` submodule."""

import numpy as np
import pytest

import nitrod_rs
from nitrod_rs import _core

FEATURES = [("conv", [4, 3, 1, 1]), ("maxpool", [2])]


def _mlp() -> _core.Model:
    return _core.Model.mlp(6, [4], 3, bias=True)


def _cnn() -> _core.Model:
    return _core.Model.cnn((1, 8, 8), FEATURES, [8], 3)


@pytest.mark.parametrize("cls", ["ShapeError", "ConfigError"])
def test_shape_and_config_errors_are_nitro_errors(cls):
    err = getattr(nitrod_rs, cls)
    assert issubclass(err, nitrod_rs.NitroError)
    assert issubclass(err, ValueError)
    assert err is getattr(_core, cls)


def test_engine_shape_error_is_caught_as_nitro_error():
    m = _mlp()
    with pytest.raises(nitrod_rs.NitroError, match="expects 6 input features") as e:
        m.predict(np.zeros((2, 5), np.int8))
    assert isinstance(e.value, nitrod_rs.ShapeError)
    assert isinstance(e.value, ValueError)


def test_engine_config_error_is_caught_as_nitro_error():
    with pytest.raises(nitrod_rs.NitroError) as e:
        _core.Model.mlp(6, [4], 3, activation="bogus")
    assert isinstance(e.value, nitrod_rs.ConfigError)
    with pytest.raises(nitrod_rs.ConfigError):
        _mlp().train_step(np.zeros((2, 6), np.int8), np.zeros(2, np.int64), lr_inv=0)


def test_one_model_class_for_both_kinds():
    mlp, cnn = _mlp(), _cnn()
    assert type(mlp) is type(cnn) is _core.Model
    assert (mlp.kind, cnn.kind) == ("mlp", "cnn")
    for m in (mlp, cnn):
        again = _core.Model.from_bytes(m.to_bytes())
        assert again.kind == m.kind and again.describe() == m.describe()
        assert again.parameter_shapes() == m.parameter_shapes()
    assert repr(cnn).startswith("<nitrod_rs._core.Model cnn ")


def test_from_bytes_of_one_kind_rejects_the_other():
    with pytest.raises(nitrod_rs.FormatError):
        _core.Model.from_bytes(_cnn().to_bytes(), "mlp")
    with pytest.raises(nitrod_rs.FormatError):
        _core.Model.from_bytes(_mlp().to_bytes(), "cnn")
    with pytest.raises(ValueError, match="kind must be"):
        _core.Model.from_bytes(_mlp().to_bytes(), "rnn")


def test_kind_specific_methods_name_the_kind():
    mlp, cnn = _mlp(), _cnn()
    assert cnn.feature_shape == (4, 4, 4)
    assert cnn.head_geometries()[0][0] == "conv_encoder_00"
    with pytest.raises(TypeError, match="feature_shape needs a CNN; this model is an MLP"):
        mlp.feature_shape  # noqa: B018
    with pytest.raises(TypeError, match="head_geometries needs a CNN"):
        mlp.head_geometries()
    with pytest.raises(TypeError, match="to_rust_source needs an MLP"):
        cnn.to_rust_source()
    assert _core.Model.from_blob(mlp.to_blob()).kind == "mlp"
    assert _core.Model.from_blob(cnn.to_blob(), "cnn").kind == "cnn"
    with pytest.raises(nitrod_rs.FormatError, match="holds a CNN"):
        _core.Model.from_blob(cnn.to_blob(), "mlp")
    with pytest.raises(ValueError, match="kind must be"):
        _core.Model.from_blob(cnn.to_blob(), "rnn")


@pytest.mark.parametrize("make", [_mlp, _cnn])
def test_state_dict_round_trip_and_atomic_load(make):
    m = make()
    state = m.state_dict()
    assert list(state) == [n for n, _ in m.parameter_shapes()]
    name, shape = m.parameter_shapes()[0]
    new = (state[name] // 2).astype(np.int32)
    m.load_state_dict([(name, new)])
    np.testing.assert_array_equal(m.state_dict()[name], new)
    before = m.state_dict()
    bad = np.zeros([s + 1 for s in shape], np.int32)
    with pytest.raises(nitrod_rs.ShapeError, match="expected"):
        m.load_state_dict([(name, state[name]), (name, bad)])
    with pytest.raises(nitrod_rs.ConfigError, match="no parameter 'nope'|no parameter \"nope\""):
        m.load_state_dict([(name, state[name]), ("nope", state[name])])
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_missing_bias_is_named():
    m = _core.Model.mlp(6, [4], 3)
    with pytest.raises(nitrod_rs.ConfigError, match="without bias"):
        m.load_state_dict([("linear_01.bias", np.zeros(3, np.int32))])


def test_test_loss_comes_with_each_epoch():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(64, 6), dtype=np.int8)
    y = rng.integers(0, 3, size=64).astype(np.int64)
    m = _mlp()
    run = _core.Run(_core.TrainSettings(epochs=2, batch_size=16), x, y, (1, 2, 3),
                    x_test=x[:20], y_test=y[:20])
    while not run.finished:
        d, err = run.epoch(m)
        assert err is None and d["epoch"] == run.epochs_done
    logits = m.predict_logits(x[:20]).astype(np.int64)
    target = np.zeros((20, 3), np.int64)  # the one-hot target of docs/algorithm.md §4.1
    target[np.arange(20), y[:20]] = 32
    last = run.history[-1]
    assert last["test_loss"] == int(((logits - target) ** 2).sum())
    assert last["test"] == [int((logits.argmax(axis=1) == y[:20]).sum()), 20]
    assert last["val"] is None and last["val_loss"] is None
    run = _core.Run(_core.TrainSettings(epochs=1, batch_size=16), x, y, (1, 2, 3))
    assert run.epoch(m)[0]["test_loss"] is None
    with pytest.raises(ValueError, match="finished"):
        run.epoch(m)


def test_ops_is_a_submodule():
    import nitrod_rs._core.ops as ops

    assert ops is _core.ops
    assert not hasattr(_core, "linear")
    np.testing.assert_array_equal(ops.tdiv(np.array([-7]), np.array([2])), [-3])
