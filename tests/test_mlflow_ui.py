"""The MLflow UI, seen: `mlflow ui` on the store the smoke plan wrote (results/mlflow.db of the local
end-to-end run, fixture smoke_results_local), looked at in headless Chromium.

The experiment's runs list names every cell's run ("<scale>/<cell>"), and a run's metric page draws
its training curve (a plotly chart, `main-svg`, of train_error). A screenshot of that page is written
to the test's temporary folder and its path printed.
"""
from __future__ import annotations

import time

import pytest

from resnet.tracking import runs_of
from tests.support.mlflow_ui import chromium_dump_dom, chromium_screenshot, ensure_chromium, start_mlflow_ui
from tests.support.workflow import run_folders

# the session fixture smoke_results_local, registered once so that every module shares one local run
pytest_plugins = ["tests.support.workflow"]

pytestmark = pytest.mark.slow

EXPERIMENT = "resnet-he2015"


@pytest.fixture(scope="module")
def store(smoke_results_local):
    uri = f"sqlite:///{smoke_results_local / 'results' / 'mlflow.db'}"
    runs = runs_of(uri, EXPERIMENT)
    cells = sorted(run_folders(smoke_results_local))
    assert cells and sorted(run["name"] for run in runs) == sorted(f"smoke/{cell}" for cell in cells)
    return {"uri": uri, "runs": runs, "experiment_id": runs[0]["experiment_id"]}


@pytest.fixture(scope="module")
def ui(store, tmp_path_factory):
    ensure_chromium()
    server = start_mlflow_ui(store["uri"], log_dir=tmp_path_factory.mktemp("mlflow-ui-log"))
    print(f"\nmlflow ui on the smoke plan's store at {server.url} after {server.startup_seconds:.1f} s")
    yield server
    server.stop()


def test_runs_list_shows_every_cell(ui, store):
    t0 = time.monotonic()
    html = chromium_dump_dom(f"{ui.url}/#/experiments/{store['experiment_id']}/runs")
    print(f"\nruns list rendered in {time.monotonic() - t0:.1f} s")
    names = [run["name"] for run in store["runs"]]
    missing = [name for name in names if name not in html]
    assert not missing, f"runs not listed: {missing}\n{ui.log()[-2000:]}"
    assert f"{len(names)} matching runs" in html or not missing


def test_run_metric_page_draws_the_training_curve(ui, store, tmp_path):
    run = next(run for run in store["runs"] if run["name"].startswith("smoke/cifar-resnet"))
    assert run["status"] == "FINISHED" and "train_error" in run["metrics"]
    url = f"{ui.url}/#/experiments/{store['experiment_id']}/runs/{run['run_id']}/model-metrics"
    html = chromium_dump_dom(url)
    assert "train_error" in html, "the metric name is not on the run's metric page"
    assert "main-svg" in html, "no chart rendered on the run's metric page"
    shot = chromium_screenshot(url, tmp_path / "run-metrics.png")
    print(f"\nscreenshot of {run['name']}'s metrics: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
