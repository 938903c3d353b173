"""An independent oracle: the plain-NumPy NITRO-D step of ``scripts/nitrod_numpy.py`` (written
from docs/algorithm.md §3–§5, not from the engine) must match the engine bit for bit, weights and
reported losses alike. The same module is what ``scripts/bench_compare.py`` times against
nitrod-rs, so these tests also keep that benchmark honest (it compares equal work)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from nitrod_rs import MLP, _core

_PATH = Path(__file__).resolve().parent.parent / "scripts" / "nitrod_numpy.py"
_spec = importlib.util.spec_from_file_location("nitrod_numpy", _PATH)
assert _spec is not None and _spec.loader is not None
oracle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oracle)

LAYERS = ["linear_encoder_00", "linear_pred_00", "linear_encoder_01", "linear_pred_01",
          "linear_encoder_02", "linear_pred_02", "linear_03"]
PAPER = {"lr_inv": 512, "lr_amp_factor": 640, "fwd_decay_inv": 10000, "subnet_decay_inv": 8000}


def test_oracle_reproduces_the_golden_fixture(golden):  # type: ignore[no-untyped-def]
    """algorithm.md §11: the oracle alone (no engine) reproduces the original implementation."""
    ref = oracle.NumpyMLP({k: golden[f"init/{k}"] for k in LAYERS}, hidden=3)
    x, y, bs = golden["x"], golden["y"], int(golden["batch_size"])
    for step in range(1, 11):
        ref.train_step(x[(step - 1) * bs:step * bs], y[(step - 1) * bs:step * bs], **PAPER)
        if step in (1, 10):
            sd = ref.state_dict()
            for k in LAYERS:
                diff = int((sd[k] != golden[f"after_{step}/{k}"]).sum())
                assert diff == 0, f"oracle: {k} differs in {diff} entries after step {step}"


def _run_both(layers, slope, hyper, batch, steps, *, scale=1, seed=0):  # type: ignore[no-untyped-def]
    """Train an engine MLP and the oracle from the same weights; compare after every step."""
    model = MLP(layers, slope=slope, seed=seed)
    init = model.state_dict()
    if scale != 1:
        init = {k: np.clip(v.astype(np.int64) * scale, -32767, 32767).astype(np.int32)
                for k, v in init.items()}
        model.load_state_dict(init)
    ref = oracle.NumpyMLP(init, hidden=len(layers) - 2, slope=slope)
    rng = np.random.default_rng(seed + 1)
    for step in range(steps):
        x = rng.integers(-127, 128, size=(batch, layers[0]), dtype=np.int8)
        y = rng.integers(0, layers[-1], size=batch).astype(np.int64)
        got = model.train_batch(x, y, **hyper)
        want = ref.train_step(x, y, **hyper)
        for key in ("loss", "correct", "block_loss", "block_correct"):
            assert list(np.atleast_1d(got[key])) == list(np.atleast_1d(want[key])), \
                f"step {step}: {key} engine {got[key]} oracle {want[key]}"
        sd, sr = model.state_dict(), ref.state_dict()
        for k in sd:
            diff = int((sd[k] != sr[k]).sum())
            assert diff == 0, f"step {step}: {k} differs in {diff} entries"
    moved = sum(int((model.state_dict()[k] != init[k]).sum()) for k in init)
    assert moved > 0, "no weight changed: the comparison would prove nothing"
    return model, ref


@pytest.mark.parametrize(
    ("layers", "slope", "hyper", "batch", "scale"),
    [
        # MLP2 with the paper's settings on a small batch.
        ([784, 200, 100, 50, 10], 4, PAPER, 16, 1),
        # Bigger steps (small lr_inv and amplification), other slope, odd batch.
        ([784, 32, 16, 10], 3,
         {"lr_inv": 16, "lr_amp_factor": 4, "fwd_decay_inv": 300, "subnet_decay_inv": 200},
         7, 1),
        # Trained-size weights (up to |w| = 32767): saturating scalings, wide head errors δ·W,
        # weight gradients beyond i32 and the engine's chunked GEMM paths.
        ([784, 64, 10], 4, {"lr_inv": 8, "lr_amp_factor": 2, "fwd_decay_inv": 0,
                            "subnet_decay_inv": 0}, 32, 400),
    ],
)
def test_engine_matches_numpy_oracle(layers, slope, hyper, batch, scale):  # type: ignore[no-untyped-def]
    _run_both(layers, slope, hyper, batch, steps=4, scale=scale)


def test_oracle_comparison_detects_floor_division(monkeypatch):  # type: ignore[no-untyped-def]
    """The comparison is sharp enough to see Python's flooring ``//`` instead of algorithm.md §1's
    truncating division: an oracle with that bug disagrees with the engine."""
    monkeypatch.setattr(oracle, "tdiv", lambda a, b: a // b)
    with pytest.raises(AssertionError, match="differs|engine"):
        _run_both([784, 32, 16, 10], 4, PAPER, 16, steps=3)


def test_gemm_bench_times_the_engine_gemm():
    rng = np.random.default_rng(3)
    x = rng.integers(-127, 128, size=(16, 40), dtype=np.int8)
    w = rng.integers(-30000, 30001, size=(8, 40), dtype=np.int32)
    ns = _core.ops.gemm_bench(x, w, 5)
    assert len(ns) == 5 and all(isinstance(v, int) and v > 0 for v in ns)
    assert len(_core.ops.gemm_bench(x, w, 2, threads=1)) == 2
    with pytest.raises(ValueError, match="repeats"):
        _core.ops.gemm_bench(x, w, 0)
    with pytest.raises(ValueError, match="input features"):
        _core.ops.gemm_bench(x, w[:, :39].copy(), 1)
