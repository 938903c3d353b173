"""Nothing unbounded, nothing undocumented: ``threads`` bounded, huge integers a ValueError
naming the argument and its range, numpy's C API loaded at import (no panic when Ctrl-C lands
early in fit), ``exc.history`` from the first instant of fit, no file of unusable settings —
and a hypothesis suite over the public API, run in a child process so that an abort is caught:
every call succeeds or raises a documented exception."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nitrod_rs
from nitrod_rs import CNN, MLP, _checks, _core

HERE = Path(__file__).resolve().parent
RNG = np.random.default_rng(8)
X = RNG.integers(0, 256, size=(96, 6, 6), dtype=np.uint8)
Y = RNG.integers(0, 3, size=96)
KW = dict(batch_size=32, progress=False)


def mlp() -> MLP:
    return MLP([36, 8, 3], seed=0)


# -- threads -------------------------------------------------------------------------------------


def _child(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, cwd=HERE)


def test_huge_thread_counts_are_refused_before_any_thread_starts():
    """Without a bound, ``threads=2**31-1`` starts threads until the system refuses one (or
    hangs): run in a child with a time limit."""
    r = _child("import numpy as np, nitrod_rs\n"
               "m = nitrod_rs.MLP([4, 2])\n"
               "try:\n"
               "    m.predict(np.zeros((1, 4), np.int8), threads=2**31 - 1)\n"
               "except ValueError as e:\n"
               "    print('refused:', e)\n", timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"threads must be an integer in 1..{_checks.MAX_THREADS}" in r.stdout


@pytest.mark.parametrize("threads", [0, -1, _checks.MAX_THREADS + 1, 2**64, 2**100])
@pytest.mark.parametrize("call", ["predict", "evaluate", "train_batch", "fit"])
def test_thread_counts_out_of_range_are_value_errors(call, threads):  # type: ignore[no-untyped-def]
    m = mlp()
    m.fit_normalization(X)
    args = (X,) if call == "predict" else (X, Y)
    with pytest.raises(ValueError, match=rf"threads must be an integer in 1..{_checks.MAX_THREADS}"):
        getattr(m, call)(*args, threads=threads, **(KW if call == "fit" else {}))


def test_the_engine_bounds_threads_too():
    """The binding checks the bound itself (the package's check reads it from there)."""
    m = _core.Model.mlp(4, [], 2)
    with pytest.raises(ValueError, match="4 per CPU"):
        m.predict(np.zeros((1, 4), np.int8), threads=_checks.MAX_THREADS + 1)
    # Four per CPU the process may use (Rust's available_parallelism: affinity and quotas).
    assert _checks.MAX_THREADS >= 4 and _checks.MAX_THREADS % 4 == 0
    assert _checks.MAX_THREADS <= 4 * (os.cpu_count() or 1)


def test_the_pool_cache_stays_bounded():
    m = mlp()
    x = np.zeros((2, 36), np.int8)
    for t in [*range(1, _checks.MAX_THREADS + 1), *range(_checks.MAX_THREADS, 0, -1)]:
        m.predict(x, threads=t)
        assert _core.cached_pools() <= 8
    assert _core.cached_pools() >= 1


# -- integers out of their type's range ----------------------------------------------------------


def _fit(**kw: Any):  # type: ignore[no-untyped-def]
    return lambda: mlp().fit(X, Y, **{"epochs": 1, **KW, **kw})


HUGE = {
    "epochs": (_fit(epochs=2**40), "epochs", "1..4294967295"),
    "fit seed": (_fit(seed=2**64), "seed", "0..18446744073709551615"),
    "batch_size": (_fit(batch_size=2**70), "batch_size", "1..18446744073709551615"),
    "validation_seed": (_fit(validation_split=0.25, validation_seed=-1), "validation_seed",
                        "0..18446744073709551615"),
    "lr_inv": (_fit(lr_inv=2**63), "lr_inv", "1..9223372036854775807"),
    "lr_amp_factor": (_fit(lr_amp_factor=-2**64), "lr_amp_factor", "1..9223372036854775807"),
    "fwd_decay_inv": (_fit(fwd_decay_inv=2**64), "fwd_decay_inv", "0..9223372036854775807"),
    "initial_epoch": (_fit(initial_epoch=2**32), "initial_epoch", "0..4294967295"),
    "augment pad": (lambda: mlp().fit(X, Y, augment=(2**64, True), **KW), "augment pad",
                    "0..18446744073709551615"),
    "model seed": (lambda: MLP([36, 3], seed=2**64), "seed", "0..18446744073709551615"),
    "slope": (lambda: MLP([36, 3], slope=2**70), "slope", "1..255"),
    "layer width": (lambda: MLP([36, 2**64, 3]), "layer width", "1..18446744073709551615"),
    "dropout": (lambda: MLP([36, 3], dropout=2**40), "dropout", "0..4294967295"),
    "cnn filters": (lambda: CNN([2**64]), r"features\[0\]", "1..18446744073709551615"),
    "cnn padding": (lambda: CNN([("conv", 4, 3, 1, 2**64)]), r"features\[0\] value",
                    "0..18446744073709551615"),
    "cnn input": (lambda: CNN([4], input_shape=(2**64, 8, 8)), "input_shape entry",
                  "1..18446744073709551615"),
    "cnn classes": (lambda: CNN([4], classes=2**64), "classes", "2..18446744073709551615"),
    "cnn decoder_dim": (lambda: CNN([4], decoder_dim=2**64), "decoder_dim",
                        "1..18446744073709551615"),
    "preset seed": (lambda: nitrod_rs.presets.mlp1(seed=2**64), "seed",
                    "0..18446744073709551615"),
}


@pytest.mark.parametrize("name", sorted(HUGE))
def test_huge_integers_are_value_errors_naming_the_argument(name):  # type: ignore[no-untyped-def]
    call, arg, rng = HUGE[name]
    with pytest.raises(ValueError, match=rf"{arg} must be an integer in {rng}, got"):
        call()


def test_in_range_but_impossible_sizes_are_value_errors():
    with pytest.raises(ValueError, match="parameters"):
        MLP([784, 2**40, 10])
    with pytest.raises(ValueError):
        CNN([("conv", 4, 3, 1, 2**40)])


def test_impossible_buffers_in_the_primitives_are_errors_not_aborts():
    """A padding, a repeat count or a row count no memory holds: a ValueError or MemoryError
    (run in a child: an infallible allocation would abort it, an ndarray shape check panic)."""
    r = _child("import numpy as np\n"
               "from nitrod_rs import _core, ops\n"
               "x, w = np.zeros((1, 1, 3, 3), np.int8), np.ones((2, 1, 3, 3), np.int32)\n"
               "calls = [lambda: ops.conv2d(x, w, None, 2**40),\n"
               "         lambda: ops.conv2d(x[:0], w, None, 2**40),\n"
               "         lambda: ops.conv2d(x, w, None, 2**20),\n"
               "         lambda: ops.conv2d_weight_grad(x, w, np.zeros((1, 2, 1, 1), np.int32),"
               " 2**40),\n"
               "         lambda: _core.ops.gemm_bench(np.zeros((1, 3), np.int8),"
               " np.zeros((2, 3), np.int32), 2**40),\n"
               "         lambda: _core.split_indices(2**40, 1, 0),\n"
               "         lambda: ops.activation(np.zeros((1, 2), np.int8), 'nitro_relu', 2**20)]\n"
               "for c in calls:\n"
               "    try:\n"
               "        c()\n"
               "    except (ValueError, MemoryError) as e:\n"
               "        print(type(e).__name__)\n")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["ValueError", "ValueError", "MemoryError", "ValueError",
                                "MemoryError", "MemoryError", "ValueError"]


# -- numpy's C API is loaded at import -----------------------------------------------------------


def test_numpy_api_is_loaded_when_the_module_is_imported():
    """Loaded lazily, the first array of a call loads it, and a Ctrl-C landing then made
    rust-numpy panic (a PanicException from fit); loaded at import, no later call loads it."""
    r = _child("import numpy, nitrod_rs._core\n"
               "mod = numpy._core.multiarray if hasattr(numpy, '_core') else numpy.core.multiarray\n"
               "print(hasattr(mod, '_RUST_NUMPY_BORROW_CHECKING_API'))\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"


# -- exc.history from the first instant ----------------------------------------------------------


class _Interrupt:
    """A callback whose ``set_model`` (called before the first epoch) is hit by Ctrl-C."""

    def set_model(self, model: Any) -> None:
        raise KeyboardInterrupt

    def __call__(self, entry: dict[str, Any]) -> None:
        pass


def test_ctrl_c_before_the_first_epoch_carries_the_history():
    with pytest.raises(KeyboardInterrupt) as info:
        mlp().fit(X, Y, epochs=2, callbacks=[_Interrupt()], **KW)
    h = info.value.history  # type: ignore[attr-defined]
    assert isinstance(h, nitrod_rs.History) and len(h) == 0 and h.cancelled


def test_ctrl_c_during_argument_checks_carries_the_history(monkeypatch):  # type: ignore[no-untyped-def]
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(_checks, "labels", interrupted)
    with pytest.raises(KeyboardInterrupt) as info:
        mlp().fit(X, Y, **KW)
    assert len(info.value.history) == 0  # type: ignore[attr-defined]


def test_bad_arguments_carry_the_empty_history():
    with pytest.raises(ValueError) as info:
        mlp().fit(X, Y, epochs=0, **KW)
    assert len(info.value.history) == 0  # type: ignore[attr-defined]


def test_an_engine_error_in_fit_carries_the_epochs_so_far():
    """A callback poisons a weight after epoch 1 (±i32::MAX with a step of the gradient
    itself): epoch 2's first step overflows, all-or-nothing."""
    m = mlp()

    def poison(entry: dict[str, Any]) -> None:
        s = m.state_dict()
        s["linear_01"] = np.where(np.indices(s["linear_01"].shape).sum(axis=0) % 2 == 0,
                                  np.int32(2**31 - 1), np.int32(-(2**31 - 1))).astype(np.int32)
        m.load_state_dict(s)

    with pytest.raises(nitrod_rs.IntegerOverflowError) as info:
        m.fit(X, Y, epochs=3, lr_inv=8, lr_amp_factor=8, callbacks=[poison], **KW)
    h = info.value.history  # type: ignore[attr-defined]
    assert h["epoch"] == [1] and h.cancelled and m.history is h


# -- no file of unusable settings ----------------------------------------------------------------


def test_a_model_with_unusable_settings_is_not_saved(tmp_path):  # type: ignore[no-untyped-def]
    """The plateau rule multiplies lr_inv past what ``lr_inv · lr_amp_factor`` allows: the run
    stops with an error, and the model (recording those settings) is not written anywhere."""
    m = mlp()
    with pytest.raises(nitrod_rs.ConfigError, match="overflows") as info:
        m.fit(X, Y, epochs=3, validation_split=0.25,
              plateau={"factor": 2**50, "patience": 0, "start_epoch": 1}, **KW)
    assert len(info.value.history) == 1  # type: ignore[attr-defined]
    p = tmp_path / "m.safetensors"
    with pytest.raises(nitrod_rs.ConfigError, match="nothing was written"):
        m.save(p)
    assert not p.exists()
    with pytest.raises(nitrod_rs.ConfigError, match="not usable"):
        m.to_bytes()
    # Nor a checkpoint of a run that would continue with them.
    ck = tmp_path / "run.safetensors"
    with pytest.raises(nitrod_rs.ConfigError, match="could not be resumed") as info:
        mlp().fit(X, Y, epochs=3, validation_split=0.25, checkpoint=ck,
                  plateau={"factor": 2**50, "patience": 0, "start_epoch": 1}, **KW)
    assert len(info.value.history) == 1 and not ck.exists()  # type: ignore[attr-defined]


# -- the public API, fuzzed in a child process -----------------------------------------------------

#: Integers around every type boundary the API has, and small ones.
_SPECIAL = [0, -1, 2**31, 2**32, 2**40, 2**63, 2**64 - 1, 2**64, 2**70, -2**63, -2**64]


def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Mostly ``lo..hi``, one draw in eight a boundary value."""
    return st.one_of([st.integers(lo, hi)] * 7 + [st.sampled_from(_SPECIAL)])


def _array(shape: tuple[int, ...], dtype: str, **extra: Any) -> dict[str, Any]:
    return {"shape": list(shape), "dtype": dtype, **extra}


_DTYPES = ["uint8", "int8", "int16", "int64", "uint64", "float32", "float64", "bool"]


@st.composite
def _data(draw: Any, sample: tuple[int, ...], classes: int,
          wild: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Images and labels for a model whose samples have shape ``sample``: valid ones (of any
    accepted dtype and layout), or, ``wild``, of any shape, dtype and range."""
    n = draw(st.integers(0 if wild else 16, 40))
    features = int(np.prod(sample))
    if not wild:
        dtype = draw(st.sampled_from(["uint8", "int8", "int16", "float32"]))
        x = _array((n, *sample), dtype, low=-128 if dtype == "int8" else 0,
                   high=1 if dtype == "float32" else 127 if dtype == "int8" else 255,
                   layout=draw(st.sampled_from(["c", "fortran"] + ["list"] * (dtype != "int8"))))
        return x, _array((n,), draw(st.sampled_from(["int64", "uint8"])), high=classes - 1)
    shape = draw(st.sampled_from([(n, features), (n, 1, features), (features,),
                                  (n, features + 1), (n, 2, 2, features // 4 or 1), (n,)]))
    x = _array(shape, draw(st.sampled_from(_DTYPES)), low=draw(st.sampled_from([0, -128])),
               high=draw(st.sampled_from([1, 255, 300])), nan=draw(st.booleans()),
               layout=draw(st.sampled_from(["c", "fortran", "list"])))
    y = _array((draw(st.sampled_from([n, n + 1])),),
               draw(st.sampled_from(["int64", "uint8", "float64", "int8"])),
               low=draw(st.sampled_from([0, -1])),
               high=draw(st.sampled_from([classes - 1, classes])))
    return x, y


@st.composite
def _spec(draw: Any) -> dict[str, Any]:
    """A call of the public API: half of them with every argument in range (so that the calls
    reach deep into training), half with boundary values anywhere."""
    wild = draw(st.booleans())

    def ints(lo: int, hi: int) -> st.SearchStrategy[int]:
        return _ints(lo, hi) if wild else st.integers(lo, hi)

    def pick(good: list[Any], bad: list[Any]) -> Any:
        return draw(st.sampled_from(good + bad if wild else good))

    kind = draw(st.sampled_from(["mlp", "mlp", "cnn", "preset"]))
    if kind == "mlp":
        layers = draw(st.lists(ints(1, 24), min_size=1, max_size=4)) if wild else [
            draw(st.integers(1, 24)), *draw(st.lists(st.integers(1, 16), max_size=2)),
            draw(st.integers(2, 6))]
        model: dict[str, Any] = {
            "kind": "mlp", "layers": layers,
            "activation": pick(["nitro_relu", "pocket_tanh", "pocket_relu",
                                "bipolar_pocket_leaky_relu"], ["relu"]),
            "slope": pick([3, 4, 20], [1, 6, 2**70]),
            "dropout": pick([0, 10, 0.25], [7, 2.0, float("nan")]),
            "seed": draw(ints(0, 5)), "bias": draw(st.booleans())}
        sample: tuple[int, ...] = (layers[0] if 1 <= layers[0] <= 24 else 16,)
        classes = layers[-1] if 2 <= layers[-1] <= 24 else 3
    elif kind == "cnn":
        d = draw(st.integers(1, 8))
        c = draw(st.integers(1, 3))
        feats = draw(st.lists(st.one_of(ints(1, 4), st.just(pick(["M", "A"], ["X"])),
                                        st.builds(lambda *v: ["conv", *v], ints(1, 4),
                                                  ints(1, 5), st.just(1), ints(0, 2))),
                              max_size=3))
        model = {"kind": "cnn", "features": feats,
                 "classifier": draw(st.lists(ints(1, 8), max_size=2)),
                 "input_shape": [pick([c], [2**64, 0]), d, d],
                 "classes": draw(ints(2, 4)), "decoder_dim": draw(ints(1, 64)),
                 "head_pool": pick(["max", "avg"], ["median"])}
        sample, classes = (c, d, d), model["classes"] if model["classes"] in (2, 3, 4) else 2
    else:
        model = {"kind": "preset", "name": pick(["mlp1", "small-cnn"], ["nope"]),
                 "seed": draw(ints(0, 3))}
        sample, classes = (784,) if model["name"] == "mlp1" else (1, 28, 28), 10
    call = draw(st.sampled_from(["fit", "fit", "fit", "predict", "predict_scores", "evaluate",
                                 "train_batch", "summary", "from_bytes"]))
    x, y = draw(_data(sample, classes, wild))
    kw: dict[str, Any] = {}
    if call in ("predict", "predict_scores", "evaluate", "train_batch", "fit"):
        kw["threads"] = draw(st.one_of(st.none(), ints(1, 2)))
    if call == "train_batch":
        kw.update(lr_inv=draw(ints(1, 600)), lr_amp_factor=draw(ints(1, 700)),
                  compat=pick(["exact", "reference"], ["nope"]))
    if call == "fit":
        kw.update(
            # Never an in-range huge epoch count: it would train for ever.
            epochs=draw(st.one_of(st.integers(1, 2), st.sampled_from(
                [0, -1, 2**32, 2**64] if wild else [1]))),
            batch_size=draw(ints(1, 16)), lr_inv=draw(ints(64, 600)),
            lr_amp_factor=draw(ints(8, 700)), fwd_decay_inv=draw(ints(0, 9000)),
            seed=draw(st.one_of(st.none(), ints(0, 3))),
            validation_split=pick([None, 0, 0.25], [0.9999, 1.5, float("nan")]),
            plateau=draw(st.one_of(st.booleans(), st.fixed_dictionaries(
                {"patience": ints(0, 3), "factor": ints(2, 4)}))) if wild else False,
            early_stopping=draw(st.booleans()) if wild else False,
            lr_schedule=draw(st.one_of(st.none(), st.tuples(
                st.just(pick(["linear", "halving", "exponential"], ["x"])), ints(1, 3),
                ints(600, 2000)).map(list))),
            augment=draw(st.one_of(st.booleans(), st.tuples(ints(0, 3), st.booleans())))
            if wild or len(sample) == 3 else False,
            compat=pick(["exact", "reference"], ["nope"]),
            verbose=0, validation_data=draw(st.one_of(st.none(), _data(sample, classes, wild))))
    spec: dict[str, Any] = {"model": model, "call": call, "x": x, "y": y, "kw": kw,
                            "seed": draw(st.integers(0, 2**32 - 1)),
                            "prefit": not wild and call != "fit"}
    if call == "from_bytes":
        spec["mutations"] = draw(st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)),
                                          max_size=4))
        spec["cut"] = draw(st.one_of(st.just(2**40), st.integers(0, 600)))
    return spec


@st.composite
def _op_spec(draw: Any) -> dict[str, Any]:
    """A call of an integer primitive of ``nitrod_rs.ops`` with shapes and sizes near and past
    what fits (sizes within int64: beyond it, ``nitrod_rs.ops`` does not range-check)."""
    small = st.integers(0, 5)
    size = st.one_of([small] * 5 + [st.sampled_from([2**20, 2**31, 2**40, 2**62])])

    def arr(dims: int, dtype: str, lo: int = -128, hi: int = 127) -> dict[str, Any]:
        return _array(tuple(draw(small) for _ in range(dims)), dtype, low=lo, high=hi)

    op = draw(st.sampled_from(["conv2d", "conv2d_weight_grad", "maxpool2d", "avgpool2d",
                               "linear", "scaling", "tdiv", "activation", "integer_sgd_update"]))
    if op == "conv2d":
        args: list[Any] = [arr(4, "int8"), arr(4, "int32", -64, 64), None, draw(size)]
    elif op == "conv2d_weight_grad":
        args = [arr(4, "int8"), arr(4, "int32", -64, 64), arr(4, "int32"), draw(size)]
    elif op in ("maxpool2d", "avgpool2d"):
        args = [arr(4, draw(st.sampled_from(["int8", "int16", "int32", "int64"]))),
                draw(st.one_of(size, st.tuples(size, size).map(list))), draw(size)]
    elif op == "linear":
        args = [arr(2, "int8"), arr(2, "int32", -64, 64)]
    elif op == "scaling":
        args = [arr(draw(st.integers(1, 3)), "int64", -2**40, 2**40), draw(size)]
    elif op == "tdiv":
        args = [arr(1, "int64", -2**63, 2**63 - 1), arr(1, "int64", -2, 2)]
    elif op == "activation":
        args = [arr(2, "int8"), draw(st.sampled_from(["nitro_relu", "pocket_tanh", "x"])),
                draw(st.one_of(st.sampled_from([3, 4]), size))]
    else:
        shape = tuple(draw(small) for _ in range(2))
        args = [_array(shape, "int32", low=-2**31, high=2**31 - 1),
                _array(shape, "int64", low=-2**62, high=2**62)]
        return {"op": op, "args": args, "kw": {"lr_inv": draw(size), "amp": draw(size)},
                "seed": draw(st.integers(0, 2**32 - 1))}
    return {"op": op, "args": args, "seed": draw(st.integers(0, 2**32 - 1))}


class _Worker:
    """The child that runs the calls (restarted after a crash)."""

    def __init__(self) -> None:
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc: subprocess.Popen[str] | None = None

    def ask(self, spec: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, str(HERE / "api_worker.py")],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.log, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            self.log.seek(0)
            tail = self.log.read()[-2000:]
            raise AssertionError(f"the call crashed or hung (exit {self.proc.returncode}): "
                                 f"{json.dumps(spec)}\n{tail}")
        return dict(json.loads(line))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def worker():  # type: ignore[no-untyped-def]
    w = _Worker()
    yield w
    w.close()


#: Calls per run (about 1 ms each in the child): bounded for CI, larger for a longer search.
FUZZ_EXAMPLES = int(os.environ.get("NITROD_API_FUZZ_EXAMPLES", "1500"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(spec=st.one_of(_spec(), _spec(), _spec(), _op_spec()))
def test_public_api_succeeds_or_raises_a_documented_exception(worker, spec):  # type: ignore[no-untyped-def]
    answer = worker.ask(spec)
    if not answer["ok"]:
        assert answer["documented"], f"{answer['type']}: {answer['message']}\n{spec}"
        if spec.get("call") == "fit" and answer["stage"] == "call":
            assert answer["has_history"], spec
