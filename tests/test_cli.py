"""The nitrod command: exit codes, --version, closed pipes, --json content, the data set hint,
the IntegerSGD options, the epoch table, the plot and info output."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from data_helpers import write_idx_set

import nitrod_rs
from nitrod_rs import cli, presets
from nitrod_rs.datasets import DATASET_NAMES


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nitrod_rs.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("args", [[], ["train", "--epochs", "0"], ["train", "--bogus"],
                                  ["frobnicate"], ["eval", "--dataset", "mnist"],
                                  ["train", "--model", "vgg99"],
                                  ["export", "x.safetensors", "--format", "tflite",
                                   "--out", "y"],
                                  # output files in folders that do not exist: before training
                                  ["train", "--out", "/nonexistent-dir/m.safetensors"],
                                  ["train", "--json", "/nonexistent-dir/h.json"],
                                  ["train", "--log-jsonl", "/nonexistent-dir/h.jsonl"],
                                  ["eval", "--model", "m", "--dataset", "mnist", "--json",
                                   "/nonexistent-dir/e.json"]])
def test_usage_errors_exit_2(args):
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert "usage" in r.stderr


def test_other_errors_exit_1_with_one_line(tmp_path):
    r = run("info", str(tmp_path / "missing.safetensors"))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("nitrod: error:")
    assert "Traceback" not in r.stderr
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model at all")
    r = run("info", str(junk))
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    r = run("info", str(junk), "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr
    r = run("train", "--dataset", "imagenet")
    assert r.returncode == 1 and "unknown dataset" in r.stderr


def test_train_json_eval_info(tmp_path, fmnist):
    out, hist = tmp_path / "m.safetensors", tmp_path / "h.json"
    r = run("train", "--model", "mlp1", "--dataset", "fashion-mnist", "--epochs", "2",
            "--limit", "3000", "--seed", "1", "--out", str(out), "--json", str(hist),
            "--threads", "2")
    assert r.returncode == 0, r.stderr
    assert "final test accuracy" in r.stdout and "train acc" in r.stdout
    doc = json.loads(hist.read_text())
    assert doc["source"].startswith("system (Debian package dataset-fashion-mnist)")
    assert doc["model"] == "mlp1" and doc["dataset"] == "fashion-mnist" and doc["seed"] == 1
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2]
    assert doc["train_samples"] == 3000 and doc["test_total"] == 10000
    assert 0.0 <= doc["test_accuracy"] <= 1.0
    # The final evaluation and the last epoch's test are the same computation; the validation
    # set is the presets' 10 % of the training set (300 rows), so 2700 rows train.
    assert doc["test_correct"] == doc["epochs"][-1]["test_correct"]
    assert doc["epochs"][-1]["val_total"] == 300 and doc["watched"] == "validation"
    assert doc["epochs"][-1]["train_total"] == 2700 // 64 * 64
    assert "selected on the validation set" in r.stdout
    assert doc["settings"]["fwd_decay_inv"] == 12000

    r = run("eval", "--model", str(out), "--dataset", "fashion-mnist")
    assert r.returncode == 0, r.stderr
    assert f"{doc['test_correct']}/10000" in r.stdout

    r = run("info", str(out))
    assert r.returncode == 0, r.stderr
    for words in ("784-100-50-10 nitro_relu", "linear_encoder_00", "linear_02",
                  "fwd_decay_inv=12000", "normalization:   mean [", "parameters:      85400"):
        assert words in r.stdout, (words, r.stdout)


def test_train_eval_info_small_cnn(tmp_path, fmnist):
    out, hist = tmp_path / "c.safetensors", tmp_path / "c.json"
    r = run("train", "--model", "small-cnn", "--dataset", "fashion-mnist", "--epochs", "1",
            "--limit", "640", "--test-limit", "300", "--out", str(out), "--json", str(hist))
    assert r.returncode == 0, r.stderr
    assert "final test accuracy" in r.stdout and "s per training step" in r.stdout
    assert "images/s" in r.stdout
    assert "epoch 1/1" in r.stderr  # the progress display
    doc = json.loads(hist.read_text())
    assert doc["model"] == "small-cnn" and doc["test_total"] == 300
    assert doc["settings"]["augment"] == [2, True]
    assert doc["timing"]["seconds_per_step"] > 0
    r = run("eval", "--model", str(out), "--dataset", "fashion-mnist", "--limit", "300")
    assert r.returncode == 0, r.stderr
    assert f"{doc['test_correct']}/300" in r.stdout
    r = run("info", str(out))
    assert r.returncode == 0, r.stderr
    for words in ("CNN 1×28×28 C32k3 M2 C64k3 M2 | 256", "conv_encoder_00", "int32 [32, 1, 3, 3]",
                  "decoder_dim 2048", "fwd_decay_inv=28000"):
        assert words in r.stdout, (words, r.stdout)


def test_main_returns_codes_in_process(tmp_path, capsys):
    assert cli.main(["info", str(tmp_path / "nope")]) == 1
    assert cli.main(["--help"]) == 0
    assert cli.main(["train", "--epochs", "0"]) == 2
    assert "usage: nitrod train" in capsys.readouterr().err


def test_ctrl_c_during_train_exits_130_and_keeps_results(tmp_path, fmnist, interrupt):
    hist = tmp_path / "h.json"
    # A run far longer than the 2 s before the Ctrl-C on any machine: no validation split (so
    # no early stopping, which ended a 500-epoch run of this size after 1.6 s on a fast day).
    proc = subprocess.Popen(
        [sys.executable, "-m", "nitrod_rs.cli", "train", "--model", "mlp1", "--epochs", "5000",
         "--val-split", "0", "--dataset", "fashion-mnist", "--limit", "6400", "--json",
         str(hist), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ready() -> None:
        assert proc.stderr is not None
        while "training mlp1" not in proc.stderr.readline():
            pass

    out, err = interrupt(proc, ready, 120)
    assert proc.returncode == 130, err
    assert "nitrod: interrupted: stopped" in err and "final test accuracy" in out
    assert "Traceback" not in err
    doc = json.loads(hist.read_text())
    assert doc["cancelled"] is True and len(doc["epochs"]) >= 1


SMALL = ["train", "--model", "mlp2", "--limit", "1280", "--test-limit", "200", "--no-progress"]


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path, fmnist):
    ck, log = tmp_path / "ck", tmp_path / "log.jsonl"
    r = run(*SMALL, "--epochs", "2", "--checkpoint", str(ck), "--log-jsonl", str(log))
    assert r.returncode == 0, r.stderr
    assert (ck / "checkpoint.safetensors").is_file() and (ck / "best.safetensors").is_file()
    lines = [json.loads(s) for s in log.read_text().splitlines()]
    assert [e["epoch"] for e in lines] == [1, 2]
    # The presets' validation split: 10 % of the 1280 rows, seed 0.
    assert all(e["val_total"] == 128 and e["test_total"] == 200 for e in lines)
    resumed, whole = tmp_path / "resumed.safetensors", tmp_path / "whole.safetensors"
    r = run(*SMALL, "--epochs", "3", "--resume", str(ck / "checkpoint.safetensors"),
            "--checkpoint", str(ck), "--log-jsonl", str(log), "--out", str(resumed))
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    lines = [json.loads(s) for s in log.read_text().splitlines()]
    assert [e["epoch"] for e in lines] == [1, 2, 3]  # appended
    assert "selected on the validation set" in r.stdout
    r2 = run(*SMALL, "--epochs", "3", "--out", str(whole))
    assert r2.returncode == 0, r2.stderr
    assert resumed.read_bytes() == whole.read_bytes()
    # The summary of the resumed run covers the whole run, as the uninterrupted one's (but for
    # the seconds, the last column).

    def table(out: str) -> list[str]:
        return [line.rsplit(maxsplit=1)[0] for line in out.splitlines()
                if line[:5].strip().isdigit()]

    assert len(table(r.stdout)) == 3 and table(r.stdout) == table(r2.stdout)


def test_paper_protocol_and_no_split_are_labelled(tmp_path, fmnist):
    r = run(*SMALL, "--epochs", "1", "--paper-protocol", "--json", str(tmp_path / "p.json"))
    assert r.returncode == 0, r.stderr
    assert "best test accuracy (paper protocol: selected on the test set)" in r.stdout
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["watched"] == "test" and doc["epochs"][0]["val_total"] is None
    assert doc["epochs"][0]["train_total"] == 1280 // 64 * 64
    assert doc["best_test_accuracy"] == doc["epochs"][0]["test_accuracy"]
    r = run(*SMALL, "--epochs", "1", "--val-split", "0")
    assert r.returncode == 0, r.stderr
    assert "plateau rule and early stopping off" in r.stderr and "best epoch: none" in r.stdout
    r = run(*SMALL, "--epochs", "1", "--paper-protocol", "--val-split", "0.2")
    assert r.returncode == 2 and "drop --val-split" in r.stderr
    r = run(*SMALL, "--epochs", "1", "--val-split", "1.5")
    assert r.returncode == 2


def test_plot_without_matplotlib_fails_before_training(tmp_path, monkeypatch, capsys):
    # Whether or not matplotlib is installed: an import of it fails.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    code = cli.main([*SMALL, "--epochs", "1", "--plot", str(tmp_path / "c.png"),
                     "--out", str(tmp_path / "m.safetensors")])
    err = capsys.readouterr().err
    assert code == 1 and "pip install matplotlib" in err
    assert "loading" not in err and "training" not in err
    assert not (tmp_path / "m.safetensors").exists()


# -- a tiny data set on disk, so that these run in seconds and without the system's copy ------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --data-dir holding a random 640 + 200 image Fashion-MNIST-shaped IDX set."""
    root = tmp_path_factory.mktemp("tiny")
    write_idx_set(root / "fashion-mnist", 640, 200)
    return root


