"""Models: the local-loss integer MLP with ``fit`` / ``predict`` / ``evaluate`` / ``save``.

Everything numeric runs in the Rust engine (``nitrod_rs._core``); this module checks
arguments, converts inputs, draws progress bars and assembles the :class:`History`.

Accepted inputs (``x``):

* ``uint8`` raw pixels ``N x H x W`` (one channel), ``N x C x H x W`` or ``N x features``
  (one channel): normalised inside (SPEC §2) with statistics fitted on the training data by
  :meth:`MLP.fit` (or :meth:`MLP.fit_normalization`) and stored with the model;
* ``int8`` already-normalised values of the same shapes: used as they are, without a copy.

Arrays must be C-contiguous. Labels are integer class indices ``0 <= y < classes``.
Floats appear only in reported accuracies and mean losses, never in the computation.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO, Union

import numpy as np

from . import _core

__all__ = ["MLP", "CNN", "History", "load", "from_bytes", "PathLike"]

PathLike = Union[str, "os.PathLike[str]"]

ACTIVATIONS = (
    "nitro_relu",
    "pocket_leaky_relu",
    "pocket_relu",
    "pocket_tanh",
    "bipolar_pocket_relu",
    "bipolar_pocket_leaky_relu",
)

_DEFAULT_HYPER: dict[str, Any] = {
    "lr_inv": 512,
    "lr_amp_factor": 640,
    "fwd_decay_inv": 0,
    "subnet_decay_inv": 0,
    "compat": "exact",
}


# ---------------------------------------------------------------------------
# Argument checking
# ---------------------------------------------------------------------------


def _check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def _geometry(x: np.ndarray, name: str) -> tuple[int, int, int]:
    if x.ndim == 2:
        return (1, 1, int(x.shape[1]))
    if x.ndim == 3:
        return (1, int(x.shape[1]), int(x.shape[2]))
    if x.ndim == 4:
        return (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
    raise ValueError(
        f"{name} must have shape N x features, N x H x W or N x C x H x W; "
        f"got {x.ndim} dimension(s) {tuple(x.shape)}"
    )


def _check_images(x: Any, name: str, inputs: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Validate ``x``; return a 2-D (N x features) view of it and its (C, H, W) geometry."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray of dtype uint8 or int8, got {type(x).__name__}"
        )
    if x.dtype not in (np.uint8, np.int8):
        raise TypeError(
            f"{name} must have dtype uint8 (raw pixels) or int8 (already normalised), "
            f"got {x.dtype}"
        )
    chw = _geometry(x, name)
    if x.shape[0] == 0 or 0 in x.shape:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); expected at least one sample")
    features = chw[0] * chw[1] * chw[2]
    if features != inputs:
        raise ValueError(
            f"{name} has {features} values per sample (shape {tuple(x.shape)}), "
            f"the model expects {inputs}"
        )
    if not x.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous; pass np.ascontiguousarray({name}) instead"
        )
    return x.reshape(x.shape[0], features), chw


def _check_labels(y: Any, n: int, classes: int, name: str) -> np.ndarray:
    if not isinstance(y, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of integer class indices, "
                        f"got {type(y).__name__}")
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must have an integer dtype (class indices), got {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional (N class indices), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but there are {n} samples")
    if n and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(
            f"{name} must hold class indices in 0..{classes - 1}, "
            f"got values in {int(y.min())}..{int(y.max())}"
        )
    return np.ascontiguousarray(y, dtype=np.int64)


def _dropout_pct(dropout: Any) -> int:
    if isinstance(dropout, bool):
        raise TypeError("dropout must be a percentage (int, 5..95 step 5) or a rate (float < 1)")
    if isinstance(dropout, (float, np.floating)):
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"a float dropout rate must be in [0, 1), got {dropout}")
        return int(round(float(dropout) * 100))
    pct = _check_int(dropout, "dropout", minimum=0)
    if pct != 0 and (pct > 95 or pct % 5):
        raise ValueError(f"dropout must be 0 or a percentage 5..95 in steps of 5, got {pct}")
    return pct


def _augment_arg(augment: Any, chw: tuple[int, int, int]) -> tuple[int, bool] | None:
    if augment is False or augment is None:
        return None
    if chw[1] == 1:
        raise ValueError(
            "augmentation needs images (N x H x W or N x C x H x W), not N x features rows"
        )
    if augment is True:
        return (4 if chw[2] >= 32 else 2, True)
    if isinstance(augment, Mapping):
        return (_check_int(augment.get("pad", 2), "augment['pad']", minimum=0),
                bool(augment.get("flip", True)))
    if isinstance(augment, tuple) and len(augment) == 2:
        return (_check_int(augment[0], "augment pad", minimum=0), bool(augment[1]))
    raise TypeError("augment must be a bool, a (pad, flip) tuple or a dict with 'pad' and 'flip'")


# ---------------------------------------------------------------------------
# History and progress
# ---------------------------------------------------------------------------


def _ratio(correct: int, total: int) -> float:
    return correct / total if total else 0.0


def _epoch_entry(d: Mapping[str, Any]) -> dict[str, Any]:
    tc, tt = int(d["train_correct"]), int(d["train_total"])
    test = d.get("test")
    entry: dict[str, Any] = {
        "epoch": int(d["epoch"]),
        "train_accuracy": _ratio(tc, tt),
        "train_loss": d["train_loss"] / tt if tt else 0.0,
        "train_loss_sum": int(d["train_loss"]),
        "train_correct": tc,
        "train_total": tt,
        "block_accuracy": [_ratio(c, t) for c, t in d["blocks"]],
        "val_accuracy": _ratio(*test) if test else None,
        "val_loss": d["test_loss"] / test[1] if test and d.get("test_loss") is not None
        else None,
        "val_loss_sum": d.get("test_loss") if test else None,
        "val_correct": int(test[0]) if test else None,
        "val_total": int(test[1]) if test else None,
        "lr_inv": int(d["lr_inv"]),
        "seconds": (int(d["train_millis"]) + int(d["eval_millis"])) / 1000.0,
        "train_seconds": int(d["train_millis"]) / 1000.0,
    }
    return entry


class History:
    """Per-epoch metrics of a :meth:`MLP.fit` or :meth:`CNN.fit` run.

    ``epochs`` is a list of dicts with ``epoch``, ``train_accuracy``, ``train_loss`` (mean
    ``Σ(y − ŷ)²`` per sample), ``train_loss_sum``, ``train_correct``, ``train_total``,
    ``block_accuracy`` (each block head's local training accuracy), ``val_accuracy``,
    ``val_loss`` (mean per sample), ``val_loss_sum``, ``val_correct``, ``val_total``
    (``None`` without validation data), ``lr_inv``, ``seconds`` (training and validation)
    and ``train_seconds``. ``history["val_accuracy"]`` gives one metric over the epochs.
    """

    def __init__(
        self,
        epochs: Sequence[Mapping[str, Any]] = (),
        *,
        cancelled: bool = False,
        early_stopped: bool = False,
    ) -> None:
        self.epochs: list[dict[str, Any]] = [dict(e) for e in epochs]
        self.cancelled = cancelled
        self.early_stopped = early_stopped

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, metric: str) -> list[Any]:
        return [e.get(metric) for e in self.epochs]

    def __repr__(self) -> str:
        last = self.epochs[-1] if self.epochs else {}
        return (f"History(epochs={len(self.epochs)}, last_val_accuracy="
                f"{last.get('val_accuracy')}, cancelled={self.cancelled})")

    @property
    def best_val_accuracy(self) -> float | None:
        """The best validation accuracy over the epochs (the paper's reported metric)."""
        vals = [v for v in self["val_accuracy"] if v is not None]
        return max(vals) if vals else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "epochs": [dict(e) for e in self.epochs],
            "cancelled": self.cancelled,
            "early_stopped": self.early_stopped,
            "best_val_accuracy": self.best_val_accuracy,
        }

    def plot(self, path: PathLike) -> None:
        """Save accuracy curves (train, validation, each block head) as an image.

        Needs matplotlib (``pip install matplotlib``).
        """
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "History.plot needs matplotlib: pip install matplotlib "
                "(or pip install 'nitrod-rs[plot]')"
            ) from exc
        ep = self["epoch"]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(ep, [100 * a for a in self["train_accuracy"]], label="train")
        if any(v is not None for v in self["val_accuracy"]):
            ax.plot(ep, [None if v is None else 100 * v for v in self["val_accuracy"]],
                    label="validation")
        blocks = self["block_accuracy"]
        for i in range(len(blocks[0]) if blocks else 0):
            ax.plot(ep, [100 * b[i] for b in blocks], "--", alpha=0.6, label=f"block {i} head")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.fspath(path))
        plt.close(fig)


