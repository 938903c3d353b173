"""Sweeps on Ray (``nitrod_rs.sweep``, ``nitrod sweep``): the table of two seeds is that of two
plain ``fit`` runs (the same accuracies, the same model files bit for bit); a finished sweep
run again does no work; an interrupted run and a run whose worker is killed resume from their
checkpoints with the results of an uninterrupted run; bad specs are errors that name the
problem before any work. Ray runs as a local two-CPU cluster for the whole module."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import _missing
from data_helpers import learnable_arrays, write_idx_arrays

import nitrod_rs
from nitrod_rs import MLP, _progress, _sweep_run, _sweep_spec, presets
from nitrod_rs.sweep import RayMissingError, SweepSpecError

TINY = {"kind": "mlp", "layers": [784, 32, 10]}
# A few steps that learn the generated set (and differently for each seed).
BASE: dict[str, Any] = {"dataset": "fashion-mnist", "epochs": 3, "batch_size": 32,
                        "lr_inv": 512, "lr_amp_factor": 64}
FIT = {k: v for k, v in BASE.items() if k != "dataset"}
SPEC = {"seeds": 2, "base": BASE, "runs": [{"model": TINY}, {"model": "mlp1"}]}
TINY_NAME = "mlp-784-32-10_fashion-mnist_batch_size=32_epochs=3_lr_amp_factor=64_lr_inv=512"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A --data-dir with a 600 + 200 image Fashion-MNIST-shaped set that the models learn."""
    root = tmp_path_factory.mktemp("data")
    arrays = learnable_arrays(600, 200)
    write_idx_arrays(root / "fashion-mnist", arrays)
    return root, {k: v.astype(np.int64) if k[0] == "y" else v for k, v in arrays.items()}


