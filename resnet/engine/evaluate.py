"""A finished cell's weights evaluated again: the number its metrics.json records, measured anew.

    python -m resnet evaluate results-reference/paper/cifar-resnet-20/seed-0

The run folder's metrics.json says what was trained (the recipe) and on which data (the settings);
its weights come from weights.pt (the model alone, ``torch.load`` + ``load_state_dict``), or from
checkpoint.pt's model. The cell's own task evaluates them (CIFAR: the test set, and the validation
images if the recipe held some out; ImageNet: centre crop and 10-crop), in fp32 on the CPU unless
``device`` says otherwise, and each number is set beside the recorded one.
"""
from __future__ import annotations

from pathlib import Path

import torch

from resnet.config.job import job_from_parts
from resnet.engine.distributed import Distributed
from resnet.engine.tasks import make_task
from resnet.models.nets import build_model
from resnet.runs.records import Checkpoint, Metrics, RecordError

WEIGHTS = "weights.pt"  # the model's state_dict alone, beside metrics.json (results-reference/)


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The model's weights of a run folder: weights.pt, else the checkpoint's."""
    folder = Path(folder)
    if (folder / WEIGHTS).is_file():
        return torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    return Checkpoint.load(folder / "checkpoint.pt").model


def evaluate_run(folder: Path, device: str = "cpu") -> list[tuple[str, float, float | None]]:
    """[(number, measured now, recorded in metrics.json)] of the cell in ``folder``."""
    folder = Path(folder)
    metrics = Metrics.read(folder / "metrics.json")
    if metrics is None:
        raise RecordError(f"'{folder / 'metrics.json'}' does not exist: give the folder of a finished cell")
    job = job_from_parts(metrics.recipe, metrics.settings)
    dist = Distributed()
    task = make_task(job, torch.device(device), dist)
    model = build_model(job.recipe.model, num_classes=task.num_classes)
    model.load_state_dict(load_weights(folder))
    model.to(device)
    measured = task.final(model)
    return [(key, float(value), metrics.final.get(key)) for key, value in measured.items()
            if isinstance(value, (int, float)) and key != "test_short_side"]
