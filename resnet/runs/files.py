"""The files of one run folder, written atomically, and the provenance every result carries.

    <run>/checkpoint.pt   model, optimiser, schedule and data position, curve so far, MLflow run id
    <run>/curve.csv       one row per log interval (training error) with evaluations where made
    <run>/metrics.json    final numbers + provenance; its presence with status "done" ends the cell

A file is written to a temporary name in the same folder and renamed into place, so a reader (or a
run killed half-way) never sees half a file. ``atomic_open`` is the project's one way of doing so
(run files, the decode cache, the tables and figures); it creates files with the permissions the
user's umask gives any new file (0644 under umask 022), so colleagues can read a shared results/.

Formats are strict: metrics.json is RFC 8259 JSON (a non-finite number is written as null, never as
a bare NaN token), and curve.csv writes an empty field for "not measured" (e.g. no evaluation at
that row) and ``nan`` / ``inf`` / ``-inf`` for a measured non-finite value (a diverged loss).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import pickle
import platform
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import torch

from resnet.engine import distributed

CURVE_COLUMNS = [
    "iteration", "epoch", "lr", "train_loss", "train_error", "val_error", "test_error",
    "images_per_s", "wall_time_s",
]
# Columns filled only at evaluation rows. A run's rows hold NaN there for "not evaluated" (an
# evaluation itself always yields a finite error), so NaN in these columns is written as empty.
EVALUATION_COLUMNS = ("val_error", "test_error")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the file and the fix."""


CHECKPOINT_FIX = "delete it to restart this cell from iteration 0 (the other files of the run are kept)"


def umask() -> int:
    """The process's umask, read without changing it where Linux allows (/proc), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


@contextmanager
def atomic_open(path: Path) -> Iterator[IO[bytes]]:
    """A binary handle whose content appears at ``path`` only when the block ends without error.

    Written to a temporary file in the same folder, flushed to disk and renamed into place; on any
    error (or a kill) ``path`` keeps its previous content. The file gets mode 0666 minus the umask,
    like any file the user creates (mkstemp alone would make it 0600, unreadable to colleagues).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _finite_or_null(value: Any) -> Any:
    """Non-finite floats (anywhere in nested dicts and lists) as None: JSON has no NaN or Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def json_text(values: Any) -> str:
    """Strict JSON (non-finite numbers written as null; allow_nan=False refuses any that slip by)."""
    return json.dumps(_finite_or_null(values), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: Path, values: dict[str, Any]) -> None:
    atomic_write_text(path, json_text(values))


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _fmt(row.get(key), key in EVALUATION_COLUMNS) for key in CURVE_COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def _fmt(value: Any, evaluation: bool = False) -> str:
    """A curve field: empty = not measured (None; NaN in an evaluation column), else the number,
    with a measured non-finite value (a diverged loss) as 'nan', 'inf' or '-inf'."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "" if evaluation else "nan"
        return f"{value:.6g}"  # inf and -inf come out as 'inf' and '-inf'
    return str(value)


def read_curve(path: Path) -> list[dict[str, float | None]] | None:
    """curve.csv as rows of floats: None where the field is empty (not measured), float('nan') or
    +-inf where a non-finite value was measured; None if the file is absent, empty or torn."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None:
                return None
            return [{key: (None if value in ("", None) else float(value)) for key, value in row.items()
                     if key is not None} for row in reader]
    except (FileNotFoundError, ValueError, csv.Error):
        return None


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_open(path) as handle:
        torch.save(state, handle)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state, loaded with torch's weights-only unpickler.

    Only tensors and plain values (dict, list, tuple, str, int, float, bool, None) are accepted: a
    file planted in a shared results/ folder cannot run code when a cell resumes. Anything else is
    refused with the same CheckpointError as a torn file.
    """
    fix = CHECKPOINT_FIX
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
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


# ----------------------------------------------------------------------------- provenance

def git_commit() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]  # the repository

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except Exception:
        return {"commit": "unknown", "dirty": None}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(device: torch.device, seed: int) -> dict[str, Any]:
    from importlib.metadata import version

    import numpy

    # torchvision's version from its metadata: importing it would cost a CIFAR job a second or two.
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": version("torchvision"), "numpy": numpy.__version__}
    if torch.version.cuda:
        versions["cuda"] = torch.version.cuda
    return {
        "git": git_commit(),
        "versions": versions,
        "device": device_name(device),
        "host": socket.gethostname(),
        "seed": seed,
        "command": " ".join(sys.argv),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "world_size": distributed.world_size(),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
