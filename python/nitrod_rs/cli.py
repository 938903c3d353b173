"""The ``nitrod`` command: ``train``, ``eval``, ``info`` and ``export``.

Exit codes: 0 success, 2 usage error (argparse), 1 any other error with a one-line message on
stderr (the traceback only with ``--debug``), 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


class _UsageError(Exception):
    """A bad combination of arguments found after parsing (exit code 2)."""


def _default_split() -> tuple[int, int]:
    """The presets' validation split ``(permille, seed)`` (``nitro_core::Split::PRESET``)."""
    from ._checks import DEFAULTS

    permille, seed = DEFAULTS["validation_split"]
    return int(permille), int(seed)


_DEFAULT_SPLIT = _default_split()


def _int_arg(s: str, minimum: int, expected: str) -> int:
    """``s`` as an integer ``>= minimum``; otherwise an argparse error saying ``expected``."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}") from None
    if v < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {v}")
    return v


def _positive(s: str) -> int:
    return _int_arg(s, 1, "a positive integer")


def _non_negative(s: str) -> int:
    return _int_arg(s, 0, "an integer >= 0")


def _share(s: str) -> float:
    """A share of the training set: 0 (none) or a fraction in (0, 1)."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.1, got {s!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected 0 (no split) or a fraction below 1, got {v}")
    return v


def _parser() -> argparse.ArgumentParser:
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback on errors")
    p = argparse.ArgumentParser(
        prog="nitrod", parents=[debug],
        description="Integer-only NITRO-D training (nitrod-rs).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", parents=[debug], help="train a preset on a data set")
    t.add_argument("--model", default="mlp2",
                   help="preset: mlp1, mlp2, mlp3, mlp4, vgg8b, vgg11b or small-cnn")
    t.add_argument("--dataset", default=None,
                   help="mnist, fashion-mnist or cifar10 (default: the preset's)")
    t.add_argument("--data-dir", default=None, help="directory searched first for the data")
    t.add_argument("--epochs", type=_positive, default=20)
    t.add_argument("--batch-size", type=_positive, default=None)
    t.add_argument("--seed", type=_non_negative, default=0)
    t.add_argument("--threads", type=_positive, default=None)
    t.add_argument("--limit", type=_positive, default=None,
                   help="train on the first N training samples only")
    t.add_argument("--test-limit", type=_positive, default=None,
                   help="test on the first N test samples only")
    t.add_argument("--val-split", type=_share, default=None, metavar="F",
                   help="share of the training set held out as the validation set that the "
                        f"plateau rule, early stopping and the best epoch watch (default "
                        f"{_DEFAULT_SPLIT[0] / 1000:g}, seed {_DEFAULT_SPLIT[1]}, as the presets; "
                        "0: none)")
    t.add_argument("--paper-protocol", action="store_true",
                   help="the paper's protocol: no validation split, the plateau rule, early "
                        "stopping and the best epoch watch the test set")
    t.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="write DIR/checkpoint.safetensors after every epoch (and on Ctrl-C) "
                        "and DIR/best.safetensors, the best model by the watched set")
    t.add_argument("--resume", default=None, metavar="FILE",
                   help="continue the run of a checkpoint file bit for bit (same model, data "
                        "and settings; --epochs may extend it)")
    t.add_argument("--log-jsonl", default=None, metavar="FILE",
                   help="write one JSON line of metrics per epoch (appended when resuming)")
    t.add_argument("--out", default=None, help="save the trained model (.safetensors)")
    t.add_argument("--json", default=None, help="write the history and test accuracy as JSON")
    t.add_argument("--plot", default=None,
                   help="save accuracy curves, updated after every epoch (needs matplotlib)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--compat", choices=("exact", "reference"), default=None,
                   help="training mode (SPEC §12; default exact)")

    e = sub.add_parser("eval", parents=[debug], help="evaluate a saved model on a test set")
    e.add_argument("--model", required=True, help="a .safetensors file")
    e.add_argument("--dataset", required=True, help="mnist, fashion-mnist or cifar10")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--threads", type=_positive, default=None)
    e.add_argument("--limit", type=_positive, default=None,
                   help="evaluate on the first N test samples only")

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
    return p


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _summary_table(entries: Sequence[dict[str, Any]]) -> str:
    head = (f"{'epoch':>5}  {'train acc':>9}  {'val acc':>9}  {'test acc':>9}  "
            f"{'test loss':>9}  {'blocks':<22}  {'lr_inv':>7}  {'sec':>6}")
    lines = [head, "-" * len(head)]
    for e in entries:
        blocks = " ".join(f"{100 * b:.1f}" for b in e["block_accuracy"])
        lines.append(f"{e['epoch']:>5}  {_pct(e['train_accuracy']):>9}  "
                     f"{_pct(e['val_accuracy']):>9}  {_pct(e['test_accuracy']):>9}  "
                     f"{_num(e.get('test_loss')):>9}  {blocks:<22}  {e['lr_inv']:>7}  "
                     f"{e['seconds']:>6.1f}")
    return "\n".join(lines)


