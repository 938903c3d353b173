"""Seed and hyper-parameter sweeps on Ray: ``nitrod_rs.sweep(...)`` and ``nitrod sweep``.

    result = nitrod_rs.sweep("spec.json", out="results")      # or a dict, or keywords:
    result = nitrod_rs.sweep(out="results", seeds=10,
                             base={"epochs": 150, "paper_protocol": True},
                             runs=[{"model": "mlp1"}, {"model": "mlp2"}])
    print(result.markdown)

A spec (a mapping, or a ``.json`` / ``.toml`` file) has four keys, all optional:

* ``seeds``: a count (``10``: seeds 0 to 9) or a list of seeds; default ``1`` (seed 0);
* ``base``: the settings every run shares;
* ``grid``: settings and their lists of values; every combination is run;
* ``runs``: a list of settings, each combined with every combination of the grid.

A run's settings are, over ``base``: ``model`` (a preset such as ``"mlp1"``, or an
architecture ``{"kind": "mlp", "layers": [784, 100, 10], ...}`` /
``{"kind": "cnn", "features": [...], ...}`` with the keywords of :class:`~nitrod_rs.MLP` or
:class:`~nitrod_rs.CNN`), ``dataset`` (default: the preset's), ``limit`` / ``test_limit`` (the
first N training / test samples), ``dropout``, and every keyword of ``fit`` a JSON value can
give: ``epochs`` (required), ``batch_size``, ``lr_inv``, ``lr_amp_factor``, ``fwd_decay_inv``,
``subnet_decay_inv``, ``compat``, ``augment``, ``shuffle``, ``plateau``, ``early_stopping``,
``validation_split`` (default the presets' 0.1; 0 or null: none), ``validation_seed`` and
``paper_protocol``. A preset starts from its own settings (``nitrod_rs.presets``); the run's
settings override them. Every mistake in a spec is found before any work
(:class:`SweepSpecError`).

Each run is a Ray task with ``num_cpus`` equal to its engine threads (``threads``), trained
into its own folder of ``out`` named from its settings (``mlp1_mnist_epochs=150_seed=3``); see
:mod:`nitrod_rs._sweep_run` for the files. Running a sweep again skips its finished runs and
resumes the others from their checkpoints; a run whose worker dies is retried (``retries``),
resuming its checkpoint as well. At the end ``out/table.md``, ``table.csv`` and ``table.json``
hold the mean ± sample standard deviation over the seeds of each configuration
(:mod:`nitrod_rs._sweep_table`).

Without ``address`` a local Ray starts with one CPU per core and stops at the end; with it the
sweep joins that cluster (``"auto"``, ``"host:port"``, ``"ray://host:port"``), whose nodes must
all see ``out`` (and the data) at the same path. In a process where Ray is already initialised
the sweep uses that. Needs ``pip install 'nitrod-rs[ray]'``.

The module is callable: ``nitrod_rs.sweep(...)`` is :func:`sweep`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _progress, _sweep_run, _sweep_spec, _sweep_table
from ._paths import PathLike
from ._sweep_spec import Run, SweepSpecError

__all__ = ["sweep", "SweepResult", "SweepError", "SweepSpecError", "RayMissingError",
           "TABLE_FILES"]

#: The table's files in the results folder.
TABLE_FILES = {"markdown": "table.md", "csv": "table.csv", "json": "table.json"}


class RayMissingError(ImportError):
    """Ray is not installed (it is an optional extra)."""


class SweepError(RuntimeError):
    """Runs of a sweep failed; the others finished and the table holds them. ``result`` is the
    :class:`SweepResult`; ``failed`` maps each failed run's folder name to its error."""

    def __init__(self, message: str, result: SweepResult) -> None:
        super().__init__(message)
        self.result = result
        self.failed = dict(result.failed)


@dataclass
class SweepResult:
    """What a sweep did and found. ``table``: the rows (:func:`nitrod_rs._sweep_table.build`);
    ``markdown``: the table as printed; ``files``: the table's files; ``runs``: every run (its
    settings, seed and folder name); ``trained``, ``resumed``, ``skipped``: the folder names of
    the runs trained from the start, finished from a checkpoint, and finished before;
    ``failed``: folder name → error."""

    out: Path
    runs: list[Run]
    table: dict[str, Any]
    markdown: str
    files: dict[str, Path]
    trained: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayMissingError("sweeps run on Ray, which is not installed: "
                              "pip install 'nitrod-rs[ray]' (or pip install ray)") from exc
    return ray


