"""The ``nitrod`` command: ``train``, ``eval``, ``info``, ``export`` and ``sweep``.

Exit codes: 0 success; 2 usage error (argparse, or options that do not fit together); 1 any
other error, with a one-line message on stderr (the traceback only with ``--debug``), or the
lines of the hint when a data set is not found; 130 after Ctrl-C, with one line saying so; 141
(as a program ended by SIGPIPE) when the reader of the output went away, as in ``nitrod info
FILE | head``, without a message.

Results go to stdout, progress and notes to stderr; ``--json -`` writes the JSON document to
stdout and the readable report to stderr.

This module imports only the standard library and the compiled engine at first: numpy and the
models are imported inside :func:`main`, so a Ctrl-C from the first instant is handled there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["main"]

#: The exit code after Ctrl-C (128 + SIGINT, what a shell reports for an interrupted program).
EXIT_INTERRUPTED = 130
#: The exit code when stdout or stderr was closed by its reader (128 + SIGPIPE).
EXIT_BROKEN_PIPE = 141

# The ranges of the engine's integer arguments (``_core.TrainSettings``): epochs u32, seeds
# u64, the rates and decays i64.
_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_I64_MAX = 2**63 - 1


class _UsageError(Exception):
    """A bad combination of arguments found after parsing (exit code 2)."""


def _default_split() -> tuple[int, int]:
    """The presets' validation split ``(permille, seed)`` (``nitro_core::Split::PRESET``)."""
    from . import _protocol

    return _protocol.default_split()


def _int_type(minimum: int, maximum: int | None = None) -> Any:
    """An argparse ``type``: an integer in ``minimum .. maximum``, else an error saying so."""
    expected = (f"an integer from {minimum} to {maximum}" if maximum is not None
                else "a positive integer" if minimum == 1 else f"an integer >= {minimum}")

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}") from None
        if v < minimum or (maximum is not None and v > maximum):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {v}")
        return v

    return parse


_positive = _int_type(1)


