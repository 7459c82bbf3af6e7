"""The two records a run folder holds, each defined once: metrics.json and checkpoint.pt.

Every writer and reader goes through these types (training, the report, the store rebuild, the
workflow's retry of failed cells), and each file carries a format version: a file from another
version is refused with a line naming it, never half-understood.

    <run>/metrics.json   Metrics: status (done | failed), final numbers, the recipe trained, the
                         settings it ran with, which data it saw, provenance
    <run>/checkpoint.pt  Checkpoint: model, optimiser, RNG, the training state and the recipe
"""
from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resnet import runfiles

METRICS_FORMAT = 2
CHECKPOINT_FORMAT = 2
DONE, FAILED = "done", "failed"


class RecordError(ValueError):
    """A run file of another format version or shape; the message names the file and the fix."""


@dataclass
class Metrics:
    """metrics.json. ``status`` done: the cell is finished; failed: ``reason`` says why."""

    cell: str
    model: str
    dataset: str
    seed: int
    scale: str
    status: str
    recipe: dict[str, Any]
    settings: dict[str, Any]
    iterations: int | None = None
    reason: str | None = None
    # Each failure gets an id; the workflow retries a failed cell when its failure id is one it has
    # not yet retried (the train rule's `retry_of` param), and a run that retried it says so.
    failure_id: str | None = None
    retry_of: str | None = None
    final: dict[str, Any] = field(default_factory=dict)
    parameters: int | None = None
    multiply_adds: int | None = None
    image_size: int | None = None
    wall_time_s: float | None = None
    images_per_s: float | None = None
    first_step_s: float | None = None
    step: dict[str, Any] | None = None
    warmup_ended_at: int | None = None
    interruptions: int = 0
    mlflow_run_id: str | None = None
    data: dict[str, Any] | None = None  # which data the cell saw: source, kind, content hash
    provenance: dict[str, Any] = field(default_factory=dict)
    format: int = METRICS_FORMAT

    @property
    def done(self) -> bool:
        return self.status == DONE

    def write(self, path: Path) -> None:
        runfiles.write_json(Path(path), dataclasses.asdict(self))

    @classmethod
    def read(cls, path: Path) -> "Metrics | None":
        """The record at ``path``; None if there is none. RecordError if it is not one."""
        path = Path(path)
        if not path.exists():
            return None
        values = runfiles.read_json(path)
        if not isinstance(values, dict):
            raise RecordError(f"'{path}' is not a metrics.json record (unreadable JSON): delete it to rerun "
                              f"the cell")
        if values.get("format") != METRICS_FORMAT:
            raise RecordError(f"'{path}' has metrics format {values.get('format')!r}, this version reads "
                              f"{METRICS_FORMAT}: move the run folder aside to retrain the cell")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise RecordError(f"'{path}' has unknown keys {unknown}: it was not written by this version")
        try:
            return cls(**values)
        except TypeError as error:
            raise RecordError(f"'{path}' is not a complete metrics record ({error})") from None


@dataclass
class Checkpoint:
    """checkpoint.pt: everything a resumed run needs to continue exactly where this one stopped."""

    recipe: dict[str, Any]  # the identity it was trained under; another recipe never resumes from it
    model: dict[str, Any]
    optimizer: dict[str, Any]
    torch_rng: torch.Tensor
    state: dict[str, Any]  # iteration, curve rows, warm-up state, MLflow run id... (resnet.train)
    format: int = CHECKPOINT_FORMAT

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        torch.save({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, buffer)  # no copies
        runfiles.atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "Checkpoint":
        values = runfiles.load_checkpoint(Path(path))
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(values, dict) or values.get("format") != CHECKPOINT_FORMAT or set(values) != names:
            found = values.get("format") if isinstance(values, dict) else type(values).__name__
            raise runfiles.CheckpointError(
                f"checkpoint '{path}' is not a format-{CHECKPOINT_FORMAT} checkpoint of this project (found "
                f"format {found!r}): delete it to restart this cell from iteration 0 (the other files of the "
                f"run are kept)")
        return cls(**values)