class _JsonLines:
    """A callback writing one JSON line per epoch, flushed at once."""

    def __init__(self, path: str, append: bool) -> None:
        self.file = open(path, "a" if append else "w", encoding="utf-8")

    def __call__(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _protocol(args: argparse.Namespace, settings: dict[str, Any]) -> str | None:
    """Set the validation split and protocol of ``settings`` from the arguments; returns the
    history entry prefix of the watched set (``"val"``, ``"test"`` or ``None``)."""
    if args.paper_protocol:
        if args.val_split is not None:
            raise _UsageError("--paper-protocol trains on the whole training set and selects "
                              "on the test set: drop --val-split")
        settings.update(validation_split=None, paper_protocol=True)
        return "test"
    share = args.val_split if args.val_split is not None else _DEFAULT_SPLIT[0] / 1000
    if share == 0:
        settings["validation_split"] = None
        if settings.get("plateau") or settings.get("early_stopping"):
            print("no validation set (--val-split 0): plateau rule and early stopping off",
                  file=sys.stderr)
            settings.update(plateau=False, early_stopping=False)
        return None
    settings["validation_split"] = share
    settings.setdefault("validation_seed", _DEFAULT_SPLIT[1])
    return "val"


def _cmd_train(args: argparse.Namespace) -> int:
    from . import datasets, presets
    from .callbacks import ModelCheckpoint
    from .history import require_matplotlib

    if args.plot:
        require_matplotlib()  # before any work, not after the training
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
    watched = _protocol(args, settings)
    ckpt = best_path = None
    if args.checkpoint:
        os.makedirs(args.checkpoint, exist_ok=True)
        ckpt = os.path.join(args.checkpoint, "checkpoint.safetensors")
        best_path = os.path.join(args.checkpoint, "best.safetensors")
    print(f"loading {ds_name} ...", file=sys.stderr)
    ds = datasets.load(ds_name, args.data_dir)
    x_train, y_train = ds.x_train, ds.y_train
    if args.limit is not None:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    x_test, y_test = ds.x_test, ds.y_test
    if args.test_limit is not None:
        x_test, y_test = x_test[: args.test_limit], y_test[: args.test_limit]
    callbacks: list[Any] = []
    log = _JsonLines(args.log_jsonl, append=args.resume is not None) if args.log_jsonl else None
    if log is not None:
        callbacks.append(log)
    if best_path is not None and watched is not None:
        callbacks.append(ModelCheckpoint(best_path, monitor=f"{watched}_accuracy"))
    if args.plot:
        callbacks.append(lambda _: model.history.plot(args.plot) if model.history else None)
    what = f"resuming {args.resume}: " if args.resume else ""
    print(f"{what}training {name} ({model._m.describe()}, {model.num_parameters} parameters) "
          f"on {len(y_train)} {ds_name} images for {args.epochs} epochs, seed {args.seed}, "
          + _selection_words(watched, settings), file=sys.stderr)
    start = time.monotonic()
    interrupted = False
    history: Any = None
    try:
        history = model.fit(x_train, y_train, test_data=(x_test, y_test), seed=args.seed,
                            threads=args.threads, progress=not args.no_progress,
                            callbacks=callbacks, checkpoint=ckpt, resume=args.resume,
                            **settings)
    except KeyboardInterrupt as exc:
        interrupted = True
        history = getattr(exc, "history", None) or model.history
        print("interrupted: stopping after the current batch"
              + (f"; {ckpt} continues the run (--resume)" if ckpt else ""), file=sys.stderr)
    finally:
        if log is not None:
            log.close()
    elapsed = time.monotonic() - start
    assert history is not None
    t_eval = time.monotonic()
    test = model.evaluate(x_test, y_test, threads=args.threads)
    eval_s = time.monotonic() - t_eval
    print(_summary_table(history.epochs))
    done = history.epochs[-1]["epoch"] if history.epochs else 0
    print(f"final test accuracy: {_pct(test['accuracy'])} ({test['correct']}/{test['total']}), "
          f"the model after epoch {done}; {elapsed:.1f}s")
    print(_best_words(history, watched, settings))
    steps = sum(int(e["train_total"]) for e in history.epochs) // settings["batch_size"]
    timing = _timing(history.epochs, steps, test["total"], eval_s)
    if timing:
        print(f"speed: {timing['seconds_per_step']:.3f} s per training step "
              f"(batch {settings['batch_size']}), {timing['seconds_per_epoch']:.1f} s per "
              f"epoch, inference {timing['inference_images_per_s']:.0f} images/s")
    if args.out:
        model.save(args.out)
        print(f"saved model to {args.out}", file=sys.stderr)
    if args.json:
        best = history.best
        doc = {
            "model": name,
            "dataset": ds_name,
            "seed": args.seed,
            "train_samples": int(len(y_train)),
            "settings": {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in settings.items()},
            **history.to_dict(),
            "best_test_accuracy": best["test_accuracy"] if best else None,
            "test_accuracy": test["accuracy"],
            "test_correct": test["correct"],
            "test_total": test["total"],
            "seconds": elapsed,
            "timing": timing,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    if args.plot and history.epochs:
        history.plot(args.plot)
    return 130 if interrupted else 0


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

    model = load(args.model)
    ds = datasets.load(args.dataset, args.data_dir)
    x_test, y_test = ds.x_test, ds.y_test
    if args.limit is not None:
        x_test, y_test = x_test[: args.limit], y_test[: args.limit]
    r = model.evaluate(x_test, y_test, threads=args.threads)
    print(f"{args.model} on {ds.name} test set: accuracy {_pct(r['accuracy'])} "
          f"({r['correct']}/{r['total']}), mean loss {r['loss']:.1f}")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nitrod`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)  # exits with 2 on usage errors
    debug = bool(getattr(args, "debug", False))
    commands = {"train": _cmd_train, "eval": _cmd_eval, "info": _cmd_info,
                "export": _cmd_export}
    try:
        return commands[args.command](args)
    except _UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"nitrod: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("nitrod: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's contract: one line, exit 1
        if debug:
            traceback.print_exc()
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"nitrod: error: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
