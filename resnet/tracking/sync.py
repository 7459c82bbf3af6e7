"""The MLflow store rebuilt from the run folders, and the report run of each workflow run.

    python -m resnet mlflow-sync    # sync_run_folders: every finished cell's run, created or completed
    workflow/scripts/report.py      # log_report_run: the tables, figures and summary as artefacts

Both go through resnet.tracking's Tracker (the only place that talks to MLflow), so MLflow trouble is
a warning here too and the files on disk stay the truth.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from resnet.tracking.run import REPORT_SOURCE, Tracker, _system_tags, params_of, run_description, run_tags
from resnet.tracking.store import _call


# ----------------------------------------------------------------------------- the store from the files

def sync_run_folder(tracking_uri: str, experiment: str, folder: Path, scale: str) -> tuple[str, int] | None:
    """Create or complete the MLflow run of one run folder from its metrics.json and curve.csv.

    Idempotent: values the run already holds are not sent again (per metric, by step). Returns
    (run id, metric values sent), or None if the folder has no metrics.json (an unfinished cell:
    its next training job continues, or replaces, its run) or the store cannot be written.
    """
    from resnet import paper
    from resnet.runs import files as runfiles
    from resnet.runs.records import Metrics, RecordError

    folder = Path(folder)
    try:
        record = Metrics.read(folder / "metrics.json")  # the one definition of metrics.json
    except RecordError as error:
        print(f"warning: MLflow: {error}; not mirrored", file=sys.stderr, flush=True)
        return None
    if record is None:
        return None
    metrics = dataclasses.asdict(record)
    rows = runfiles.read_curve(folder / "curve.csv") or []
    config = params_of(metrics)
    cell = metrics.get("cell") or f"{folder.parent.name}/{folder.name}"
    model = metrics.get("model") or config.get("model") or folder.parent.name
    dataset = metrics.get("dataset") or config.get("dataset") or ""
    seed = metrics.get("seed", config.get("seed", ""))
    git = (metrics.get("provenance") or {}).get("git")
    tags = run_tags(cell=cell, model=model, seed=seed, scale=scale, dataset=dataset,
                    artefacts=[a.key for a in paper.appearances(model)], git=git)
    run_id = metrics.get("mlflow_run_id")
    tracker = Tracker(tracking_uri, experiment, run_name=f"{scale}/{cell}", run_id=run_id, tags=tags,
                      params=params_of(metrics), description=run_description(model=model, cell=cell, scale=scale),
                      find=run_id is None)
    if tracker.run_id is None:
        return None
    tracker.log_rows(rows)
    data = metrics.get("data") or {}
    tracker.log_dataset(dataset, data.get("content_hash"), data.get("source") or config.get("data_source", ""))
    tracker.log_result(metrics, folder)
    return None if tracker.failed else (tracker.run_id, tracker.sent)


def sync_run_folders(tracking_uri: str, experiment: str, folders: Iterable[Path], scale: str,
                     echo: Callable[[str], None] = print) -> dict[str, tuple[str, int] | None]:
    """sync_run_folder for each run folder (results/runs/<scale>/<model>/seed-<n>/), keyed by cell."""
    results = {}
    for folder in folders:
        folder = Path(folder)
        cell = f"{folder.parent.name}/{folder.name}"
        results[cell] = outcome = sync_run_folder(tracking_uri, experiment, folder, scale)
        if outcome is None:
            echo(f"{cell}: not mirrored (see the warning above)")
        else:
            echo(f"{cell}: run {outcome[0]}, {outcome[1]} metric values sent"
                 + (" (up to date)" if outcome[1] == 0 else ""))
    return results


# ----------------------------------------------------------------------------- the report run

def log_report_run(tracking_uri: str, experiment: str, files: dict[str, list[Path]], tags: dict[str, str],
                   description: str, git: dict[str, Any] | None = None, run_name: str = "report") -> str | None:
    """One run holding a workflow run's tables and figures as artefacts (artefact folder -> files).

    Its description is the summary (Markdown), so the UI's run page shows it. Returns the run id,
    or None (with a warning) if the store cannot be written: the files on disk are complete."""
    tags = {"kind": "report", **tags, **_system_tags(REPORT_SOURCE, git)}
    tracker = Tracker(tracking_uri, experiment, run_name=run_name, tags=tags, description=description,
                      consequence="The tables, figures and summary on disk are complete; only the report run "
                                  "is missing from the store")
    if tracker.run_id is None:
        return None
    ok = True
    for folder, paths in files.items():
        for path in paths:
            if Path(path).is_file():
                ok &= tracker._guard(f"logging {Path(path).name}", lambda p=path, f=folder: _call(
                    lambda: tracker.client.log_artifact(tracker.run_id, str(p), f or None)))
    tracker.finish("FINISHED" if ok else "FAILED")
    return tracker.run_id
