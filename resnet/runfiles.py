"""The files of one run folder, written atomically, and the provenance every result carries.

    <run>/checkpoint.pt   model, optimiser, schedule and data position, curve so far, MLflow run id
    <run>/curve.csv       one row per log interval (training error) with evaluations where made
    <run>/metrics.json    final numbers + provenance; its presence with status "done" ends the cell

A file is written to a temporary name in the same folder and renamed into place, so a reader (or a
run killed half-way) never sees half a file.
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

CURVE_COLUMNS = [
    "iteration", "epoch", "lr", "train_loss", "train_error", "val_error", "test_error",
    "images_per_s", "wall_time_s",
]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the file and the fix."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, values: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(values, indent=2, sort_keys=False) + "\n")


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
        writer.writerow({key: _fmt(row.get(key)) for key in CURVE_COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated, overwritten or foreign file
        raise CheckpointError(
            f"checkpoint '{path}' is unreadable ({type(error).__name__}): delete it to restart "
            f"this cell from iteration 0 (the other files of the run are kept)"
        ) from None


# ----------------------------------------------------------------------------- provenance

def git_commit() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent

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
    import numpy
    import torchvision

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "numpy": numpy.__version__}
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
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
