"""Reference results (results-reference/): a finished cell's weights give its numbers again, and the
tables show a reference only for rows the user's own run folders leave without a result, marked."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from resnet.config.load import load_config
from resnet.report import reference
from resnet.report.tables import table6_frame
from resnet.report.cells import collect
from tests.support.configs import job_args, job_of
from tests.support.processes import run_cli

CELL = "cifar-resnet-20/seed-0"


@pytest.fixture
def trained(make_config, tmp_path):
    """A tiny ResNet-20 cell trained to its end, and the reference folder that keep_finished made of it
    (as scripts/reference-run.sh does at the end of a run)."""
    config = make_config()
    run = tmp_path / "runs" / CELL  # a run folder: <runs>/<model>/seed-<n>
    result = run_cli("train", *job_args(job_of(config, CELL)), "--out", str(run), "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "kept" / CELL
    out.mkdir(parents=True)
    shutil.copyfile(run / "checkpoint.pt", out / "checkpoint.pt")  # what the folder held while it trained
    assert reference.keep_finished(run, out) == out
    return config, out


def test_a_finished_run_replaces_the_kept_checkpoint_with_its_results(trained, tmp_path):
    _, out = trained
    assert sorted(path.name for path in out.iterdir()) == ["curve.csv", "curve.png", "metrics.json", "weights.pt"]
    run = tmp_path / "runs" / CELL
    for name in ("metrics.json", "curve.csv"):
        assert (out / name).read_bytes() == (run / name).read_bytes()
    weights = torch.load(out / "weights.pt", weights_only=True)
    model = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert weights.keys() == model.keys() and all(torch.equal(weights[k], model[k]) for k in model)
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_not_finished_leaves_the_reference_folder_as_it_was(trained, tmp_path):
    _, out = trained
    run = tmp_path / "unfinished"
    shutil.copytree(tmp_path / "runs" / CELL, run)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "failed"}))
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert reference.keep_finished(run, out) is None
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    shutil.rmtree(run)
    assert reference.keep_finished(run, out) is None  # no metrics.json at all


def test_the_weights_give_the_recorded_numbers_again_and_other_weights_do_not(trained):
    config, out = trained
    again = run_cli("evaluate", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    recorded = json.loads((out / "metrics.json").read_text())["final"]
    for key in ("test_error", "val_error"):
        assert f"{key}: {recorded[key]:.4f} (the recorded number)" in again.stdout
    weights = torch.load(out / "weights.pt", weights_only=True)
    weights["fc.weight"] = torch.flip(weights["fc.weight"], dims=[0])  # the classes' rows swapped round
    torch.save(weights, out / "weights.pt")
    moved = run_cli("evaluate", str(out))
    assert moved.returncode == 1 and "recorded:" in moved.stdout, moved.stdout


def test_a_missing_run_folder_is_one_line():
    result = run_cli("evaluate", "no/such/folder")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "metrics.json" in result.stderr


def test_a_reference_fills_only_rows_without_a_result_of_the_users_own(trained, tmp_path, monkeypatch):
    config, out = trained
    root = tmp_path / "results-reference"
    for model in ("cifar-resnet-20", "cifar-resnet-32"):  # a reference for a planned and an unplanned row
        shutil.copytree(out, root / "smoke" / model / "seed-0")
    monkeypatch.setattr(reference, "REFERENCE_ROOT", root)
    own = json.loads((out / "metrics.json").read_text())["final"]["test_error"]
    typed = load_config(config)  # the tables read ResNet-20 alone: ResNet-32's row has no cell of the user's
    frame = table6_frame(typed, collect(typed, [out / "metrics.json"])).set_index("model")
    assert frame.loc["cifar-resnet-20", "status"] == "done"  # the user's own result, not the reference
    row = frame.loc["cifar-resnet-32"]
    assert row["status"] == "reference" and row["reproduced_test_error"] == pytest.approx(own)
    assert "results-reference/smoke/cifar-resnet-32/seed-0" in row["reason"]
    assert frame.loc["cifar-resnet-44", "status"] == "not run"  # no reference there
    monkeypatch.setattr(reference, "REFERENCE_ROOT", tmp_path / "nowhere")
    assert table6_frame(typed, collect(typed, [out / "metrics.json"])).set_index("model").loc[
        "cifar-resnet-32", "status"] == "not run"


def test_the_reference_plan_trains_the_paper_recipe_itself():
    """results-reference/config.yaml changes which cells and which data, never a recipe value: each
    of its cells has the recipe that `scale: paper` gives the cell on config.yaml alone."""
    plan = run_cli("plan", "--config", "config.yaml", "--config", "results-reference/config.yaml")
    assert plan.returncode == 0, plan.stderr
    rows = [line.split("\t") for line in plan.stdout.splitlines()]
    assert rows and all(run == f"results/runs/paper/{cell}" for cell, _, run in rows), rows
    for cell, _, _ in rows:
        kept = run_cli("config", "--config", "config.yaml", "--config", "results-reference/config.yaml", "--cell", cell)
        paper = run_cli("config", "--config", "config.yaml", "--set", "scale=paper", "--cell", cell)
        assert kept.returncode == 0 and paper.returncode == 0, kept.stderr + paper.stderr
        kept, paper = json.loads(kept.stdout), json.loads(paper.stdout)
        assert kept["recipe"] == paper["recipe"] and kept["recipe_digest"] == paper["recipe_digest"]
        assert kept["recipe"]["iterations"] == 64000 and kept["recipe"]["milestones"] == [32000, 48000]
