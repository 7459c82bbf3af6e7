"""From ILSVRC2012's three archives to a trained ImageNet cell with nothing outside the workflow:
`snakemake` prepares tiny archives in the official formats (tests/support/ilsvrc.py, with the odd
files real ImageNet holds) into class folders once, checks them, and trains a smoke cell on them,
whose metrics.json and MLflow run carry the listing's digest as the data's identity. A truncated
archive stops the workflow with one line before any cell starts; a missing one before any job.
"""
from __future__ import annotations

import hashlib
import json
import re

import pytest

from tests.support.ilsvrc import make_archives
from tests.support.mlflow_store import runs_of
from tests.support.workflow import copy_repo, run_snakemake, write_overrides

pytestmark = pytest.mark.slow

CELL = "resnet-18/seed-0"
TARGET = f"results/runs/smoke/{CELL}/metrics.json"  # the cell, not the tables: seconds, not minutes


def overrides(archives, prepared) -> dict:
    return {
        "plan": {"cifar10": False, "imagenet": True, "cifar_plain_depths": [], "cifar_resnet_depths": [],
                 "cifar_seeds": [0], "resnet110_seeds": [], "imagenet_models": ["resnet-18"], "imagenet_seeds": [0]},
        "data": {"imagenet": str(archives), "imagenet_prepared": str(prepared), "imagenet_partial": True},
        "engine": {"device": "cpu", "deterministic": True},
        "resources": {"imagenet": {"gpus": 1, "cpus": 1, "mem_mb": 3000, "runtime_min": 20}},
        "scales": {"smoke": {"mlflow": {"live": True}}},  # the job logs its own run: no report steps needed
    }


def digests(folder) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir()) if path.is_file()}


def test_the_workflow_prepares_the_archives_and_trains_a_cell_on_them(tmp_path):
    repo = copy_repo(tmp_path)
    archives = make_archives(tmp_path / "ilsvrc", odd=True)
    before = digests(archives.folder)
    prepared = tmp_path / "scratch" / "imagenet"
    write_overrides(repo, overrides(archives.folder, prepared), "archives.yaml")
    proc = run_snakemake(repo, TARGET, "--cores", "2", "--configfile", "archives.yaml")
    assert proc.returncode == 0, proc.stdout[-6000:]

    # The layout: prepared once, every validation image in its ground-truth class; archives untouched.
    manifest = json.loads((prepared / "PREPARED.json").read_text())
    assert (manifest["classes"], manifest["train_images"], manifest["val_images"]) == (4, 36, 12)
    placed = {path.name: path.parent.name for path in (prepared / "val").rglob("*.JPEG")}
    assert placed == archives.truth
    assert digests(archives.folder) == before and sorted(p.name for p in archives.folder.iterdir()) == sorted(before)
    log = (repo / "results/logs/smoke/imagenet-data.log").read_text()
    assert re.search(r"prepare-imagenet train: 36 images, .* images/s \| .* GB/s \| ETA", log), log

    # The cell trained on it, and says which data it saw: the listing's digest, in MLflow too.
    metrics = json.loads((repo / "results/runs/smoke" / CELL / "metrics.json").read_text())
    receipt = json.loads((repo / "results/data/smoke/imagenet.json").read_text())
    assert metrics["status"] == "done", metrics.get("reason")
    data = metrics["data"]
    assert data["kind"] == "archives" and data["root"] == str(prepared) and data["source"] == str(archives.folder)
    assert data["content_hash"] == receipt["content_hash"] == manifest["digest"]
    assert (data["train_images"], data["val_images"], data["classes"]) == (36, 12, 4)
    (run,) = [run for run in runs_of(f"sqlite:///{repo}/results/mlflow.db", "resnet-he2015") if run["tags"].get("cell") == CELL]
    assert [(i["name"], i["digest"]) for i in run["inputs"]] == [("imagenet", manifest["digest"][:36])]

    # A new place for the prepared folder reruns the preparation, and no cell (a location is not a recipe).
    moved = overrides(archives.folder, tmp_path / "elsewhere")
    write_overrides(repo, moved, "moved.yaml")
    dry = run_snakemake(repo, TARGET, "-n", "--cores", "2", "--configfile", "moved.yaml", log_name="dry.log")
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert "imagenet_data" in dry.stdout and "rule train:" not in dry.stdout


def test_a_truncated_archive_stops_the_workflow_with_one_line_and_no_cell_runs(tmp_path):
    repo = copy_repo(tmp_path)
    archives = make_archives(tmp_path / "ilsvrc")
    data = archives.train.read_bytes()
    archives.train.write_bytes(data[: len(data) // 2])
    prepared = tmp_path / "prepared"
    write_overrides(repo, overrides(archives.folder, prepared), "archives.yaml")
    proc = run_snakemake(repo, TARGET, "--cores", "2", "--configfile", "archives.yaml")
    assert proc.returncode != 0
    log = (repo / "results/logs/smoke/imagenet-data.log").read_text()
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ILSVRC2012_img_train.tar' is truncated" in errors[0], log
    assert not (repo / "results/runs/smoke" / CELL / "metrics.json").exists()
    assert not (prepared / "train").exists() and not (prepared / "PREPARED.json").exists()

    # A missing archive: refused before any job starts, exit status 2, one line.
    archives.val.unlink()
    proc = run_snakemake(repo, TARGET, "--cores", "2", "--configfile", "archives.yaml", log_name="missing.log")
    lines = [line for line in proc.stdout.splitlines() if "error" in line.lower()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout[-3000:]
    assert "config key 'data.imagenet'" in lines[0] and "lacks ILSVRC2012_img_val.tar" in lines[0]
