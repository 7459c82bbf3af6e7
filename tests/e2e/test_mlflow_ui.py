"""The MLflow UI, seen: `mlflow ui` on the store the smoke plan wrote (results/mlflow.db of the local
end-to-end run, fixture smoke_results_local), looked at in headless Chromium.

- The experiment's runs list names every cell's run ("<scale>/<cell>") and the report run
  ("<scale>/report"), with each cell's Source (`python -m resnet train`) and Dataset (cifar10 and
  the digest of the data it saw).
- A cell's run page shows its Source with the git commit, its dataset, and a description naming
  the paper's table, row and number.
- A run's metric page draws its training curve (a plotly chart, `main-svg`, of train_error).
- The report run's artefacts are the tables and figures; a figure opens as an image.

Screenshots are written to the test's temporary folder and their paths printed.
"""
from __future__ import annotations

import json
import time

import pytest

from tests.support.mlflow_store import artifacts_of, runs_of
from tests.support.mlflow_ui import chromium_dump_dom, chromium_screenshot, ensure_chromium, start_mlflow_ui
from tests.support import skip_or_fail
from tests.support.workflow import checkout_commit, run_folders

# the session fixture smoke_results_local, registered once so that every module shares one local run
pytest_plugins = ["tests.support.workflow"]

pytestmark = pytest.mark.slow

EXPERIMENT = "resnet-he2015"


@pytest.fixture(scope="module")
def store(smoke_results_local):
    uri = f"sqlite:///{smoke_results_local / 'results' / 'mlflow.db'}"
    runs = runs_of(uri, EXPERIMENT)
    cells = sorted(run_folders(smoke_results_local))
    cell_runs = [run for run in runs if run["tags"].get("kind") == "cell"]
    assert cells and sorted(run["name"] for run in cell_runs) == sorted(f"smoke/{cell}" for cell in cells)
    (report,) = [run for run in runs if run["tags"].get("kind") == "report"]  # one workflow run, one report run
    return {"uri": uri, "runs": runs, "cells": cell_runs, "report": report, "experiment_id": runs[0]["experiment_id"],
            "root": smoke_results_local}


@pytest.fixture(scope="module")
def ui(store, tmp_path_factory):
    ensure_chromium()
    server = start_mlflow_ui(store["uri"], log_dir=tmp_path_factory.mktemp("mlflow-ui-log"))
    print(f"\nmlflow ui on the smoke plan's store at {server.url} after {server.startup_seconds:.1f} s")
    yield server
    server.stop()


def cifar_run(store) -> dict:
    return next(run for run in store["cells"] if run["name"] == "smoke/cifar-resnet-20/seed-0")


def test_every_run_carries_the_checkouts_commit(store):
    """The copy the plan ran in is a git repository at the checkout's commit: metrics.json and each
    run's mlflow.source.git.commit name it (not "unknown"), so the run page below has one to show."""
    commit = checkout_commit()
    if commit is None:
        skip_or_fail("the checkout is not a git repository: the runs record no commit")
    for run in store["cells"]:
        metrics = json.loads((store["root"] / "results/runs" / run["name"] / "metrics.json").read_text())
        assert metrics["provenance"]["git"]["commit"] == commit, run["name"]
        assert run["tags"]["mlflow.source.git.commit"] == commit, run["name"]


def test_runs_list_shows_every_run_with_source_and_dataset(ui, store, tmp_path):
    url = f"{ui.url}/#/experiments/{store['experiment_id']}/runs"
    t0 = time.monotonic()
    html = chromium_dump_dom(url)
    print(f"\nruns list rendered in {time.monotonic() - t0:.1f} s")
    names = [run["name"] for run in store["runs"]]
    missing = [name for name in names if name not in html]
    assert not missing, f"runs not listed: {missing}\n{ui.log()[-2000:]}"
    assert "smoke/report" in html
    assert "python -m resnet train" in html, "no Source in the runs list"
    (dataset,) = cifar_run(store)["inputs"]
    assert f"cifar10 ({dataset['digest']})" in html, "no Dataset in the runs list"
    print(f"\nscreenshot of the runs list: {chromium_screenshot(url, tmp_path / 'runs.png')}")


def test_cell_run_page_shows_source_commit_dataset_and_the_paper(ui, store, tmp_path):
    run = cifar_run(store)
    metrics = json.loads((store["root"] / "results/runs/smoke/cifar-resnet-20/seed-0/metrics.json").read_text())
    url = f"{ui.url}/#/experiments/{store['experiment_id']}/runs/{run['run_id']}"
    html = chromium_dump_dom(url)
    assert "python -m resnet train" in html
    commit = metrics["provenance"]["git"]["commit"]
    assert commit != "unknown" and commit[:7] in html, "no git commit beside the source"
    # the dataset with its digest and its context tag ("training"; the page capitalises it by CSS)
    assert metrics["data"]["content_hash"][:12] in html and ">training<" in html, "no dataset on the run page"
    assert "Table 6, row ResNet-20: test error 8.75%" in html, "no description naming the paper's row"
    print(f"\nscreenshot of {run['name']}: {chromium_screenshot(url, tmp_path / 'run.png')}")


def test_run_metric_page_draws_the_training_curve(ui, store, tmp_path):
    run = cifar_run(store)
    assert run["status"] == "FINISHED" and "train_error" in run["metrics"] and "final/test_error" in run["metrics"]
    url = f"{ui.url}/#/experiments/{store['experiment_id']}/runs/{run['run_id']}/model-metrics"
    html = chromium_dump_dom(url)
    assert "train_error" in html, "the metric name is not on the run's metric page"
    assert "main-svg" in html, "no chart rendered on the run's metric page"
    shot = chromium_screenshot(url, tmp_path / "run-metrics.png")
    print(f"\nscreenshot of {run['name']}'s metrics: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_run_holds_the_tables_and_figures(ui, store, tmp_path):
    report = store["report"]
    assert report["status"] == "FINISHED" and report["name"] == "smoke/report"
    tables = set(artifacts_of(store["uri"], report["run_id"], "tables"))
    figures = set(artifacts_of(store["uri"], report["run_id"], "figures"))
    assert {f"tables/table{n}.{ext}" for n in (1, 2, 3, 6) for ext in ("csv", "md")} <= tables
    assert {f"figures/figure{n}.{ext}" for n in (1, 4, 6, 7) for ext in ("png", "pdf")} <= figures
    assert "README.md" in artifacts_of(store["uri"], report["run_id"])
    summary = (store["root"] / "results" / "README.md").read_text()
    assert report["tags"]["mlflow.note.content"] == summary  # the description is the summary

    base = f"{ui.url}/#/experiments/{store['experiment_id']}/runs/{report['run_id']}"
    listing = chromium_dump_dom(f"{base}/artifacts")
    assert "tables" in listing and "figures" in listing and "README.md" in listing
    figure = f"{base}/artifacts/figures/figure6.png"
    html = chromium_dump_dom(figure)
    assert 'alt="figures/figure6.png"' in html, "figure 6 does not open as an image"
    print(f"\nscreenshot of the report run's Figure 6: {chromium_screenshot(figure, tmp_path / 'figure6.png')}")
    overview = chromium_dump_dom(base)
    assert "Results: He et al. 2015" in overview, "the summary is not the report run's description"


def test_default_experiment_is_left_empty(store):
    assert runs_of(store["uri"], "Default") == []