class _PlainBar:
    """A dependency-free progress display. On a terminal: one line redrawn in place; otherwise
    (logs, pipes, CI) a new line at every 10 % of an epoch, so the output stays readable."""

    def __init__(self, epochs: int, file: TextIO | None = None) -> None:
        self.epochs = epochs
        self.file = file if file is not None else sys.stderr
        self.tty = bool(getattr(self.file, "isatty", lambda: False)())
        self.last_draw = 0.0
        self.last_decile = -1

    def batch(self, epoch: int, batch: int, batches: int, correct: int, total: int) -> None:
        acc = 100.0 * correct / total if total else 0.0
        if self.tty:
            now = time.monotonic()
            if batch != batches and now - self.last_draw < 0.1:
                return
            self.last_draw = now
            width = 30
            filled = width * batch // batches
            bar = "#" * filled + "." * (width - filled)
            self.file.write(f"\repoch {epoch}/{self.epochs} [{bar}] {batch}/{batches} "
                            f"train acc {acc:5.1f}%")
            self.file.flush()
        else:
            decile = 10 * batch // batches
            if decile != self.last_decile and decile > 0:
                self.last_decile = decile
                self.file.write(f"epoch {epoch}/{self.epochs}: {batch}/{batches} batches "
                                f"({10 * decile}%), train acc {acc:.1f}%\n")
                self.file.flush()

    def epoch_end(self, line: str) -> None:
        if self.tty:
            self.file.write("\n")
        self.last_decile = -1
        self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.flush()


