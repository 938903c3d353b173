"""What :class:`~nitrod_rs.MLP` and :class:`~nitrod_rs.CNN` share: normalisation, ``fit``,
``train_batch``, ``predict``, ``evaluate``, ``state_dict`` and files.

Everything numeric runs in the engine; this class checks arguments (:mod:`.._checks`),
converts inputs, draws progress bars (:mod:`.._progress`) and assembles the
:class:`~nitrod_rs.History`. Defaults are the engine's (``_core.defaults``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _checks, _core, _progress
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

    def _check(self, x: Any, name: str) -> tuple[np.ndarray, Geometry]:
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
        """The stored per-channel ``(mean, mad)`` statistics (SPEC §2), or ``None``."""
        return self._m.normalization

    @property
    def num_parameters(self) -> int:
        return self._m.num_parameters()

    # -- inputs --------------------------------------------------------------------------

    def fit_normalization(self, x: np.ndarray) -> tuple[list[int], list[int]]:
        """Fit the SPEC §2 statistics on ``uint8`` training images and store them."""
        x2, chw = self._check(x, "x")
        if x2.dtype != np.uint8:
            raise TypeError("fit_normalization needs uint8 raw pixels, got int8")
        stats = _core.fit_normalization(x2, chw[0])
        self._m.set_normalization(stats)
        return stats

    def _prepare(self, x: Any, name: str = "x",
                 core: Any = None) -> tuple[np.ndarray, tuple[int, int, int]]:
        """``x`` as normalised rows, with the statistics of ``core`` (default: this model)."""
        x2, chw = self._check(x, name)
        if x2.dtype == np.int8:
            return x2, chw
        stats = (self._m if core is None else core).normalization
        if stats is None:
            raise ValueError(
                f"{name} is uint8 but the model has no normalisation statistics yet: train "
                "with fit() on uint8 images, call fit_normalization(x_train) first, or pass "
                "int8 already-normalised data"
            )
        return _core.normalize(x2, stats[0], stats[1]), chw

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
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        batch_size: int = BATCH_SIZE,
        lr_inv: int = HYPER["lr_inv"],
        lr_amp_factor: int = HYPER["lr_amp_factor"],
        fwd_decay_inv: int = HYPER["fwd_decay_inv"],
        subnet_decay_inv: int = HYPER["subnet_decay_inv"],
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        validation_split: float | None = None,
        validation_seed: int = 0,
        test_data: tuple[np.ndarray, np.ndarray] | None = None,
        paper_protocol: bool = False,
        augment: bool | tuple[int, bool] | Mapping[str, Any] = False,
        shuffle: bool = True,
        plateau: bool = False,
        early_stopping: bool = False,
        progress: bool = True,
        callbacks: Sequence[Callable[[dict[str, Any]], Any]] | None = None,
        checkpoint: PathLike | None = None,
        checkpoint_every: int = 1,
        resume: PathLike | None = None,
        seed: int | None = None,
        compat: str | None = None,
        threads: int | None = None,
    ) -> History:
        """Train with IntegerSGD (SPEC §4.3, §5) for ``epochs`` epochs.

        Each epoch runs in Rust with the GIL released (``_core.Run.epoch``); between epochs the
        model is free. ``uint8`` inputs are normalised with statistics fitted on ``x`` (kept if
        the model already has some).

        Sets and protocol: ``validation_data=(x, y)`` or ``validation_split`` (a share of
        ``x`` held out, 0.001 to 0.999, rows picked by ``validation_seed``) is evaluated after
        every epoch and watched by ``plateau`` and ``early_stopping`` (the paper's rule) and
        by :attr:`History.best_epoch`. ``test_data=(x, y)`` is evaluated and reported every
        epoch, never used for selection — unless ``paper_protocol=True``: the paper's
        protocol, where the plateau rule, early stopping (both on) and the best epoch watch
        the test set, without a validation split.

        ``callbacks`` are called after every epoch with that epoch's entry of the history; one
        returning ``True`` stops training. They may save, evaluate and predict with the model;
        one with a ``set_model`` method is given the model first (see
        :mod:`nitrod_rs.callbacks`). ``model.history`` holds the epochs so far.

        Checkpoints: ``checkpoint=path`` writes the model and the run's state atomically every
        ``checkpoint_every`` epochs, at the end, and when Ctrl-C or a callback (returning
        ``True`` or raising) stops the run (inside an epoch, it continues from the next batch;
        not after an engine error).
        ``resume=path`` continues such a run bit for bit: with the settings and data it was
        started with (an error names what differs; only ``epochs`` may change), the
        checkpoint's model replaces this model's (same architecture), and the history covers
        the whole run. Ctrl-C stops after the current batch with ``KeyboardInterrupt``; the
        model is then consistent and ``model.history`` (also ``exc.history``) holds the
        epochs so far. ``threads`` sets the worker threads (results do not depend on it).
        """
        epochs = check_int(epochs, "epochs", minimum=1)
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        checkpoint_every = check_int(checkpoint_every, "checkpoint_every", minimum=1)
        permille = _checks.validation_split(validation_split)
        validation_seed = check_int(validation_seed, "validation_seed", minimum=0)
        paper_protocol = bool(paper_protocol)
        _checks.selection(validation_data, permille, test_data, paper_protocol,
                          bool(plateau) or bool(early_stopping))
        if threads is not None:
            threads = check_int(threads, "threads", minimum=1)
        ckpt = None if checkpoint is None else _checks.checkpoint_path(checkpoint)
        # A resumed run continues the checkpoint's model: its architecture must be this one's,
        # and its normalisation applies to the data.
        core = self._m
        if resume is not None:
            core = _engine.checkpoint_model(resume)
            _checks.same_architecture(core.config, self._m.config, os.fspath(resume))
            if compat is None and core.hyper is not None:
                compat = core.hyper["compat"]
        x2, chw = self._check(x, "x")
        if resume is None and x2.dtype == np.uint8 and core.normalization is None:
            core.set_normalization(_core.fit_normalization(x2, chw[0]))
        xn, chw = self._prepare(x, "x", core)
        yl = self._labels(y, xn.shape[0], "y")
        if xn.shape[0] < batch_size:
            raise ValueError(f"{xn.shape[0]} training samples are fewer than one batch "
                             f"of {batch_size}")
        sets: dict[str, np.ndarray] = {}
        for arg, data, what in (("validation_data", validation_data, "val"),
                                ("test_data", test_data, "test")):
            if data is not None:
                xs, ys = _checks.pair(data, arg, what)
                sets[f"x_{what}"], _ = self._prepare(xs, f"{arg}[0]", core)
                sets[f"y_{what}"] = self._labels(ys, sets[f"x_{what}"].shape[0], f"{arg}[1]")
        hyper = self._hyper({"lr_inv": lr_inv, "lr_amp_factor": lr_amp_factor,
                             "fwd_decay_inv": fwd_decay_inv,
                             "subnet_decay_inv": subnet_decay_inv,
                             "compat": self._fit_compat() if compat is None else compat})
        seed = core.config["seed"] if seed is None else check_int(seed, "seed", minimum=0)
        settings = _core.TrainSettings(
            epochs=epochs, batch_size=batch_size, augment=_checks.augment(augment, chw),
            shuffle=bool(shuffle), plateau=bool(plateau) or paper_protocol,
            early_stopping=bool(early_stopping) or paper_protocol, seed=seed,
            validation_permille=permille, validation_seed=validation_seed,
            select_on_test=paper_protocol, **hyper)
        if resume is None:
            run = _core.Run(settings, xn, yl, chw, **sets)
        else:
            self._m, run = _engine.resume(resume, xn, yl, chw, settings, **sets)
        return self._drive(run, list(callbacks or []), bool(progress), ckpt, checkpoint_every,
                           threads)

    def _history(self, run: Any, partial: Mapping[str, Any] | None = None,
                 cancelled: bool = False) -> History:
        entries = [epoch_entry(d) for d in run.history]
        if partial is not None:
            entries.append(epoch_entry(partial))
        return History(entries, cancelled=cancelled, early_stopped=bool(run.early_stopped),
                       watched=run.watched)

    def _drive(self, run: Any, cbs: list[Callable[[dict[str, Any]], Any]], progress: bool,
               ckpt: str | None, every: int, threads: int | None) -> History:
        """The epoch loop of :meth:`fit` over a ``_core.Run``."""
        self.history = self._history(run)
        for cb in cbs:
            set_model = getattr(cb, "set_model", None)
            if callable(set_model):
                set_model(self)
        epochs = int(run.epochs)
        bar = _progress.progress(progress, epochs)
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

        pending: BaseException | None = None
        partial: Mapping[str, Any] | None = None
        stop = False
        try:
            while not run.finished:
                consistent = False
                d, pending = run.epoch(self._m, on_batch, threads)
                consistent = True
                if run.batch:  # stopped inside the epoch
                    partial = d
                    break
                e = epoch_entry(d)
                self.history = self._history(run)
                if bar is not None:
                    bar.epoch_end(_progress.epoch_line(e, epochs))
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
        x: np.ndarray,
        y: np.ndarray,
        *,
        lr_inv: int | None = None,
        lr_amp_factor: int | None = None,
        fwd_decay_inv: int | None = None,
        subnet_decay_inv: int | None = None,
        compat: str | None = None,
        threads: int | None = None,
    ) -> dict[str, Any]:
        """Exactly one SPEC §4.3 training step on this batch, in the given order.

        Settings left as ``None`` take the model's last-used values (from ``fit``, a previous
        ``train_batch`` or a loaded file), else the engine's defaults (the paper's: 512, 640,
        0, 0, exact).
        Returns ``loss`` (Σ(y − ŷ)² of the output), ``correct``, ``total``, ``block_loss`` and
        ``block_correct`` (per block head).
        """
        xn, _ = self._prepare(x, "x")
        yl = self._labels(y, xn.shape[0], "y")
        hyper = self._hyper({"lr_inv": lr_inv, "lr_amp_factor": lr_amp_factor,
                             "fwd_decay_inv": fwd_decay_inv,
                             "subnet_decay_inv": subnet_decay_inv, "compat": compat})
        return dict(self._m.train_step(xn, yl, threads=threads, **hyper))

    # -- inference -----------------------------------------------------------------------

    def predict_logits(self, x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        """Evaluation-mode outputs (``int8``, ``N x classes``)."""
        xn, _ = self._prepare(x, "x")
        return self._m.predict_logits(xn, threads=threads)

    def predict(self, x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        """Predicted classes (``int64``; arg-max of the logits, first on ties)."""
        xn, _ = self._prepare(x, "x")
        return self._m.predict(xn, threads=threads)

    def evaluate(self, x: np.ndarray, y: np.ndarray, *,
                 threads: int | None = None) -> dict[str, Any]:
        """``accuracy``, ``correct``, ``total``, ``loss`` (mean Σ(y − ŷ)² per sample) and
        ``loss_sum`` (exact integer) on a labelled set."""
        xn, _ = self._prepare(x, "x")
        yl = self._labels(y, xn.shape[0], "y")
        logits = self._m.predict_logits(xn, threads=threads).astype(np.int64)
        target = np.zeros_like(logits)
        target[np.arange(len(yl)), yl] = ONE_HOT
        loss_sum = int(((logits - target) ** 2).sum())
        correct = int((logits.argmax(axis=1) == yl).sum())
        n = len(yl)
        return {"accuracy": correct / n, "correct": correct, "total": n,
                "loss": loss_sum / n, "loss_sum": loss_sum}

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
        """Save to a ``.safetensors`` file (SPEC §8; written atomically)."""
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