def tiny_train(tiny: Path, *args: str) -> list[str]:
    return ["train", "--model", "mlp1", "--dataset", "fashion-mnist", "--data-dir", str(tiny),
            "--threads", "1", *args]


@pytest.fixture(scope="module")
def tiny_model(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "m.safetensors"
    r = run(*tiny_train(tiny, "--epochs", "1", "--no-progress", "--out", str(out)))
    assert r.returncode == 0, r.stderr
    return out


def rows(text: str) -> list[str]:
    """The epoch rows of the results table (they start with the epoch number)."""
    return [line for line in text.splitlines() if re.match(r"^\s*\d+  ", line)]


def test_version_is_the_package_version():
    r = run("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"nitrod-rs {nitrod_rs.__version__}"
    assert nitrod_rs.__version__ == importlib.metadata.version("nitrod-rs")


def test_help_lists_every_preset_data_set_and_documented_option(repo_root):
    helps = {c: run(c, "--help") for c in ("train", "eval", "info", "export")}
    assert all(h.returncode == 0 for h in helps.values())
    train = " ".join(helps["train"].stdout.split())
    for name in presets.PRESETS:
        assert name in train
    for name in nitrod_rs.datasets.DATASET_NAMES:
        assert name in train and name in helps["eval"].stdout
    for opt in ("--lr-inv", "--lr-amp-factor", "--fwd-decay-inv", "--subnet-decay-inv"):
        assert opt in train
    assert "SPEC" not in train  # help cites no document outside the repository
    # Every option the README's command-line section shows exists.
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    everything = " ".join(h.stdout for h in helps.values()) + run("--help").stdout
    for opt in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", section))):
        assert opt in everything, opt


@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize("case", ["info", "eval", "eval-json", "train", "train-json", "help",
                                  "version", "usage"])
def test_closed_stdout_exits_quietly(case, buffered, tiny, tiny_model, tmp_path):
    """Output into a pipe nobody reads (``| head`` that has exited): exit 141 without a word,
    never a BrokenPipeError traceback or 'Exception ignored' at exit."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    args = {
        "info": ["info", str(tiny_model)],
        "eval": ["eval", "--model", str(tiny_model), "--dataset", "fmnist", "--data-dir",
                 str(tiny)],
        "eval-json": ["eval", "--model", str(tiny_model), "--dataset", "fmnist", "--data-dir",
                      str(tiny), "--json", "-"],
        "train": tiny_train(tiny, "--epochs", "1", "--out", str(tmp_path / "m.safetensors")),
        "train-json": tiny_train(tiny, "--epochs", "1", "--json", "-"),
        "help": ["train", "--help"],
        "version": ["--version"],
        "usage": ["train", "--epochs", "0"],  # writes to stderr only: unaffected
    }[case]
    read, write = os.pipe()
    os.close(read)  # no reader: every write to the pipe fails with EPIPE
    try:
        r = subprocess.run([sys.executable, "-m", "nitrod_rs.cli", *args], stdout=write,
                           stderr=subprocess.PIPE, text=True, timeout=300, env=env)
    finally:
        os.close(write)
    for word in ("Traceback", "BrokenPipe", "Exception ignored", "Errno 32"):
        assert word not in r.stderr, r.stderr
    if case in ("help", "version"):
        # argparse itself discards a write that fails at once (unbuffered: then exit 0).
        assert r.returncode == (141 if buffered else 0), r.stderr
    else:
        assert r.returncode == (2 if case == "usage" else 141), r.stderr


def test_info_piped_into_head(tiny_model):
    r = subprocess.run(f"'{sys.executable}' -m nitrod_rs.cli info '{tiny_model}' | head -n 1",
                       shell=True, capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("file:") and r.stdout.count("\n") == 1
    assert r.stderr == ""


def test_missing_data_set_hint_is_readable_lines(tmp_path, monkeypatch, capsys):
    """Nothing found: the hint names --data-dir (the option, not the Python argument) in lines
    of its own, with how to get the data."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NITROD_DATA", raising=False)
    monkeypatch.setattr(nitrod_rs.datasets, "SYSTEM_DIRS", {k: () for k in DATASET_NAMES})

    def offline(*a: object, **k: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert cli.main(["train", "--dataset", "fashion-mnist", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    lines = err.split("nitrod: error: ", 1)[1].splitlines()
    assert lines[0] == "could not find the Fashion-MNIST data set; looked in, in order:"
    assert "  - --data-dir: (not given)" in lines
    assert any("network is unreachable" in line for line in lines)
    assert any("apt-get install dataset-fashion-mnist" in line for line in lines)
    assert any("pass --data-dir DIR" in line for line in lines)
    assert "data_dir" not in "\n".join(lines)


def test_data_dir_missing_a_file_names_it(tmp_path):
    """--data-dir with one file missing: an error naming it, not the system's copy instead."""
    write_idx_set(tmp_path / "d", 64, 10)
    (tmp_path / "d" / "train-labels-idx1-ubyte.gz").unlink()
    r = run("train", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "d"),
            "--epochs", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "missing train-labels-idx1-ubyte" in r.stderr and "--data-dir" in r.stderr
    assert "training" not in r.stderr
    r = run("eval", "--model", "x.safetensors", "--dataset", "mnist", "--data-dir",
            str(tmp_path / "nothing-here"))
    assert r.returncode == 1


def test_eval_json_to_file_and_stdout(tiny, tiny_model, tmp_path, capsys):
    common = ["eval", "--model", str(tiny_model), "--dataset", "fashion-mnist", "--data-dir",
              str(tiny)]
    r = run(*common, "--json", str(tmp_path / "e.json"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "e.json").read_text())
    ds = nitrod_rs.datasets.load("fashion-mnist", tiny)
    want = nitrod_rs.load(tiny_model).evaluate(ds.x_test, ds.y_test)
    assert doc["test_correct"] == want["correct"] and doc["test_total"] == 200
    assert doc["test_accuracy"] == want["accuracy"] and doc["test_loss_sum"] == want["loss_sum"]
    assert doc["test_loss"] == want["loss"] and doc["dataset"] == "fashion-mnist"
    assert f"({want['correct']}/200)" in r.stdout
    # '-': the document alone on stdout, the readable line on stderr.
    r = run(*common, "--json", "-")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == doc
    assert f"({want['correct']}/200)" in r.stderr
    # The keys are train --json's.
    r = run(*tiny_train(tiny, "--epochs", "1", "--no-progress", "--json", "-"))
    assert r.returncode == 0, r.stderr
    tdoc = json.loads(r.stdout)
    assert {k for k in doc if k.startswith("test_")} <= set(tdoc)
    assert "final test accuracy" in r.stderr


@pytest.mark.parametrize("args, words", [
    (["--lr-inv", "0"], "argument --lr-inv: expected an integer from 1"),
    (["--lr-amp-factor", "-3"], "argument --lr-amp-factor: expected an integer from 1"),
    (["--fwd-decay-inv", "-1"], "argument --fwd-decay-inv: expected an integer from 0"),
    (["--subnet-decay-inv", "x"], "argument --subnet-decay-inv: expected an integer"),
    (["--lr-inv", str(2**63)], "argument --lr-inv: expected an integer from 1 to"),
    (["--lr-inv", str(2**62), "--lr-amp-factor", "4"], "--lr-inv 4611686018427387904 with "
                                                        "--lr-amp-factor 4 does not fit"),
    (["--epochs", str(2**32)], "argument --epochs: expected an integer from 1 to 4294967295"),
    (["--seed", str(2**64)], "argument --seed: expected an integer from 0 to"),
    (["--seed", "-1"], "argument --seed"),
    (["--lr-schedule", "cosine:1:2"], "lr_schedule kind must be one of linear, exponential"),
    (["--lr-schedule", "halving:0:4096"], "lr_schedule every must be an integer in 1.."),
    (["--lr-schedule", "linear:5"], "--lr-schedule linear:5:"),
    (["--plateau-factor", "1"], "argument --plateau-factor: expected an integer from 2"),
    (["--val-split", "0", "--plateau-patience", "3"], "needs a watched set"),
    (["--val-split", "0", "--early-stop-patience", "3"], "needs a watched set"),
])
def test_sgd_and_integer_options_are_validated(args, words, tiny):
    r = run(*tiny_train(tiny, *args))
    assert r.returncode == 2, r.stderr
    assert words in r.stderr and "Traceback" not in r.stderr
    assert "loading" not in r.stderr  # before any data is read


def test_sgd_options_reach_the_training(tiny, tmp_path):
    out, hist = tmp_path / "m.safetensors", tmp_path / "h.json"
    r = run(*tiny_train(tiny, "--epochs", "1", "--no-progress", "--lr-inv", "256",
                        "--lr-amp-factor", "320", "--fwd-decay-inv", "0",
                        "--subnet-decay-inv", "7", "--out", str(out), "--json", str(hist)))
    assert r.returncode == 0, r.stderr
    settings = json.loads(hist.read_text())["settings"]
    assert (settings["lr_inv"], settings["lr_amp_factor"]) == (256, 320)
    assert (settings["fwd_decay_inv"], settings["subnet_decay_inv"]) == (0, 7)
    hyper = nitrod_rs.load(out).hyper
    assert hyper is not None
    assert (hyper["lr_inv"], hyper["lr_amp_factor"], hyper["fwd_decay_inv"],
            hyper["subnet_decay_inv"]) == (256, 320, 0, 7)


def test_schedule_and_plateau_options_reach_the_training(tiny, tmp_path):
    hist = tmp_path / "h.json"
    r = run(*tiny_train(tiny, "--epochs", "3", "--no-progress", "--lr-schedule",
                        "halving:1:100000", "--plateau-patience", "7", "--plateau-factor", "5",
                        "--early-stop-patience", "9", "--json", str(hist)))
    assert r.returncode == 0, r.stderr
    doc = json.loads(hist.read_text())
    # Doubled after every epoch: the schedule, not the preset's constant lr_inv.
    assert [e["lr_inv"] for e in doc["epochs"]] == [512, 1024, 2048]
    settings = doc["settings"]
    assert settings["lr_schedule"] == ["halving", 1, 100000]
    assert settings["plateau"] == {"patience": 7, "factor": 5}
    assert settings["early_stopping"] == {"patience": 9}


@pytest.mark.parametrize("protocol, star, legend", [
    ([], "val acc*", "* the validation set (10% of the training set, held out) selects"),
    (["--paper-protocol"], "test acc*", "* the test set selects the best epoch"),
    (["--val-split", "0"], None, "no validation set: no best epoch"),
])
def test_each_epoch_result_printed_once_and_labelled(tiny, protocol, star, legend):
    r = run(*tiny_train(tiny, "--epochs", "3", "--limit", "320", *protocol))
    assert r.returncode == 0, r.stderr
    assert [row.split()[0] for row in rows(r.stdout)] == ["1", "2", "3"]
    assert rows(r.stderr) == []
    # The progress lines (stderr) show progress only: no second copy of an epoch's result.
    assert "val acc" not in r.stderr and "test acc" not in r.stderr
    assert "batches/s" in r.stderr and "epoch ETA" in r.stderr and "run ETA" in r.stderr
    head = next(line for line in r.stdout.splitlines() if line.startswith("epoch"))
    assert legend in r.stdout
    if star is None:
        assert "*" not in head and "val acc" not in head
    else:
        assert star in head and head.count("*") == 1
    if protocol == ["--paper-protocol"]:
        assert "val acc" not in head


def test_plot_has_title_integer_epochs_and_loss_panel(tiny, tmp_path):
    pytest.importorskip("matplotlib")
    from nitrod_rs import _plot

    r = run(*tiny_train(tiny, "--epochs", "1", "--plot", str(tmp_path / "c.nope")))
    assert r.returncode == 2 and "--plot: cannot write a plot named" in r.stderr
    assert "loading" not in r.stderr

    png = tmp_path / "c.png"
    r = run(*tiny_train(tiny, "--epochs", "3", "--limit", "320", "--no-progress", "--plot",
                        str(png), "--json", str(tmp_path / "h.json")))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((tmp_path / "h.json").read_text())
    history = nitrod_rs.History(doc["epochs"], watched=doc["watched"])
    fig = _plot.figure(history, "mlp1 on tiny")
    try:
        assert fig._suptitle.get_text() == "mlp1 on tiny"
        acc, loss = fig.axes
        assert acc.get_ylabel() == "accuracy (%)" and loss.get_ylabel() == "loss per sample"
        assert loss.get_xlabel() == "epoch"
        fig.canvas.draw()
        lo, hi = loss.get_xlim()
        ticks = [t for t in loss.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks)
        labels = {line.get_label() for line in loss.get_lines()}
        assert {"train", "validation", "test"} <= labels
        losses = [line.get_ydata() for line in loss.get_lines() if line.get_label() == "train"]
        assert list(losses[0]) == [e["train_loss"] for e in doc["epochs"]]
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
