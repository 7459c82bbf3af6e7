"""The two records a run folder holds, each defined once: metrics.json and checkpoint.pt.

Every writer and reader goes through these types (training, the report, the store rebuild, the
workflow's retry of failed cells), and each file carries a format version: a file from another
version is refused with a line naming it, never half-understood.

    <run>/metrics.json   Metrics: status (done | failed), final numbers, the recipe trained, the
                         settings it ran with, which data it saw, provenance
    <run>/checkpoint.pt  Checkpoint: model, optimiser, RNG, the recipe and the loop's TrainState
"""
from __future__ import annotations

import dataclasses
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resnet.runs import files as runfiles

METRICS_FORMAT = 2
CHECKPOINT_FORMAT = 3  # 3: the loop's state is a TrainState; interval sums per process
DONE, FAILED = "done", "failed"


class RecordError(ValueError):
    """A run file of another format version or shape; the message names the file and the fix."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the file and the fix."""


CHECKPOINT_FIX = "delete it to restart this cell from iteration 0 (the other files of the run are kept)"


def load_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint's state, loaded with torch's weights-only unpickler.

    Only tensors and plain values (dict, list, tuple, str, int, float, bool, None) are accepted: a
    file planted in a shared results/ folder cannot run code when a cell resumes. Anything else is
    refused with the same CheckpointError as a torn file. ``mmap``: the tensors stay in the file
    until used (reading the recipe and the loop's state costs no more than the pickle).
    """
    fix = CHECKPOINT_FIX
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        refused = [line.strip() for line in str(error).splitlines() if "Unsupported global" in line
                   or "Unsupported operand" in line]
        if refused or "Weights only load failed" in str(error):
            what = refused[0].rstrip(".") if refused else "objects other than tensors and plain values"
            raise CheckpointError(
                f"checkpoint '{path}' was refused unread: it holds {what}, and loading it could run code "
                f"(a checkpoint of this project holds only tensors and plain values): {fix}") from None
        raise CheckpointError(f"checkpoint '{path}' is unreadable (UnpicklingError): {fix}") from None
    except Exception as error:  # truncated, overwritten or foreign file
        raise CheckpointError(f"checkpoint '{path}' is unreadable ({type(error).__name__}): {fix}") from None


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
            record = cls(**values)
        except TypeError as error:
            raise RecordError(f"'{path}' is not a complete metrics record ({error})") from None
        wrong = record.wrongly_typed()
        if wrong:
            raise RecordError(f"'{path}': {wrong}: the file was edited or damaged; delete it to recompute it "
                              f"from the cell's checkpoint (or retrain the cell)")
        return record

    def wrongly_typed(self) -> str | None:
        """The first value of another type than this record's (e.g. a number written as "90,5"), or None."""
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if not _of_type(value, str(item.type)):
                return f"{item.name} is {value!r} ({type(value).__name__}), expected {item.type}"[:300]
        for key, value in self.final.items():  # numbers, a list of them (Figure 7), or null
            values = value if isinstance(value, list) else [value]
            if not all(item is None or _number(item) for item in values):
                return f"final.{key} is {value!r}, not a number"[:300]
        return None


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "None": (type(None),),
                                       "dict": (dict,), "list": (list,)}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _of_type(value: Any, annotation: str) -> bool:
    """Whether ``value`` (from JSON) fits a field annotation such as "float | None" or "dict[str, Any]"."""
    kinds = [part.strip().split("[")[0] for part in annotation.split("|")]
    if isinstance(value, bool):
        return "bool" in kinds
    return any(isinstance(value, _TYPES.get(kind, object)) for kind in kinds)


@dataclass
class IntervalSums:
    """One process's running sums of a log interval that a checkpoint cut in two.

    ``loss`` is the float32 running sum as it stood (exact as a Python float), so a resumed run
    repeats the same float32 additions in the same order; ``seconds`` is the training time spent on
    the interval before the stop."""

    loss: float = 0.0
    wrong: int = 0
    images: int = 0
    seconds: float = 0.0


@dataclass
class TrainState:
    """What the training loop carries from one iteration to the next, and across a stop."""

    iteration: int = 0  # iterations done
    warming_up: bool = False  # Sec. 4.2's warm-up lr is in force
    warmup_ended_at: int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # curve.csv's rows so far
    rows_in_mlflow: int = 0  # rows the cell's MLflow run holds
    # The half-finished log interval of each training process (rank order) at the checkpoint;
    # None when the checkpoint fell on a row boundary.
    carried: list[IntervalSums] | None = None
    mlflow_run_id: str | None = None
    interruptions: int = 0  # stops by a signal since the last give-up (resources.max_resubmits)
    train_seconds: float = 0.0  # training time so far, evaluations and checkpoints excluded
    first_step_s: float | None = None  # the first step's time (compilation, graph capture)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any, where: str) -> "TrainState":
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(values, dict) or set(values) != names:
            found = sorted(values) if isinstance(values, dict) else type(values).__name__
            raise CheckpointError(f"checkpoint '{where}' holds a training state of another shape (keys "
                                           f"{found}): {CHECKPOINT_FIX}")
        carried = values["carried"]
        try:
            carried = None if carried is None else [IntervalSums(**item) for item in carried]
        except TypeError:
            raise CheckpointError(f"checkpoint '{where}' holds malformed interval sums: "
                                           f"{CHECKPOINT_FIX}") from None
        return cls(**{**values, "carried": carried})


@dataclass
class Checkpoint:
    """checkpoint.pt: everything a resumed run needs to continue exactly where this one stopped."""

    recipe: dict[str, Any]  # the identity it was trained under; another recipe never resumes from it
    model: dict[str, Any]
    optimizer: dict[str, Any]
    torch_rng: torch.Tensor
    state: TrainState
    format: int = CHECKPOINT_FORMAT

    def save(self, path: Path) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # no copies of tensors
        values["state"] = self.state.to_dict()  # plain values: loaded by the weights-only unpickler
        buffer = io.BytesIO()
        torch.save(values, buffer)
        runfiles.atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: Path, mmap: bool = False) -> "Checkpoint":
        values = load_checkpoint(Path(path), mmap=mmap)
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(values, dict) or values.get("format") != CHECKPOINT_FORMAT or set(values) != names:
            found = values.get("format") if isinstance(values, dict) else type(values).__name__
            raise CheckpointError(
                f"checkpoint '{path}' is not a format-{CHECKPOINT_FORMAT} checkpoint of this project (found "
                f"format {found!r}): {CHECKPOINT_FIX}")
        return cls(**{**values, "state": TrainState.from_dict(values["state"], str(path))})
