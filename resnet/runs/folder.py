"""The run folder of a cell: where it lives, and what a new run finds there.

    results/runs/<scale>/<model>/seed-<n>/   checkpoint.pt, curve.csv, metrics.json
    results/runs/<scale>/<model>/.seed-<n>.lock  which trainer holds the folder (resnet.runs.lock)

A run folder holds the files of one recipe of one cell. Whatever a trainer finds there from another
recipe or another cell (the config changed since, a file copied in) is set aside, every file of it,
in superseded-<time>/ inside the folder: nothing computed is lost and two recipes never mix. Only
the trainer holding the folder's lock (resnet.runs.lock) calls ``prepare_run_folder``.

The workflow keeps metrics.json in place while a train job runs (the rule's output is flagged
``update``); when such a job fails, Snakemake puts back the metrics.json it found at the start. If
the trainer had set that record aside, the one put back is a copy of superseded-*/metrics.json: the
next trainer removes the copy (``restored_copy``), and ``rerun_token`` makes the workflow rerun the
cell rather than take the copy for its result.
"""
from __future__ import annotations

import errno
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resnet.config.job import Job
    from resnet.runs.records import Metrics

RESULTS = Path("results")  # relative to the working directory, like every output of the workflow
# The files a trainer writes into its run folder (each through files.atomic_open, whose temporary
# files are .<name>.<random>.tmp beside them).
RUN_FILES = ("checkpoint.pt", "curve.csv", "metrics.json")
SUPERSEDED = "superseded-"
# Room a checkpoint write needs beyond the checkpoint itself: curve.csv and metrics.json.
ROOM_MARGIN_BYTES = 1 << 20


def runs_root(scale: str) -> Path:
    """Where the run folders of a scale live: results/runs/<scale>/ (the workflow's RUNS)."""
    return RESULTS / "runs" / scale


def run_dir(scale: str, cell: str) -> Path:
    """Where a cell's files live: results/runs/<scale>/<model>/seed-<n> (``cell`` is Cell.id)."""
    return runs_root(scale) / cell


def restored_copy(out: Path) -> Path | None:
    """The superseded-*/metrics.json that <out>/metrics.json is a byte-for-byte copy of, if any.

    Such a copy is what Snakemake puts back when a train job fails after its trainer had set the
    older run aside: the record itself is in the superseded folder."""
    current = Path(out) / "metrics.json"
    if not current.is_file():
        return None
    data = current.read_bytes()
    for kept in sorted(Path(out).glob(f"{SUPERSEDED}*/metrics.json")):
        if kept.stat().st_size == len(data) and kept.read_bytes() == data:
            return kept
    return None


def rerun_token(out: Path, recipe: dict) -> str:
    """What the workflow's train rule compares (param retry_of) to rerun a cell that needs it.

    A done record of this recipe gives the token its run was started with (metrics.json retry_of),
    so a finished cell stays finished. Any other record (failed, another recipe's, a restored copy)
    gives its failure id (or status) and the file's modification time: a record Snakemake put back
    after a failed job has a new time, so the next run retries the cell instead of taking the old
    record for the job's output. Reads metrics.json and its stat only (the workflow's parse time).
    """
    from resnet.runs.records import Metrics, RecordError

    path = Path(out) / "metrics.json"
    try:
        metrics = Metrics.read(path)
    except RecordError:
        return ""  # the tables say why; deleting the file reruns the cell
    if metrics is None:
        return ""
    if metrics.done and metrics.recipe == recipe and restored_copy(out) is None:
        return metrics.retry_of or ""
    return f"{metrics.failure_id or metrics.status}@{path.stat().st_mtime_ns}"


def prepare_run_folder(job: Job, out: Path) -> Metrics | None:
    """Make ``out`` a folder of ``job``'s recipe alone; return its metrics if that recipe is done.

    Called by the trainer that holds the folder's lock, before it trains. It removes its own
    leftovers (temporary files of a write cut short, a restored copy of a superseded record) and
    sets aside, in superseded-<time>/, every file when any of them is of another recipe or cell
    (metrics.json or checkpoint.pt records it), or when a curve is left without its checkpoint.
    """
    from resnet.runs.records import Checkpoint, Metrics  # torch: not for the paths above (`python -m resnet plan`)

    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:  # a write cut short by a kill; the real file is intact
        for stale in out.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    kept = restored_copy(out)
    if kept is not None:
        (out / "metrics.json").unlink()
        print(f"{out}: metrics.json was a copy of {kept.relative_to(out)} (put back by the workflow after a "
              f"failed job); the copy is removed, the record stays there", file=sys.stderr)
    recipe = job.recipe.to_dict()
    metrics = Metrics.read(out / "metrics.json")
    if metrics is not None and metrics.recipe == recipe and metrics.done:
        return metrics  # done wins: the report checks that its files agree
    found = {} if metrics is None else {"metrics.json": metrics.recipe}
    if (out / "checkpoint.pt").exists():
        found["checkpoint.pt"] = Checkpoint.load(out / "checkpoint.pt").recipe
    foreign = {name: other for name, other in found.items() if other != recipe}
    if foreign:
        name, other = next(iter(foreign.items()))
        changed = sorted(key for key in set(recipe) | set(other) if other.get(key) != recipe.get(key))
        _set_aside(out, f"recipe changed ({', '.join(changed)}): {name} was made with another")
    elif (out / "curve.csv").exists() and not (out / "checkpoint.pt").exists():
        _set_aside(out, "curve.csv has no checkpoint to resume from")
    return None


def _set_aside(out: Path, why: str) -> Path:
    """Move every file of the folder (not the superseded folders) into superseded-<time>/."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    keep, number = out / f"{SUPERSEDED}{stamp}", 1
    while keep.exists():
        number += 1
        keep = out / f"{SUPERSEDED}{stamp}-{number}"
    keep.mkdir()
    for item in out.iterdir():
        if not item.name.startswith(SUPERSEDED):
            shutil.move(str(item), keep / item.name)
    print(f"{out}: {why}; the older run's files are kept in {keep.name}/, this recipe starts at iteration 0",
          file=sys.stderr)
    return keep


def check_room(out: Path, checkpoint_bytes: int) -> None:
    """Refuse to start a training whose checkpoint cannot be written (OSError ENOSPC, one line).

    A checkpoint is written beside the previous one and then renamed over it, so the folder's file
    system needs the new checkpoint's size free, plus a little for curve.csv and metrics.json."""
    need = checkpoint_bytes + ROOM_MARGIN_BYTES
    stats = os.statvfs(out)
    free = stats.f_bavail * stats.f_frsize
    if free < need:
        raise OSError(errno.ENOSPC, f"{free / 2**20:.1f} MiB free, a checkpoint of this cell needs about "
                                    f"{need / 2**20:.1f} MiB", str(out))
