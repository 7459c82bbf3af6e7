"""scripts/reference-run.sh, as a fresh clone runs it: the reference plan's cell resumes from the
checkpoint results-reference/ keeps, trains to its end through Snakemake, and its finished files
replace that checkpoint.

The reference plan here is the tiny ResNet-20 cell (4 iterations, checkpoints every 2) in a
throw-away copy of the repository; the copy's own reference cells are set aside.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.support.workflow import (
    VENV_BIN,
    copy_repo,
    curve_numbers,
    tiny_cifar_plan,
    workflow_env,
)

pytestmark = pytest.mark.slow

CELL = "cifar-resnet-20/seed-0"


def test_a_fresh_clone_resumes_the_kept_checkpoint_and_keeps_the_finished_files(tmp_path, cifar_cache_dir):
    repo = copy_repo(tmp_path)
    shutil.rmtree(repo / "results-reference" / "paper")
    (repo / "results-reference" / "config.yaml").write_text(yaml.safe_dump(tiny_cifar_plan(cifar_cache_dir)))
    env = workflow_env(PYTHONPATH=str(repo), PYTHON=sys.executable, SNAKEMAKE=str(VENV_BIN / "snakemake"),
                       OMP_NUM_THREADS="1", COPY_EVERY="1")

    # The cell stopped by a signal at its checkpoint at iteration 2, trained on the plan the script
    # reads (the reference config laid over config.yaml); its checkpoint and curve are what
    # results-reference/ keeps, and a fresh clone has nothing else.
    stopped = subprocess.run(
        [sys.executable, "-m", "resnet", "train", "--config", "config.yaml", "--config",
         "results-reference/config.yaml", "--cell", CELL, "--quiet"],
        cwd=repo, env={**env, "RESNET_SIGNAL_AT": "checkpoint:2"}, capture_output=True, text=True, timeout=300, check=False)
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    run, keep = repo / "results/runs/smoke" / CELL, repo / "results-reference/smoke" / CELL
    keep.mkdir(parents=True)
    for name in ("checkpoint.pt", "curve.csv"):
        shutil.move(run / name, keep / name)
    kept_curve = curve_numbers(keep / "curve.csv")
    assert [row["iteration"] for row in kept_curve] == ["2"]
    shutil.rmtree(repo / "results")

    result = subprocess.run(["bash", "scripts/reference-run.sh"], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=900, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert (f"reference-run: results/runs/smoke/{CELL} resumes from results-reference/smoke/{CELL}/checkpoint.pt"
            in result.stdout), result.stdout
    log = (repo / "results/logs/smoke" / f"{CELL}.log").read_text()
    assert "resuming at iteration 2" in log, log[-3000:]

    assert sorted(path.name for path in keep.iterdir()) == ["curve.csv", "curve.png", "metrics.json", "weights.pt"]
    metrics = json.loads((keep / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["iterations"] == 4 and metrics["interruptions"] == 1, metrics
    assert (keep / "metrics.json").read_bytes() == (run / "metrics.json").read_bytes()
    curve = curve_numbers(keep / "curve.csv")
    assert [row["iteration"] for row in curve] == ["2", "4"] and curve[0] == kept_curve[0]
    assert f"reference-run: results/runs/smoke/{CELL} done, its files are in results-reference/smoke/{CELL}" \
        in result.stdout
    assert not (repo / "results" / "table6.csv").exists()  # the cells are the targets, not the report

    # A clone whose reference cells are all done trains nothing again, though its results/ is empty.
    shutil.rmtree(repo / "results")
    again = subprocess.run(["bash", "scripts/reference-run.sh"], cwd=repo, env=env, capture_output=True,
                           text=True, timeout=300, check=False)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "reference-run: every cell of the plan is done" in again.stdout
    assert f"results/runs/smoke/{CELL} is done, its files are in results-reference/smoke/{CELL}" in again.stderr
    assert not (repo / "results").exists()