class _TqdmBar:
    def __init__(self, epochs: int, tqdm: Any) -> None:
        self.epochs = epochs
        self.tqdm = tqdm
        self.bar: Any = None

    def batch(self, epoch: int, batch: int, batches: int, correct: int, total: int) -> None:
        if self.bar is None:
            self.bar = self.tqdm(total=batches, desc=f"epoch {epoch}/{self.epochs}",
                                 unit="batch", leave=False, dynamic_ncols=True)
        self.bar.update(1)
        if batch % 20 == 0 or batch == batches:
            self.bar.set_postfix_str(f"train acc {100.0 * correct / max(total, 1):.1f}%",
                                     refresh=False)

    def epoch_end(self, line: str) -> None:
        self.close()
        self.tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _progress(enabled: bool, epochs: int) -> _PlainBar | _TqdmBar | None:
    if not enabled:
        return None
    if not sys.stderr.isatty():
        # tqdm redraws with carriage returns, unreadable in logs: use one line per 10 %.
        return _PlainBar(epochs)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainBar(epochs)
    return _TqdmBar(epochs, tqdm)


def _epoch_line(e: Mapping[str, Any], epochs: int) -> str:
    val = e["val_accuracy"]
    blocks = " ".join(f"{100 * b:.1f}" for b in e["block_accuracy"])
    return (f"epoch {e['epoch']}/{epochs}: train acc {100 * e['train_accuracy']:.2f}%"
            + (f", val acc {100 * val:.2f}%" if val is not None else "")
            + f", blocks [{blocks}], lr_inv {e['lr_inv']}, {e['seconds']:.1f}s")


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


