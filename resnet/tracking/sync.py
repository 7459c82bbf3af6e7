"""The MLflow store rebuilt from the run folders, and the report run of each workflow run.

    python -m resnet mlflow-sync    # sync_run_folders: every finished cell's run, created or completed
    workflow/scripts/report.py      # log_report_run: the tables, figures and summary as artefacts

Both go through resnet.tracking's Tracker (the only place that talks to MLflow), so MLflow trouble is
a warning here too and the files on disk stay the truth.
"""
from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from resnet.tracking.run import REPORT_SOURCE, Tracker, _system_tags, params_of, run_description, run_tags
from resnet.tracking.store import _call, _client


# ----------------------------------------------------------------------------- the store from the files

def training_times_ms(metrics: dict[str, Any]) -> tuple[int | None, int | None]:
    """(start, end) of a cell's training in ms since the epoch, from what its metrics.json records.

    The end is when metrics.json was written (provenance.written_at); the start is that minus the
    training time (wall_time_s: the time spent in training steps, summed over every resume;
    evaluations and checkpoints excluded). The MLflow UI's Duration of a run mirrored from its files
    is thus the cell's training time. (None, None) for a record without them (a failed cell)."""
    from datetime import datetime

    written = (metrics.get("provenance") or {}).get("written_at")
    seconds = metrics.get("wall_time_s")
    if not isinstance(written, str) or not isinstance(seconds, (int, float)):
        return None, None
    try:
        end = datetime.fromisoformat(written).timestamp()
    except ValueError:
        return None, None
    return round((end - seconds) * 1000), round(end * 1000)


def sync_run_folder(tracking_uri: str, experiment: str, folder: Path, scale: str,
                    warnings: list[str] | None = None) -> tuple[str, int] | None:
    """Create or complete the MLflow run of one run folder from its metrics.json and curve.csv.

    Idempotent: values the run already holds are not sent again (per metric, by step). Returns
    (run id, metric values sent), or None if the folder has no metrics.json (an unfinished cell:
    its next training job continues, or replaces, its run) or the store cannot be written (the
    warning lines are added to ``warnings``). A new run starts and ends when the training did.
    """
    from resnet import paper
    from resnet.runs import files as runfiles
    from resnet.runs.records import Metrics, RecordError

    folder = Path(folder)
    try:
        record = Metrics.read(folder / "metrics.json")  # the one definition of metrics.json
    except RecordError as error:
        line = f"warning: MLflow: {error}; not mirrored"
        print(line, file=sys.stderr, flush=True)
        if warnings is not None:
            warnings.append(line)
        return None
    if record is None:
        return None
    warnings = [] if warnings is None else warnings
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
    started, ended = training_times_ms(metrics)
    tracker = Tracker(tracking_uri, experiment, run_name=f"{scale}/{cell}", run_id=run_id, tags=tags,
                      params=params_of(metrics), description=run_description(model=model, cell=cell, scale=scale),
                      find=run_id is None, start_time_ms=started)
    if tracker.run_id is not None:
        tracker.log_rows(rows)
        data = metrics.get("data") or {}
        tracker.log_dataset(dataset, data.get("content_hash"), data.get("source") or config.get("data_source", ""))
        tracker.log_result(metrics, folder, end_time_ms=ended)
    warnings.extend(tracker.warnings)
    return None if tracker.failed or tracker.run_id is None else (tracker.run_id, tracker.sent)


def sync_run_folders(tracking_uri: str, experiment: str, folders: Iterable[Path], scale: str,
                     echo: Callable[[str], None] = print, warnings: list[str] | None = None
                     ) -> dict[str, tuple[str, int] | None]:
    """sync_run_folder for each run folder (results/runs/<scale>/<model>/seed-<n>/), keyed by cell."""
    results = {}
    for folder in folders:
        folder = Path(folder)
        cell = f"{folder.parent.name}/{folder.name}"
        results[cell] = outcome = sync_run_folder(tracking_uri, experiment, folder, scale, warnings)
        if outcome is None:
            echo(f"{cell}: not mirrored (see the warning above)")
        else:
            echo(f"{cell}: run {outcome[0]}, {outcome[1]} metric values sent"
                 + (" (up to date)" if outcome[1] == 0 else ""))
    return results


