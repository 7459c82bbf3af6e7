"""The MLflow mirror never costs a result, and the store can be rebuilt from the run folders.

Everything goes through `python -m resnet train` and `python -m resnet mlflow-sync` on a tiny CIFAR
cell (6 iterations, checkpoints at 3 and 6), with real SQLite stores:

- the cell's run carries MLflow's conventions: source and git commit (system tags), the data set as
  a dataset input whose digest is metrics.json's content hash, a description naming Table 6 and the
  paper's 8.75%, the final errors as final/...;
- a finished cell rerun against a store that lacks its run (a new tracking_uri) starts a run there
  and logs its whole curve from the files; against a corrupt store it still finishes done, with a
  warning;
- after the store is deleted, `mlflow-sync` rebuilds the run with its curve, params, tags, dataset
  and final numbers; a second sync sends nothing; a later rerun of the cell continues that run.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.support.mlflow_store import artifacts_of, metric_history, runs_of
from tests.support.configs import config_builder
from tests.support.processes import run_cli

pytestmark = pytest.mark.usefixtures("torch_threads")

CELL = "cifar-resnet-20/seed-0"
EXPERIMENT = "resnet-test"
CURVE_METRICS = ("train_error", "train_loss", "lr", "test_error", "val_error")


def store_uri(folder: Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


def write_config(path: Path, build, store: Path) -> Path:
    config = build(mlflow={"tracking_uri": store_uri(store), "experiment": EXPERIMENT})
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train(config: Path, out: Path):
    return run_cli("train", "--config", str(config), "--cell", CELL, "--out", str(out), "--quiet")


def curve_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "curve.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def cell_runs(store: Path) -> list[dict]:
    return [run for run in runs_of(store_uri(store), EXPERIMENT) if run["tags"].get("cell") == CELL]


def assert_run_has_the_curve(store: Path, run: dict, out: Path) -> None:
    """Every curve.csv column of every row, at its iteration, once; final/ numbers = metrics.json."""
    rows = curve_rows(out)
    for key in CURVE_METRICS:
        expected = [(int(row["iteration"]), float(row[key])) for row in rows if row[key] != ""]
        history = metric_history(store_uri(store), run["run_id"], key)
        assert [step for step, _ in history] == [step for step, _ in expected], key
        assert [value for _, value in history] == pytest.approx([v for _, v in expected], rel=1e-5), key
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert run["metrics"]["final/test_error"] == pytest.approx(final["test_error"])
    assert run["metrics"]["final/val_error"] == pytest.approx(final["val_error"])
    assert not any(key.startswith("final_") for key in run["metrics"])


@pytest.fixture(scope="module")
def cell(tmp_path_factory, cifar_cache_dir, mlflow_template_db):
    """The tiny cell trained once into store A; each test copies its folder."""
    base = tmp_path_factory.mktemp("tracking")
    build = config_builder(base / "store-a", cifar_cache_dir, mlflow_template_db)
    config = write_config(base / "config.yaml", build, base / "store-a")
    out = base / "runs" / "smoke" / CELL
    result = train(config, out)
    assert result.returncode == 0, result.stderr
    assert "warning: MLflow" not in result.stderr
    return {"base": base, "build": build, "out": out, "store": base / "store-a", "config": config}


def copy_cell(cell, tmp_path: Path) -> Path:
    out = tmp_path / "runs" / "smoke" / CELL
    shutil.copytree(cell["out"], out)
    return out


def test_run_follows_mlflow_conventions(cell):
    (run,) = cell_runs(cell["store"])
    metrics = json.loads((cell["out"] / "metrics.json").read_text())
    assert run["run_id"] == metrics["mlflow_run_id"] and run["status"] == "FINISHED"
    tags = run["tags"]
    assert tags["mlflow.source.name"] == "python -m resnet train" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.source.git.commit"] == metrics["provenance"]["git"]["commit"]
    assert tags["kind"] == "cell" and tags["artefacts"] == "table-6, figure-6, figure-7"
    note = tags["mlflow.note.content"]
    assert "Table 6, row ResNet-20: test error 8.75%" in note and "Figure 7" in note
    assert "not comparable" in note  # smoke scale says so
    (dataset,) = run["inputs"]
    assert dataset["name"] == "cifar10" and dataset["tags"] == {"mlflow.data.context": "training"}
    assert metrics["data"]["content_hash"].startswith(dataset["digest"]) and len(dataset["digest"]) >= 16
    assert json.loads(dataset["source"])["uri"] == metrics["data"]["source"]
    assert_run_has_the_curve(cell["store"], run, cell["out"])
    assert {"metrics.json", "curve.csv"} <= set(artifacts_of(store_uri(cell["store"]), run["run_id"]))
    # MLflow's own "Default" experiment is left alone, and empty: every run is in the project's.
    assert runs_of(store_uri(cell["store"]), "Default") == []


def test_done_cell_rerun_against_a_store_without_its_run_logs_the_whole_curve_there(cell, tmp_path):
    out = copy_cell(cell, tmp_path)
    old = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").unlink()  # what Snakemake does before it reruns a job
    config = write_config(tmp_path / "config.yaml", cell["build"], tmp_path / "store-b")  # a new tracking_uri

    result = train(config, out)
    assert result.returncode == 0, result.stderr
    assert f"MLflow run {old['mlflow_run_id']} is not in the store" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["final"] == old["final"]
    (run,) = cell_runs(tmp_path / "store-b")
    assert run["run_id"] == metrics["mlflow_run_id"] != old["mlflow_run_id"]
    assert run["status"] == "FINISHED" and run["tags"]["replaces_run"] == old["mlflow_run_id"]
    assert len(curve_rows(out)) == 4  # iterations 2, 3, 4, 6: all logged before this job started
    assert_run_has_the_curve(tmp_path / "store-b", run, out)


def test_a_broken_store_is_a_warning_and_the_cell_still_finishes_done(cell, tmp_path):
    out = copy_cell(cell, tmp_path)
    old = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").unlink()
    store = tmp_path / "store-c"
    store.mkdir()
    (store / "mlflow.db").write_bytes(b"not a database " * 64)  # a replaced, corrupt mlflow.db
    config = write_config(tmp_path / "config.yaml", cell["build"], store)

    result = train(config, out)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: MLflow")]
    assert len(warnings) == 1 and "mlflow-sync" in warnings[0], result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["final"] == old["final"]
    assert metrics["mlflow_run_id"] == old["mlflow_run_id"]  # kept: a later job may find its store again
    assert (store / "mlflow.db").read_bytes() == b"not a database " * 64  # left as it was


def test_mlflow_sync_rebuilds_a_deleted_store_once(cell, tmp_path):
    out = copy_cell(cell, tmp_path)
    old = json.loads((out / "metrics.json").read_text())
    store = tmp_path / "store-d"  # the store was deleted: nothing there
    config = write_config(tmp_path / "config.yaml", cell["build"], store)
    runs = str(tmp_path / "runs" / "smoke")

    first = run_cli("mlflow-sync", "--config", str(config), "--runs", runs)
    assert first.returncode == 0, first.stderr
    assert "1 of 1 finished cells mirrored" in first.stdout
    (run,) = cell_runs(store)
    assert run["status"] == "FINISHED" and run["name"] == f"smoke/{CELL}"
    assert run["tags"]["replaces_run"] == old["mlflow_run_id"]
    assert run["tags"]["mlflow.source.git.commit"] == old["provenance"]["git"]["commit"]
    assert "Table 6, row ResNet-20" in run["tags"]["mlflow.note.content"]
    assert run["params"]["model"] == "cifar-resnet-20" and run["params"]["iterations"] == "6"
    assert run["params"]["engine.device"] == "cpu"
    assert run["inputs"] and old["data"]["content_hash"].startswith(run["inputs"][0]["digest"])
    assert_run_has_the_curve(store, run, out)
    assert {"metrics.json", "curve.csv"} <= set(artifacts_of(store_uri(store), run["run_id"]))

    second = run_cli("mlflow-sync", "--config", str(config), "--runs", runs)
    assert second.returncode == 0, second.stderr
    assert f"{CELL}: run {run['run_id']}, 0 metric values sent (up to date)" in second.stdout
    (again,) = cell_runs(store)
    assert again["run_id"] == run["run_id"]
    assert_run_has_the_curve(store, again, out)  # no step twice

    # The cell rerun later (metrics.json gone again) continues the rebuilt run, not a third one.
    (out / "metrics.json").unlink()
    rerun = train(config, out)
    assert rerun.returncode == 0, rerun.stderr
    (last,) = cell_runs(store)
    assert last["run_id"] == run["run_id"] and last["status"] == "FINISHED"
    assert json.loads((out / "metrics.json").read_text())["mlflow_run_id"] == run["run_id"]
    assert_run_has_the_curve(store, last, out)


def test_with_mlflow_live_false_the_job_leaves_the_store_alone_and_sync_logs_the_run(cell, tmp_path):
    """mlflow.live: false (the smoke scale's choice): training opens no store; the run comes later
    from the files (the workflow's summary step calls the same sync), with the whole curve."""
    store = tmp_path / "store-e"
    config = cell["build"](mlflow={"tracking_uri": store_uri(store), "experiment": EXPERIMENT, "live": False})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    out = tmp_path / "runs" / "smoke" / CELL

    result = run_cli("train", "--config", str(tmp_path / "config.yaml"), "--cell", CELL, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "mlflow.live: false" in result.stdout and "warning" not in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["mlflow_run_id"] is None
    assert not (store / "mlflow.db").exists()  # the store was never opened
    assert len(curve_rows(out)) == 4  # iterations 2, 3, 4, 6

    synced = run_cli("mlflow-sync", "--config", str(tmp_path / "config.yaml"), "--runs", str(out.parent.parent))
    assert synced.returncode == 0 and "1 of 1 finished cells mirrored" in synced.stdout, synced.stderr
    (run,) = cell_runs(store)
    assert run["status"] == "FINISHED" and run["tags"]["mlflow.source.name"] == "python -m resnet train"
    assert_run_has_the_curve(store, run, out)