class _Model:
    """What :class:`MLP` and :class:`CNN` share: normalisation, ``fit``, ``train_batch``,
    ``predict``, ``evaluate``, ``state_dict`` and files. ``_m`` is the engine's model."""

    _m: Any
    history: History | None

    def _check(self, x: Any, name: str) -> tuple[np.ndarray, tuple[int, int, int]]:
        raise NotImplementedError

    def _fit_compat(self) -> str:
        """The ``compat`` of ``fit`` when none is given."""
        return "exact"

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

    def _prepare(self, x: Any, name: str = "x") -> tuple[np.ndarray, tuple[int, int, int]]:
        x2, chw = self._check(x, name)
        if x2.dtype == np.int8:
            return x2, chw
        stats = self._m.normalization
        if stats is None:
            raise ValueError(
                f"{name} is uint8 but the model has no normalisation statistics yet: train "
                "with fit() on uint8 images, call fit_normalization(x_train) first, or pass "
                "int8 already-normalised data"
            )
        return _core.normalize(x2, stats[0], stats[1]), chw

    def _labels(self, y: Any, n: int, name: str = "y") -> np.ndarray:
        return _check_labels(y, n, self.classes, name)

    def _hyper(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        base = dict(_DEFAULT_HYPER)
        base.update(self._m.hyper or {})
        for k, v in overrides.items():
            if v is not None:
                base[k] = v
        for k in ("lr_inv", "lr_amp_factor"):
            base[k] = _check_int(base[k], k, minimum=1)
        for k in ("fwd_decay_inv", "subnet_decay_inv"):
            base[k] = _check_int(base[k], k, minimum=0)
        if base["compat"] not in ("exact", "reference"):
            raise ValueError(f"compat must be 'exact' or 'reference', got {base['compat']!r}")
        return base

    # -- training ------------------------------------------------------------------------

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        batch_size: int = 64,
        lr_inv: int = 512,
        lr_amp_factor: int = 640,
        fwd_decay_inv: int = 0,
        subnet_decay_inv: int = 0,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        augment: bool | tuple[int, bool] | Mapping[str, Any] = False,
        shuffle: bool = True,
        plateau: bool = False,
        early_stopping: bool = False,
        progress: bool = True,
        callbacks: Sequence[Callable[[dict[str, Any]], Any]] | None = None,
        seed: int | None = None,
        compat: str | None = None,
        threads: int | None = None,
    ) -> History:
        """Train with IntegerSGD (SPEC §4.3, §5) for ``epochs`` epochs.

        The epoch loop runs in Rust with the GIL released. ``uint8`` inputs are normalised
        with statistics fitted on ``x`` (kept if the model already has some). ``plateau`` and
        ``early_stopping`` follow the paper's protocol and watch the validation accuracy.
        ``callbacks`` are called after every epoch with that epoch's entry of the history
        (they must not use the model while it trains); one returning ``True`` stops training.
        Ctrl-C stops after the current batch with ``KeyboardInterrupt``; the model is then
        consistent and ``model.history`` (also ``exc.history``) holds the epochs so far.
        ``threads`` sets the worker threads of this call (results do not depend on it).
        """
        epochs = _check_int(epochs, "epochs", minimum=1)
        batch_size = _check_int(batch_size, "batch_size", minimum=1)
        x2, chw = self._check(x, "x")
        if x2.dtype == np.uint8 and self._m.normalization is None:
            self._m.set_normalization(_core.fit_normalization(x2, chw[0]))
        xn, chw = self._prepare(x, "x")
        yl = self._labels(y, xn.shape[0], "y")
        if xn.shape[0] < batch_size:
            raise ValueError(f"{xn.shape[0]} training samples are fewer than one batch "
                             f"of {batch_size}")
        xt = yt = None
        if validation_data is not None:
            if not isinstance(validation_data, tuple) or len(validation_data) != 2:
                raise TypeError("validation_data must be a tuple (x_val, y_val)")
            xt, _ = self._prepare(validation_data[0], "validation_data[0]")
            yt = self._labels(validation_data[1], xt.shape[0], "validation_data[1]")
        hyper = self._hyper({"lr_inv": lr_inv, "lr_amp_factor": lr_amp_factor,
                             "fwd_decay_inv": fwd_decay_inv,
                             "subnet_decay_inv": subnet_decay_inv,
                             "compat": self._fit_compat() if compat is None else compat})
        if threads is not None:
            threads = _check_int(threads, "threads", minimum=1)
        seed = self._m.config["seed"] if seed is None else _check_int(seed, "seed", minimum=0)
        cbs = list(callbacks or [])
        bar = _progress(bool(progress), epochs)
        entries: list[dict[str, Any]] = []

        def on_batch(epoch: int, batch: int, batches: int, loss: int, correct: int,
                     total: int) -> None:
            if bar is not None:
                bar.batch(epoch, batch, batches, correct, total)

        def on_epoch(d: dict[str, Any]) -> bool:
            e = _epoch_entry(d)
            entries.append(e)
            if bar is not None:
                bar.epoch_end(_epoch_line(e, epochs))
            stop = False
            for cb in cbs:
                stop = bool(cb(dict(e))) or stop
            return stop

        try:
            raw, err = self._m.fit(
                xn, yl, chw, x_test=xt, y_test=yt, epochs=epochs, batch_size=batch_size,
                augment=_augment_arg(augment, chw), shuffle=bool(shuffle),
                plateau=bool(plateau), early_stopping=bool(early_stopping), seed=seed,
                on_batch=on_batch, on_epoch=on_epoch, threads=threads, **hyper,
            )
        finally:
            if bar is not None:
                bar.close()
        history = History([_epoch_entry(d) for d in raw["epochs"]],
                          cancelled=bool(raw["cancelled"]),
                          early_stopped=bool(raw["early_stopped"]))
        self.history = history
        if err is not None:
            try:
                err.history = history  # type: ignore[attr-defined]
            except AttributeError:  # pragma: no cover
                pass
            raise err
        return history

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
        ``train_batch`` or a loaded file), else the paper's defaults (512, 640, 0, 0, exact).
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
        target[np.arange(len(yl)), yl] = 32
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
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping of name -> int32 array, "
                            f"got {type(state).__name__}")
        shapes = dict(self._m.parameter_shapes())
        missing = [k for k in shapes if k not in state]
        extra = [k for k in state if k not in shapes]
        if missing or extra:
            raise ValueError(f"state keys do not match the model: missing {missing}, "
                             f"unexpected {extra}")
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





