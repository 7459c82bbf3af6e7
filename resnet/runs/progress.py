"""What a training run prints: the banner at its start and one progress line per log interval."""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch

from resnet.runs.provenance import device_name
from resnet.config.sections import REFERENCE_BATCH
from resnet.models.measure import count_parameters

if TYPE_CHECKING:
    from resnet.config.job import Job


def banner(job: Job, device: torch.device, model, dist) -> str:
    recipe = job.recipe
    reference = REFERENCE_BATCH[recipe.dataset]
    lr_note = "" if recipe.batch_size == reference else (
        f" (linear scaling rule: the recipe's lr is per batch of {reference}; batch {recipe.batch_size} "
        f"gives lr {recipe.lr:g})")
    bn = f", BN over groups of {recipe.bn_group}" if recipe.bn_group else ""
    return (f"[{job.cell}] {job.scale} scale on {device_name(device)} x{dist.world_size}: "
            f"{count_parameters(model):,} parameters, {recipe.iterations} iterations at batch {recipe.batch_size}"
            f"{bn}, lr {recipe.lr:g} /{1 / recipe.lr_decay:g} at {list(recipe.milestones)}{lr_note}"
            + ("" if job.mlflow.live else "; MLflow: logged from the run folder by the workflow's summary step "
               "or `python -m resnet mlflow-sync` (mlflow.live: false)"))


def progress(job, row, state, started, start_iteration) -> str:
    iterations = job.recipe.iterations
    done = row["iteration"] - start_iteration
    rate = done / max(time.perf_counter() - started, 1e-9)
    eta = (iterations - row["iteration"]) / rate if rate > 0 else math.inf
    evals = "".join(f" | {key.split('_')[0]} err {row[key]:.2f}%" for key in ("val_error", "test_error")
                    if row[key] == row[key])
    return (f"[{job.cell}] it {row['iteration']}/{iterations} ({100 * row['iteration'] / iterations:.1f}%)"
            f" | lr {row['lr']:.4g} | loss {row['train_loss']:.4f} | train err {row['train_error']:.2f}%{evals}"
            f" | {row['images_per_s']:,.0f} img/s | ETA {duration(eta)}")


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
