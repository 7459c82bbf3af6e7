"""What the test suite shares: where the repository and the shared data are, and helpers for a
real Snakemake run (workflow.py), a local SLURM cluster (slurm.py), the MLflow store (mlflow_store.py)
and the MLflow UI in headless Chromium (mlflow_ui.py)."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CIFAR_TARBALL = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