class MLP(_Model):
    """An integer-only local-loss MLP (NITRO-D ``IntegerLocalLossMLP``, SPEC §4.2).

    Args:
        layers: widths ``[inputs, hidden..., classes]``; the paper's MLP2 is the default.
        activation: one of ``nitro_relu`` (paper), ``pocket_leaky_relu``, ``pocket_relu``,
            ``pocket_tanh``, ``bipolar_pocket_relu``, ``bipolar_pocket_leaky_relu``.
        slope: inverse negative slope ``a`` of the leaky activations (3, 4, 5, 7, 8, 10, 15,
            16 or 20; paper 4).
        dropout: dropout after each block, as an integer percentage (5..95 step 5) or a float
            rate such as ``0.1``; 0 disables it.
        seed: seed of initialisation and dropout (and the default seed of ``fit``).
        bias: linear layers with bias (paper: no).
        init: ``"kaiming"``, ``"xavier"`` or ``"std"``; default Xavier for pocket_tanh,
            Kaiming otherwise (SPEC §6).
    """

    def __init__(
        self,
        layers: Sequence[int] = (784, 200, 100, 50, 10),
        *,
        activation: str = "nitro_relu",
        slope: int = 4,
        dropout: int | float = 0,
        seed: int = 0,
        bias: bool = False,
        init: str | None = None,
    ) -> None:
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise TypeError("layers must be a sequence of integers [inputs, hidden..., classes]")
        widths = [_check_int(w, "layer width", minimum=1) for w in layers]
        if len(widths) < 2:
            raise ValueError("layers needs at least [inputs, classes]")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of "
                             + ", ".join(ACTIVATIONS))
        self._m = _core.Model.mlp(
            widths[0],
            widths[1:-1],
            widths[-1],
            activation=activation,
            slope=_check_int(slope, "slope", minimum=1),
            dropout_pct=_dropout_pct(dropout),
            bias=bool(bias),
            init=init,
            seed=_check_int(seed, "seed", minimum=0),
        )
        self.history: History | None = None

    @classmethod
    def _from_core(cls, core: _core.Model) -> MLP:
        self = cls.__new__(cls)
        self._m = core
        self.history = None
        return self


    @property
    def layers(self) -> list[int]:
        c = self._m.config
        return [c["inputs"], *c["hidden"], c["classes"]]

    def __repr__(self) -> str:
        return f"MLP({self._m.describe()}, parameters={self._m.num_parameters()})"

    def _check(self, x: Any, name: str) -> tuple[np.ndarray, tuple[int, int, int]]:
        return _check_images(x, name, self._m.config["inputs"])

    @classmethod
    def from_bytes(cls, data: bytes) -> MLP:
        return cls._from_core(_core.Model.from_bytes(bytes(data), "mlp"))

    # -- export for devices (issue 5) ------------------------------------------------------

    def to_blob(self) -> bytes:
        """The compact ``no_std``-loadable model blob (``nitro_core::export::to_blob``)."""
        return self._m.to_blob()

    @classmethod
    def from_blob(cls, data: bytes) -> MLP:
        """A model rebuilt by the device loader ``nitro_core::export::from_blob``."""
        return cls._from_core(_core.Model.from_blob(bytes(data)))

    def to_rust_source(self, name: str = "model") -> str:
        """Rust source with the model as ``const`` arrays (``export::to_rust_source``)."""
        return self._m.to_rust_source(name)