def _share(s: str) -> float:
    """A share of the training set: 0 (none) or a fraction in (0, 1)."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.1, got {s!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected 0 (no split) or a fraction below 1, got {v}")
    return v


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``nitrod`` parser, and its subcommands' parsers by name (for their usage lines)."""
    from . import __version__, _core
    from .datasets import DATASET_NAMES

    split_permille, split_seed = _default_split()
    presets = _core.presets()
    hyper = _core.defaults()["hyper"]
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback on errors")
    p = argparse.ArgumentParser(
        prog="nitrod", parents=[debug],
        description="Integer-only NITRO-D training (nitrod-rs).")
    p.add_argument("--version", action="version", version=f"nitrod-rs {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    datasets = ", ".join(DATASET_NAMES)

    t = sub.add_parser("train", parents=[debug], help="train a preset on a data set")
    t.add_argument("--model", default="mlp2",
                   help="preset: " + ", ".join(f"{name} ({ds})" for name, _, ds in presets)
                        + ", each with the data set it defaults to (default mlp2)")
    t.add_argument("--dataset", default=None,
                   help=f"{datasets} (default: the preset's)")
    t.add_argument("--data-dir", default=None, metavar="DIR",
                   help="read the data set from DIR (or its subfolder named after the data "
                        "set) and nowhere else; default: $NITROD_DATA, ~/.cache/nitrod, the "
                        "system's copy, else a download")
    t.add_argument("--epochs", type=_int_type(1, _U32_MAX), default=20,
                   help="epochs to train (default 20; the plateau rule and early stopping may "
                        "end the run sooner)")
    t.add_argument("--batch-size", type=_int_type(1, _I64_MAX), default=None,
                   help="samples per training step (default: the preset's)")
    t.add_argument("--seed", type=_int_type(0, _U64_MAX), default=0,
                   help="seed of the initial weights, the shuffling, dropout and augmentation "
                        "(default 0); the validation split has its own, fixed seed")
    t.add_argument("--threads", type=_positive, default=None,
                   help="worker threads (default: one per CPU); results do not depend on it")
    t.add_argument("--workers", type=_int_type(1, 1024), default=None, metavar="K",
                   help="data-parallel training on K Ray actors (each with --threads engine "
                        "threads, default 1, and as many Ray CPUs): the same bits as without; "
                        "needs pip install 'nitrod-rs[ray]'; not with --compat reference for a "
                        "CNN")
    t.add_argument("--limit", type=_positive, default=None, metavar="N",
                   help="use the first N training samples only (the validation set is held "
                        "out of them)")
    t.add_argument("--test-limit", type=_positive, default=None, metavar="N",
                   help="test on the first N test samples only")
    t.add_argument("--val-split", type=_share, default=None, metavar="F",
                   help="share of the training set held out as the validation set that the "
                        f"plateau rule, early stopping and the best epoch watch (default "
                        f"{split_permille / 1000:g}, seed {split_seed}, as the presets; "
                        "0: none, which also turns the plateau rule and early stopping off)")
    t.add_argument("--paper-protocol", action="store_true",
                   help="the paper's protocol: no validation split, the plateau rule, early "
                        "stopping and the best epoch watch the test set")
    g = t.add_argument_group(
        "IntegerSGD settings (default: the preset's)",
        "Every update is integer: a weight moves by its gradient divided by the inverse "
        "learning rate, and by itself divided by the inverse weight decay.")
    g.add_argument("--lr-inv", type=_int_type(1, _I64_MAX), default=None, metavar="N",
                   help=f"inverse learning rate: larger is slower (the paper's "
                        f"{hyper['lr_inv']})")
    g.add_argument("--lr-amp-factor", type=_int_type(1, _I64_MAX), default=None, metavar="N",
                   help="the forward layers' updates are divided by N times more, "
                        f"--lr-inv x N in all (the paper's {hyper['lr_amp_factor']}: 2^6 x "
                        "10 classes)")
    g.add_argument("--fwd-decay-inv", type=_int_type(0, _I64_MAX), default=None, metavar="N",
                   help="inverse weight decay of the forward layers: each update also takes "
                        "weight / N off every weight (0: none)")
    g.add_argument("--subnet-decay-inv", type=_int_type(0, _I64_MAX), default=None,
                   metavar="N",
                   help="the same for the block heads and the output layer (0: none)")
    r = t.add_argument_group(
        "learning-rate schedule and plateau rules (default: the preset's)",
        "lr_inv grows after each epoch by the schedule; the plateau rule multiplies it when "
        "the watched accuracy stalls, early stopping ends the run (both need a watched set: "
        "the validation split, or the test set under --paper-protocol).")
    r.add_argument("--lr-schedule", default=None, metavar="KIND:N:MAX",
                   help="linear:PCT:MAX (add PCT%% of the starting lr_inv per epoch), "
                        "exponential:PCT:MAX (multiply by (100+PCT)/100), halving:EVERY:MAX "
                        "(double it every EVERY epochs), each capped at MAX; constant: none")
    r.add_argument("--plateau-patience", type=_int_type(0, _U32_MAX), default=None,
                   metavar="N", help="epochs without improvement before the plateau rule acts")
    r.add_argument("--plateau-factor", type=_int_type(2, _I64_MAX), default=None, metavar="N",
                   help="the plateau rule multiplies lr_inv by N")
    r.add_argument("--early-stop-patience", type=_int_type(0, _U32_MAX), default=None,
                   metavar="N", help="epochs without improvement before the run stops")
    t.add_argument("--compat", choices=("exact", "reference"), default=None,
                   help="exact: the algorithm as documented (default); reference: reproduce "
                        "the original implementation's behaviour bit for bit")
    t.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="write DIR/checkpoint.safetensors after every epoch (and on Ctrl-C); "
                        "with a watched set (validation, or the test set under "
                        "--paper-protocol) also DIR/best.safetensors, the best model by it")
    t.add_argument("--resume", default=None, metavar="FILE",
                   help="continue the run of a checkpoint file bit for bit (same model, data "
                        "and settings; --epochs may extend it)")
    t.add_argument("--log-jsonl", default=None, metavar="FILE",
                   help="write one JSON line of metrics per epoch (appended when resuming)")
    t.add_argument("--out", default=None, metavar="FILE",
                   help="save the trained model (.safetensors)")
    t.add_argument("--json", default=None, metavar="FILE",
                   help="write the settings, the history and the final test result as JSON "
                        "to FILE ('-': stdout, the readable report then goes to stderr)")
    t.add_argument("--plot", default=None, metavar="FILE",
                   help="save accuracy and loss curves (an image, e.g. .png), redrawn after "
                        "every epoch (needs matplotlib)")
    t.add_argument("--no-progress", action="store_true",
                   help="no progress bar (the result of each epoch is still printed)")

    e = sub.add_parser("eval", parents=[debug], help="evaluate a saved model on a test set")
    e.add_argument("--model", required=True, metavar="FILE", help="a .safetensors file")
    e.add_argument("--dataset", required=True, help=datasets)
    e.add_argument("--data-dir", default=None, metavar="DIR",
                   help="read the data set from DIR only (as for train)")
    e.add_argument("--threads", type=_positive, default=None)
    e.add_argument("--limit", type=_positive, default=None, metavar="N",
                   help="evaluate on the first N test samples only")
    e.add_argument("--json", default=None, metavar="FILE",
                   help="write the result as JSON to FILE ('-': stdout, the readable line "
                        "then goes to stderr); the keys are those of train --json")

    i = sub.add_parser("info", parents=[debug], help="describe a saved model")
    i.add_argument("file", help="a .safetensors file")

    x = sub.add_parser("export", parents=[debug],
                       help="export a model: ONNX, C or the no_std device blob (MLPs and "
                            "CNNs), or an MLP's Rust source (devices)")
    x.add_argument("file", help="a .safetensors file")
    x.add_argument("--format", choices=("bin", "rust", "onnx", "c"), default="bin",
                   help="bin: the compact device blob (nitro_core::export::from_blob loads "
                        "it); rust: an MLP as const arrays; onnx: an integer-only ONNX graph "
                        "(needs nitrod-rs[onnx]); c: a C99 .h/.c pair (--out is a directory)")
    x.add_argument("--out", required=True,
                   help="the file to write (the directory for --format c)")
    x.add_argument("--name", default=None,
                   help="the model's name in the Rust source, the ONNX graph's name, or the "
                        "base name of the C files (default nitrod_model)")
    x.add_argument("--no-heads", action="store_true",
                   help="bin only: leave out the learning heads (a smaller blob for devices "
                        "that only predict; it cannot be trained)")
    x.add_argument("--prefix", default="nitrod",
                   help="C only: the prefix of the function and macros (default nitrod: "
                        "nitrod_predict, NITROD_SCRATCH_BYTES)")

    w = sub.add_parser("sweep", parents=[debug],
                       help="train a grid of seeds and settings on Ray, then tabulate mean ± "
                            "std per configuration (needs nitrod-rs[ray])")
    w.add_argument("spec", nargs="?", default=None,
                   help="a sweep spec (.json or .toml: seeds, base, grid, runs; see the "
                        "README's \"Scaling out\"); the options below are given over it")
    w.add_argument("--out", required=True, metavar="DIR",
                   help="the results folder: one subfolder per run, and table.md, table.csv "
                        "and table.json; running again skips finished runs and resumes the "
                        "others from their checkpoints")
    w.add_argument("--model", action="append", default=None, metavar="NAME",
                   help="a preset to sweep (repeat it for several)")
    w.add_argument("--dataset", action="append", default=None, metavar="NAME",
                   help=f"{datasets} (repeat it for several; default: each preset's)")
    w.add_argument("--seeds", default=None, metavar="N|LIST",
                   help="the seeds: a count N (seeds 0 to N-1) or a list such as 0,3,7 "
                        "(default: the spec's, else 1)")
    w.add_argument("--epochs", type=_int_type(1, _U32_MAX), default=None,
                   help="epochs of every run")
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of every run, such as lr_inv=1024 or paper_protocol=true "
                        "(the value as JSON)")
    w.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a setting to sweep over, such as lr_inv=512,1024 (each value as JSON)")
    w.add_argument("--address", default=None,
                   help="join this Ray cluster (auto, HOST:PORT, ray://HOST:PORT); default: "
                        "start a local Ray with one CPU per core")
    w.add_argument("--threads", type=_positive, default=1,
                   help="engine threads of each run, and the CPUs its Ray task takes "
                        "(default 1); results do not depend on it")
    w.add_argument("--data-dir", default=None, metavar="DIR",
                   help="read the data sets from DIR (as for train; on a cluster a path every "
                        "node has)")
    w.add_argument("--checkpoint-every", type=_positive, default=1, metavar="N",
                   help="epochs between a run's checkpoints (default 1)")
    w.add_argument("--retries", type=_int_type(0, 100), default=3, metavar="N",
                   help="restarts of a run whose worker died, each from its checkpoint "
                        "(default 3)")
    w.add_argument("--json", default=None, metavar="FILE",
                   help="also write the table as JSON to FILE ('-': stdout, the Markdown "
                        "table then goes to stderr)")
    w.add_argument("--no-progress", action="store_true",
                   help="no overall bar (each finished run still prints one line)")
    return p, {"train": t, "eval": e, "info": i, "export": x, "sweep": w}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