def _spec(spec: PathLike | Mapping[str, Any] | None, seeds: Any, base: Any, grid: Any,
          runs: Any) -> _sweep_spec.Spec:
    """The spec: ``spec`` (a file or a mapping), with the keywords given over it — ``seeds``
    and ``runs`` replace the spec's, ``base`` and ``grid`` are merged into its key by key."""
    if spec is None:
        doc: dict[str, Any] = {}
    elif isinstance(spec, Mapping):
        doc = dict(spec)
    else:
        doc = _sweep_spec.read(spec)
    for key, value in (("seeds", seeds), ("runs", runs)):
        if value is not None:
            doc[key] = value
    for key, value in (("base", base), ("grid", grid)):
        if value is not None:
            if not isinstance(value, Mapping):
                raise SweepSpecError(f"{key}: expected a mapping, got {type(value).__name__}")
            old = doc.get(key, {})
            doc[key] = {**(old if isinstance(old, Mapping) else {}), **value}
    return _sweep_spec.parse(doc)


def _finished(run: Run, folder: Path) -> dict[str, Any] | None:
    """The ``history.json`` of a finished run, ``None`` for one to (re)start; a folder of
    another run is an error."""
    record = folder / _sweep_run.RUN_FILE
    if record.exists():
        want = _sweep_run.run_record(run.settings, run.seed)
        have = _sweep_run.read_json(record)
        if _sweep_spec.canonical(have) != _sweep_spec.canonical(want):
            raise SweepSpecError(f"{folder} holds another run ({have}) than {run.origin} "
                                 f"(seed {run.seed}): give another results folder, or remove it")
    done = folder / _sweep_run.HISTORY_FILE
    if done.exists() and (folder / _sweep_run.MODEL_FILE).exists():
        doc: dict[str, Any] = _sweep_run.read_json(done)
        return doc
    return None


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.2f}%"


def _run_line(name: str, doc: Mapping[str, Any]) -> str:
    a = _sweep_table.accuracies(doc)
    best = doc.get("best_epoch")
    parts = []
    if a["best_val_accuracy"] is not None:
        parts.append(f"best val {_pct(a['best_val_accuracy'])}")
    if best is not None:
        parts.append(f"test {_pct(a['best_epoch_test_accuracy'])} at epoch {best}")
    parts.append(f"final test {_pct(a['final_test_accuracy'])} "
                 f"({doc['test_correct']}/{doc['test_total']})")
    after = doc.get("resumed_after_epoch")
    how = f", resumed after epoch {after}" if after is not None else ""
    return (f"{name}: " + ", ".join(parts) + f" ({_count(len(doc['epochs']), 'epoch')}, "
            f"{doc['seconds']:.1f} s{how})")


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _connect(ray: Any, address: str | None, threads: int) -> bool:
    """Join or start Ray; returns whether this call started it (then the sweep stops it)."""
    started = False
    quiet = {"logging_level": logging.WARNING}
    if ray.is_initialized():
        if address is not None:
            raise ValueError(f"Ray is already initialised in this process: the sweep uses it, "
                             f"so give no address (got {address!r})")
    elif address is not None:
        ray.init(address=address, **quiet)
        started = True
    else:
        # address="local": a new instance on this machine's CPUs, never a cluster that happens
        # to run here (plain ray.init() joins the last `ray start` one, and refuses num_cpus).
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
        started = True
    cpus = float(ray.cluster_resources().get("CPU", 0))
    if threads > cpus:
        if started:
            ray.shutdown()
        raise ValueError(f"threads={threads} per run, but the Ray cluster has {cpus:g} CPUs: no "
                         f"run could start; give threads={max(int(cpus), 1)} or fewer")
    return started


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # a RayTaskError's original exception
    err = cause if isinstance(cause, BaseException) else exc
    msg = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {msg}"[:2000]


def _train(pending: Sequence[Run], out: Path, result: SweepResult,
           docs: dict[str, dict[str, Any]], display: Any, *, address: str | None,
           threads: int, data_dir: str | None, checkpoint_every: int, retries: int) -> None:
    """Run ``pending`` as Ray tasks, one line per run that ends."""
    ray = _ray()
    started = _connect(ray, address, threads)
    task = ray.remote(_sweep_run.run_task)
    refs: dict[Any, Run] = {}
    try:
        for r in pending:
            folder = out / r.name
            resumes = (folder / _sweep_run.CHECKPOINT_FILE).exists()
            (result.resumed if resumes else result.trained).append(r.name)
            ref = task.options(num_cpus=threads, max_retries=retries, name=r.name).remote(
                r.settings, r.seed, str(folder), data_dir, threads, checkpoint_every)
            refs[ref] = r
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                r = refs.pop(ref)
                try:
                    doc = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the run failed; the others go on
                    result.failed[r.name] = _error_text(exc)
                    display.advance(f"{r.name}: FAILED: {result.failed[r.name]}")
                    continue
                docs[r.name] = doc
                if doc.get("resumed_after_epoch") is not None and r.name in result.trained:
                    # A worker died and the retry resumed the run's checkpoint.
                    result.trained.remove(r.name)
                    result.resumed.append(r.name)
                display.advance(_run_line(r.name, doc))
    except KeyboardInterrupt:
        # Each running task gets a KeyboardInterrupt: fit writes its checkpoint (inside an
        # epoch too) before it ends, so the next sweep resumes from there.
        for ref in refs:
            ray.cancel(ref)
        ray.wait(list(refs), num_returns=len(refs), timeout=30)
        print(f"interrupted: {len(docs)} of {len(result.runs)} runs finished; running the "
              "sweep again resumes the others from their checkpoints", file=sys.stderr)
        raise
    finally:
        if started:
            ray.shutdown()


