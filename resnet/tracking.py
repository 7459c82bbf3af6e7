"""MLflow mirror of the per-run files. The only module of the project that imports mlflow.

Files are the truth (curve.csv, metrics.json in each run folder); MLflow is where the same numbers
are browsed. One MLflow run per cell; a resumed cell continues its run (the run id is kept in the
checkpoint) instead of starting a second one.

The default store is a SQLite file; many processes may write to it at once (a locked database is
retried). On clusters a tracking server is the better choice (config key mlflow.tracking_uri).
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

# MLflow batches accept at most 1000 metrics per call.
_BATCH = 1000


# sqlite:/// stores this process has already created or checked
_READY: set[str] = set()


def _prepare_store(uri: str) -> str:
    """Create a sqlite:/// store (folder and tables) once; quiet MLflow's start-up chatter."""
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    if uri.startswith("sqlite:///") and uri not in _READY:
        database = Path(uri[len("sqlite:///"):])
        database.parent.mkdir(parents=True, exist_ok=True)
        _create_tables(uri, database)
        _READY.add(uri)
    return uri


def _create_tables(uri: str, database: Path) -> None:
    """Let one process at a time create or upgrade the tables of a SQLite store.

    MLflow builds a new store with a series of schema migrations; two processes doing that at once
    (the first jobs of a workflow start together) break each other's migration. A lock file beside
    the database serialises this step only; logging itself runs concurrently.
    """
    import fcntl

    from mlflow.tracking import MlflowClient

    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _retry(lambda: MlflowClient(tracking_uri=uri).search_experiments(max_results=1))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go beside it (results/mlartifacts), not into ./mlruns."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return None  # a tracking server decides


def _retry(action: Callable[[], T], attempts: int = 30) -> T:
    """Run action, retrying while SQLite reports a locked or busy database."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as error:  # mlflow wraps sqlite errors in several exception types
            text = str(error).lower()
            transient = "locked" in text or "busy" in text or "unique constraint" in text and "experiments" in text
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1) + random.random() * 0.1)
    raise AssertionError("unreachable")


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat


class Tracker:
    """One MLflow run for one cell. `run_id` given: continue that run (resume)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri=_prepare_store(tracking_uri))
        # step of the last value logged per metric: a resumed run skips what its earlier attempts logged
        self._logged_through: dict[str, int] = {}
        if run_id is not None:
            self.run_id = run_id
            _retry(lambda: self.client.update_run(run_id, status="RUNNING"))
            self._logged_through = _retry(self._last_steps)
            return
        experiment_id = _retry(lambda: self._experiment_id(experiment))
        run = _retry(lambda: self.client.create_run(experiment_id, run_name=run_name, tags=tags or {}))
        self.run_id = run.info.run_id
        if params:
            self.log_params(params)

    def _last_steps(self) -> dict[str, int]:
        """{metric: last step} of this run as the store has it.

        A job stopped between writing its checkpoint and recording that the checkpoint's rows went to
        MLflow (or killed without warning) resumes with rows MLflow already holds; they are not sent
        twice, so every metric keeps one value per step."""
        keys = self.client.get_run(self.run_id).data.metrics.keys()
        return {key: max(m.step for m in self.client.get_metric_history(self.run_id, key)) for key in keys}

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=_artifact_location(self.uri))
        except Exception:
            found = self.client.get_experiment_by_name(name)  # another process created it first
            if found is None:
                raise
            return found.experiment_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value[:6000]) for key, value in _flatten(params).items()]
        for start in range(0, len(items), 100):
            chunk = items[start : start + 100]
            _retry(lambda: self.client.log_batch(self.run_id, params=chunk))

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(key, str(value)) for key, value in tags.items()]
        _retry(lambda: self.client.log_batch(self.run_id, tags=items))

    def log_rows(self, rows: list[dict[str, float]], step_key: str = "iteration") -> None:
        """Log curve rows: every numeric column except the step, at step = row[step_key]."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, int(row[step_key]))
            for row in rows
            for key, value in row.items()
            if key != step_key and value is not None and value == value  # skip NaN (not evaluated)
            and int(row[step_key]) > self._logged_through.get(key, -1)  # logged before a resume
        ]
        for start in range(0, len(metrics), _BATCH):
            chunk = metrics[start : start + _BATCH]
            _retry(lambda: self.client.log_batch(self.run_id, metrics=chunk))
            for metric in chunk:
                self._logged_through[metric.key] = max(metric.step, self._logged_through.get(metric.key, -1))

    def log_artifact(self, path: str | Path) -> None:
        _retry(lambda: self.client.log_artifact(self.run_id, str(path)))

    def finish(self, status: str = "FINISHED") -> None:
        """status: FINISHED, FAILED or KILLED (interrupted; a resumed run sets it RUNNING again)."""
        _retry(lambda: self.client.set_terminated(self.run_id, status=status))


def runs_of(tracking_uri: str, experiment: str) -> list[dict[str, Any]]:
    """The runs of an experiment as plain dicts (name, id, status, tags, params, metric keys)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=_prepare_store(tracking_uri))
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = client.search_runs([found.experiment_id], max_results=10000)
    return [
        {
            "run_id": run.info.run_id,
            "name": run.info.run_name,
            "status": run.info.status,
            "tags": dict(run.data.tags),
            "params": dict(run.data.params),
            "metrics": dict(run.data.metrics),
            "experiment_id": found.experiment_id,
        }
        for run in runs
    ]


def metric_history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one metric of one run, in step order."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=_prepare_store(tracking_uri))
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