#: What the watched set does, in the words of the legend.
_SELECTS = "selects the best epoch and drives the plateau rule and early stopping"


class _EpochTable:
    """The result of every epoch, one row each, printed once as the epoch ends (the progress
    bar shows none: :func:`nitrod_rs._progress.results_printed_elsewhere`). A resumed run
    starts with the rows of its earlier epochs, so the table covers the whole run."""

    def __init__(self, out: TextIO, watched: str | None, settings: dict[str, Any]) -> None:
        self.out = out
        self.val = watched == "val"
        if watched == "val":
            share = f"{100 * settings['validation_split']:g}%"
            legend = (f"* the validation set ({share} of the training set, held out) "
                      f"{_SELECTS}; the test set is only reported")
        elif watched == "test":
            legend = (f"* the test set {_SELECTS} (the paper's protocol; there is no "
                      "validation set)")
        else:
            legend = ("no validation set: no best epoch, plateau rule or early stopping; the "
                      "test set is only reported")
        self.legend = legend
        mark = {"val": ("*", ""), "test": ("", "*")}.get(watched or "", ("", ""))
        cols = [f"{'epoch':>5}", f"{'train acc':>9}"]
        if self.val:
            cols += [f"{'val acc' + mark[0]:>9}", f"{'val loss':>9}"]
        cols += [f"{'test acc' + mark[1]:>9}", f"{'test loss':>9}", f"{'blocks':<22}",
                 f"{'lr_inv':>7}", f"{'sec':>6}"]
        self.head = "  ".join(cols)

    def row(self, e: dict[str, Any]) -> str:
        blocks = " ".join(f"{100 * b:.1f}" for b in e["block_accuracy"])
        cols = [f"{e['epoch']:>5}", f"{_pct(e['train_accuracy']):>9}"]
        if self.val:
            cols += [f"{_pct(e['val_accuracy']):>9}", f"{_num(e.get('val_loss')):>9}"]
        cols += [f"{_pct(e['test_accuracy']):>9}", f"{_num(e.get('test_loss')):>9}",
                 f"{blocks:<22}", f"{e['lr_inv']:>7}", f"{e['seconds']:>6.1f}"]
        return "  ".join(cols)

    def set_model(self, model: Any) -> None:
        """Called by ``fit`` before the first epoch: the header and any earlier epochs."""
        lines = [self.legend, self.head, "-" * len(self.head)]
        lines += [self.row(e) for e in (model.history.epochs if model.history else [])]
        self._write(lines)

    def __call__(self, entry: dict[str, Any]) -> None:
        self._write([self.row(entry)])

    def _write(self, lines: list[str]) -> None:
        self.out.write("".join(line + "\n" for line in lines))
        self.out.flush()


