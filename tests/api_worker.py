"""The child process of ``test_robust_api.py``: runs calls of the public API described as JSON,
one per line on stdin, and answers one JSON line each: ``{"ok": true}`` or the exception's type
and whether it is one the API documents. A crash (an abort, a segfault) ends this process, which
the parent sees as a closed pipe: that is what running the calls here, not in the test process,
catches."""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import numpy as np

import nitrod_rs
from nitrod_rs import CNN, MLP

#: The exceptions the public API documents for bad arguments and data: ``TypeError`` and
#: ``ValueError`` (``NitroError`` and its subclasses are ``ValueError``s), ``MemoryError`` for
#: buffers too large to allocate, ``ZeroDivisionError`` for ``ops.tdiv`` by 0.
DOCUMENTED = (TypeError, ValueError, MemoryError, ZeroDivisionError)


def _array(spec: dict[str, Any], rng: np.random.Generator) -> Any:
    shape = tuple(spec["shape"])
    dtype = np.dtype(spec["dtype"])
    if dtype.kind == "f":
        a = rng.uniform(spec.get("low", 0.0), spec.get("high", 1.0), size=shape).astype(dtype)
        if spec.get("nan") and a.size:
            a.flat[0] = np.nan
    elif dtype.kind == "b":
        a = rng.integers(0, 2, size=shape).astype(bool)
    else:
        info = np.iinfo(dtype)
        low, high = max(spec.get("low", 0), info.min), min(spec.get("high", 255), info.max)
        a = rng.integers(low, max(low, high) + 1, size=shape, dtype=np.int64).astype(dtype)
    if spec.get("layout") == "fortran":
        a = np.asfortranarray(a)
    elif spec.get("layout") == "list":
        return a.tolist()
    return a


def _model(spec: dict[str, Any]) -> Any:
    kw = dict(spec)
    kind = kw.pop("kind")
    if kind == "preset":
        return nitrod_rs.presets.preset(kw.pop("name"), **kw)[0]
    return (MLP if kind == "mlp" else CNN)(**kw)


def _op(spec: dict[str, Any], rng: np.random.Generator) -> None:
    """One of the integer primitives of ``nitrod_rs.ops`` on arrays of the given shapes."""
    args = [_array(a, rng) if isinstance(a, dict) else a for a in spec["args"]]
    getattr(nitrod_rs.ops, spec["op"])(*args, **spec.get("kw", {}))


def run(spec: dict[str, Any], stage: list[str]) -> None:
    rng = np.random.default_rng(spec.get("seed", 0))
    if "op" in spec:
        stage[0] = "call"
        _op(spec, rng)
        return
    model = _model(spec["model"])
    stage[0] = "call"
    call = spec["call"]
    kw = dict(spec.get("kw", {}))
    for key in ("validation_data", "test_data"):
        if key in kw and kw[key] is not None:
            kw[key] = (_array(kw[key][0], rng), _array(kw[key][1], rng))
    if "augment" in kw and isinstance(kw["augment"], list):
        kw["augment"] = tuple(kw["augment"])
    if call == "from_bytes":
        data = bytearray(model.to_bytes())
        for pos, value in spec["mutations"]:
            if data:
                data[pos % len(data)] = value % 256
        nitrod_rs.from_bytes(bytes(data[:spec.get("cut", len(data))]))
        return
    if call == "summary":
        model.summary(print_fn=lambda s: None)
        return
    x = _array(spec["x"], rng)
    if spec.get("prefit") and np.asarray(x).dtype != np.int8:
        model.fit_normalization(x)  # so that a pixel batch reaches the engine
    if call == "predict":
        model.predict(x, **kw)
    elif call == "predict_scores":
        model.predict_scores(x, **kw)
    else:
        y = _array(spec["y"], rng)
        if call == "fit":
            model.fit(x, y, progress=False, **kw)
        elif call == "evaluate":
            model.evaluate(x, y, **kw)
        elif call == "train_batch":
            model.train_batch(x, y, **kw)
        else:
            raise AssertionError(f"unknown call {call!r}")


def main() -> None:
    warnings.simplefilter("ignore")
    for line in sys.stdin:
        spec = json.loads(line)
        stage = ["model"]
        try:
            run(spec, stage)
            answer: dict[str, Any] = {"ok": True}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which judges
            answer = {"ok": False, "type": f"{type(exc).__module__}.{type(exc).__name__}",
                      "documented": isinstance(exc, DOCUMENTED), "message": str(exc)[:500],
                      "has_history": hasattr(exc, "history"), "stage": stage[0]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
