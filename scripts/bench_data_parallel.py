"""Data-parallel training, measured (BENCHMARKS.md "Data-parallel training"): one epoch of MLP2
on Fashion-MNIST with plain ``fit``, ``workers=1`` and ``workers=2`` (one engine thread per
worker, and for plain ``fit``), checking that the three give the same weights bit for bit; and
the bytes of gradient sums per step of MLP1, MLP2 and VGG8B (8 bytes per parameter, and the
message ``_core.sum_gradients`` actually returns for MLP2).

    .venv/bin/python scripts/bench_data_parallel.py [--epochs 1] [--workers 1 2]
    .venv/bin/python scripts/bench_data_parallel.py --preset vgg8b --limit 640  # 10 steps

(a CNN preset trains in ``compat="exact"``: ``workers`` refuses the reference mode).

Starts its own local Ray instance (``address="local"``: never a cluster running here).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from typing import Any

import numpy as np

from nitrod_rs import _parallel, datasets, presets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--preset", default="mlp2")
    ap.add_argument("--limit", type=int, default=None, help="the first N training images")
    args = ap.parse_args()
    import ray

    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=max(args.workers), include_dashboard=False,
             logging_level=logging.WARNING)
    ds = datasets.load("fashion-mnist")
    x, y = ds.x_train[:args.limit], ds.y_train[:args.limit]
    out: dict[str, Any] = {"preset": args.preset, "epochs": args.epochs, "rows": len(y),
                           "runs": []}
    states = []
    for workers in [None, *args.workers]:
        model, settings = presets.preset(args.preset, "fashion-mnist", epochs=args.epochs)
        settings.update(validation_split=0, plateau=False, early_stopping=False)
        if model._m.kind == "cnn":
            settings["compat"] = "exact"
        sent: list[int] = []
        original = _parallel.Workers.exchange

        def exchange(self: Any, *a: Any, _orig: Any = original) -> bytes:
            total: bytes = _orig(self, *a)
            sent.append(len(total))
            return total

        _parallel.Workers.exchange = exchange  # type: ignore[method-assign]
        try:
            t = time.perf_counter()
            h = model.fit(x, y, settings=settings, threads=1,
                          workers=workers, progress=False)
            seconds = time.perf_counter() - t
        finally:
            _parallel.Workers.exchange = original  # type: ignore[method-assign]
        states.append(model.state_dict())
        e = h.epochs[-1]
        run = {"workers": workers, "seconds": round(seconds, 2),
               "train_seconds_per_epoch": round(
                   sum(x["train_seconds"] for x in h.epochs) / len(h.epochs), 2),
               "train_accuracy": e["train_accuracy"],
               "steps": len(sent), "bytes_per_step": sent[0] if sent else None}
        out["runs"].append(run)
        print(json.dumps(run), flush=True)
    same = all(all(np.array_equal(s[k], states[0][k]) for k in s) for s in states[1:])
    out["bit_identical"] = same
    out["gradient_bytes"] = {name: 8 * getattr(presets, name)()[0].num_parameters
                             for name in ("mlp1", "mlp2", "vgg8b")}
    print(json.dumps(out, indent=1))
    ray.shutdown()


if __name__ == "__main__":
    main()
