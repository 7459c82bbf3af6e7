"""What a cell leaves when it ends: metrics.json (done or failed) and its MLflow run."""
from __future__ import annotations

import uuid
from pathlib import Path

from resnet.config.job import Job
from resnet.models.measure import count_multiply_adds, count_parameters
from resnet.runs.provenance import git_commit, provenance
from resnet.runs.records import DONE, FAILED, Metrics, TrainState
from resnet.engine import distributed


def artefacts_of(model: str) -> list[str]:
    """Which paper tables and figures read this cell (MLflow tag): ["table-6", "figure-6", ...]."""
    from resnet import paper

    return [item.key for item in paper.appearances(model)]


def record_failure(job: Job, out: Path, reason: str, iterations: int | None = None,
                   retry_of: str | None = None) -> Metrics:
    """metrics.json with status "failed" and the reason: the tables show it, the next run retries it."""
    recipe = job.recipe
    metrics = Metrics(cell=job.cell, model=recipe.model, dataset=recipe.dataset, seed=recipe.seed, scale=job.scale,
                      status=FAILED, recipe=recipe.to_dict(), settings=job.settings(), iterations=iterations,
                      reason=reason, failure_id=uuid.uuid4().hex[:12], retry_of=retry_of)
    metrics.write(out / "metrics.json")
    return metrics


def open_tracker(job: Job, state: TrainState, git: dict | None = None):
    """The cell's MLflow run: the one the checkpoint names, else a new one (MLflow trouble: a warning).

    ``git``: the commit (resnet.runs.provenance.git_commit), read by the caller where a subprocess is
    safe (not on a thread beside forking loader workers)."""
    from resnet.tracking.run import Tracker, run_description, run_params, run_tags

    model = job.recipe.model
    tags = run_tags(cell=job.cell, model=model, seed=job.recipe.seed, scale=job.scale, dataset=job.dataset,
                    artefacts=artefacts_of(model), git=git if git is not None else git_commit())
    tracker = Tracker(job.mlflow.tracking_uri, job.mlflow.experiment, run_name=f"{job.scale}/{job.cell}",
                      run_id=state.mlflow_run_id, tags=tags,
                      params=run_params(job.recipe.to_dict(), job.settings()),
                      description=run_description(model=model, cell=job.cell, scale=job.scale))
    if tracker.started_new:  # also when the store lost the checkpoint's run: the new run gets the whole curve
        state.rows_in_mlflow = 0
    if tracker.run_id is not None:  # unreachable store: keep the old id, a later job continues that run
        state.mlflow_run_id = tracker.run_id
    return tracker


def write_metrics(job, out, model, task, state: TrainState, final, step_info, device, retry_of) -> Metrics:
    """metrics.json of a finished cell; its presence with status done ends the cell."""
    rows, recipe = state.rows, job.recipe
    trained_images = recipe.batch_size * recipe.iterations
    metrics = Metrics(
        cell=job.cell, model=recipe.model, dataset=recipe.dataset, seed=recipe.seed, scale=job.scale,
        status=DONE, recipe=recipe.to_dict(), settings=job.settings(), iterations=state.iteration,
        retry_of=retry_of,
        final={"train_error": rows[-1]["train_error"] if rows else None, **final},
        parameters=count_parameters(model),
        multiply_adds=count_multiply_adds(model, task.image_size),
        image_size=task.image_size,
        wall_time_s=round(state.train_seconds, 3),
        images_per_s=round(trained_images / state.train_seconds, 1) if state.train_seconds else None,
        first_step_s=state.first_step_s,
        step=step_info,
        warmup_ended_at=state.warmup_ended_at,
        interruptions=state.interruptions,
        mlflow_run_id=state.mlflow_run_id,
        data=task.data_info,
        provenance=provenance(device, recipe.seed, distributed.world_size()),
    )
    metrics.write(out / "metrics.json")
    return metrics
