"""The whole workflow in a throw-away copy of the repository, for end-to-end tests.

    repo = copy_repo(tmp_path)                    # tmp_path/repo + tmp_path/shared -> ../shared
    overrides = write_overrides(repo, SMOKE_OVERRIDES)
    proc = run_snakemake(repo, "--cores", "2", "--configfile", overrides.name)

The session fixture ``smoke_results_local`` (register it with ``pytest_plugins =
["tests.support.workflow"]`` in the test module; importing it by name would give each module its own
copy, and the run would happen once per module) runs the smoke plan (config.yaml's default scale:
real CIFAR-10 from ../shared/data, synthetic ImageNet) locally once per test session and returns
the copy's root; its results/ and results/mlflow.db are then shared by every test that reads them
(the SLURM workflow test compares against it, the MLflow UI test browses it).

The copy holds the working tree (tracked and untracked files) minus .venv, results/ and
.snakemake/, and a git repository at the checkout's commit (its objects borrowed, nothing copied),
so that the runs record the real commit; a sibling ``shared`` links to the real ../shared so that
config.yaml's ``../shared/data/...`` resolves. Commands run with the project's .venv/bin first on
PATH and the copy's own code first on PYTHONPATH.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tests.support import CIFAR_TARBALL, REPO_ROOT, SHARED, require_cifar  # noqa: F401 (CIFAR_TARBALL: for importers)

VENV_BIN = Path(sys.executable).parent

# Not copied: environments, history, outputs and caches of this checkout.
_SKIP_TOP = {".venv", ".git", "results", ".snakemake", ".pytest_cache", ".bench-data", "data-cache"}
_SKIP_ANY = {"__pycache__"}

# The smoke plan as the end-to-end tests run it: CPU, deterministic kernels and one thread per job,
# so that two runs of a cell (locally, under SLURM, resumed or not) give the same numbers; job sizes
# that fit a small single-node cluster (GPUs are requested, which the test cluster fakes; the
# training itself runs on the CPU). The plan keeps one cell of each kind (plain and residual, CIFAR
# and ImageNet) so that every table and figure is built: the full smoke plan (ResNet-110 x 5 seeds,
# ResNet-1202, nine ImageNet nets) takes over 20 minutes on two cores, too long to run twice in CI.
SMOKE_OVERRIDES = {
    "plan": {"cifar10": True, "imagenet": True, "cifar_plain_depths": [20], "cifar_resnet_depths": [20],
             "cifar_seeds": [0], "resnet110_seeds": [], "imagenet_models": ["plain-18", "resnet-18"],
             "imagenet_seeds": [0]},
    "engine": {"device": "cpu", "deterministic": True},
    "resources": {
        "cifar10": {"gpus": 1, "cpus": 1, "mem_mb": 2000, "runtime_min": 20},
        "imagenet": {"gpus": 2, "cpus": 1, "mem_mb": 3000, "runtime_min": 20},
    },
}

# Curve columns that are the reproduced numbers (the others are timings).
CURVE_NUMBERS = ["iteration", "epoch", "lr", "train_loss", "train_error", "val_error", "test_error"]


def copy_repo(dest: Path) -> Path:
    """Copy the working tree to dest/repo, link dest/shared to ../shared; return dest/repo."""
    dest = Path(dest)
    repo = dest / "repo"

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {name for name in names if name in _SKIP_ANY or name.endswith(".egg-info")}
        if Path(directory) == REPO_ROOT:
            skipped |= {name for name in names if name in _SKIP_TOP or name.startswith("slurm-")}
        return skipped

    shutil.copytree(REPO_ROOT, repo, ignore=ignore, symlinks=True)
    (dest / "shared").symlink_to(SHARED, target_is_directory=True)
    _git_at_checkout_commit(repo)
    return repo


def checkout_commit() -> str | None:
    """The checkout's HEAD commit, or None where the checkout is not a git repository."""
    found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def _git_at_checkout_commit(repo: Path) -> None:
    """Make the copy a git repository whose HEAD is the checkout's commit and whose index is its
    tree: ``git status`` in the copy then says what it says in the checkout. The objects are the
    checkout's, borrowed through git's alternates; the checkout itself is only read."""
    commit = checkout_commit()
    if commit is None:
        return
    common = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    objects = (REPO_ROOT / common).resolve() / "objects"

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)

    git("init", "-q")
    (repo / ".git" / "objects" / "info" / "alternates").write_text(f"{objects}\n")
    git("update-ref", "HEAD", commit)
    git("read-tree", "HEAD")
    git("update-index", "-q", "--refresh")


