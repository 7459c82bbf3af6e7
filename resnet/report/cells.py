"""What each planned cell's run folder says: its status (done, failed, not run), numbers and curve.

The tables, figures and the summary read the cells through ``collect``: a cell's files are the
metrics.json the workflow hands the rule (``snakemake.input``) and the curve.csv beside it. A done
cell whose metrics.json is unreadable, of the wrong types, or disagrees with its curve or checkpoint
(``disagreement``) is reported failed, with one line naming the file and the fix.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from resnet.config.job import parse_cell
from resnet.config.load import load_config
from resnet.config.sections import Cell, Config
from resnet.paper.names import parse_model_name
from resnet.runs import files as runfiles
from resnet.runs.folder import restored_copy
from resnet.runs.records import Checkpoint, CheckpointError, Metrics, RecordError

DONE, FAILED, NOT_RUN = "done", "failed", "not run"


@dataclass
class CellResult:
    """What one cell's run folder says: its status, final numbers and curve."""

    cell: str  # "<model>/seed-<n>"
    model: str
    seed: int
    dataset: str
    status: str  # done | failed | not run
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    curve: pd.DataFrame | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics.get("final") or {}


def normalised_config(config) -> Config:
    """The validated, typed config (Snakemake hands over the raw mapping)."""
    return config if isinstance(config, Config) else load_config(dict(config))


def collect(config, metrics_files: list[Path]) -> dict[str, CellResult]:
    """The cells whose metrics.json files are given (the rule's inputs), keyed by cell id.

    A cell's id and dataset come from its folder, results/runs/<scale>/<model>/seed-<n>/; a file
    that does not exist yet gives a "not run" row.
    """
    cells = {}
    for file in map(Path, metrics_files):
        model, seed = parse_cell(f"{file.parent.parent.name}/{file.parent.name}")
        cell = Cell(model, seed, parse_model_name(model).dataset)
        cells[cell.id] = read_cell(cell, file.parent)
    return cells


def read_cell(cell, folder: Path) -> CellResult:
    result = CellResult(cell.id, cell.model, cell.seed, cell.dataset, NOT_RUN)
    result.curve = _read_curve(folder / "curve.csv")
    try:
        metrics = Metrics.read(folder / "metrics.json")
    except RecordError as error:
        result.status, result.reason = FAILED, str(error)
        return result
    if metrics is None:
        if result.curve is not None and len(result.curve):
            last = int(result.curve["iteration"].iloc[-1])
            result.reason = f"unfinished: curve.csv reaches iteration {last}, no metrics.json yet"
        else:
            result.reason = "no metrics.json yet"
        return result
    result.metrics = dataclasses.asdict(metrics)
    if metrics.done:
        result.status = DONE
        problem = disagreement(cell, metrics, folder)
        if problem is not None:  # reported as failed, so that no table or figure shows its numbers
            result.status, result.reason = FAILED, problem
    else:
        result.status = FAILED
        result.reason = metrics.reason or f"metrics.json has status {metrics.status!r}"
    return result


def disagreement(cell: Cell, metrics: Metrics, folder: Path) -> str | None:
    """Where a done cell's metrics.json disagrees with its curve.csv or checkpoint.pt; None if it agrees.

    The final errors that training copies from the curve's last row (the training error; CIFAR's
    test and validation errors, measured once for both) must equal that row in curve.csv (written
    to 6 significant digits) and in the checkpoint's state, at the same iteration, under the same
    recipe. A file edited by hand, or files of two runs in one folder, show up here. A file that
    is missing is not a disagreement (a checkpoint may be deleted to save space).
    """
    kept = restored_copy(folder)
    if kept is not None:
        return (f"'{folder / 'metrics.json'}' is a copy of {kept.relative_to(folder)}, an older run's record, "
                f"not this run's: run the workflow again to finish the cell")
    fix = "delete metrics.json to recompute it from checkpoint.pt (or retrain the cell)"
    others = []
    rows = runfiles.read_curve(folder / "curve.csv")
    if rows:
        others.append(("curve.csv", rows[-1]))
    if (folder / "checkpoint.pt").exists():
        try:
            saved = Checkpoint.load(folder / "checkpoint.pt", mmap=True)  # the tensors stay on disk
        except CheckpointError as error:
            return f"{error}; the record cannot be checked against it"
        if saved.recipe != metrics.recipe:
            return f"'{folder / 'checkpoint.pt'}' is of another recipe than metrics.json: {fix}"
        others.append(("checkpoint.pt", {**(saved.state.rows[-1] if saved.state.rows else {}),
                                         "iteration": saved.state.iteration}))
    compared = ("train_error", "test_error", "val_error") if cell.dataset == "cifar10" else ("train_error",)
    for name, last in others:
        if last.get("iteration") != metrics.iterations:
            return (f"'{folder / 'metrics.json'}' says {metrics.iterations} iterations, {name} "
                    f"{last.get('iteration')}: {fix}")
        for key in compared:
            ours, theirs = metrics.final.get(key), last.get(key)
            if ours is not None and theirs is not None and not math.isclose(ours, theirs, rel_tol=1e-5):
                return (f"'{folder / 'metrics.json'}' final.{key} is {ours:g}, {name} has {theirs:g} at "
                        f"iteration {metrics.iterations}: {fix}")
    return None


def _read_curve(path: Path) -> pd.DataFrame | None:
    """curve.csv as floats; an empty field ("not evaluated") is NaN, the pandas way of missing.

    A measured non-finite loss is not missing: the ``diverged`` column is True on the rows whose
    train_loss was written as nan/inf (runfiles.write_curve), so "diverged" stays apart from "not
    evaluated" although both are NaN in a float column.
    """
    rows = runfiles.read_curve(path)
    if rows is None:
        return None
    frame = pd.DataFrame.from_records(rows, columns=None if rows else runfiles.CURVE_COLUMNS).astype(float)
    frame["diverged"] = [row.get("train_loss") is not None and not math.isfinite(row["train_loss"])
                         for row in rows]
    return frame


def cells_of(cells: dict[str, CellResult], model: str) -> list[CellResult]:
    """The planned cells of one model, lowest seed first."""
    return sorted((c for c in cells.values() if c.model == model), key=lambda c: c.seed)


def row_status(cells: list[CellResult]) -> tuple[str, str, list[CellResult]]:
    """(status, reason, done cells) of a table row over its seeds.

    A row with at least one done seed is done; its reason names any seeds missing. Without a
    done seed it is failed (if a seed failed) or not run.
    """
    if not cells:
        return NOT_RUN, "not in the configured plan", []
    done = [c for c in cells if c.status == DONE]
    failed = [c for c in cells if c.status == FAILED]
    missing = [c for c in cells if c.status == NOT_RUN]
    notes = [f"seed-{c.seed} failed: {c.reason}" for c in failed]
    if missing:
        notes.append("not run: " + ", ".join(f"seed-{c.seed}" + (f" ({c.reason})" if c.reason else "")
                                             for c in missing))
    if done:
        prefix = [f"{len(done)} of {len(cells)} seeds done"] if len(done) < len(cells) else []
        return DONE, "; ".join(prefix + notes), done
    if failed:
        return FAILED, "; ".join(notes), []
    return NOT_RUN, "; ".join(c.reason for c in missing if c.reason), []