def _check_cnn_images(x: Any, name: str,
                      shape: tuple[int, int, int]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Validate CNN input ``N x C x H x W`` (or ``N x H x W`` for one channel) of geometry
    ``shape``; return a 2-D (N x C·H·W) view and the geometry."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray of dtype uint8 or int8, got {type(x).__name__}"
        )
    if x.dtype not in (np.uint8, np.int8):
        raise TypeError(
            f"{name} must have dtype uint8 (raw pixels) or int8 (already normalised), "
            f"got {x.dtype}"
        )
    c, h, w = shape
    if x.ndim == 4:
        got = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
    elif x.ndim == 3 and c == 1:
        got = (1, int(x.shape[1]), int(x.shape[2]))
    else:
        want = "N x C x H x W" + (" or N x H x W" if c == 1 else "")
        raise ValueError(f"{name} must have shape {want} for this CNN (input {shape}); "
                         f"got {x.ndim} dimension(s) {tuple(x.shape)}")
    if got != (c, h, w):
        raise ValueError(f"{name} has images of shape {got} (array {tuple(x.shape)}), "
                         f"the model expects {(c, h, w)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); expected at least one sample")
    if not x.flags.c_contiguous:
        raise ValueError(
            f"{name} must be C-contiguous; pass np.ascontiguousarray({name}) instead"
        )
    return x.reshape(x.shape[0], c * h * w), got


_POOL_NAMES = {"m": "maxpool", "max": "maxpool", "maxpool": "maxpool", "p": "maxpool",
               "a": "avgpool", "avg": "avgpool", "avgpool": "avgpool"}


