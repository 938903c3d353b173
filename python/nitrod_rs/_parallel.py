"""Data-parallel training, exact: ``fit(..., workers=K)`` on Ray actors.

Every step of the engine's epoch loop (shuffling, augmentation, evaluation, schedules and
checkpoints stay the driver's, unchanged) hands its batch to :meth:`Workers.exchange`: the batch
is cut into ``K`` consecutive shares, each worker (a Ray actor holding a replica of the model)
computes the ``int64`` gradient sums of its share without updating (``_core.Model.gradients``),
the driver adds them up exactly in Rust (``_core.sum_gradients``: checked integer additions,
never floats), sends the total once to every worker (one ``ray.put``) and applies it to its own
model (``_core.Model.apply_gradients``), as every worker does to its replica. Integer sums are
associative and every gradient of a step depends only on the weights before the step and the
batch (docs/algorithm.md §4.3), so the update is the single-process one, bit for bit, for any
``K``; nothing in a step divides by the batch size.

Random draws: the batch (shuffled and augmented) is made by the driver as plain ``fit`` makes
it; the dropout masks of the whole batch are drawn by every worker from the generator states
the driver's step starts from (sent with the batch), each worker using only its own rows — so a
sample's mask does not depend on which worker handles it, and no recorded trajectory changed.

Communication per step: ``8 × num_parameters`` bytes of gradient sums from each worker and the
same back (plus a small header and the batch itself, ``batch_size × features`` bytes).

Not supported: a CNN in ``compat="reference"`` (its classifier blocks are updated twice per
step, the second time from the first update's result, which one exchange per step cannot give).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from . import _core
from ._checks import check_int

#: The most workers ``fit`` accepts (each holds a replica; more than a cluster's CPUs only waits).
MAX_WORKERS = 1024

_RAY_HINT = "pip install 'nitrod-rs[ray]' (or pip install ray)"


def check_workers(workers: Any) -> int | None:
    """``fit``'s ``workers``: ``None`` (train in this process) or a count in 1..MAX_WORKERS."""
    if workers is None:
        return None
    return check_int(workers, "workers", minimum=1, maximum=MAX_WORKERS)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"fit(..., workers=K) trains on Ray actors and needs Ray: "
                          f"{_RAY_HINT}") from exc
    return ray


def shares(n: int, k: int) -> list[tuple[int, int]]:
    """``k`` consecutive shares ``(start, end)`` of ``n`` rows, sizes differing by at most one
    (the first ``n % k`` one row larger)."""
    base, extra = divmod(n, k)
    out, start = [], 0
    for i in range(k):
        end = start + base + (1 if i < extra else 0)
        out.append((start, end))
        start = end
    return out


class Replica:
    """The model replica a worker holds (the class of the Ray actors): computes the gradient
    sums of its share of a batch and applies the totals the driver sends. Engine errors are
    returned, not raised, so that the driver raises the engine's own exception."""

    def __init__(self, model: bytes, threads: int | None) -> None:
        self.model = _core.Model.from_bytes(model)
        self.threads = threads
        #: The error of the last ``apply`` (every replica applies the same total: a failure
        #: fails the driver's step too; kept to report it at the next step).
        self.failed: BaseException | None = None

    def gradients(self, x: np.ndarray, y: np.ndarray, start: int, total: int,
                  hyper: dict[str, Any], rngs: list[tuple[int, int]]) -> Any:
        if self.failed is not None:
            return self.failed
        try:
            return self.model.gradients(x, y, start, total, dropout_rngs=rngs,
                                        threads=self.threads, **hyper)
        except Exception as exc:  # noqa: BLE001 - handed to the driver, which raises it
            return exc

    def apply(self, total: bytes, hyper: dict[str, Any]) -> None:
        try:
            self.model.apply_gradients(total, threads=self.threads, **hyper)
        except Exception as exc:  # noqa: BLE001 - reported at the next step
            self.failed = exc

    def state(self) -> tuple[bytes, list[tuple[int, int]]]:
        """The replica's parameters (``.safetensors`` bytes) and dropout generators (tests)."""
        return self.model.to_bytes(), self.model.dropout_rngs


