"""The MLflow mirror made from the run folders: the training's times, and a store that fails.

One real tiny cell (ResNet-20, 6 iterations, mlflow.live false) trained in process; real SQLite
stores:

- a run mirrored from its files starts and ends when the training did (metrics.json's written_at,
  less its wall_time_s), so the UI's Duration column is the training time, not the mirror's;
- a store that cannot be written during the workflow's summary step: every file is written, one
  warning line reaches the console (outside the step's log) and results/README.md says what the
  store lacks and how to fill it in; `mlflow-sync` then logs the cell's run and the report run, and
  a second sync logs nothing twice.
"""
from __future__ import annotations

import io
import json
import shutil
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from resnet.report.tables import write_table6
from resnet.tracking.store import _client
from resnet.tracking.sync import sync_run_folder
from tests.support.processes import run_cli
from tests.support.mlflow_store import artifacts_of, runs_of

CELL = "cifar-resnet-20/seed-0"
EXPERIMENT = "resnet-test"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cifar_cache_dir, mlflow_template_db):
    """(raw config, results folder) holding the trained cell under runs/smoke/."""
    import torch

    from resnet.engine.loop import train
    from tests.support.configs import config_builder, job_of

    base = tmp_path_factory.mktemp("mirror")
    config = config_builder(base / "store", cifar_cache_dir, mlflow_template_db)(mlflow={"live": False})
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train(job_of(config, CELL), base / "results" / "runs" / "smoke" / CELL, quiet=True).done
    finally:
        torch.set_num_threads(previous)
    return config, base / "results"


@pytest.fixture
def results(trained, tmp_path) -> Path:
    shutil.copytree(trained[1], tmp_path / "results")
    return tmp_path / "results"


def with_store(config: dict, uri: str) -> dict:
    config = json.loads(json.dumps(config))
    config["mlflow"].update(tracking_uri=uri, experiment=EXPERIMENT)
    return config


def test_a_run_mirrored_from_its_files_starts_and_ends_when_the_training_did(trained, results, tmp_path,
                                                                            mlflow_template_db):
    shutil.copyfile(mlflow_template_db, tmp_path / "mirror.db")
    uri = f"sqlite:///{tmp_path}/mirror.db"
    folder = results / "runs" / "smoke" / CELL
    mirrored_at = time.time() * 1000
    run_id, _ = sync_run_folder(uri, EXPERIMENT, folder, "smoke")
    info = _client(uri).get_run(run_id).info
    metrics = json.loads((folder / "metrics.json").read_text())
    ended = datetime.fromisoformat(metrics["provenance"]["written_at"]).timestamp() * 1000
    assert info.end_time == round(ended)
    assert info.end_time - info.start_time == pytest.approx(metrics["wall_time_s"] * 1000, abs=1)
    # The times are the training's, which ended before the mirror ran: a run stamped by the mirror's
    # own calls would start at or after mirrored_at. (No floor on the duration itself: six smoke
    # iterations take well under a second on a fast machine.)
    assert info.start_time < info.end_time <= mirrored_at
    assert metrics["wall_time_s"] > 0


def test_a_store_failing_in_the_summary_step_is_said_and_mlflow_sync_fills_it_in(trained, results, tmp_path,
                                                                                 mlflow_template_db):
    from resnet.report.publish import publish_summary

    store = tmp_path / "mlflow.db"
    store.write_bytes(b"this is not a database")
    uri = f"sqlite:///{store}"
    config = with_store(trained[0], uri)
    metrics_files = [results / "runs" / "smoke" / CELL / "metrics.json"]
    write_table6(config, metrics_files, results / "table6.csv")
    console = io.StringIO()
    publish_summary(config, metrics_files, [results / "table6.csv"], [], results / "README.md",
                    results / "README.html", console=console)
    (line,) = console.getvalue().splitlines()
    assert line.startswith(f"warning: MLflow ({uri}): the runs of 1 cells ({CELL}) and this report's run")
    assert "python -m resnet mlflow-sync" in line
    summary = (results / "README.md").read_text()
    assert "## MLflow" in summary and "could not be written to the MLflow store" in summary
    assert "python -m resnet mlflow-sync" in summary and "MLflow" in (results / "README.html").read_text()

    # The store works again (here: a new one in its place); mlflow-sync logs the cell and the report.
    shutil.copyfile(mlflow_template_db, store)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    synced = run_cli("mlflow-sync", "--config", str(config_file), "--runs", str(results / "runs" / "smoke"))
    assert synced.returncode == 0, synced.stderr
    runs = runs_of(uri, EXPERIMENT)
    (report,) = [run for run in runs if run["tags"].get("kind") == "report"]
    assert report["name"] == "smoke/report" and report["status"] == "FINISHED"
    assert report["tags"]["mlflow.note.content"] == summary
    assert "README.md" in artifacts_of(uri, report["run_id"]) and artifacts_of(uri, report["run_id"], "tables")
    assert [run["tags"]["cell"] for run in runs if run["tags"].get("kind") == "cell"] == [CELL]
    again = run_cli("mlflow-sync", "--config", str(config_file), "--runs", str(results / "runs" / "smoke"))
    assert again.returncode == 0 and "(up to date)" in again.stdout
    assert len(runs_of(uri, EXPERIMENT)) == len(runs)
