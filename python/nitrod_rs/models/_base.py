"""What :class:`~nitrod_rs.MLP` and :class:`~nitrod_rs.CNN` share: normalisation, ``fit``,
``train_batch``, ``predict``, ``evaluate``, ``state_dict`` and files.

Everything numeric runs in the engine; this class checks arguments (:mod:`.._checks`),
converts inputs, draws progress bars (:mod:`.._progress`) and assembles the
:class:`~nitrod_rs.History`. Defaults are the engine's (``_core.defaults``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _checks, _core, _parallel, _progress
from .._checks import DEFAULTS, Geometry, check_int
from .._paths import PathLike
from ..history import History, epoch_entry
from . import _engine

#: The engine's IntegerSGD defaults (``nitro_core::Hyper::default``): lr_inv, lr_amp_factor, …
HYPER: dict[str, Any] = dict(DEFAULTS["hyper"])
#: The engine's one-hot target value at the label (``nitro_core::data::ONE_HOT``).
ONE_HOT: int = int(DEFAULTS["one_hot"])
#: The engine's default batch size (``nitro_core::TrainConfig::default``).
BATCH_SIZE: int = int(DEFAULTS["batch_size"])


class Model:
    """The shared base of the model classes; ``_m`` is the engine's model (made in
    :mod:`._engine`; typed ``Any`` as the methods it has depend on its kind)."""

    _m: Any
    history: History | None
    #: The ``_core.Run`` of the last ``fit`` (what ``initial_epoch`` continues), or ``None``.
    _run: Any = None

    def _check(self, x: Any, name: str, *, single: bool = False,
               core: Any = None) -> tuple[np.ndarray, Geometry]:
        """``x`` as 2-D rows (``uint8`` or ``int8``) and its (C, H, W) (``_checks.pixels``);
        ``single`` accepts one sample too; ``core``: the engine model whose statistics apply
        (default: this one's)."""
        raise NotImplementedError

    def _fit_compat(self) -> str:
        """The ``compat`` of ``fit`` when none is given."""
        return str(HYPER["compat"])

    # -- description ---------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The architecture (as saved in the file's metadata)."""
        return dict(self._m.config)

    @property
    def classes(self) -> int:
        return int(self._m.config["classes"])

    @property
    def hyper(self) -> dict[str, Any] | None:
        """IntegerSGD settings of the last training run (``None`` before training)."""
        h = self._m.hyper
        return dict(h) if h is not None else None

    @property
    def normalization(self) -> tuple[list[int], list[int]] | None:
        """The stored per-channel ``(mean, mad)`` statistics (docs/algorithm.md §2), or ``None``."""
        return self._m.normalization

    @property
    def num_parameters(self) -> int:
        return self._m.num_parameters()

    def summary(self, *, print_fn: Callable[[str], Any] | None = None) -> str:
        """A table of the layers: each one's role, output shape and integer type, parameter
        count and the bits its weights use now (``int32`` storage); the normalisation and the
        last training settings. Printed (with ``print_fn``, default ``print``) and returned."""
        from ._summary import summary

        text = summary(self)
        (print if print_fn is None else print_fn)(text)
        return text

    # -- inputs --------------------------------------------------------------------------

    def fit_normalization(self, x: Any) -> tuple[list[int], list[int]]:
        """Fit the docs/algorithm.md §2 statistics on training images and store them: per channel the mean
        and mean absolute deviation of ``pixel - 128``. ``x``: pixels (``uint8``, or any input
        the rules of :mod:`nitrod_rs.models` read as pixels), not ``int8`` normalised values."""
        x2, chw = self._check(x, "x")
        if x2.dtype != np.uint8:
            raise TypeError("fit_normalization needs pixels (uint8 or images convertible to "
                            "them), got int8 (already-normalised values)")
        stats = _core.fit_normalization(x2, chw[0])
        self._m.set_normalization(stats)
        return stats

    def _normalized(self, x2: np.ndarray, name: str, core: Any = None) -> np.ndarray:
        """Checked rows as the engine's ``int8`` input: ``int8`` as they are, pixels
        normalised with the statistics of ``core`` (default: this model)."""
        if x2.dtype == np.int8:
            return x2
        stats = (self._m if core is None else core).normalization
        if stats is None:
            raise ValueError(
                f"{name} holds pixels but the model has no normalisation statistics yet: "
                "train with fit() on pixel images, call fit_normalization(x_train) first, or "
                "pass int8 already-normalised data"
            )
        return _core.normalize(x2, stats[0], stats[1])

    def _prepare(self, x: Any, name: str = "x", core: Any = None, *,
                 single: bool = False) -> tuple[np.ndarray, Geometry]:
        """``x`` as normalised rows, with the statistics of ``core`` (default: this model)."""
        x2, chw = self._check(x, name, single=single, core=core)
        return self._normalized(x2, name, core), chw

    def _labels(self, y: Any, n: int, name: str = "y") -> np.ndarray:
        return _checks.labels(y, n, self.classes, name)

    def _hyper(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        base = dict(HYPER)
        base.update(self._m.hyper or {})
        for k, v in overrides.items():
            if v is not None:
                base[k] = v
        return _checks.hyper(base)

    # -- training ------------------------------------------------------------------------

    def fit(
        self,
        x: Any,
        y: Any,
        *,
        settings: Mapping[str, Any] | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr_inv: int | None = None,
        lr_amp_factor: int | None = None,
        fwd_decay_inv: int | None = None,
        subnet_decay_inv: int | None = None,
        lr_schedule: Any = None,
        validation_data: Sequence[Any] | None = None,
        validation_split: float | None = None,
        validation_seed: int | None = None,
        test_data: Sequence[Any] | None = None,
        paper_protocol: bool | None = None,
        augment: bool | tuple[int, bool] | Mapping[str, Any] | None = None,
        shuffle: bool | None = None,
        plateau: bool | Mapping[str, int] | None = None,
        early_stopping: bool | Mapping[str, int] | None = None,
        verbose: int | None = None,
        progress: bool | None = None,
        callbacks: Sequence[Callable[[dict[str, Any]], Any]] | None = None,
        checkpoint: PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: PathLike | None = None,
        initial_epoch: int | None = None,
        seed: int | None = None,
        compat: str | None = None,
        threads: int | None = None,
        workers: int | None = None,
    ) -> History:
        """Train with IntegerSGD for ``epochs`` epochs; returns (and sets ``model.history`` to)
        the :class:`~nitrod_rs.History`.

        Every keyword is optional; ``None`` means "not given": the entry of ``settings`` if it
        has one, else the default shown in brackets. ``settings`` is a mapping of these keywords,
        such as a preset's (``model, settings = nitrod_rs.presets.mlp2()``); a keyword given
        explicitly overrides its entry: ``model.fit(x, y, settings=settings, epochs=5)``
        (``model.fit(x, y, **settings, epochs=5)`` is a Python error when ``settings`` has
        ``epochs``).

        Inputs: ``x`` are images or feature rows as described in :mod:`nitrod_rs.models`
        (``uint8`` pixels, ``int8`` normalised values, other integer types holding 0..255,
        floats in [0, 1] or [0, 255], lists; any layout); ``y`` integer class indices
        ``0 <= y < classes`` of any integer dtype. Pixels are normalised with statistics fitted
        on ``x`` (kept if the model already has some).

        Length and batches: ``epochs`` [1] is the epoch to reach (with ``resume`` or
        ``initial_epoch``, counted from the start of the run); ``batch_size`` [64] samples per
        step; the last incomplete batch of an epoch is dropped; ``shuffle`` [True] visits a
        fresh seeded permutation every epoch; ``seed`` [the model's seed] seeds the shuffling
        and the augmentation.

        IntegerSGD (all integers; a larger inverse is a smaller step):

        * ``lr_inv`` [512]: the inverse learning rate. Every update subtracts
          ``tdiv(gradient, lr_inv · amp)`` (division truncating toward zero) from a weight.
        * ``lr_amp_factor`` [640, i.e. 2⁶ · 10 classes]: the extra inverse factor ``amp`` of
          each block's forward layer (linear or convolution), whose gradients are far larger
          than those of the heads and of the output layer (``amp`` 1 there).
        * ``fwd_decay_inv`` [0 = off]: inverse weight decay of the forward layers; each update
          also subtracts ``tdiv(weight, fwd_decay_inv)``, pulling weights toward 0.
        * ``subnet_decay_inv`` [0 = off]: the same for the learning heads and the output layer.
        * ``compat`` ["exact", a CNN's own default]: ``"reference"`` reproduces three quirks
          of the original implementation bit for bit (a CNN's classifier blocks updated twice
          per step, errors wrapped to ``int8``, max-pool padding 0) — needed to match the
          paper's CNN runs exactly; for MLPs the two modes agree unless an error wraps.
        * ``lr_schedule`` [None, constant]: how ``lr_inv`` grows after each epoch:
          ``("linear", pct, max)`` adds ``pct`` % of the starting value per epoch,
          ``("exponential", pct, max)`` multiplies by ``(100 + pct)/100``, ``("halving",
          every, max)`` doubles it every ``every`` epochs (halving the step); each capped at
          ``max``. A dict ``{"kind": "halving", "every": 10, "max": 4096}`` works too.

        Sets and protocol: ``validation_data=(x, y)`` (a tuple or list) or
        ``validation_split`` (a share of ``x`` held out, 0.001 to 0.999; 0 for none; rows
        picked by ``validation_seed`` [0]) is evaluated after every epoch, watched by
        ``plateau``, ``early_stopping`` and :attr:`History.best_epoch`. ``test_data=(x, y)``
        is evaluated and reported every epoch, never used for selection — unless
        ``paper_protocol=True`` [False]: the paper's protocol, where the plateau rule, early
        stopping (both on) and the best epoch watch the test set, without a validation split.

        * ``plateau`` [False]: when the watched accuracy has not improved by ``min_delta``
          percentage points for ``patience`` epochs (from epoch ``start_epoch``), multiply
          ``lr_inv`` by ``factor``. ``True`` takes the paper's settings, a dict changes them:
          ``{"patience": 15, "factor": 3, "start_epoch": 10, "min_delta": 1}``.
        * ``early_stopping`` [False]: stop when the watched accuracy has not improved for
          ``patience`` epochs (from ``start_epoch``): ``True`` or ``{"patience": 35,
          "start_epoch": 30, "min_delta": 1}``.
          Both need a watched set: without one they are an error.
        * ``augment`` [False]: per-sample random crops after padding and horizontal flips:
          ``True`` (pad 4 for 32-pixel images, else 2; flip), ``(pad, flip)`` or
          ``{"pad": 2, "flip": False}``.

        Display: ``verbose`` as Keras' (0 silent, 1 a progress bar and a line per epoch, 2 a
        line per epoch) or ``progress`` True/False [a bar].

        ``callbacks`` are called after every epoch with that epoch's entry of the history; one
        returning ``True`` stops training. They may save, evaluate and predict with the model;
        one with a ``set_model`` method is given the model first (see
        :mod:`nitrod_rs.callbacks`). ``model.history`` holds the epochs so far.

        Checkpoints and continuing: ``checkpoint=path`` writes the model and the run's state
        atomically every ``checkpoint_every`` [1] epochs, at the end, and when Ctrl-C or a
        callback (returning ``True`` or raising) stops the run (inside an epoch, it continues
        from the next batch; not after an engine error). ``resume=path`` continues such a run
        bit for bit: with the settings and data it was started with (an error names what
        differs; only ``epochs`` may change), the checkpoint's model replaces this model's
        (same architecture), and the history covers the whole run. ``initial_epoch=k`` [0]
        says where the run stands: with ``resume``, the checkpoint must have completed ``k``
        epochs; without, ``k > 0`` continues this model's previous ``fit`` (the same data and
        settings, which had completed ``k`` epochs) bit for bit, as if it had never stopped —
        the model keeps its last run (with its copy of the data) for this.

        Errors: Ctrl-C stops after the current batch with ``KeyboardInterrupt``; the model is
        then consistent. Any exception leaving ``fit`` (Ctrl-C, an engine error such as
        :class:`~nitrod_rs.IntegerOverflowError`, a callback's) carries ``exc.history``, the
        epochs completed so far (empty if training had not started); ``model.history`` holds
        them too once training started. ``threads`` [None: a shared pool] sets the worker
        threads, 1 to 4 per CPU (results do not depend on it).
        """
        given = dict(
            epochs=epochs, batch_size=batch_size, lr_inv=lr_inv, lr_amp_factor=lr_amp_factor,
            fwd_decay_inv=fwd_decay_inv, subnet_decay_inv=subnet_decay_inv,
            lr_schedule=lr_schedule, validation_data=validation_data,
            validation_split=validation_split, validation_seed=validation_seed,
            test_data=test_data, paper_protocol=paper_protocol, augment=augment,
            shuffle=shuffle, plateau=plateau, early_stopping=early_stopping, verbose=verbose,
            progress=progress, callbacks=callbacks, checkpoint=checkpoint,
            checkpoint_every=checkpoint_every, resume=resume, initial_epoch=initial_epoch,
            seed=seed, compat=compat, threads=threads, workers=workers)
        try:
            return self._fit(x, y, _checks.fit_options(settings, given))
        except BaseException as exc:
            # From the first instant: an exception raised before training started carries
            # the empty history (one raised during training has the epochs so far).
            if getattr(exc, "history", None) is None:
                _attach(exc, History(cancelled=True))
            raise

    def _fit(self, x: Any, y: Any, o: dict[str, Any]) -> History:
        """:meth:`fit` with its options resolved (``_checks.fit_options``)."""
        epochs = check_int(o["epochs"], "epochs", minimum=1, maximum=_checks.U32_MAX)
        batch_size = check_int(o["batch_size"], "batch_size", minimum=1,
                               maximum=_checks.USIZE_MAX)
        every = check_int(o["checkpoint_every"], "checkpoint_every", minimum=1)
        permille = _checks.validation_split(o["validation_split"])
        validation_seed = check_int(o["validation_seed"], "validation_seed", minimum=0,
                                    maximum=_checks.U64_MAX)
        paper_protocol = bool(o["paper_protocol"])
        watch = _checks.watch(o["plateau"], o["early_stopping"], paper_protocol)
        _checks.selection(o["validation_data"], permille, o["test_data"], paper_protocol,
                          watch["plateau"] or watch["early_stopping"])
        level = _checks.verbosity(o["verbose"], o["progress"])
        threads = _checks.check_threads(o["threads"])
        workers = _parallel.check_workers(o["workers"])
        if workers is not None and workers > batch_size:
            raise ValueError(f"workers={workers} cannot share batches of {batch_size} samples: "
                             f"give at most batch_size workers")
        initial = check_int(o["initial_epoch"], "initial_epoch", minimum=0,
                            maximum=_checks.U32_MAX)
        schedule = _checks.schedule(o["lr_schedule"])
        ckpt = None if o["checkpoint"] is None else _checks.checkpoint_path(o["checkpoint"])
        cbs = list(o["callbacks"] or [])
        with contextlib.ExitStack() as stack:
            resume = o["resume"]
            if resume is None and initial > 0:
                # The last run goes through a checkpoint file, so that resuming it checks the
                # data and settings exactly as resume= does.
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="nitrod-"))
                resume = self._continue_last_run(initial, os.path.join(tmp, "run.safetensors"))
            # A resumed run continues the checkpoint's model: its architecture must be this
            # one's, and its normalisation applies to the data.
            core = self._m
            compat = o["compat"]
            if resume is not None:
                core = _engine.checkpoint_model(resume)
                _checks.same_architecture(core.config, self._m.config, os.fspath(resume))
                if compat is None and core.hyper is not None:
                    compat = core.hyper["compat"]
            x2, chw = self._check(x, "x", core=core)
            if resume is None and x2.dtype == np.uint8 and core.normalization is None:
                core.set_normalization(_core.fit_normalization(x2, chw[0]))
            xn = self._normalized(x2, "x", core)
            yl = self._labels(y, xn.shape[0], "y")
            if xn.shape[0] < batch_size:
                raise ValueError(f"{xn.shape[0]} training samples are fewer than one batch "
                                 f"of {batch_size}")
            sets: dict[str, np.ndarray] = {}
            for arg, what in (("validation_data", "val"), ("test_data", "test")):
                if o[arg] is not None:
                    xs, ys = _checks.pair(o[arg], arg, what)
                    sets[f"x_{what}"], _ = self._prepare(xs, f"{arg}[0]", core)
                    sets[f"y_{what}"] = self._labels(ys, sets[f"x_{what}"].shape[0],
                                                     f"{arg}[1]")
            hyper = self._hyper({k: o[k] for k in ("lr_inv", "lr_amp_factor", "fwd_decay_inv",
                                                   "subnet_decay_inv")}
                                | {"compat": self._fit_compat() if compat is None else compat})
            seed = (core.config["seed"] if o["seed"] is None
                    else check_int(o["seed"], "seed", minimum=0, maximum=_checks.U64_MAX))
            if workers is not None and hyper["compat"] == "reference" and core.kind == "cnn":
                raise ValueError(
                    "workers= needs compat=\"exact\" for a CNN: in compat=\"reference\" its "
                    "classifier blocks are updated twice per step, the second time from the "
                    "first update's result, which one exchange of gradient sums per step cannot "
                    "give; pass compat=\"exact\" or train without workers")
            settings = _core.TrainSettings(
                epochs=epochs, batch_size=batch_size, schedule=schedule,
                augment=_checks.augment(o["augment"], chw), shuffle=bool(o["shuffle"]),
                seed=seed, validation_permille=permille, validation_seed=validation_seed,
                select_on_test=paper_protocol, **watch, **hyper)
            if resume is None:
                run = _core.Run(settings, xn, yl, chw, **sets)
            else:
                self._m, run = _engine.resume(resume, xn, yl, chw, settings, **sets)
                done = int(run.epochs_done)
                if initial and done != initial:
                    raise ValueError(f"initial_epoch={initial}, but the checkpoint "
                                     f"{os.fspath(resume)!r} has completed {done} epochs: "
                                     f"pass initial_epoch={done} (or leave it out)")
        return self._drive(run, cbs, level, ckpt, every, threads, workers)

    def _continue_last_run(self, initial: int, path: str) -> str:
        """The last ``fit``'s run, written to the checkpoint ``path`` to be resumed, after
        checking that it has completed ``initial`` epochs."""
        run = self._run
        if run is None:
            raise ValueError(f"initial_epoch={initial} continues this model's previous fit, "
                             "but it has none: pass resume=<checkpoint> to continue a run "
                             "saved with checkpoint=, or leave initial_epoch out")
        done = int(run.epochs_done)
        if done != initial:
            raise ValueError(f"initial_epoch={initial}, but this model's previous fit "
                             f"completed {done} epochs: pass initial_epoch={done}")
        run.save_checkpoint(self._m, path)
        return path

    def _history(self, run: Any, partial: Mapping[str, Any] | None = None,
                 cancelled: bool = False) -> History:
        entries = [epoch_entry(d) for d in run.history]
        if partial is not None:
            entries.append(epoch_entry(partial))
        return History(entries, cancelled=cancelled, early_stopped=bool(run.early_stopped),
                       watched=run.watched)

    def _drive(self, run: Any, cbs: list[Callable[[dict[str, Any]], Any]], level: int,
               ckpt: str | None, every: int, threads: int | None,
               workers: int | None = None) -> History:
        """The epoch loop of :meth:`fit` over a ``_core.Run``; ``level``: the verbosity;
        ``workers``: the steps' Ray actors (:mod:`.._parallel`), or ``None``."""
        with contextlib.ExitStack() as stack:
            cluster = None
            if workers is not None:
                # Each worker asks Ray for its threads' CPUs: 1 unless given (the shared pool
                # of every core in each of K processes would oversubscribe the machine).
                cluster = _parallel.Workers(self._m, workers, threads or 1)
                stack.callback(cluster.close)
            return self._epochs(run, cbs, level, ckpt, every, threads, cluster)

    def _epochs(self, run: Any, cbs: list[Callable[[dict[str, Any]], Any]], level: int,
                ckpt: str | None, every: int, threads: int | None,
                cluster: _parallel.Workers | None) -> History:
        """:meth:`_drive`'s loop; ``cluster``: the data-parallel workers, or ``None``."""
        self._run = run
        self.history = self._history(run)
        for cb in cbs:
            set_model = getattr(cb, "set_model", None)
            if callable(set_model):
                set_model(self)
        epochs = int(run.epochs)
        bar = _progress.progress(level == 1, epochs)
        written: tuple[int, int] | None = None
        consistent = True  # False while an engine error may have left the run mid-step

        def save() -> None:
            nonlocal written
            at = (int(run.epochs_done), int(run.batch))
            if ckpt is not None and at != written:
                written = at  # set first: a failing write is not retried by the handler below
                run.save_checkpoint(self._m, ckpt)

        def on_batch(epoch: int, batch: int, batches: int, loss: int, correct: int,
                     total: int) -> None:
            if bar is not None:
                bar.batch(epoch, batch, batches, correct, total)
            if cluster is not None:
                cluster.after_batch()

        pending: BaseException | None = None
        partial: Mapping[str, Any] | None = None
        stop = False
        try:
            while not run.finished:
                consistent = False
                # Only a bar: reports a few times a second. A cluster's interrupt check needs
                # every batch.
                d, pending = run.epoch(
                    self._m, on_batch if bar is not None or cluster is not None else None,
                    threads, None if cluster is None else cluster.exchange,
                    every_ms=_progress.EVERY_MS if cluster is None else 0)
                consistent = True
                if run.batch:  # stopped inside the epoch
                    partial = d
                    break
                e = epoch_entry(d)
                self.history = self._history(run)
                if bar is not None:
                    bar.epoch_end(_progress.epoch_line(e, epochs))
                elif level == 2:
                    print(_progress.epoch_line(e, epochs), file=sys.stderr, flush=True)
                for cb in cbs:
                    stop = bool(cb(dict(e))) or stop
                if int(run.epochs_done) % every == 0:
                    save()
                if stop or pending is not None:
                    break
            save()
        except BaseException as exc:
            if consistent and written != (int(run.epochs_done), int(run.batch)):
                save()
            self.history = self._history(run, partial, cancelled=True)
            _attach(exc, self.history)
            raise
        finally:
            if bar is not None:
                bar.close()
        self.history = self._history(run, partial, cancelled=stop or pending is not None)
        if pending is not None:
            _attach(pending, self.history)
            raise pending
        return self.history

    def train_batch(
        self,
        x: Any,
        y: Any,
        *,
        lr_inv: int | None = None,
        lr_amp_factor: int | None = None,
        fwd_decay_inv: int | None = None,
        subnet_decay_inv: int | None = None,
        compat: str | None = None,
        threads: int | None = None,
    ) -> dict[str, Any]:
        """Exactly one training step on this batch, in the given order (the settings as in
        :meth:`fit`).

        Settings left as ``None`` take the model's last-used values (from ``fit``, a previous
        ``train_batch`` or a loaded file), else the engine's defaults (the paper's: 512, 640,
        0, 0, exact). The step is all-or-nothing: when it fails (e.g.
        :class:`~nitrod_rs.IntegerOverflowError`) no layer has changed.
        Returns ``loss`` (Σ(y − ŷ)² of the output), ``correct``, ``total``, ``block_loss`` and
        ``block_correct`` (per block head).
        """
        xn, _ = self._prepare(x, "x")
        yl = self._labels(y, xn.shape[0], "y")
        hyper = self._hyper({"lr_inv": lr_inv, "lr_amp_factor": lr_amp_factor,
                             "fwd_decay_inv": fwd_decay_inv,
                             "subnet_decay_inv": subnet_decay_inv, "compat": compat})
        return dict(self._m.train_step(xn, yl, threads=_checks.check_threads(threads),
                                       **hyper))

    # -- inference -----------------------------------------------------------------------

    def predict_scores(self, x: Any, *, threads: int | None = None) -> np.ndarray:
        """The class scores: the output layer's evaluation-mode result, ``int8``
        ``N x classes`` (the integer logits; the one-hot target of the true class is 32, the
        others 0). ``x`` as for :meth:`predict` (one sample gives one row)."""
        xn, _ = self._prepare(x, "x", single=True)
        return self._m.predict_logits(xn, threads=_checks.check_threads(threads))

    #: scikit-learn's name for :meth:`predict_scores`.
    decision_function = predict_scores
    #: The former name of :meth:`predict_scores`.
    predict_logits = predict_scores

    def predict(self, x: Any, *, threads: int | None = None) -> np.ndarray:
        """Predicted classes (``int64``, one per sample): the index of the largest score of
        :meth:`predict_scores`; when several classes share the largest score, the lowest
        index wins (the engine's rule, as ``numpy.argmax``).

        ``x``: N samples in any input form :mod:`nitrod_rs.models` describes, or a single
        sample (``H x W``, ``C x H x W``, ``H x W x C`` or a feature vector), which gives an
        array of one prediction.
        """
        xn, _ = self._prepare(x, "x", single=True)
        return self._m.predict(xn, threads=_checks.check_threads(threads))

    def evaluate(self, x: Any, y: Any, *, threads: int | None = None) -> dict[str, Any]:
        """``accuracy``, ``correct``, ``total``, ``loss`` (mean Σ(y − ŷ)² per sample) and
        ``loss_sum`` (exact integer) on a labelled set (ties as in :meth:`predict`)."""
        xn, _ = self._prepare(x, "x")
        yl = self._labels(y, xn.shape[0], "y")
        logits = self._m.predict_logits(
            xn, threads=_checks.check_threads(threads)).astype(np.int64)
        target = np.zeros_like(logits)
        target[np.arange(len(yl)), yl] = ONE_HOT
        loss_sum = int(((logits - target) ** 2).sum())
        correct = int((logits.argmax(axis=1) == yl).sum())
        n = len(yl)
        return {"accuracy": correct / n, "correct": correct, "total": n,
                "loss": loss_sum / n, "loss_sum": loss_sum}

    def score(self, x: Any, y: Any, *, threads: int | None = None) -> float:
        """The accuracy on a labelled set (scikit-learn's ``score``): ``evaluate``'s
        ``correct / total``."""
        return float(self.evaluate(x, y, threads=threads)["accuracy"])

    # -- parameters and files ------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of all parameters as ``int32`` arrays keyed by layer name
        (``linear_encoder_00``, ``linear_pred_00``, …, ``linear_03``; ``<name>.bias``)."""
        d = self._m.state_dict()
        return {name: d[name] for name, _ in self._m.parameter_shapes()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Set every parameter from ``state`` (as returned by :meth:`state_dict`).

        Keys must be exactly the model's parameter names; values ``int32`` arrays of the
        right shape (``TypeError`` / ``ValueError`` otherwise). Nothing changes on error.
        """
        shapes = dict(self._m.parameter_shapes())
        _checks.parameter_mapping(state, shapes, "state")
        items = []
        for k, want in shapes.items():
            v = state[k]
            if not isinstance(v, np.ndarray):
                raise TypeError(f"state[{k!r}] must be a numpy.ndarray, got {type(v).__name__}")
            if v.dtype != np.int32:
                raise TypeError(f"state[{k!r}] must have dtype int32, got {v.dtype}")
            if tuple(v.shape) != tuple(want):
                raise ValueError(f"state[{k!r}] has shape {tuple(v.shape)}, "
                                 f"expected {tuple(want)}")
            items.append((k, np.ascontiguousarray(v)))
        self._m.load_state_dict(items)

    def save(self, path: PathLike) -> None:
        """Save to a ``.safetensors`` file (docs/algorithm.md §8; written atomically)."""
        self._m.save(os.fspath(path))

    def to_bytes(self) -> bytes:
        """The ``.safetensors`` file contents."""
        return self._m.to_bytes()

    # -- deployment (nitrod_rs.deploy) ----------------------------------------------------

    def to_blob(self, *, heads: bool = True) -> bytes:
        """The compact ``no_std``-loadable model blob (``nitro_core::export::to_blob_with``;
        ``from_blob`` of the model's class loads it). ``heads=False`` leaves out the learning
        heads: smaller, for a device that only predicts; it loads as a model that predicts the
        same but cannot be trained or saved."""
        return self._m.to_blob(heads)

    @property
    def has_heads(self) -> bool:
        """``False`` for a model loaded from a blob without learning heads (inference only)."""
        return bool(self._m.has_heads)

    def to_onnx(self, path: PathLike, *, name: str | None = None) -> int:
        """Write an integer-only ONNX graph (:func:`nitrod_rs.deploy.to_onnx`): ``uint8``
        images in, the ``int8`` scores of :meth:`predict_logits` and the class out. Needs
        ``pip install 'nitrod-rs[onnx]'``. Returns the file's size in bytes."""
        from ..deploy import onnx_export

        return onnx_export.to_onnx(self, path, name=name)

    def to_c(self, out_dir: PathLike, *, name: str = "nitrod_model",
             prefix: str = "nitrod") -> list[Path]:
        """Write ``<name>.h``/``<name>.c`` (:func:`nitrod_rs.deploy.to_c`): C99, integers
        only, ``int <prefix>_predict(const uint8_t *image, int32_t *scores, void *scratch)``.
        Returns the two paths."""
        from ..deploy import c_export

        return c_export.to_c(self, out_dir, name=name, prefix=prefix)

    def load_float_state_dict(self, weights: Mapping[str, Any], scale: Any, *,
                              normalization: tuple[list[int], list[int]] | None = None) -> None:
        """Set the parameters from float ``weights`` keyed like :meth:`state_dict`, each
        ``round_half_away_from_zero(w · scale)`` computed exactly and range-checked
        (:func:`nitrod_rs.deploy.from_float_weights`; ``scale`` may be a mapping by name)."""
        from ..deploy import float_import

        float_import.from_float_weights(self, weights, scale, normalization=normalization)


def _attach(exc: BaseException, history: History) -> None:
    """Give the exception that stopped ``fit`` the history so far (``exc.history``)."""
    try:
        exc.history = history  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - exceptions without a __dict__
        pass