# ----------------------------------------------------------------------------- the report run

def report_files(tables: Iterable[Path], figures: Iterable[Path], summary: Path) -> dict[str, list[Path]]:
    """The report run's artefacts by folder: each table's .csv and .md, each figure's .png and .pdf,
    and the summary (results/README.md) at the top."""
    return {"tables": [f for t in map(Path, tables) for f in (t.with_suffix(".csv"), t.with_suffix(".md"))],
            "figures": [f for g in map(Path, figures) for f in (g.with_suffix(".png"), g.with_suffix(".pdf"))],
            "": [Path(summary)]}


def summary_digest(summary: Path) -> str:
    """The report run's tag ``summary_digest``: which results/README.md it holds."""
    return hashlib.sha256(Path(summary).read_bytes()).hexdigest()[:16]


def log_report_run(tracking_uri: str, experiment: str, files: dict[str, list[Path]], tags: dict[str, str],
                   description: str, git: dict[str, Any] | None = None, run_name: str = "report",
                   warnings: list[str] | None = None) -> str | None:
    """One run holding a workflow run's tables and figures as artefacts (artefact folder -> files).

    Its description is the summary (Markdown), so the UI's run page shows it. Returns the run id,
    or None (with a warning, added to ``warnings``) if the store cannot be written: the files on
    disk are complete."""
    tags = {"kind": "report", **tags, **_system_tags(REPORT_SOURCE, git)}
    tracker = Tracker(tracking_uri, experiment, run_name=run_name, tags=tags, description=description,
                      consequence="The tables, figures and summary on disk are complete; only the report run "
                                  "is missing from the store (`python -m resnet mlflow-sync` logs it later)")
    ok = tracker.run_id is not None
    for folder, paths in files.items() if ok else ():
        for path in paths:
            if Path(path).is_file():
                ok &= tracker._guard(f"logging {Path(path).name}", lambda p=path, f=folder: _call(
                    lambda: tracker.client.log_artifact(tracker.run_id, str(p), f or None)))
    if tracker.run_id is not None:
        ok &= tracker.finish("FINISHED" if ok else "FAILED")
    if warnings is not None:
        warnings.extend(tracker.warnings)
    return tracker.run_id if ok else None


def sync_report_run(tracking_uri: str, experiment: str, results: Path, scale: str,
                    echo: Callable[[str], None] = print, warnings: list[str] | None = None) -> str | None:
    """Log the report run of ``results`` (its tables, figures and README.md) unless the store holds
    one with this README.md (tag summary_digest). Returns that run's id; None if none is logged."""
    from resnet.runs.provenance import git_commit

    summary = Path(results) / "README.md"
    if not summary.is_file():
        echo(f"report: no {summary} yet (the workflow's summary step writes it); no report run logged")
        return None
    digest = summary_digest(summary)
    condition = (f"tags.kind = 'report' and tags.scale = '{scale}' and tags.summary_digest = '{digest}' "
                 f"and attributes.status = 'FINISHED'")
    try:
        client = _client(tracking_uri)
        found = _call(lambda: client.get_experiment_by_name(experiment))
        existing = [] if found is None else _call(
            lambda: client.search_runs([found.experiment_id], condition, max_results=1))
    except Exception as error:
        reason = (str(error).strip().splitlines() or [""])[0][:300]
        line = f"warning: MLflow ({tracking_uri}): looking for the report run: {type(error).__name__}: {reason}"
        print(line, file=sys.stderr, flush=True)
        if warnings is not None:
            warnings.append(line)
        return None
    if existing:
        echo(f"report: run {existing[0].info.run_id} holds {summary} (up to date)")
        return existing[0].info.run_id
    files = report_files(sorted(Path(results).glob("table*.csv")), sorted(Path(results).glob("figure*.png")), summary)
    run_id = log_report_run(tracking_uri, experiment, files, tags={"scale": scale, "summary_digest": digest},
                            description=summary.read_text(), git=git_commit(), run_name=f"{scale}/report",
                            warnings=warnings)
    echo(f"report: run {run_id} logged from {results}" if run_id else "report: not mirrored (see the warning above)")
    return run_id