def _feature_arg(f: Any, i: int) -> tuple[str, list[int]]:
    """One feature-extractor entry, normalised to the engine's ``(kind, [numbers])``."""
    where = f"features[{i}]"
    if isinstance(f, (int, np.integer)) and not isinstance(f, bool):
        return ("conv", [_check_int(f, where, minimum=1), 3, 1, 1])
    if isinstance(f, str):
        key = f.lower()
        if key in _POOL_NAMES:
            return (_POOL_NAMES[key], [2])
        raise ValueError(f"{where}: unknown feature {f!r}; use an int (3x3 conv filters), "
                         "'M' (max-pool 2), 'A' (avg-pool 2) or a tuple")
    if isinstance(f, (tuple, list)) and f and isinstance(f[0], str):
        kind = f[0].lower()
        nums = [_check_int(v, f"{where} value", minimum=0) for v in f[1:]]
        if kind == "conv":
            if not 1 <= len(nums) <= 4:
                raise ValueError(f"{where}: ('conv', filters[, kernel[, stride[, padding]]]), "
                                 f"got {f!r}")
            filters = nums[0]
            kernel = nums[1] if len(nums) > 1 else 3
            stride = nums[2] if len(nums) > 2 else 1
            padding = nums[3] if len(nums) > 3 else kernel // 2
            if filters < 1 or kernel < 1:
                raise ValueError(f"{where}: filters and kernel must be positive, got {f!r}")
            if stride != 1:
                raise ValueError(f"{where}: convolution stride {stride} is not supported "
                                 "(NITRO-D convolutions use stride 1; pool to downsample)")
            return ("conv", [filters, kernel, stride, padding])
        if kind in _POOL_NAMES or kind == "dropout":
            if len(nums) > 1:
                raise ValueError(f"{where}: ({kind!r}, size) takes one number, got {f!r}")
            if kind == "dropout":
                if not nums:
                    raise ValueError(f"{where}: ('dropout', percent) needs the percent")
                return ("dropout", [_dropout_pct(int(nums[0]))])
            k = nums[0] if nums else 2
            if k < 1:
                raise ValueError(f"{where}: pooling size must be positive")
            return (_POOL_NAMES[kind], [k])
    raise TypeError(f"{where} must be an int (conv filters), 'M', 'A', or a tuple such as "
                    f"('conv', 64, 3, 1, 1), ('maxpool', 2), ('avgpool', 2), ('dropout', 10); "
                    f"got {f!r}")


