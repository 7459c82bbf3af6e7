"""What every result carries: the code (git commit), library versions, device, host, seed, command."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch


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


def provenance(device: torch.device, seed: int, world_size: int = 1) -> dict[str, Any]:
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
        "world_size": world_size,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
