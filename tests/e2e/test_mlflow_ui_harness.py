"""The MLflow UI harness works: a real SQLite store, a real `mlflow ui`, a real
headless Chromium that sees the runs and draws their metric charts."""

import time

import pytest

from tests.support.mlflow_ui import (
    chromium_dump_dom,
    chromium_screenshot,
    ensure_chromium,
    start_mlflow_ui,
)

pytestmark = pytest.mark.slow

RUN_NAMES = ("harness-run-alpha", "harness-run-beta")
METRIC = "harness_loss"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite MLflow store with experiment 'harness' and two runs."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow-store') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(
        "harness", artifact_location=str(tmp_path_factory.mktemp("mlflow-artifacts"))
    )
    run_ids = []
    for i, name in enumerate(RUN_NAMES):
        run = client.create_run(experiment_id, run_name=name)
        client.log_param(run.info.run_id, "depth", str(20 + 12 * i))
        for step in range(6):
            client.log_metric(run.info.run_id, METRIC, 1.0 / (step + 1 + i), step=step)
        client.set_terminated(run.info.run_id)
        run_ids.append(run.info.run_id)
    assert mlflow.__version__
    return {"uri": uri, "experiment_id": experiment_id, "run_ids": run_ids}


@pytest.fixture(scope="module")
def ui(store, tmp_path_factory):
    ensure_chromium()
    server = start_mlflow_ui(store["uri"], log_dir=tmp_path_factory.mktemp("mlflow-ui-log"))
    print(f"\nmlflow ui healthy at {server.url} after {server.startup_seconds:.1f} s")
    yield server
    server.stop()


def test_runs_list_shows_both_runs(ui, store):
    t0 = time.monotonic()
    html = chromium_dump_dom(f"{ui.url}/#/experiments/{store['experiment_id']}/runs")
    print(f"\nchromium --dump-dom took {time.monotonic() - t0:.1f} s")
    for name in RUN_NAMES:
        assert name in html, f"{name} not in the runs list page\n{ui.log()[-2000:]}"


def test_run_metric_page_draws_a_chart(ui, store, tmp_path):
    url = f"{ui.url}/#/experiments/{store['experiment_id']}/runs/{store['run_ids'][0]}/model-metrics"
    html = chromium_dump_dom(url)
    assert METRIC in html
    assert "main-svg" in html, "no chart rendered on the run's metric page"
    t0 = time.monotonic()
    shot = chromium_screenshot(url, tmp_path / "screenshots" / "run-metrics.png")
    print(f"\nscreenshot ({time.monotonic() - t0:.1f} s): {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stop_ends_the_server(store, tmp_path):
    import urllib.error
    import urllib.request

    server = start_mlflow_ui(store["uri"], log_dir=tmp_path)
    server.stop()
    assert server.proc.poll() is not None
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"{server.url}/health", timeout=2)
