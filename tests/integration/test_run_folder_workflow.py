"""Through the workflow, nothing a cell computed is lost and no table keeps a row its files no longer back.

A one-cell plan (CIFAR ResNet-20, a few iterations) in a throw-away copy of the repository, run
with real Snakemake as a user would, one step after another:

1. a changed recipe (lr) reruns the cell, and superseded-<time>/ holds every file of the older run,
   metrics.json included (Snakemake deletes a job's outputs before it starts, unless flagged);
2. a metrics.json made unreadable: the table says failed and to delete it; deleted, the next run
   recomputes the cell from its checkpoint and the table is done again;
3. the whole run folder moved aside: the next run trains the cell again, and then nothing is left
   to do;
4. a train job killed (SIGKILL) after setting the older run aside: Snakemake puts that run's
   metrics.json back and counts the job as finished, yet the next run reruns the cell, removes the
   copy and resumes the new recipe from its checkpoint; the older run stays whole.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from resnet.config.load import lay_over
from resnet.runs.records import load_checkpoint
from tests.support.workflow import (
    VENV_BIN,
    copy_repo,
    run_snakemake,
    tiny_cifar_plan,
    workflow_env,
    write_overrides,
)

pytestmark = pytest.mark.slow

CELL = "cifar-resnet-20/seed-0"
RUN_FILES = ("checkpoint.pt", "curve.csv", "metrics.json")


def plan(cache: Path) -> dict:
    return tiny_cifar_plan(cache)


def run(repo: Path, *configfiles: str, dry: bool = False):
    args = (["-n"] if dry else []) + ["--cores", "2", "--configfile", *configfiles]
    proc = run_snakemake(repo, *args, log_name="dry.log" if dry else "snakemake.log")
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc


def table6(repo: Path) -> dict[str, str]:
    with open(repo / "results" / "table6.csv", newline="") as handle:
        (row,) = [row for row in csv.DictReader(handle) if row["model"] == "cifar-resnet-20"]
    return row


def files_of(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in RUN_FILES if (folder / name).exists()}


def test_rerun_cells_keep_every_file_and_a_deleted_record_reruns_its_cell(tmp_path, cifar_cache_dir):
    repo = copy_repo(tmp_path)
    write_overrides(repo, plan(cifar_cache_dir), "tiny.yaml")
    folder = repo / "results" / "runs" / "smoke" / CELL
    run(repo, "tiny.yaml")
    first = files_of(folder)
    assert set(first) == set(RUN_FILES) and table6(repo)["status"] == "done"

    # 1. Another lr: the cell reruns; the older run is kept whole, its metrics.json too.
    write_overrides(repo, lay_over(plan(cifar_cache_dir), {"recipes": {"cifar10": {"lr": 0.2}}}), "lr.yaml")
    run(repo, "tiny.yaml", "lr.yaml")
    (kept,) = folder.glob("superseded-*")
    assert files_of(kept) == first
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["recipe"]["lr"] == pytest.approx(0.2 * 16 / 128)
    assert run(repo, "tiny.yaml", "lr.yaml", dry=True).stdout.count("rule train") == 0

    # 2. An unreadable record: the table says so and how to fix it; the fix works.
    (folder / "metrics.json").write_text("{not json")
    run(repo, "tiny.yaml", "lr.yaml")
    row = table6(repo)
    assert row["status"] == "failed" and "delete it to rerun the cell" in row["reason"]
    assert (folder / "metrics.json").read_text() == "{not json"  # kept as it was, not overwritten
    (folder / "metrics.json").unlink()
    run(repo, "tiny.yaml", "lr.yaml")
    assert table6(repo)["status"] == "done"
    again = json.loads((folder / "metrics.json").read_text())
    assert again["final"]["test_error"] == metrics["final"]["test_error"]  # recomputed from the checkpoint

    # 3. The run folder moved aside: the cell is trained again.
    shutil.move(str(folder), str(tmp_path / "aside"))
    run(repo, "tiny.yaml", "lr.yaml")
    assert set(files_of(folder)) == set(RUN_FILES) and table6(repo)["status"] == "done"
    assert "Nothing to be done" in run(repo, "tiny.yaml", "lr.yaml", dry=True).stdout


def test_a_killed_job_whose_record_snakemake_puts_back_is_rerun_and_resumed(tmp_path, cifar_cache_dir):
    repo = copy_repo(tmp_path)
    write_overrides(repo, plan(cifar_cache_dir), "tiny.yaml")
    longer = {"recipes": {"cifar10": {"lr": 0.2}}, "resources": {"max_resubmits": 0},
              "scales": {"smoke": {"cifar10": {"iterations": 200, "milestones": [100]}}}}
    write_overrides(repo, lay_over(plan(cifar_cache_dir), longer), "longer.yaml")
    folder = repo / "results" / "runs" / "smoke" / CELL
    run(repo, "tiny.yaml")
    first = files_of(folder)

    # The new recipe's job, killed once it has a checkpoint of its own (an OOM kill, a node lost).
    with open(repo / "killed.log", "w") as log:
        snakemake = subprocess.Popen([str(VENV_BIN / "snakemake"), "--cores", "2", "--configfile", "tiny.yaml",
                                      "longer.yaml"], cwd=repo, env=workflow_env(), stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while not _new_checkpoint(folder / "checkpoint.pt"):
                assert snakemake.poll() is None and time.monotonic() < deadline, "no checkpoint of the new recipe"
                time.sleep(0.2)
            holder = (folder.parent / ".seed-0.lock").read_text()  # "pid N on host H since ..."
            os.kill(int(holder.split()[1]), signal.SIGKILL)
            assert snakemake.wait(timeout=600) != 0
        finally:
            if snakemake.poll() is None:
                os.killpg(snakemake.pid, signal.SIGKILL)
    assert "Restored previous version" in (repo / "killed.log").read_text()
    (kept,) = folder.glob("superseded-*")
    assert files_of(kept) == first and (folder / "metrics.json").read_bytes() == first["metrics.json"]

    dry = run(repo, "tiny.yaml", "longer.yaml", dry=True).stdout
    assert "rule train" in dry and "Params have changed" in dry  # not taken for the job's result
    run(repo, "tiny.yaml", "longer.yaml")
    log = (repo / "results" / "logs" / "smoke" / f"{CELL}.log").read_text()
    assert f"metrics.json was a copy of {kept.name}/metrics.json" in log and "resuming at iteration" in log
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["recipe"]["iterations"] == 200
    assert list(folder.glob("superseded-*")) == [kept] and files_of(kept) == first
    assert table6(repo)["status"] == "done"


def _new_checkpoint(path: Path) -> bool:
    try:
        return load_checkpoint(path)["recipe"]["iterations"] == 200
    except Exception:  # absent, or being replaced this very moment
        return False
