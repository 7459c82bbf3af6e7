"""What makes Snakemake rerun a cell, shown through Snakemake itself (real runs and dry runs).

* A cell's recipe is its identity: changing the engine, a data location, the MLflow store or the
  resources reruns no finished cell; changing a recipe value reruns exactly the cells it touches.
* A failed cell is retried by the next run, with nothing written at parse time: a dry run lists it
  and changes nothing on disk; bad input inside a job is recorded once, not resubmitted.

A two-cell CIFAR plan (plain-20 and ResNet-20, a few iterations) in a throw-away copy of the
repository, with the session's decoded CIFAR cache.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from tests.support.workflow import (
    copy_repo,
    run_snakemake,
    tiny_cifar_plan,
    write_overrides,
)

pytestmark = pytest.mark.slow

CELLS = ("cifar-plain-20/seed-0", "cifar-resnet-20/seed-0")


def plan(cache: Path, **extra) -> dict:
    return tiny_cifar_plan(cache, plain_depths=(20,), **extra)


def planned_trains(output: str) -> set[str]:
    """The cells a dry run would train (their metrics.json outputs)."""
    return set(re.findall(r"rule train:\s+output: results/runs/smoke/([a-z0-9.\-]+/seed-\d+)/metrics\.json", output))


def table6_status(repo: Path) -> dict[str, str]:
    """Table 6's status of the trained rows (the plain nets are in Figure 6, not in Table 6)."""
    with open(repo / "results" / "table6.csv", newline="") as handle:
        return {row["model"]: row["status"] for row in csv.DictReader(handle)
                if row["model"] and row["status"] != "not run"}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under results/ with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted((root / "results").rglob("*")) if p.is_file()}


@pytest.fixture
def repo(tmp_path, cifar_cache_dir) -> Path:
    return copy_repo(tmp_path)


def dry_run(repo: Path, overrides: dict) -> set[str]:
    write_overrides(repo, overrides, "dry.yaml")
    proc = run_snakemake(repo, "-n", "--cores", "2", "--configfile", "dry.yaml", log_name="dry.log")
    assert proc.returncode == 0, proc.stdout[-4000:]
    return planned_trains(proc.stdout)


def test_failed_cells_are_retried_and_only_recipe_changes_rerun_cells(repo, cifar_cache_dir, tmp_path):
    base = plan(cifar_cache_dir)
    write_overrides(repo, base, "base.yaml")
    assert dry_run(repo, base) == set(CELLS)  # nothing trained yet: both cells planned
    broken = repo / "results" / "runs" / "smoke" / "cifar-resnet-20" / "seed-0"
    broken.mkdir(parents=True)
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")  # bad input only the job can see

    first = run_snakemake(repo, "--cores", "2", "--configfile", "base.yaml")
    assert first.returncode == 0, first.stdout[-6000:]
    failed = json.loads((broken / "metrics.json").read_text())
    assert failed["status"] == "failed" and "checkpoint" in failed["reason"] and failed["failure_id"]
    log = (repo / "results" / "logs" / "smoke" / "cifar-resnet-20" / "seed-0.log").read_text()
    assert log.count("failed: cifar-resnet-20/seed-0") == 1, log  # recorded once, not resubmitted
    assert "Trying to restart" not in first.stdout
    assert table6_status(repo) == {"cifar-resnet-20": "failed"}

    # A dry run (and --unlock, --list-rules, --summary) lists the retry and writes nothing.
    before = snapshot(repo)
    assert dry_run(repo, base) == {"cifar-resnet-20/seed-0"}
    for args in (["--unlock"], ["--list-rules"], ["--summary"]):
        proc = run_snakemake(repo, *args, "--cores", "1", "--configfile", "base.yaml", log_name="other.log")
        assert proc.returncode == 0, proc.stdout[-3000:]
    assert snapshot(repo) == before

    # The cause removed, the next run retries the cell and it ends done; then nothing is left to do.
    (broken / "checkpoint.pt").unlink()
    second = run_snakemake(repo, "--cores", "2", "--configfile", "base.yaml")
    assert second.returncode == 0, second.stdout[-6000:]
    done = json.loads((broken / "metrics.json").read_text())
    # the token it was started from: the failure's id and its record's time (resnet.runs.folder.rerun_token)
    assert done["status"] == "done" and done["retry_of"].startswith(failed["failure_id"] + "@")
    assert table6_status(repo) == {"cifar-resnet-20": "done"}
    assert dry_run(repo, base) == set()

    # Engine, data location, store (and when runs reach it) and resources: nothing to do, no cell retrains.
    moved_cache = tmp_path / "elsewhere"
    moved_cache.symlink_to(cifar_cache_dir, target_is_directory=True)
    others = plan(cifar_cache_dir, scales={"smoke": {"engine": {"checkpoint_every": 1, "channels_last": True},
                                                     "data": {"cache": str(moved_cache)},
                                                     "mlflow": {"live": True}}},
                  mlflow={"tracking_uri": f"sqlite:///{tmp_path}/other.db", "experiment": "elsewhere"},
                  resources={"cifar10": {"cpus": 2, "mem_mb": 3000}, "max_resubmits": 3})
    assert dry_run(repo, others) == set()

    # A recipe value that touches only the residual net (the warm-up applies from depth 20 here).
    warm = plan(cifar_cache_dir, recipes={"cifar10": {"warmup": {"min_depth": 20, "lr": 0.01,
                                                                 "until_train_error": 80.0}}})
    assert dry_run(repo, warm) == {"cifar-resnet-20/seed-0"}
    # One that touches both.
    assert dry_run(repo, plan(cifar_cache_dir, scales={"smoke": {"cifar10": {"iterations": 6}}})) == set(CELLS)
    # A warm-up change no cell of the plan is deep enough for: nothing.
    deep_only = plan(cifar_cache_dir, recipes={"cifar10": {"warmup": {"min_depth": 110, "lr": 0.02,
                                                                      "until_train_error": 70.0}}})
    assert dry_run(repo, deep_only) == set()