def tiny_cifar_plan(cache: Path, plain_depths: tuple[int, ...] = (), **extra) -> dict:
    """Overrides for a plan of ResNet-20 (and plain nets of ``plain_depths``) at seed 0: 4 CPU
    iterations of batch 16 on CIFAR-10 subsets, checkpoints every 2; ``extra`` laid over it."""
    from resnet.config.load import lay_over

    overrides = {
        "plan": {"cifar10": True, "imagenet": False, "cifar_plain_depths": list(plain_depths),
                 "cifar_resnet_depths": [20], "cifar_seeds": [0], "resnet110_seeds": [], "imagenet_models": [],
                 "imagenet_seeds": [0]},
        "scales": {"smoke": {"cifar10": {"batch_size": 16, "bn_group": 8, "iterations": 4, "milestones": [2],
                                         "train_subset": 64, "test_subset": 64, "val_size": 32, "eval_every": 4,
                                         "log_every": 2},
                             "engine": {"device": "cpu", "deterministic": True, "checkpoint_every": 2,
                                        "workers": 0},
                             "data": {"cache": str(cache)}}},
        "resources": {"cifar10": {"gpus": 0, "cpus": 1, "mem_mb": 2000, "runtime_min": 20}},
    }
    return lay_over(overrides, extra)


def write_overrides(repo: Path, overrides: dict, name: str = "test-overrides.yaml") -> Path:
    """A --configfile for the copy (merged over config.yaml by Snakemake)."""
    path = Path(repo) / name
    path.write_text(yaml.safe_dump(overrides, sort_keys=False))
    return path


def workflow_env(**extra: str) -> dict[str, str]:
    """The environment for Snakemake in a copy: the project's venv first on PATH, no stray SLURM job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_snakemake(repo: Path, *args: str, timeout: float = 900, env: dict | None = None,
                  log_name: str = "snakemake.log") -> subprocess.CompletedProcess:
    """Run ``snakemake ARGS`` in the copy; output goes to repo/<log_name> and is returned too.

    Stopped with SIGINT on timeout (a hung Snakemake ignores SIGTERM; SIGINT cancels its jobs)."""
    repo = Path(repo)
    log_path = repo / log_name
    cmd = [str(VENV_BIN / "snakemake"), *args]
    env = {**(env or workflow_env()), "PYTHONPATH": str(repo)}  # the copy's code, not the checkout's
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 2)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
            output = log_path.read_text(errors="replace")
            raise TimeoutError(f"snakemake {' '.join(args)} did not finish in {timeout} s:\n{output[-5000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, log_path.read_text(errors="replace"), "")


# ---------------------------------------------------------------------------- reading results

def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def curve_numbers(path: Path) -> list[dict[str, str]]:
    """The reproduced columns of a curve.csv, as written (6 significant digits)."""
    return [{key: row[key] for key in CURVE_NUMBERS} for row in read_csv(path)]


def run_folders(repo: Path) -> dict[str, Path]:
    """{'cifar-resnet-20/seed-0': folder, ...} for every run folder with a metrics.json."""
    runs = Path(repo) / "results" / "runs"
    return {f"{m.parent.parent.name}/{m.parent.name}": m.parent
            for m in sorted(runs.glob("*/*/seed-*/metrics.json"))}


def check_no_partial_files(results: Path) -> list[str]:
    """Problems with results/: leftover temporary files, JSON or CSV files that do not parse."""
    problems = []
    for path in sorted(Path(results).rglob("*")):
        if not path.is_file():
            continue
        if path.name.endswith(".tmp"):
            problems.append(f"temporary file left: {path}")
        elif path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except ValueError as error:
                problems.append(f"unparsable JSON {path}: {error}")
        elif path.suffix == ".csv":
            try:
                with open(path, newline="") as handle:
                    rows = list(csv.reader(handle))
                if rows and any(len(row) != len(rows[0]) for row in rows):
                    problems.append(f"ragged CSV {path}")
            except (csv.Error, UnicodeDecodeError) as error:
                problems.append(f"unparsable CSV {path}: {error}")
    return problems


# ---------------------------------------------------------------------------- the local smoke run

@pytest.fixture(scope="session")
def smoke_results_local(tmp_path_factory) -> Path:
    """The smoke plan run locally (``snakemake --cores 2``) once per session; returns the copy's root.

    Its results/ holds the tables, figures, run folders and the MLflow store (results/mlflow.db)."""
    require_cifar()
    repo = copy_repo(tmp_path_factory.mktemp("smoke-local"))
    overrides = write_overrides(repo, SMOKE_OVERRIDES)
    t0 = time.monotonic()
    proc = run_snakemake(repo, "--cores", "2", "--configfile", overrides.name, timeout=1500)
    print(f"\nlocal smoke plan: snakemake exit {proc.returncode} after {time.monotonic() - t0:.0f} s in {repo}")
    assert proc.returncode == 0, f"local smoke run failed:\n{proc.stdout[-6000:]}"
    return repo
