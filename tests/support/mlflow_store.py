"""What the tests read back from an MLflow store: runs, metric histories, artefacts."""
from __future__ import annotations

from typing import Any

from resnet.tracking.store import _client


def runs_of(tracking_uri: str, experiment: str) -> list[dict[str, Any]]:
    """The runs of an experiment as plain dicts (name, id, status, tags, params, metric keys)."""
    client = _client(tracking_uri)
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
            "inputs": [{"name": d.dataset.name, "digest": d.dataset.digest, "source": d.dataset.source,
                        "tags": {t.key: t.value for t in d.tags}}
                       for d in (run.inputs.dataset_inputs if run.inputs else [])],
        }
        for run in runs
    ]


def metric_history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one metric of one run, in step order."""
    client = _client(tracking_uri)
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def artifacts_of(tracking_uri: str, run_id: str, folder: str | None = None) -> list[str]:
    """The artefact paths of a run (one folder level)."""
    return sorted(item.path for item in _client(tracking_uri).list_artifacts(run_id, folder))