class CNN(_Model):
    """An integer-only local-loss CNN (NITRO-D ``IntegerLocalLossCNN``, SPEC §4.1, §4.2).

    Args:
        features: the feature extractor. An int ``n`` is a ``LocalConv2dBlock`` with ``n``
            3x3 filters, padding 1; ``"M"`` / ``"A"`` a max / average pooling of 2; tuples
            ``("conv", filters, kernel=3, stride=1, padding=kernel//2)``, ``("maxpool", k)``,
            ``("avgpool", k)``, ``("dropout", percent)``.
        classifier: hidden widths of the MLP classifier (local-loss linear blocks).
        input_shape: ``(C, H, W)`` with ``H == W``; ``(1, 28, 28)`` for (Fashion-)MNIST,
            ``(3, 32, 32)`` for CIFAR-10.
        classes: number of classes.
        decoder_dim: largest flattened learning-head input of a conv block (SPEC §4.1).
        head_pool: ``"max"`` or ``"avg"`` pooling in the conv blocks' learning heads.
        activation, slope, bias, init, seed: as for :class:`MLP`.
        dropout: classifier dropout (percentage or rate); per SPEC §7 it also puts one
            Dropout just before the last feature-extractor entry.
        conv_amp_adjust: multiply each conv block's amplification by ``d²/(kh·kw)`` (SPEC §5;
            off reproduces the paper).
        compat: the default training mode of ``fit``/``train_batch`` (``"exact"`` or
            ``"reference"``, SPEC §12).
    """

    def __init__(
        self,
        features: Sequence[Any] = (32, "M", 64, "M"),
        classifier: Sequence[int] = (1024,),
        *,
        input_shape: Sequence[int] = (1, 28, 28),
        classes: int = 10,
        decoder_dim: int = 2048,
        head_pool: str = "max",
        activation: str = "nitro_relu",
        slope: int = 4,
        dropout: int | float = 0,
        seed: int = 0,
        bias: bool = False,
        init: str | None = None,
        conv_amp_adjust: bool = False,
        compat: str = "exact",
    ) -> None:
        if isinstance(features, (str, bytes)) or not isinstance(features, Sequence):
            raise TypeError("features must be a sequence of feature entries")
        feats = [_feature_arg(f, i) for i, f in enumerate(features)]
        if isinstance(classifier, (str, bytes)) or not isinstance(classifier, Sequence):
            raise TypeError("classifier must be a sequence of hidden widths")
        widths = [_check_int(w, "classifier width", minimum=1) for w in classifier]
        if (isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence)
                or len(input_shape) != 3):
            raise TypeError("input_shape must be a (C, H, W) tuple")
        c, h, w = (_check_int(v, "input_shape entry", minimum=1) for v in input_shape)
        if h != w:
            raise ValueError(f"input_shape must be square (H == W), got {(c, h, w)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of "
                             + ", ".join(ACTIVATIONS))
        if head_pool not in ("max", "avg"):
            raise ValueError(f"head_pool must be 'max' or 'avg', got {head_pool!r}")
        if compat not in ("exact", "reference"):
            raise ValueError(f"compat must be 'exact' or 'reference', got {compat!r}")
        self._m = _core.Model.cnn(
            (c, h, w), feats, widths, _check_int(classes, "classes", minimum=2),
            activation=activation,
            slope=_check_int(slope, "slope", minimum=1),
            dropout_pct=_dropout_pct(dropout),
            bias=bool(bias),
            init=init,
            seed=_check_int(seed, "seed", minimum=0),
            decoder_dim=_check_int(decoder_dim, "decoder_dim", minimum=1),
            head_pool=head_pool,
            conv_amp_adjust=bool(conv_amp_adjust),
        )
        self._compat = compat
        self.history = None

    @classmethod
    def _from_core(cls, core: _core.Model) -> CNN:
        self = cls.__new__(cls)
        self._m = core
        hyper = core.hyper
        self._compat = str(hyper["compat"]) if hyper else "exact"
        self.history = None
        return self

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self._m.config["input"]
        return (int(c), int(h), int(w))

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """``(C, d, d)`` of the flattened features entering the classifier."""
        return self._m.feature_shape

    def head_geometries(self) -> list[dict[str, Any]]:
        """Per conv block: its name, the learning head's pooling ``kernel`` and ``padding``,
        pooled ``dims`` and flattened size ``features`` (SPEC §4.1)."""
        return [{"block": n, "kernel": k, "padding": p, "dims": d, "features": f}
                for n, k, p, d, f in self._m.head_geometries()]

    def __repr__(self) -> str:
        return f"CNN({self._m.describe()}, parameters={self._m.num_parameters()})"

    def _check(self, x: Any, name: str) -> tuple[np.ndarray, tuple[int, int, int]]:
        return _check_cnn_images(x, name, self.input_shape)

    def _fit_compat(self) -> str:
        return self._compat

    def _hyper(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        if overrides.get("compat") is None:
            overrides = {**overrides, "compat": self._compat}
        h = super()._hyper(overrides)
        self._compat = h["compat"]
        return h

    @classmethod
    def from_bytes(cls, data: bytes) -> CNN:
        return cls._from_core(_core.Model.from_bytes(bytes(data), "cnn"))


def _wrap(core: _core.Model) -> MLP | CNN:
    if core.kind == "cnn":
        return CNN._from_core(core)
    return MLP._from_core(core)


def load(path: PathLike) -> MLP | CNN:
    """Load a model saved with :meth:`MLP.save` or :meth:`CNN.save` (either kind)."""
    return _wrap(_core.Model.load(os.fspath(path)))


def from_bytes(data: bytes) -> MLP | CNN:
    """A model of either kind from ``.safetensors`` bytes."""
    return _wrap(_core.Model.from_bytes(bytes(data)))
