"""One run of a sweep (:mod:`nitrod_rs.sweep`), as a Ray worker runs it: train with ``fit``'s
checkpoints, resuming the run's checkpoint when there is one, and write the results.

The run's folder holds ``run.json`` (its settings and seed, written first), ``attempts.jsonl``
(one line per start: the process, the host and the epochs it resumed after),
``checkpoint.safetensors`` (``fit``'s, after every ``checkpoint_every`` epochs),
``model.safetensors`` (the final model) and ``history.json``, written last: the run is finished
when it exists.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from . import _sweep_spec

RUN_FILE = "run.json"
HISTORY_FILE = "history.json"
MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
ATTEMPTS_FILE = "attempts.jsonl"

#: The data sets this worker process has read, by (name, folder): a worker runs many runs.
_DATA: dict[tuple[str, str | None], Any] = {}


def write_json(path: Path, doc: Any) -> None:
    """``doc`` to ``path`` atomically: a reader (or a later sweep) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def run_record(settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """What ``run.json`` holds: what names the run."""
    return {"settings": settings, "seed": seed}


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class _Attempt:
    """A ``fit`` callback that appends this start of the run to ``attempts.jsonl`` once ``fit``
    knows the epochs done before it (``set_model``: those of the resumed checkpoint)."""

    def __init__(self, path: Path, resumed: bool) -> None:
        self.path = path
        self.resumed = resumed
        self.resumed_after: int | None = None

    def set_model(self, model: Any) -> None:
        if self.resumed:
            self.resumed_after = len(model.history.epochs) if model.history else 0
        line = {"pid": os.getpid(), "host": socket.gethostname(),
                "resumed_after_epoch": self.resumed_after, "started": time.time()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def __call__(self, entry: dict[str, Any]) -> None:
        return None


def _dataset(name: str, data_dir: str | None) -> Any:
    from . import datasets

    key = (name, data_dir)
    if key not in _DATA:
        _DATA[key] = datasets.load(name, data_dir)
    return _DATA[key]


def run_task(settings: dict[str, Any], seed: int, folder: str, data_dir: str | None,
             threads: int, checkpoint_every: int) -> dict[str, Any]:
    """Train one run into ``folder`` (or finish it from its checkpoint); returns the document
    of ``history.json``. The Ray task of a sweep."""
    from .cli import _test_result

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    done = path / HISTORY_FILE
    if done.exists():  # a retry after the run's files were all written
        doc: dict[str, Any] = read_json(done)
        return doc
    write_json(path / RUN_FILE, run_record(settings, seed))
    model, kw = _sweep_spec.resolve(settings, seed)
    ds = _dataset(settings["dataset"], data_dir)
    x, y = ds.x_train, ds.y_train
    if "limit" in settings:
        x, y = x[: settings["limit"]], y[: settings["limit"]]
    xt, yt = ds.x_test, ds.y_test
    if "test_limit" in settings:
        xt, yt = xt[: settings["test_limit"]], yt[: settings["test_limit"]]
    ckpt = path / CHECKPOINT_FILE
    resume = ckpt if ckpt.exists() else None
    attempt = _Attempt(path / ATTEMPTS_FILE, resumed=resume is not None)
    start = time.monotonic()
    history = model.fit(x, y, test_data=(xt, yt), seed=seed, threads=threads, progress=False,
                        callbacks=[attempt], checkpoint=ckpt, checkpoint_every=checkpoint_every,
                        resume=resume, **kw)
    seconds = time.monotonic() - start
    test = model.evaluate(xt, yt, threads=threads)
    model.save(path / MODEL_FILE)
    best = history.best
    doc = {
        "name": path.name,
        "run": run_record(settings, seed),
        "model": _sweep_spec.model_label(settings["model"]),
        "dataset": ds.name,
        "source": ds.source,
        "seed": seed,
        "train_samples": int(len(y)),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()},
        **history.to_dict(),
        "best_test_accuracy": best["test_accuracy"] if best else None,
        **_test_result(test),
        "seconds": seconds,
        "resumed_after_epoch": attempt.resumed_after,
    }
    write_json(done, doc)
    return doc