class _JsonLines:
    """A callback writing one JSON line per epoch, flushed at once."""

    def __init__(self, path: str, append: bool) -> None:
        self.file = open(path, "a" if append else "w", encoding="utf-8")

    def __call__(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _report_stream(args: argparse.Namespace) -> TextIO:
    """Where the readable results go: stdout, unless the JSON document takes it."""
    return sys.stderr if args.json == "-" else sys.stdout


def _write_json(dest: str, doc: dict[str, Any]) -> None:
    """``doc`` to the file ``dest``, or to stdout for ``-``."""
    if dest == "-":
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    with open(dest, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)


def _test_result(r: dict[str, Any]) -> dict[str, Any]:
    """The keys of a test-set evaluation in the JSON documents of train and eval."""
    return {"test_accuracy": r["accuracy"], "test_correct": r["correct"],
            "test_total": r["total"], "test_loss": r["loss"], "test_loss_sum": r["loss_sum"]}


def _apply_rule_options(args: argparse.Namespace, settings: dict[str, Any],
                        watched: str | None) -> None:
    """``--lr-schedule`` and the plateau / early-stopping options over the preset's settings,
    checked by the same rules as ``fit``'s keywords."""
    from . import _checks

    if args.lr_schedule is not None:
        kind, *rest = args.lr_schedule.split(":")
        try:
            value = None if args.lr_schedule == "constant" else (kind, *(int(v) for v in rest))
            settings["lr_schedule"] = _checks.schedule(value)
        except (TypeError, ValueError) as exc:
            raise _UsageError(f"--lr-schedule {args.lr_schedule}: {exc}; e.g. halving:10:4096"
                              ) from None
    given = {rule: {k: v for k, v in values.items() if v is not None}
             for rule, values in (
                 ("plateau", {"patience": args.plateau_patience, "factor": args.plateau_factor}),
                 ("early_stopping", {"patience": args.early_stop_patience}))}
    for rule, values in given.items():
        if not values:
            continue
        if watched is None:
            raise _UsageError(f"--{'plateau' if rule == 'plateau' else 'early-stop'}-* needs a "
                              "watched set: drop --val-split 0, or use --paper-protocol")
        current = settings.get(rule)
        merged = dict(current) if isinstance(current, dict) else {}
        merged.update(values)
        try:
            if rule == "plateau":
                _checks.watch(merged, False, False)
            else:
                _checks.watch(False, merged, False)
        except (TypeError, ValueError) as exc:
            raise _UsageError(str(exc)) from None
        settings[rule] = merged


def _protocol(args: argparse.Namespace, settings: dict[str, Any]) -> str | None:
    """Set the validation split and protocol of ``settings`` from the arguments; returns the
    history entry prefix of the watched set (``"val"``, ``"test"`` or ``None``)."""
    from . import _protocol

    if args.paper_protocol and args.val_split is not None:
        raise _UsageError("--paper-protocol trains on the whole training set and selects "
                          "on the test set: drop --val-split")
    watched, turned_off = _protocol.apply(settings, paper_protocol=args.paper_protocol,
                                          validation_split=args.val_split)
    if turned_off:
        print("no validation set (--val-split 0): plateau rule and early stopping off",
              file=sys.stderr)
    return watched


#: The ``fit`` keywords that train's IntegerSGD options set (``--lr-inv`` sets ``lr_inv``).
_SGD_KEYS = ("lr_inv", "lr_amp_factor", "fwd_decay_inv", "subnet_decay_inv")


def _apply_sgd_options(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    """The IntegerSGD options given override the preset's; the engine checks the combination
    (``lr_inv · lr_amp_factor`` must fit its 64-bit divisor) before any data is read."""
    from . import _core

    for key in _SGD_KEYS:
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    try:
        _core.TrainSettings(epochs=1, **{k: settings[k] for k in _SGD_KEYS})
    except (ValueError, OverflowError) as exc:
        raise _UsageError(f"--lr-inv {settings['lr_inv']} with --lr-amp-factor "
                          f"{settings['lr_amp_factor']} does not fit the engine ({exc}): "
                          "choose smaller values") from None


def _check_outputs(args: argparse.Namespace, names: Sequence[str]) -> None:
    """The files the options ``names`` name go into folders that exist."""
    for name in names:
        path = getattr(args, name)
        if path is None or path == "-":
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            option = "--" + name.replace("_", "-")
            raise _UsageError(f"{option} {path}: the folder {folder} does not exist "
                              "(create it first)")


def _cmd_train(args: argparse.Namespace) -> int:
    from . import _plot, _progress, datasets, presets
    from .callbacks import ModelCheckpoint

    out = _report_stream(args)
    # Mistakes in the output files are found before any work, not after the training.
    _check_outputs(args, ("out", "json", "plot", "log_jsonl"))
    if args.plot:
        try:
            _plot.check_path(args.plot)
        except ValueError as exc:
            raise _UsageError(f"--plot: {exc}") from None
    name = args.model.lower().replace("_", "-")
    if name not in presets.PRESETS:
        raise _UsageError(f"unknown --model {args.model!r}; expected one of "
                          + ", ".join(presets.PRESETS))
    ds_name = datasets.canonical_name(args.dataset or presets.DEFAULT_DATASET[name])
    model, settings = presets.preset(name, ds_name, seed=args.seed)
    settings["epochs"] = args.epochs
    if args.compat is not None:
        settings["compat"] = args.compat
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    _apply_sgd_options(args, settings)
    watched = _protocol(args, settings)
    _apply_rule_options(args, settings, watched)
    ckpt = best_path = None
    if args.checkpoint:
        os.makedirs(args.checkpoint, exist_ok=True)
        ckpt = os.path.join(args.checkpoint, "checkpoint.safetensors")
        best_path = os.path.join(args.checkpoint, "best.safetensors")
    print(f"loading {ds_name} ...", file=sys.stderr)
    ds = datasets.load(ds_name, args.data_dir)
    print(f"data: {ds.source}", file=sys.stderr)
    x_train, y_train = ds.x_train, ds.y_train
    if args.limit is not None:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    x_test, y_test = ds.x_test, ds.y_test
    if args.test_limit is not None:
        x_test, y_test = x_test[: args.test_limit], y_test[: args.test_limit]
    title = f"{name} on {ds_name}, seed {args.seed}: " + _selection_words(watched, settings)
    callbacks: list[Any] = [_EpochTable(out, watched, settings)]
    log = _JsonLines(args.log_jsonl, append=args.resume is not None) if args.log_jsonl else None
    if log is not None:
        callbacks.append(log)
    if best_path is not None and watched is not None:
        callbacks.append(ModelCheckpoint(best_path, monitor=f"{watched}_accuracy"))
    if args.plot:
        callbacks.append(lambda _: _plot.plot_history(model.history, args.plot, title)
                         if model.history else None)
    what = f"resuming {args.resume}: " if args.resume else ""
    print(f"{what}training {name} ({model._m.describe()}, {model.num_parameters} parameters) "
          f"on {len(y_train)} {ds.name} images for {args.epochs} epochs, seed "
          f"{args.seed}, " + _selection_words(watched, settings), file=sys.stderr)
    start = time.monotonic()
    interrupted = False
    history: Any = None
    try:
        with _progress.results_printed_elsewhere():
            history = model.fit(x_train, y_train, test_data=(x_test, y_test), seed=args.seed,
                                threads=args.threads, workers=args.workers,
                                progress=not args.no_progress,
                                callbacks=callbacks, checkpoint=ckpt, resume=args.resume,
                                **settings)
    except KeyboardInterrupt as exc:
        interrupted = True
        history = getattr(exc, "history", None)
        if history is None:
            history = model.history
        if history is None or not history.epochs:
            # Ctrl-C before the first training step: there is no result to report or save.
            print("nitrod: interrupted before the first training step ended", file=sys.stderr)
            return EXIT_INTERRUPTED
        print("nitrod: interrupted: " + _stop_words(history)
              + (f"; {ckpt} continues the run (--resume)" if ckpt else ""), file=sys.stderr)
    finally:
        if log is not None:
            log.close()
    elapsed = time.monotonic() - start
    t_eval = time.monotonic()
    test = model.evaluate(x_test, y_test, threads=args.threads)
    eval_s = time.monotonic() - t_eval
    steps = sum(int(e["train_total"]) for e in history.epochs) // settings["batch_size"]
    timing = _timing(history.epochs, steps, test["total"], eval_s)
    # The files first: a reader of stdout that goes away (``| head``) must not cost them.
    if args.out:
        model.save(args.out)
        print(f"saved model to {args.out}", file=sys.stderr)
    if args.plot and history.epochs:
        _plot.plot_history(history, args.plot, title)
    if args.json:
        best = history.best
        _write_json(args.json, {
            "model": name,
            "dataset": ds_name,
            "source": ds.source,
            "seed": args.seed,
            "train_samples": int(len(y_train)),
            "settings": {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in settings.items()},
            **history.to_dict(),
            "best_test_accuracy": best["test_accuracy"] if best else None,
            **_test_result(test),
            "seconds": elapsed,
            "timing": timing,
        })
    print(f"final test accuracy: {_pct(test['accuracy'])} ({test['correct']}/{test['total']}), "
          f"mean loss {test['loss']:.1f}, the model after {_model_words(history)}; "
          f"{elapsed:.1f}s", file=out)
    print(_best_words(history, watched, settings), file=out)
    if timing:
        print(f"speed: {timing['seconds_per_step']:.3f} s per training step "
              f"(batch {settings['batch_size']}), {timing['seconds_per_epoch']:.1f} s per "
              f"epoch, inference {timing['inference_images_per_s']:.0f} images/s", file=out)
    return EXIT_INTERRUPTED if interrupted else 0


def _partial(history: Any) -> bool:
    """Whether the last entry is an epoch stopped inside (its test set not evaluated)."""
    return bool(history.epochs) and history.epochs[-1].get("test_total") is None


def _complete_epochs(history: Any) -> int:
    ends = [e for e in history.epochs if e.get("test_total") is not None]
    return int(ends[-1]["epoch"]) if ends else 0


def _stop_words(history: Any) -> str:
    """Where an interrupted run stopped."""
    done = _complete_epochs(history)
    if _partial(history):
        last = history.epochs[-1]
        return (f"stopped in epoch {last['epoch']} after {last['train_total']} training "
                f"samples ({done} epochs complete)")
    return f"stopped after epoch {done}"


def _model_words(history: Any) -> str:
    """How far the final model was trained."""
    done = _complete_epochs(history)
    if _partial(history):
        last = history.epochs[-1]
        return (f"epoch {done} and {last['train_total']} training samples of epoch "
                f"{last['epoch']}")
    return f"epoch {done}"


def _selection_words(watched: str | None, settings: dict[str, Any]) -> str:
    if watched == "test":
        return "paper protocol (selection on the test set)"
    if watched == "val":
        return (f"{100 * settings['validation_split']:g}% of the training set held out for "
                "validation")
    return "no validation set"


def _best_words(history: Any, watched: str | None, settings: dict[str, Any]) -> str:
    best = history.best
    if best is None:
        return ("best epoch: none (no validation set selects one; use --val-split or "
                "--paper-protocol)")
    test = f"{_pct(best['test_accuracy'])} ({best['test_correct']}/{best['test_total']})"
    if watched == "test":
        return (f"best test accuracy (paper protocol: selected on the test set): {test} at "
                f"epoch {best['epoch']}")
    return (f"best epoch {best['epoch']} (selected on the validation set, "
            f"{100 * settings['validation_split']:g}% of the training set): test accuracy "
            f"{test}, validation accuracy {_pct(best['val_accuracy'])}")


def _timing(entries: Sequence[dict[str, Any]], steps: int, n_test: int,
            eval_s: float) -> dict[str, float] | None:
    """Seconds per training step and per epoch (training only), inference images/s."""
    done = [e for e in entries if e.get("train_seconds") is not None]
    if not done:
        return None
    train_s = sum(float(e["train_seconds"]) for e in done)
    return {
        "seconds_per_step": train_s / max(steps, 1),
        "seconds_per_epoch": train_s / len(done),
        "inference_images_per_s": n_test / eval_s if eval_s > 0 else 0.0,
    }


def _cmd_eval(args: argparse.Namespace) -> int:
    from . import datasets
    from .models import load

    _check_outputs(args, ("json",))
    model = load(args.model)
    ds = datasets.load(args.dataset, args.data_dir)
    x_test, y_test = ds.x_test, ds.y_test
    if args.limit is not None:
        x_test, y_test = x_test[: args.limit], y_test[: args.limit]
    r = model.evaluate(x_test, y_test, threads=args.threads)
    if args.json:
        _write_json(args.json, {"model": args.model, "dataset": ds.name, "source": ds.source,
                                **_test_result(r)})
    print(f"{args.model} on {ds.name} test set: accuracy {_pct(r['accuracy'])} "
          f"({r['correct']}/{r['total']}), mean loss {r['loss']:.1f}", file=_report_stream(args))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from . import _core
    from .models import _engine

    with open(args.file, "rb") as f:
        data = f.read()
    meta = dict(_core.read_metadata(data))
    model = _engine.from_bytes(data)
    kind = model.kind
    print(f"file:            {args.file} ({len(data)} bytes)")
    print(f"format:          {meta.get('format')} v{meta.get('format_version')}, "
          f"written by nitrod-rs {meta.get('library_version')}")
    print(f"architecture:    {kind.upper()} {model.describe()}")
    cfg = model.config
    print(f"                 dropout {cfg['dropout_pct']}%, bias {cfg['bias']}, "
          f"init {cfg['init']}, seed {cfg['seed']}")
    if kind == "cnn":
        print(f"                 input {tuple(cfg['input'])}, decoder_dim {cfg['decoder_dim']}, "
              f"head pool {cfg['head_pool']}, conv_amp_adjust {cfg['conv_amp_adjust']}")
        for name, k, pad, dims, feats in model.head_geometries():
            print(f"  head of {name}: pool {k} padding {pad} -> {dims}, D={feats}")
    print(f"parameters:      {model.num_parameters()}")
    for pname, shape in model.parameter_shapes():
        print(f"  {pname:<20} int32 {list(shape)}")
    hyper = model.hyper
    print("training:        " + (", ".join(f"{k}={v}" for k, v in hyper.items())
                                 if hyper else "(never trained)"))
    norm = model.normalization
    print("normalization:   " + (f"mean {norm[0]}, mad {norm[1]}" if norm else "(none)"))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .models import MLP, load

    if args.no_heads and args.format != "bin":
        raise _UsageError(f"--no-heads applies to --format bin only, not {args.format}")
    model = load(args.file)
    if args.format == "onnx":
        size = model.to_onnx(args.out, name=args.name)
        print(f"wrote {args.out} ({size} bytes, onnx) from {args.file}", file=sys.stderr)
        return 0
    if args.format == "c":
        paths = model.to_c(args.out, name=args.name or "nitrod_model", prefix=args.prefix)
        sizes = ", ".join(f"{p} ({p.stat().st_size} bytes)" for p in paths)
        print(f"wrote {sizes} from {args.file}", file=sys.stderr)
        return 0
    if args.format == "bin":
        out: bytes = model.to_blob(heads=not args.no_heads)
    elif not isinstance(model, MLP):
        raise ValueError(f"{args.file} is a CNN; --format rust supports MLP models only "
                         "(use --format bin, onnx or c)")
    else:
        name = args.name or os.path.basename(args.file)
        out = model.to_rust_source(name).encode("utf-8")
    with open(args.out, "wb") as f:
        f.write(out)
    what = "bin, without learning heads" if args.no_heads else args.format
    print(f"wrote {args.out} ({len(out)} bytes, {what}) from {args.file}", file=sys.stderr)
    return 0


def _json_value(text: str) -> Any:
    """A value given on the command line: JSON (``1024``, ``true``, ``[2, true]``), else the
    text itself (a name such as ``mlp1``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _assignments(items: Sequence[str], option: str, grid: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise _UsageError(f"{option} {item!r}: expected KEY=VALUE"
                              + (",VALUE..." if grid else ""))
        if grid:
            parsed = _json_value(value)
            out[key] = parsed if isinstance(parsed, list) else [
                _json_value(v) for v in value.split(",")]
        else:
            out[key] = _json_value(value)
    return out


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import SweepError, SweepSpecError, sweep

    _check_outputs(args, ("json",))
    seeds: Any = None
    if args.seeds is not None:  # a count, or a list of seeds
        seeds = ([_json_value(v) for v in args.seeds.split(",")] if "," in args.seeds
                 else _json_value(args.seeds))
    base = _assignments(args.set, "--set", grid=False)
    grid = _assignments(args.grid, "--grid", grid=True)
    if args.epochs is not None:
        base["epochs"] = args.epochs
    for key, values in (("model", args.model), ("dataset", args.dataset)):
        if values:
            if len(values) == 1:
                base[key] = values[0]
            else:
                grid[key] = values
    try:
        # Ray prints its notes (a worker died, a task is retried) to stdout: during the sweep
        # they go to stderr with the progress, and stdout carries only the table.
        with contextlib.redirect_stdout(sys.stderr):
            result = sweep(args.spec, out=args.out, seeds=seeds, base=base or None,
                           grid=grid or None, address=args.address, threads=args.threads,
                           data_dir=args.data_dir, checkpoint_every=args.checkpoint_every,
                           retries=args.retries, progress=not args.no_progress)
    except SweepSpecError as exc:
        raise _UsageError(str(exc)) from None
    except SweepError as exc:
        result = exc.result
        _report_sweep(args, result)
        raise
    _report_sweep(args, result)
    return 0


def _report_sweep(args: argparse.Namespace, result: Any) -> None:
    if args.json:
        _write_json(args.json, result.table)
    out = _report_stream(args)
    out.write(result.markdown)
    files = ", ".join(str(p) for p in result.files.values())
    print(f"table: {files}", file=sys.stderr)


def _exit_code(code: Any) -> int:
    """A ``SystemExit`` code as the process's exit status."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _silence_output() -> None:
    """After a closed pipe: what can still be written is flushed; a stream that cannot takes
    the null device, so that nothing more is written to it, not even the interpreter's last
    flush at exit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
            continue
        except (OSError, ValueError):
            pass
        try:
            fd = stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
        except (AttributeError, OSError, ValueError):
            continue
        try:
            os.dup2(null, fd)
        except OSError:
            pass
        finally:
            os.close(null)


def _run(argv: Sequence[str] | None) -> int:
    parser, subcommands = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2), printed by argparse
        sys.stdout.flush()
        return _exit_code(exc.code)
    debug = bool(getattr(args, "debug", False))
    commands = {"train": _cmd_train, "eval": _cmd_eval, "info": _cmd_info,
                "export": _cmd_export, "sweep": _cmd_sweep}
    from .datasets import DatasetNotFoundError

    try:
        code = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except _UsageError as exc:
        subcommands[args.command].print_usage(sys.stderr)
        print(f"nitrod {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("nitrod: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except DatasetNotFoundError as exc:
        if debug:
            traceback.print_exc()
        print(f"nitrod: error: {exc.render('--data-dir')}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI's contract: one line, exit 1
        if debug:
            traceback.print_exc()
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"nitrod: error: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 1
    except BaseException as exc:
        # A PanicException (the engine's bug) derives from BaseException; SystemExit passes.
        if isinstance(exc, (SystemExit, GeneratorExit)):
            raise
        if debug:
            traceback.print_exc()
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"nitrod: internal error (please report it): {type(exc).__name__}: {msg}",
              file=sys.stderr)
        return 1


class _SwallowedInterrupts:
    """Ctrl-C that CPython swallowed, sent again.

    An exception cannot leave a weakref callback or a ``__del__``: CPython prints it as
    "Exception ignored in ..." and goes on. The import system's module locks have such a
    callback, so a Ctrl-C landing in one while ``nitrod`` imports numpy or its models was lost,
    and a run with many epochs went on as if no key had been pressed. While installed, this
    ``sys.unraisablehook`` takes such a KeyboardInterrupt silently and sends SIGINT again a
    moment later, from a timer thread, when the main thread is back in ordinary code (sent from
    inside the hook, it would land in the hook and be swallowed once more). Other unraisable
    exceptions go to the hook that was installed before.
    """

    #: Seconds from the swallowed Ctrl-C to the one sent again.
    DELAY_S = 0.02

    def __init__(self) -> None:
        self._previous = sys.unraisablehook
        self._timer: threading.Timer | None = None
        self._sent = threading.Event()
        sys.unraisablehook = self._hook

    def _hook(self, unraisable: Any) -> None:
        exc_type = unraisable.exc_type
        if not (isinstance(exc_type, type) and issubclass(exc_type, KeyboardInterrupt)):
            self._previous(unraisable)
            return
        if self._timer is not None and not self._sent.is_set():
            return  # one is already on its way
        self._sent.clear()
        self._timer = threading.Timer(self.DELAY_S, self._send)
        self._timer.daemon = True
        self._timer.start()

    def _send(self) -> None:
        self._sent.set()
        # From this thread: CPython runs the SIGINT handler on the main thread.
        signal.raise_signal(signal.SIGINT)

    def close(self) -> bool:
        """Restores the previous hook; True when a swallowed Ctrl-C had not been sent again yet
        (it is not sent now: the caller reports it)."""
        sys.unraisablehook = self._previous
        if self._timer is None:
            return False
        self._timer.cancel()
        return not self._sent.is_set()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nitrod`` console script; returns the exit code (see the module's
    documentation)."""
    try:
        swallowed = _SwallowedInterrupts()
        try:
            code = _run(argv)
        finally:
            late = swallowed.close()
        if late and code != EXIT_INTERRUPTED:  # the run ended before the Ctrl-C was sent again
            raise KeyboardInterrupt
        return code
    # While the parser was built, while an error was reported, or a Ctrl-C swallowed late.
    except KeyboardInterrupt:
        try:
            print("nitrod: interrupted", file=sys.stderr)
        except (OSError, KeyboardInterrupt):
            pass
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_output()
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