def sweep(
    spec: PathLike | Mapping[str, Any] | None = None,
    *,
    out: PathLike,
    seeds: int | Sequence[int] | None = None,
    base: Mapping[str, Any] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    runs: Sequence[Mapping[str, Any]] | None = None,
    address: str | None = None,
    threads: int = 1,
    data_dir: PathLike | None = None,
    checkpoint_every: int = 1,
    retries: int = 3,
    progress: bool = True,
) -> SweepResult:
    """Run every run of a sweep that has not finished yet into ``out``, then write its table.

    ``spec``: a ``.json`` / ``.toml`` file or a mapping (the format: this module's
    documentation); ``seeds``, ``base``, ``grid`` and ``runs`` are given over it (``seeds``
    and ``runs`` replace the spec's, ``base`` and ``grid`` are merged key by key).
    ``threads``: engine threads of each run, and the CPUs its Ray task asks for (results do
    not depend on it). ``data_dir``: where the workers read the data sets (as
    ``nitrod_rs.datasets.load``). ``checkpoint_every``: epochs between checkpoints.
    ``retries``: how often a run whose worker died starts again (from its checkpoint).
    ``progress``: an overall bar under the result lines (each finished run prints one line to
    stderr either way).

    Raises :class:`SweepSpecError` for a spec that cannot run (before any work),
    :class:`RayMissingError` without Ray, :class:`SweepError` when runs failed (after the
    others finished and the table was written).
    """
    from ._checks import check_int

    threads = check_int(threads, "threads", minimum=1)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", minimum=1)
    retries = check_int(retries, "retries", minimum=0)
    all_runs = _sweep_spec.expand(_spec(spec, seeds, base, grid, runs))
    root = Path(_sweep_spec.results_dir(out))
    docs: dict[str, dict[str, Any]] = {}
    for r in all_runs:
        doc = _finished(r, root / r.name)
        if doc is not None:
            docs[r.name] = doc
    result = SweepResult(root, all_runs, {}, "", {}, skipped=list(docs))
    pending = [r for r in all_runs if r.name not in docs]
    if docs:
        print(f"{len(docs)} of {len(all_runs)} runs finished before, in {root}: skipped",
              file=sys.stderr)
    if pending:
        root.mkdir(parents=True, exist_ok=True)
        print(f"{_count(len(pending), 'run')} to train into {root}, "
              f"{_count(threads, 'engine thread')} each",
              file=sys.stderr)
        display = _progress.count(len(all_runs), len(docs), "runs", progress)
        t0 = time.monotonic()
        try:
            _train(pending, root, result, docs, display, address=address, threads=threads,
                   data_dir=None if data_dir is None else os.path.abspath(os.fspath(data_dir)),
                   checkpoint_every=checkpoint_every, retries=retries)
        finally:
            display.close()
        print(f"{_count(len(pending) - len(result.failed), 'run')} finished in "
              f"{_progress.clock(time.monotonic() - t0)}", file=sys.stderr)
    root.mkdir(parents=True, exist_ok=True)
    table = _sweep_table.build(all_runs, docs)
    result.table = table
    result.markdown = _sweep_table.markdown(table)
    texts = {"markdown": result.markdown, "csv": _sweep_table.to_csv(table),
             "json": _sweep_table.to_json(table)}
    for kind, text in texts.items():
        path = root / TABLE_FILES[kind]
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        result.files[kind] = path
    if result.failed:
        names = ", ".join(result.failed)
        raise SweepError(f"{len(result.failed)} of {len(all_runs)} runs failed ({names}); "
                         f"the first: {next(iter(result.failed.values()))}. Running the sweep "
                         "again retries them (and skips the finished ones)", result)
    return result


class _CallableModule(types.ModuleType):
    """``nitrod_rs.sweep`` is both this module and, called, :func:`sweep`: importing the
    module (``from nitrod_rs.sweep import SweepResult``) makes it the package's attribute, so
    the function must be reachable through it."""

    def __call__(self, *args: Any, **kwargs: Any) -> SweepResult:
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
