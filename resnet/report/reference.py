"""Reference results: cells the project trained at the paper's recipe, kept in results-reference/.

    results-reference/<scale>/<model>/seed-<n>/   metrics.json, curve.csv, weights.pt, curve.png
                                                  (README.md there); checkpoint.pt while it trains

A table row that the user's own run folders leave without a result (the cell is not in the plan,
or not trained yet) shows the reference result instead, marked: status ``reference`` and a reason
naming the folder. A row with any result of the user's own shows only the user's; the two are never
averaged together, and a reference of another scale is never used.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from resnet.config.load import REPO_ROOT
from resnet.report.cells import DONE, NOT_RUN, CellResult, read_cell
from resnet.config.sections import Cell
from resnet.paper.names import parse_model_name
from resnet.report.curves import write_cell_curves
from resnet.runs import files as runfiles
from resnet.runs.records import Checkpoint, Metrics

REFERENCE_ROOT = REPO_ROOT / "results-reference"
REFERENCE = "reference"


def reference_cells(scale: str, model: str, root: Path | None = None) -> list[CellResult]:
    """The done reference cells of ``model`` at ``scale`` (in ``root``, default REFERENCE_ROOT), lowest seed first."""
    root = Path(root or REFERENCE_ROOT)
    found = []
    for folder in sorted((Path(root) / scale / model).glob("seed-*")):
        if not folder.name[len("seed-"):].isdigit():
            continue
        cell = Cell(model, int(folder.name[len("seed-"):]), parse_model_name(model).dataset)
        result = read_cell(cell, folder)
        if result.status == DONE:
            result.status = REFERENCE
            result.reason = (f"reference result ({folder.relative_to(root.parent)}), not trained by this "
                             f"run: {reference_note(result)}")
            found.append(result)
    return found


def reference_note(result: CellResult) -> str:
    """Where and on what a reference cell was trained, from its provenance."""
    provenance = result.metrics.get("provenance") or {}
    data = result.metrics.get("data") or {}
    return f"trained on {provenance.get('device', 'an unknown device')}, data {data.get('kind', '?')} {data.get('source', '?')}"


def with_reference(scale: str, model: str, row: tuple[str, str, list[CellResult]],
                   root: Path | None = None) -> tuple[str, str, list[CellResult]]:
    """A table row's (status, reason, cells with results): the user's own, or, where the user has no
    result and none was tried (not run), the reference's."""
    status, reason, done = row
    if status != NOT_RUN:
        return row
    references = reference_cells(scale, model, root)
    if not references:
        return row
    return REFERENCE, references[0].reason + (f" ({len(references)} seeds)" if len(references) > 1 else ""), references


def keep_finished(run: Path, keep: Path) -> Path | None:
    """Copy a finished run folder's results into its reference folder ``keep``: metrics.json,
    curve.csv, weights.pt (the model's state dict alone) and curve.png, each written whole and then
    renamed (resnet.runs.files.atomic_open); the checkpoint kept there while it trained is removed
    last. Returns ``keep``, or None (nothing touched) while the run is not done."""
    run, keep = Path(run), Path(keep)
    metrics = Metrics.read(run / "metrics.json")
    if metrics is None or not metrics.done:
        return None
    with runfiles.atomic_open(keep / "weights.pt") as handle:
        torch.save(Checkpoint.load(run / "checkpoint.pt").model, handle)
    for name in ("metrics.json", "curve.csv"):
        runfiles.atomic_write_bytes(keep / name, (run / name).read_bytes())
    figure = write_cell_curves([keep / "metrics.json"], keep / ".figure", metrics.scale)[0]
    figure.replace(keep / "curve.png")
    shutil.rmtree(keep / ".figure")
    (keep / "checkpoint.pt").unlink(missing_ok=True)
    return keep
