"""The nitrod command: exit codes, --json content, info output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nitrod_rs import cli


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nitrod_rs.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("args", [[], ["train", "--epochs", "0"], ["train", "--bogus"],
                                  ["frobnicate"], ["eval", "--dataset", "mnist"],
                                  ["train", "--model", "vgg99"],
                                  ["export", "x.safetensors", "--format", "tflite",
                                   "--out", "y"]])
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
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0


def test_ctrl_c_during_train_exits_130_and_keeps_results(tmp_path, fmnist, interrupt):
    hist = tmp_path / "h.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nitrod_rs.cli", "train", "--model", "mlp1", "--epochs", "500",
         "--dataset", "fashion-mnist", "--limit", "6400", "--json", str(hist), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ready() -> None:
        assert proc.stderr is not None
        while "training mlp1" not in proc.stderr.readline():
            pass

    out, err = interrupt(proc, ready, 120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "final test accuracy" in out
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
