"""Ctrl-C during fit: KeyboardInterrupt after the current batch, model consistent, history kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import nitrod_rs

    rng = np.random.default_rng(0)
    x = rng.integers(-127, 128, size=(8192, 784), dtype=np.int8)
    y = rng.integers(0, 10, size=8192)
    model = nitrod_rs.MLP([784, 64, 32, 10], seed=0)
    print("READY", flush=True)
    try:
        model.fit(x, y, epochs=10_000, progress=False, validation_data=(x[:256], y[:256]))
    except KeyboardInterrupt as exc:
        h = model.history
        sd = model.state_dict()
        # The model is consistent: it predicts, saves and reloads identically.
        loaded = nitrod_rs.MLP.from_bytes(model.to_bytes())
        same = all((loaded.state_dict()[k] == v).all() for k, v in sd.items())
        preds = (loaded.predict(x[:100]) == model.predict(x[:100])).all()
        more = model.train_batch(x[:64], y[:64])["total"]
        print(json.dumps({"cancelled": h.cancelled, "epochs": len(h),
                          "exc_history": exc.history is h, "same": bool(same),
                          "preds": bool(preds), "more": more,
                          "last_total": h.epochs[-1]["train_total"]}), flush=True)
        raise
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_stops_fit_with_consistent_model(interrupt):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)

    def ready() -> None:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"

    out, err = interrupt(proc, ready, 60)
    assert "KeyboardInterrupt" in err, err
    # An uncaught KeyboardInterrupt makes CPython exit as if killed by SIGINT.
    assert proc.returncode in (-signal.SIGINT, 130, 1), (proc.returncode, err)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["cancelled"] and report["exc_history"]
    assert report["epochs"] >= 1 and report["last_total"] % 64 == 0
    assert report["same"] and report["preds"] and report["more"] == 64