@pytest.fixture(scope="module")
def cluster() -> Any:
    """A local Ray of two CPUs, shared by the module's sweeps; its address."""
    try:
        import ray
    except ImportError:
        _missing("ray (pip install 'nitrod-rs[ray]'; make venv installs it)")
    # A new local instance even where a `ray start` cluster runs on this machine.
    ctx = ray.init(address="local", num_cpus=2, include_dashboard=False,
                   logging_level=logging.WARNING)
    yield ctx.address_info["address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def finished(cluster: Any, data: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("sweep")
    return nitrod_rs.sweep(SPEC, out=out, data_dir=data[0], progress=False)


def plain_fit(model: Any, settings: dict[str, Any], seed: int,
              arrays: dict[str, np.ndarray]) -> tuple[Any, Any, dict[str, Any]]:
    history = model.fit(arrays["x_train"], arrays["y_train"],
                        test_data=(arrays["x_test"], arrays["y_test"]), seed=seed,
                        progress=False, **settings)
    return model, history, model.evaluate(arrays["x_test"], arrays["y_test"])


def plain_runs(arrays: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    """The sweep's four runs done with plain ``fit``, by configuration."""
    runs: dict[str, list[Any]] = {"tiny": [], "mlp1": []}
    for seed in (0, 1):
        tiny = MLP(TINY["layers"], seed=seed)
        runs["tiny"].append(plain_fit(tiny, {**FIT, "validation_split": 0.1,
                                             "validation_seed": 0}, seed, arrays))
        model, settings = presets.preset("mlp1", "fashion-mnist", seed=seed)
        runs["mlp1"].append(plain_fit(model, {**settings, **FIT}, seed, arrays))
    return runs


def entries(epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Epoch entries without their wall-clock times."""
    return [{k: v for k, v in e.items() if "seconds" not in k} for e in epochs]


# -- the table is that of plain fit runs -------------------------------------------------------


def test_table_of_two_seeds_equals_two_plain_fits(finished: Any, data: Any) -> None:
    out: Path = finished.out
    plain = plain_runs(data[1])
    rows = finished.table["rows"]
    assert [(r["model"], r["settings"], r["seeds"]) for r in rows] == [
        ("mlp-784-32-10", {}, 2), ("mlp1", {}, 2)]
    md = finished.markdown
    for row, (key, runs) in zip(rows, plain.items()):
        prefix = TINY_NAME if key == "tiny" else TINY_NAME.replace("mlp-784-32-10", "mlp1")
        best_val, at_best, final = [], [], []
        for seed, (model, history, test) in enumerate(runs):
            folder = out / f"{prefix}_seed={seed}"
            # The sweep's model file is the plain run's model, bit for bit.
            assert (folder / "model.safetensors").read_bytes() == model.to_bytes()
            doc = json.loads((folder / "history.json").read_text())
            assert entries(doc["epochs"]) == entries(history.epochs)
            best_val.append(100 * history.best_val_accuracy)
            at_best.append(100 * history.best["test_accuracy"])
            final.append(100 * test["accuracy"])
            assert (doc["test_correct"], doc["test_total"]) == (test["correct"], test["total"])
        for column, values in (("best_val_accuracy", best_val),
                               ("best_epoch_test_accuracy", at_best),
                               ("final_test_accuracy", final)):
            assert row[column]["mean"] == pytest.approx(statistics.mean(values), abs=1e-9)
            assert row[column]["std"] == pytest.approx(statistics.stdev(values), abs=1e-9)
            assert f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" in md
        assert row["epochs"] == [3, 3] and row["test_samples"] == [200]
    # The seeds do differ: the table averages two different runs.
    assert plain["tiny"][0][2]["accuracy"] != plain["tiny"][1][2]["accuracy"]
    # The three files hold the same table.
    assert (out / "table.md").read_text() == md
    assert json.loads((out / "table.json").read_text()) == json.loads(
        json.dumps(finished.table))
    csv_rows = (out / "table.csv").read_text().splitlines()
    assert len(csv_rows) == 3 and csv_rows[1].startswith("mlp-784-32-10,fashion-mnist,–,2,2,3,3,")
    assert f"{rows[0]['final_test_accuracy']['mean']!r}" in csv_rows[1]


def test_rerun_of_a_finished_sweep_does_no_work(finished: Any, data: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    out: Path = finished.out
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(runs) == 4
    before = {p: p.stat().st_mtime_ns for d in runs for p in d.iterdir()}

    def no_ray() -> None:
        raise AssertionError("a finished sweep must not start Ray")

    monkeypatch.setattr(nitrod_rs.sweep, "_ray", no_ray)
    again = nitrod_rs.sweep(SPEC, out=out, data_dir=data[0], progress=False)
    assert sorted(again.skipped) == [p.name for p in runs]
    assert again.trained == [] and again.resumed == [] and again.failed == {}
    assert {p: p.stat().st_mtime_ns for d in runs for p in d.iterdir()} == before
    assert again.table == finished.table and again.markdown == finished.markdown


# -- interrupted and killed runs resume ---------------------------------------------------------


class _CtrlC:
    """A progress display that raises ``KeyboardInterrupt`` (as Ctrl-C does) at one batch."""

    def __init__(self, at: tuple[int, int]) -> None:
        self.at = at

    def batch(self, epoch: int, batch: int, batches: int, correct: int, total: int) -> None:
        if (epoch, batch) == self.at:
            raise KeyboardInterrupt

    def epoch_end(self, line: str) -> None:
        pass

    def close(self) -> None:
        pass


def test_interrupted_run_resumes_with_the_uninterrupted_results(
        finished: Any, data: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {**SPEC, "seeds": [1], "runs": [{"model": TINY}]}
    (run,) = _sweep_spec.expand(_sweep_spec.parse(spec))
    folder = tmp_path / run.name
    # The run, as a worker runs it, stopped by Ctrl-C inside epoch 2.
    with monkeypatch.context() as m:
        m.setattr(_progress, "progress", lambda enabled, epochs: _CtrlC((2, 3)))
        m.setattr(_progress, "EVERY_MS", 0)  # shown every batch: the stop lands on (2, 3)
        with pytest.raises(KeyboardInterrupt):
            _sweep_run.run_task(run.settings, run.seed, str(folder), str(data[0]), 1, 1)
    assert (folder / "checkpoint.safetensors").is_file()
    assert not (folder / "history.json").exists()
    result = nitrod_rs.sweep(spec, out=tmp_path, data_dir=data[0], progress=False)
    assert result.resumed == [run.name] and result.trained == []
    attempts = [json.loads(line) for line in (folder / "attempts.jsonl").read_text().splitlines()]
    assert [a["resumed_after_epoch"] for a in attempts] == [None, 1]
    whole = finished.out / run.name
    assert (folder / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    got, want = (json.loads((d / "history.json").read_text()) for d in (folder, whole))
    assert entries(got["epochs"]) == entries(want["epochs"])
    assert result.table["rows"][0]["final_test_accuracy"]["mean"] == pytest.approx(
        100 * want["test_accuracy"], abs=1e-9)


def test_killed_worker_resumes_and_the_sweep_completes(cluster: str, tmp_path: Path) -> None:
    """``nitrod sweep`` joins the module's cluster (``--address``); the worker training the run
    is killed once its first checkpoint is written; Ray starts the task again, which resumes
    the checkpoint, and the sweep ends with the model of an uninterrupted run."""
    # A run long enough (8 epochs of ~0.2 s) to be killed in the middle.
    arrays = learnable_arrays(6000, 300, seed=1)
    write_idx_arrays(tmp_path / "data" / "fashion-mnist", arrays)
    layers = [784, 512, 256, 10]
    base = {**BASE, "model": {"kind": "mlp", "layers": layers}, "epochs": 8}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"base": base}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "nitrod_rs.cli", "sweep", str(spec), "--out", str(out),
           "--address", cluster, "--data-dir", str(tmp_path / "data"), "--no-progress",
           "--json", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*/checkpoint.safetensors")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
        (folder,) = [p.parent for p in out.glob("*/checkpoint.safetensors")]
        first = json.loads((folder / "attempts.jsonl").read_text().splitlines()[0])
        os.kill(first["pid"], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    attempts = [json.loads(line) for line in (folder / "attempts.jsonl").read_text().splitlines()]
    assert len(attempts) == 2 and attempts[1]["pid"] != first["pid"], attempts
    assert attempts[1]["resumed_after_epoch"] >= 1
    assert "resumed after epoch" in stderr
    table = json.loads(stdout)
    model = MLP(layers, seed=0)
    ya = {k: v.astype(np.int64) if k[0] == "y" else v for k, v in arrays.items()}
    _, history, test = plain_fit(model, {**FIT, "epochs": 8, "validation_split": 0.1}, 0, ya)
    assert (folder / "model.safetensors").read_bytes() == model.to_bytes()
    assert table["rows"][0]["final_test_accuracy"]["mean"] == pytest.approx(
        100 * test["accuracy"], abs=1e-9)
    assert table["rows"][0]["epochs"] == [len(history.epochs)]


def test_a_failing_run_is_reported_and_the_others_finish(cluster: Any, data: Any,
                                                         tmp_path: Path) -> None:
    from nitrod_rs.sweep import SweepError

    spec = {"base": BASE, "runs": [{"model": {"kind": "mlp", "layers": [100, 10]}},
                                   {"model": TINY}]}
    with pytest.raises(SweepError) as info:
        nitrod_rs.sweep(spec, out=tmp_path, data_dir=data[0], progress=False)
    bad = "mlp-100-10_" + TINY_NAME.split("_", 1)[1] + "_seed=0"
    assert list(info.value.failed) == [bad]
    assert "the model expects 100" in info.value.failed[bad] and bad in str(info.value)
    result = info.value.result
    assert [r["seeds"] for r in result.table["rows"]] == [0, 1]
    assert (tmp_path / f"{TINY_NAME}_seed=0" / "history.json").is_file()
    assert (tmp_path / "table.md").read_text() == result.markdown


# -- bad specs ---------------------------------------------------------------------------------

GOOD = {"base": {"model": "mlp1", "epochs": 1}}


@pytest.mark.parametrize("spec, words", [
    ({"seed": 3, **GOOD}, ["unknown key 'seed'", "did you mean 'seeds'"]),
    ({"base": {"model": "mlp1", "epochs": 1, "lr_invv": 5}},
     ["base: unknown key 'lr_invv'", "did you mean 'lr_inv'"]),
    ({**GOOD, "grid": {}}, ["grid: empty"]),
    ({**GOOD, "grid": {"lr_inv": []}}, ["grid.lr_inv: empty"]),
    ({**GOOD, "runs": []}, ["runs: empty"]),
    ({**GOOD, "grid": {"lr_inv": 512}}, ["grid.lr_inv: expected a list", "[512]"]),
    ({"base": {"model": "mlp1", "epochs": 1, "lr_inv": "512"}},
     ["base.lr_inv: expected an integer", "got a string"]),
    ({**GOOD, "grid": {"lr_inv": [512, 1.5]}}, ["grid.lr_inv[1]: expected an integer"]),
    ({"base": {"model": "mlp1", "epochs": True}}, ["base.epochs", "got a boolean"]),
    ({"base": {**GOOD["base"], "paper_protocol": "yes"}},
     ["base.paper_protocol: expected true or false"]),
    ({**GOOD, "grid": {"model": ["mlp1", "mlp9"]}}, ["grid.model[1]", "unknown preset 'mlp9'"]),
    ({**GOOD, "runs": [{"model": "mlp1"}, {"model": "MLP1"}]},
     ["runs[0] and runs[1] give the same run"]),
    ({**GOOD, "runs": [{}, {"dataset": "mnist"}]}, ["runs[0] and runs[1] give the same run"]),
    ({**GOOD, "seeds": [0, 3, 0]}, ["seeds: [0] given more than once"]),
    ({**GOOD, "seeds": 0}, ["seeds", "at least 1"]),
    ({"base": {"model": "mlp1"}}, ["no epochs"]),
    ({"base": {"epochs": 1}}, ["no model"]),
    ({"base": {**GOOD["base"], "seed": 1}}, ["top-level 'seeds'"]),
    ({**GOOD, "grid": {"lr_inv": [512, 0]}}, ["grid lr_inv=0", "lr_inv must be", "got 0"]),
    ({"base": {**GOOD["base"], "paper_protocol": True, "validation_split": 0.2}},
     ["paper's protocol", "no validation split"]),
    ({**GOOD, "grid": {"lr_inv": [512]}, "runs": [{"lr_inv": 64}]},
     ["runs[0] and the grid both set lr_inv"]),
    ({"base": {"model": {"kind": "mlp", "layerz": [784, 10]}, "epochs": 1,
               "dataset": "mnist"}}, ["base.model: unknown key 'layerz'", "'layers'"]),
    ({"base": {"model": {"kind": "mlp", "layers": [784, 10]}, "epochs": 1}},
     ["set \"dataset\""]),
    ({"base": {"model": "small-cnn", "epochs": 1, "dropout": 10}}, ["CNN preset"]),
    ({"base": {**GOOD["base"], "plateau": True, "validation_split": 0}},
     ["plateau and early_stopping watch a validation set"]),
])
def test_bad_spec_is_an_error_naming_the_problem(spec: dict[str, Any], words: list[str],
                                                 tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(SweepSpecError) as info:
        nitrod_rs.sweep(spec, out=out)
    for w in words:
        assert w in str(info.value), str(info.value)
    assert not out.exists()  # found before any work


def test_spec_files_json_and_toml(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"seeds": 2, **GOOD,
                                                 "grid": {"lr_inv": [512, 1024]}}))
    (tmp_path / "s.toml").write_text('seeds = 2\n[base]\nmodel = "mlp1"\nepochs = 1\n'
                                     '[grid]\nlr_inv = [512, 1024]\n')
    runs = [[r.name for r in _sweep_spec.expand(_sweep_spec.parse(_sweep_spec.read(p)))]
            for p in (tmp_path / "s.json", tmp_path / "s.toml")]
    assert runs[0] == runs[1] == [f"mlp1_mnist_epochs=1_lr_inv={lr}_seed={s}"
                                  for lr in (512, 1024) for s in (0, 1)]
    (tmp_path / "bad.json").write_text('{"seeds": 2,}')
    (tmp_path / "s.yaml").write_text("seeds: 2")
    for name, words in (("bad.json", "not valid JSON"), ("s.yaml", "a .json or .toml file"),
                        ("none.json", "no such spec file")):
        with pytest.raises(SweepSpecError, match=words):
            _sweep_spec.read(tmp_path / name)


def test_cli_usage_error_names_the_problem(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from nitrod_rs.cli import main

    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"base": {"model": "mlp1", "epochs": 1, "lr_inv": "x"}}))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nitrod sweep: error: base.lr_inv: expected an integer" in err
    assert "got a string" in err
    assert main(["sweep", "--out", str(tmp_path / "out"), "--model", "mlp1",
                 "--set", "epochs"]) == 2
    assert "--set 'epochs': expected KEY=VALUE" in capsys.readouterr().err


def test_without_ray_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from nitrod_rs.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(RayMissingError, match=r"pip install 'nitrod-rs\[ray\]'"):
        nitrod_rs.sweep(GOOD, out=tmp_path / "a")
    assert main(["sweep", "--out", str(tmp_path / "b"), "--model", "mlp1", "--epochs", "1"]) == 1
    assert "pip install 'nitrod-rs[ray]'" in capsys.readouterr().err


def test_a_folder_of_another_run_is_an_error(tmp_path: Path) -> None:
    (run,) = _sweep_spec.expand(_sweep_spec.parse(GOOD))
    (tmp_path / run.name).mkdir()
    _sweep_run.write_json(tmp_path / run.name / "run.json",
                          _sweep_run.run_record({**run.settings, "lr_inv": 7}, run.seed))
    with pytest.raises(SweepSpecError, match="holds another run"):
        nitrod_rs.sweep(GOOD, out=tmp_path)


# -- names, models and the display ---------------------------------------------------------------


def test_folder_names_are_made_from_the_settings() -> None:
    base = {"model": "mlp2", "dataset": "fashion-mnist", "epochs": 150, "paper_protocol": True}
    assert (_sweep_spec.folder_name(base, 3)
            == "mlp2_fashion-mnist_epochs=150_paper_protocol=true_seed=3")
    # What the name cannot say exactly gets a hash of the settings: stable, and distinct.
    cnn = {**base, "model": {"kind": "cnn", "features": [8, "M"], "classifier": [16]}}
    other = {**cnn, "model": {**cnn["model"], "classifier": [32]}}
    a, b = _sweep_spec.folder_name(cnn, 0), _sweep_spec.folder_name(other, 0)
    assert a.startswith("cnn_fashion-mnist_epochs=150_") and a != b
    assert a == _sweep_spec.folder_name(dict(reversed(list(cnn.items()))), 0)


def test_preset_dropout_rebuilds_the_same_architecture() -> None:
    settings = {"model": "mlp1", "dataset": "mnist", "epochs": 1}
    same, _ = _sweep_spec.resolve({**settings, "dropout": 0}, 5)
    preset, _ = presets.preset("mlp1", "mnist", seed=5)
    assert same.to_bytes() == preset.to_bytes()
    other, _ = _sweep_spec.resolve({**settings, "dropout": 10}, 5)
    assert other.config == {**preset.config, "dropout_pct": 10}


def test_callable_module() -> None:
    import nitrod_rs.sweep as module

    assert nitrod_rs.sweep is module and callable(module)
    assert module.sweep.__name__ == "sweep"


def test_plain_display_counts_the_runs() -> None:
    f = io.StringIO()
    display = _progress._PlainCount(3, 1, "runs", file=f)
    display.advance("a: done")
    display.advance("b: done")
    display.close()
    assert f.getvalue() == "[2/3] a: done\n[3/3] b: done\n"


def test_table_counts_are_integers_and_the_paper_protocol_has_no_validation() -> None:
    """One seed has no standard deviation; a configuration with a run missing says so; under
    the paper's protocol there is no validation accuracy and the best epoch is the test set's."""
    from nitrod_rs import _sweep_table

    def doc(watched: str | None, val: list[tuple[int, int]], test: list[tuple[int, int]],
            best: int | None) -> dict[str, Any]:
        epochs = [{"epoch": i + 1, "val_correct": v[0] if v else None,
                   "val_total": v[1] if v else None, "test_correct": t[0], "test_total": t[1]}
                  for i, (v, t) in enumerate(zip(val or [()] * len(test), test))]
        return {"epochs": epochs, "watched": watched, "best_epoch": best,
                "test_correct": test[-1][0], "test_total": test[-1][1]}

    spec = {"seeds": 2, "base": {"model": "mlp1", "epochs": 2},
            "runs": [{}, {"paper_protocol": True}]}
    runs = _sweep_spec.expand(_sweep_spec.parse(spec))
    docs = {runs[0].name: doc("validation", [(5, 10), (7, 10)], [(50, 100), (61, 100)], 2),
            runs[1].name: doc("validation", [(6, 10), (6, 10)], [(40, 100), (45, 100)], 1),
            runs[2].name: doc("test", [], [(70, 100), (60, 100)], 1)}  # runs[3] unfinished
    table = _sweep_table.build(runs, docs)
    val, paper = table["rows"]
    assert val["best_val_accuracy"] == {"mean": 65.0, "std": pytest.approx(7.0710678, abs=1e-6)}
    assert val["best_epoch_test_accuracy"]["mean"] == pytest.approx(50.5)
    assert paper["best_val_accuracy"] == {"mean": None, "std": None}
    assert paper["best_epoch_test_accuracy"] == {"mean": 70.0, "std": None}
    md = _sweep_table.markdown(table)
    assert "3 of 4 runs" in md and "every run: epochs=2" in md
    assert ("| mlp1 | mnist | – | 2 | 2 | validation set | 65.00 ± 7.07 | 50.50 ± 14.85 "
            "| 53.00 ± 11.31 |") in md
    assert ("| mlp1 | mnist | paper_protocol=true | 1 of 2 | 2 | test set (paper protocol) | – "
            "| 70.00 | 60.00 |") in md


def test_the_recorded_paper_sweep_spec_expands_to_its_forty_runs() -> None:
    # docs/runs/paper_mlp_10seeds.json produced BENCHMARKS.md's 10-seed MLP tables (README
    # "Scaling out" runs it): it must stay a valid spec naming those runs.
    spec = Path(__file__).resolve().parents[1] / "docs" / "runs" / "paper_mlp_10seeds.json"
    names = [r.name for r in _sweep_spec.expand(_sweep_spec.parse(_sweep_spec.read(spec)))]
    assert len(names) == 40 and len(set(names)) == 40
    assert "mlp1_mnist_epochs=150_paper_protocol=true_seed=0" in names
    assert "mlp2_fashion-mnist_epochs=150_paper_protocol=false_seed=9" in names
