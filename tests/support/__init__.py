"""What the test suite shares: where the repository and the shared data are, what a missing piece
does to a test (it skips, and fails under CI=true), and helpers for configs and cells (configs.py),
``python -m resnet`` subprocesses (processes.py), a real Snakemake run in a copy of the checkout
(workflow.py), a local SLURM cluster (slurm.py), the MLflow store (mlflow_store.py), the MLflow UI
in headless Chromium (mlflow_ui.py) and the paper's text (paper_text.py). Fixtures live in
tests/conftest.py."""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"
CIFAR_TARBALL = SHARED / "data" / "cifar10-jpeg.tar.gz"


def in_ci() -> bool:
    """True where the environment says CI (CI=true, 1 or yes): nothing may be skipped there."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip the test with ``reason``; under CI=true fail instead, so that CI never skips silently."""
    if in_ci():
        pytest.fail(f"CI=true, so not skipping: {reason}", pytrace=False)
    pytest.skip(reason)


def require_cifar() -> Path:
    """The real JPEG CIFAR-10 tarball (../shared/data next to the repository), or skip_or_fail."""
    if not CIFAR_TARBALL.is_file():
        skip_or_fail(f"real CIFAR-10 tarball not found at {CIFAR_TARBALL} (../shared/data next to the repository)")
    return CIFAR_TARBALL
