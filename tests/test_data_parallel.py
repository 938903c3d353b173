"""Data-parallel training (``fit(..., workers=K)``, :mod:`nitrod_rs._parallel`) is exact: the
weights, dropout generators and history of K = 1, 2, 3, 4 Ray workers are those of plain
``fit``, bit for bit — a tiny MLP with dropout, a tiny CNN with dropout and augmentation,
batches that K does not divide, a checkpointed and resumed run. Bad ``workers`` values are
clear errors. One local Ray instance of 4 CPUs for the module (never a running cluster)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import _missing
from nitrod_rs import CNN, MLP, _core, _parallel, _sweep_spec
from nitrod_rs.sweep import SweepSpecError


def images(n: int, hw: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, hw, hw), dtype=np.uint8)
    y = rng.integers(0, classes, size=n).astype(np.int64)
    return x, y


X, Y = images(200, 8, 4, 0)
XT, YT = images(60, 8, 4, 1)
# Large steps (every batch changes weights), decays on, a validation split and a test set.
KW: dict[str, Any] = dict(epochs=2, lr_inv=64, lr_amp_factor=8, fwd_decay_inv=5000,
                          subnet_decay_inv=3000, validation_split=0.2, test_data=(XT, YT),
                          progress=False, threads=1)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Any:
    """A fresh local Ray of 4 CPUs (never a cluster already running here)."""
    try:
        import ray
    except ImportError:
        _missing("ray (pip install 'nitrod-rs[ray]'; make venv installs it)")
    saved = os.environ.pop("RAY_ADDRESS", None)
    # address="local": a new instance even where a `ray start` cluster runs on this machine.
    ray.init(address="local", num_cpus=4, include_dashboard=False,
             logging_level=logging.WARNING)
    yield ray
    ray.shutdown()
    if saved is not None:
        os.environ["RAY_ADDRESS"] = saved


def entries(h: Any) -> list[dict[str, Any]]:
    """The history without wall-clock times."""
    return [{k: v for k, v in e.items() if "seconds" not in k} for e in h.epochs]


def run(make: Any, workers: int | None, **kw: Any) -> tuple[Any, Any]:
    model = make()
    h = model.fit(X, Y, **{**KW, **kw}, workers=workers)
    return model, h


def assert_same(a: Any, ha: Any, b: Any, hb: Any, what: str) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=f"{what}: {k}")
    assert a._m.dropout_rngs == b._m.dropout_rngs, what
    assert entries(ha) == entries(hb), what
    assert a.hyper == b.hyper, what


def mlp() -> MLP:
    return MLP([64, 24, 12, 4], dropout=20, bias=True, seed=3)


def cnn() -> CNN:
    return CNN([4, "M", 6, "M"], [12], input_shape=(1, 8, 8), classes=4, dropout=10, seed=2,
               decoder_dim=32, compat="exact")


def test_mlp_workers_are_bit_identical_to_plain_fit() -> None:
    # batch 10: K = 3 and 4 make uneven shares; dropout masks cross every share boundary.
    plain, hp = run(mlp, None, batch_size=10)
    assert hp.epochs[-1]["test_accuracy"] is not None
    for k in (1, 2, 3, 4):
        m, h = run(mlp, k, batch_size=10)
        assert_same(m, h, plain, hp, f"workers={k}")


def test_cnn_workers_are_bit_identical_to_plain_fit() -> None:
    kw = dict(batch_size=9, augment=(1, True), epochs=1)
    plain, hp = run(cnn, None, **kw)
    for k in (1, 2, 3):
        m, h = run(cnn, k, **kw)
        assert_same(m, h, plain, hp, f"workers={k}")


def test_a_checkpointed_run_resumes_with_workers(tmp_path: Path) -> None:
    plain, hp = run(mlp, None, batch_size=16, epochs=3)
    ck = tmp_path / "ck.safetensors"
    first = mlp()
    first.fit(X, Y, **{**KW, "epochs": 1}, batch_size=16, checkpoint=ck, workers=2)
    resumed = mlp()
    h = resumed.fit(X, Y, **{**KW, "epochs": 3}, batch_size=16, resume=ck, workers=3)
    assert_same(resumed, h, plain, hp, "resumed with workers")


def test_ctrl_c_during_a_step_stops_after_it(tmp_path: Path, local_ray: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C while the workers compute the third step: the step is finished, the run stops
    # after it with a checkpoint (as plain fit stops after a batch), and resuming it gives
    # the uninterrupted run.
    real, calls = local_ray.get, [0]

    def get(refs: Any, *a: Any, **kw: Any) -> Any:
        if isinstance(refs, list):
            calls[0] += 1
            if calls[0] == 3:
                raise KeyboardInterrupt
        return real(refs, *a, **kw)

    monkeypatch.setattr(local_ray, "get", get)
    ck = tmp_path / "ck.safetensors"
    with pytest.raises(KeyboardInterrupt) as stopped:
        mlp().fit(X, Y, **KW, batch_size=16, checkpoint=ck, workers=2)
    monkeypatch.undo()
    assert stopped.value.history.cancelled  # type: ignore[attr-defined]
    assert _core.Run.checkpoint_model(str(ck)) is not None
    plain, hp = run(mlp, None, batch_size=16)
    resumed = mlp()
    h = resumed.fit(X, Y, **KW, batch_size=16, resume=ck, workers=2)
    assert_same(resumed, h, plain, hp, "resumed after Ctrl-C")


@pytest.mark.parametrize("layer", ["linear_pred_00", "linear_02"])
def test_an_overflow_is_the_error_of_plain_fit(layer: str) -> None:
    # A head poisoned to ±i32::MAX overflows its input error on the workers (an error they
    # return, the driver raises); a poisoned output layer overflows some update later: either
    # way the same step fails with the same error as in plain fit.
    def poisoned() -> MLP:
        m = mlp()
        state = m.state_dict()
        w = state[layer]
        state[layer] = np.where(np.indices(w.shape).sum(axis=0) % 2 == 0, 2**31 - 1,
                                -(2**31 - 1)).astype(np.int32)
        m.load_state_dict(state)
        return m

    kw = {**KW, "lr_inv": 1, "lr_amp_factor": 1, "batch_size": 10}
    errors, states, done = [], [], []
    for workers in (None, 2):
        m = poisoned()
        with pytest.raises(_core.IntegerOverflowError) as e:
            m.fit(X, Y, **kw, workers=workers)
        errors.append(str(e.value))
        states.append(m.state_dict())
        done.append(m._run.batch)
    # The same step fails with the same error, the model as after the steps before it.
    assert errors[0] == errors[1]
    if layer == "linear_pred_00":  # the input error of the first step, on a worker
        assert "linear_pred_00 during input error" in errors[0] and done == [0, 0]
    assert done[0] == done[1]
    for k, v in states[0].items():
        np.testing.assert_array_equal(states[1][k], v)


def test_gradient_sums_of_shares_add_up_in_rust() -> None:
    # The binding's own pieces: shares of a batch on separate replicas, summed, applied.
    a, b = mlp(), mlp()
    a.fit_normalization(X)
    b._m.set_normalization(a.normalization)
    xn = _core.normalize(X.reshape(len(X), -1)[:12], *a.normalization)
    y = Y[:12]
    want = a._m.train_step(xn, y, lr_inv=64)
    rngs = b._m.dropout_rngs
    parts = [_core.Model.from_bytes(b.to_bytes()).gradients(
        xn[s:e], y[s:e], s, 12, lr_inv=64, dropout_rngs=rngs)
        for s, e in _parallel.shares(12, 5)]
    total = _core.sum_gradients(parts)
    # Each share carries 8 bytes per parameter (plus a small header).
    assert 8 * a.num_parameters < len(total) < 8 * a.num_parameters + 1024
    assert b._m.apply_gradients(total, lr_inv=64) == want
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])
    with pytest.raises(_core.ShapeError, match="row order"):
        _core.sum_gradients(parts[::-1])
    with pytest.raises(_core.ShapeError, match="add every share"):
        b._m.apply_gradients(parts[0], lr_inv=64)


def test_bad_workers_values_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    m = mlp()
    with pytest.raises(ValueError, match="workers"):
        m.fit(X, Y, epochs=1, workers=0, progress=False)
    with pytest.raises(TypeError, match="workers"):
        m.fit(X, Y, epochs=1, workers="2", progress=False)
    with pytest.raises(ValueError, match="at most batch_size workers"):
        m.fit(X, Y, epochs=1, batch_size=4, workers=5, progress=False)
    with pytest.raises(ValueError, match="CPUs"):
        m.fit(X, Y, epochs=1, batch_size=16, workers=3, threads=2, progress=False)
    ref = CNN([4, "M"], [8], input_shape=(1, 8, 8), classes=4, compat="reference")
    with pytest.raises(ValueError, match='compat="exact"'):
        ref.fit(X, Y, epochs=1, workers=2, progress=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with pytest.raises(ImportError, match=r"pip install 'nitrod-rs\[ray\]'"):
        mlp().fit(X, Y, epochs=1, workers=2, progress=False)
    # Nothing trained by any of these.
    for k, v in mlp().state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[k], v)


def test_workers_is_not_a_sweep_setting() -> None:
    with pytest.raises(SweepSpecError, match="workers"):
        _sweep_spec.parse({"base": {"dataset": "fashion-mnist", "workers": 2},
                                "runs": [{"model": "mlp1"}]})