class Workers:
    """``k`` Ray actors, each a :class:`Replica` of ``model``, each using ``threads`` engine
    threads (and asking Ray for that many CPUs). Starts a new local Ray instance when none is
    initialised in this process (stopped again by :meth:`close`); a cluster joined with
    ``ray.init(address=...)`` beforehand is used as it is."""

    def __init__(self, model: Any, k: int, threads: int) -> None:
        ray = _ray()
        self._ray = ray
        self.started = False
        if not ray.is_initialized():
            # address="local": a new instance of this machine's CPUs, never a cluster that
            # happens to run here (plain ray.init() would join the last `ray start` one).
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                     logging_level=logging.WARNING)
            self.started = True
        self.actors: list[Any] = []
        try:
            cpus = float(ray.cluster_resources().get("CPU", 0))
            need = k * threads
            if need > cpus:
                raise ValueError(f"workers={k} with threads={threads} each need {need} CPUs, "
                                 f"but the Ray cluster has {cpus:g}: give fewer workers or "
                                 f"threads")
            actor = ray.remote(num_cpus=threads)(Replica)
            data = ray.put(model.to_bytes())
            self.actors = [actor.remote(data, threads) for _ in range(k)]
        except BaseException:
            self.close()
            raise
        #: Bytes of gradient sums received from the workers and sent back, over the run.
        self.bytes_in = 0
        self.bytes_out = 0
        #: A Ctrl-C that arrived while the workers computed: the step is finished first and
        #: the run stops after it (:meth:`after_batch`), as plain ``fit`` stops after a batch.
        self.interrupt: BaseException | None = None

    def _get(self, refs: list[Any]) -> list[Any]:
        try:
            return list(self._ray.get(refs))
        except KeyboardInterrupt as exc:
            self.interrupt = exc
            return list(self._ray.get(refs))  # a second Ctrl-C ends the step (and the run)

    def after_batch(self) -> None:
        """Raise the Ctrl-C that arrived during the last step (the engine's per-batch callback
        calls this: the run then stops after that batch, consistent and checkpointable)."""
        exc, self.interrupt = self.interrupt, None
        if exc is not None:
            raise exc

    def exchange(self, x: np.ndarray, y: np.ndarray, hyper: dict[str, Any],
                 rngs: list[tuple[int, int]]) -> bytes:
        """One step: the shares' gradient sums, their exact total (returned, for the driver's
        model to apply), sent once to every worker to apply. Called by the engine
        (``_core.Run.epoch(..., exchange=)``)."""
        ray = self._ray
        n = len(y)
        k = len(self.actors)
        if n < k:
            raise ValueError(f"a batch of {n} samples cannot be shared by workers={k}: give at "
                             f"most {n} workers, or a larger batch_size")
        refs = [a.gradients.remote(x[s:e], y[s:e], s, n, hyper, rngs)
                for a, (s, e) in zip(self.actors, shares(n, k))]
        parts = self._get(refs)
        for p in parts:
            if isinstance(p, BaseException):
                raise p
        total = _core.sum_gradients(parts)
        ref = ray.put(total)
        for a in self.actors:
            a.apply.remote(ref, hyper)
        self.bytes_in += sum(len(p) for p in parts)
        self.bytes_out += len(total) * k
        return total

    def states(self) -> list[tuple[bytes, list[tuple[int, int]]]]:
        """Every replica's parameters and dropout generators (after all sent updates)."""
        return self._ray.get([a.state.remote() for a in self.actors])

    def close(self) -> None:
        """Stop the actors (and Ray, if this object started it)."""
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []
        if self.started:
            self._ray.shutdown()
            self.started = False
