"""The run folder of a cell: where it lives, and what a new run finds there.

    results/runs/<scale>/<model>/seed-<n>/   checkpoint.pt, curve.csv, metrics.json

A folder left by another recipe of the cell (the config changed since) is set aside in
superseded-<time>/ inside it, so nothing computed is lost and two recipes never mix.
"""
from __future__ import annotations

import shutil
import sys
from datetime import datetime
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resnet.config.job import Job
    from resnet.runs.records import Metrics

RESULTS = Path("results")  # relative to the working directory, like every output of the workflow


def runs_root(scale: str) -> Path:
    """Where the run folders of a scale live: results/runs/<scale>/ (the workflow's RUNS)."""
    return RESULTS / "runs" / scale


def run_dir(scale: str, cell: str) -> Path:
    """Where a cell's files live: results/runs/<scale>/<model>/seed-<n> (``cell`` is Cell.id)."""
    return runs_root(scale) / cell


def _recorded_recipe(out: Path) -> tuple[dict | None, Metrics | None]:
    """The recipe the folder's files were made with (metrics.json first, else the checkpoint)."""
    from resnet.runs.records import Checkpoint, Metrics  # torch: not for the paths above (`python -m resnet plan`)

    metrics = Metrics.read(out / "metrics.json")
    if metrics is not None:
        return metrics.recipe, metrics
    if (out / "checkpoint.pt").exists():
        return Checkpoint.load(out / "checkpoint.pt").recipe, None
    return None, None


def prepare_run_folder(job: Job, out: Path, may_move: bool = True) -> Metrics | None:
    """Return the finished metrics if this exact recipe is already done; set other recipes' runs aside.

    A folder left by a different recipe (config changed since) is moved to superseded-<time>/
    inside the folder, so nothing computed is lost and the new recipe starts from iteration 0.
    """
    out.mkdir(parents=True, exist_ok=True)
    if may_move:
        for stale in out.glob(".*.tmp"):  # a write cut short by a kill; the real file is intact
            stale.unlink(missing_ok=True)
    previous, metrics = _recorded_recipe(out)
    recipe = job.recipe.to_dict()
    if previous is None:
        return None
    if previous == recipe:
        return metrics if metrics is not None and metrics.done else None
    if not may_move:  # under torchrun, process 0 alone sets the older run aside
        return None
    keep = out / f"superseded-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    keep.mkdir()
    for item in out.iterdir():
        if not item.name.startswith("superseded-"):
            shutil.move(str(item), keep / item.name)
    changed = sorted(key for key in set(recipe) | set(previous) if previous.get(key) != recipe.get(key))
    print(f"{out}: recipe changed ({', '.join(changed)}); previous run kept in {keep.name}/", file=sys.stderr)
    return None
