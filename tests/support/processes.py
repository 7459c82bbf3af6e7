"""``python -m resnet`` as a subprocess, with the thread count the training tests use."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT

PYTHON = sys.executable

# Threads for the training tests, in process (torch.set_num_threads) and in the subprocesses they
# start (OMP_NUM_THREADS). One by default: on a small shared machine, oversubscribed OpenMP threads
# spin and a step of ResNet-20 can take 50x longer than with one thread. A resumed run is compared
# with an uninterrupted one bit for bit, so both must use the same number of threads.
TEST_THREADS = int(os.environ.get("RESNET_TEST_THREADS", "1"))


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for ``python -m resnet`` subprocesses: unbuffered, TEST_THREADS threads."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(TEST_THREADS), **extra}


def run_cli(*args: str, cwd: Path = REPO_ROOT, timeout: float = 300, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """``python -m resnet ARGS`` from the repository root; text output captured."""
    return subprocess.run([PYTHON, "-m", "resnet", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(**(env or {})))
