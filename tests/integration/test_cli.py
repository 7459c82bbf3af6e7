"""The command line (python -m resnet ...), run as a subprocess from the repository root.

Bad input exits with status 2 and one line on stderr that says what is wrong and how to fix it,
and leaves nothing behind; a finished cell is not trained again; a changed recipe keeps the old run.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from tests.support import REPO_ROOT
from tests.support.configs import job_args, job_of
from tests.support.processes import run_cli

pytestmark = pytest.mark.usefixtures("torch_threads")


def raw_config() -> dict:
    with open(REPO_ROOT / "config.yaml") as handle:
        return yaml.safe_load(handle)


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2, one line naming the problem and the fix, nothing written
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell, expected", [
    ("foo-20/seed-0", ["unknown model 'foo-20'", "use e.g. 'resnet-34'"]),
    ("cifar-resnet-21/seed-0", ["6n+2", "try 20 or 26"]),
    ("resnet-34-d/seed-0", ["unknown shortcut option '-d'", "-a", "-b", "-c"]),
    ("cifar-resnet-20", ["MODEL/seed-N"]),
], ids=["unknown-model", "not-6n+2", "unknown-shortcut", "no-seed"])
def test_bad_cell_exits_2_with_one_line(tmp_path, cell, expected):
    out = tmp_path / "out"
    result = run_cli("train", "--config", "config.yaml", "--cell", cell, "--out", str(out))
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    for text in expected:
        assert text in line
    assert not out.exists()


def _unknown_scale(config):
    config["scale"] = "huge"


def _wrong_type(config):
    config["recipes"]["cifar10"]["batch_size"] = "lots"


def _unknown_key(config):
    config["engine"]["turbo"] = True


def _bad_plan_model(config):
    config["plan"]["imagenet_models"] = ["resnet-34-d"]


def _decreasing_milestones(config):
    config["scales"]["smoke"]["cifar10"]["milestones"] = [15, 12]


@pytest.mark.parametrize("change, expected", [
    (_unknown_scale, ["'scale'", "unknown scale 'huge'", "smoke"]),
    (_wrong_type, ["recipes.cifar10.batch_size", "'lots'", "integer"]),
    (_unknown_key, ["engine.turbo", "accepted keys"]),
    (_bad_plan_model, ["plan.imagenet_models", "shortcut"]),
    (_decreasing_milestones, ["scales.smoke.cifar10.milestones", "increasing"]),
], ids=["unknown-scale", "wrong-type", "unknown-key", "bad-plan-model", "milestones-order"])
def test_bad_config_file_exits_2_naming_the_key(tmp_path, change, expected):
    config = raw_config()
    change(config)
    path = write_config(tmp_path / "config.yaml", config)
    out = tmp_path / "out"
    result = run_cli("train", "--config", str(path), "--cell", "cifar-resnet-20/seed-0", "--out", str(out))
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    for text in expected:
        assert text in line, line
    assert not out.exists()


def test_missing_config_file_exits_2(tmp_path):
    result = run_cli("plan", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "--config" in one_error_line(result)


def test_unknown_setting_in_recipe_json_exits_2(tmp_path, make_config):
    args = job_args(job_of(make_config(), "cifar-resnet-20/seed-0"))
    recipe = json.loads(args[1])
    recipe["learning_rate"] = 0.1
    args[1] = json.dumps(recipe)
    result = run_cli("train", *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "learning_rate" in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_missing_dataset_exits_2_and_writes_no_results(tmp_path, make_config):
    config = copy.deepcopy(make_config())
    config["scales"]["smoke"]["data"]["cifar10"] = str(tmp_path / "no-such-cifar.tar.gz")
    path = write_config(tmp_path / "config.yaml", config)
    out = tmp_path / "out"
    result = run_cli("train", "--config", str(path), "--cell", "cifar-resnet-20/seed-0", "--out", str(out))
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert "data.cifar10" in line and "no-such-cifar.tar.gz" in line
    assert not (out / "metrics.json").exists() and not (out / "checkpoint.pt").exists()
    assert not (out / "curve.csv").exists()


def test_bad_input_inside_a_workflow_job_is_recorded_once_as_the_cells_failure(tmp_path, make_config):
    """--record-failure (the train rule's): the reason in metrics.json and exit 0, so Snakemake does
    not resubmit it max_resubmits times; the next workflow run retries it (its failure id)."""
    config = copy.deepcopy(make_config())
    config["scales"]["smoke"]["data"]["cifar10"] = str(tmp_path / "no-such-cifar.tar.gz")
    path = write_config(tmp_path / "config.yaml", config)
    out = tmp_path / "out"
    result = run_cli("train", "--config", str(path), "--cell", "cifar-resnet-20/seed-0", "--out", str(out),
                     "--record-failure")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "data.cifar10" in metrics["reason"]
    assert len(metrics["failure_id"]) == 12 and metrics["retry_of"] is None
    assert not (out / "checkpoint.pt").exists()


def test_corrupt_checkpoint_exits_2_and_deletes_nothing(tmp_path, make_config):
    path = write_config(tmp_path / "config.yaml", make_config())
    out = tmp_path / "out"
    out.mkdir()
    garbage = b"this is not a checkpoint\x00\x01\x02" * 10
    (out / "checkpoint.pt").write_bytes(garbage)
    curve = "iteration,epoch,lr\n2,0.06,0.0125\n"
    (out / "curve.csv").write_text(curve)
    result = run_cli("train", "--config", str(path), "--cell", "cifar-resnet-20/seed-0", "--out", str(out))
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert "checkpoint.pt" in line and "delete it" in line
    assert (out / "checkpoint.pt").read_bytes() == garbage
    assert (out / "curve.csv").read_text() == curve
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "curve.csv"]


# ---------------------------------------------------------------------------------------------
# A finished cell is skipped; a changed recipe keeps the old run aside and trains anew
# ---------------------------------------------------------------------------------------------


def test_done_cell_is_skipped_and_changed_recipe_supersedes(tmp_path, make_config):
    config = make_config(cifar10=dict(iterations=4, eval_every=4, log_every=2, milestones=[3]),
                         engine=dict(checkpoint_every=4))
    path = write_config(tmp_path / "config.yaml", config)
    out = tmp_path / "out"
    args = ("train", "--config", str(path), "--cell", "cifar-resnet-20/seed-0", "--out", str(out), "--quiet")

    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "cifar-resnet-20/seed-0: done" in first.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "done"
    stamp = (out / "metrics.json").stat().st_mtime_ns
    old = {name: (out / name).read_bytes() for name in ("metrics.json", "curve.csv", "checkpoint.pt")}

    # The same recipe again: nothing is trained, nothing rewritten.
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "already done" in again.stderr
    assert "resuming" not in again.stdout
    assert (out / "metrics.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "metrics.json").read_text()) == metrics

    # A changed recipe (learning rate): the finished run moves to superseded-*/, intact.
    changed = copy.deepcopy(config)
    changed["scales"]["smoke"]["cifar10"]["lr"] = 0.05
    write_config(path, changed)
    third = run_cli(*args)
    assert third.returncode == 0, third.stderr
    assert "recipe changed (lr)" in third.stderr
    kept = [p for p in out.iterdir() if p.name.startswith("superseded-")]
    assert len(kept) == 1
    for name, content in old.items():
        assert (kept[0] / name).read_bytes() == content
    new = json.loads((out / "metrics.json").read_text())
    assert new["status"] == "done" and new["recipe"]["lr"] == pytest.approx(0.05 * 16 / 128)
    assert new["mlflow_run_id"] != metrics["mlflow_run_id"]
    assert (out / "metrics.json").stat().st_mtime_ns != stamp


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


def test_plan_lists_the_23_cells_of_the_default_config():
    result = run_cli("plan", "--config", "config.yaml")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines() if line.strip()]
    assert len(rows) == 23
    cells = [row[0] for row in rows]
    assert len(set(cells)) == 23  # a cell shared by several artefacts is trained once
    datasets = [row[1] for row in rows]
    assert datasets.count("cifar10") == 14 and datasets.count("imagenet") == 9
    assert {f"cifar-resnet-110/seed-{seed}" for seed in range(5)} <= set(cells)
    assert "resnet-34-b/seed-0" in cells and "resnet-50/seed-0" in cells
    assert all(row[2] == f"results/runs/smoke/{row[0]}" for row in rows)


def test_config_files_lay_over_one_another_in_order(tmp_path):
    """--config repeated: each file laid over the ones before it, key by key, as snakemake's
    --configfile does; --set comes last."""
    paper = write_config(tmp_path / "paper.yaml", {"scale": "paper", "plan": {
        "imagenet": False, "cifar_plain_depths": [], "cifar_resnet_depths": [20], "resnet110_seeds": []}})
    result = run_cli("plan", "--config", "config.yaml", "--config", str(paper))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cifar-resnet-20/seed-0", "cifar10", "results/runs/paper/cifar-resnet-20/seed-0"]
    later = write_config(tmp_path / "later.yaml", {"scale": "smoke", "plan": {"cifar_resnet_depths": [32]}})
    result = run_cli("plan", "--config", "config.yaml", "--config", str(paper), "--config", str(later),
                     "--set", "plan.cifar_seeds=[1]")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cifar-resnet-32/seed-1", "cifar10", "results/runs/smoke/cifar-resnet-32/seed-1"]
    missing = run_cli("plan", "--config", "config.yaml", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml' not found" in one_error_line(missing)
