"""The local end-to-end run of the smoke plan (fixture smoke_results_local: `snakemake --cores 2` in a
fresh copy of the repository, CIFAR from ../shared/data, synthetic ImageNet): what lands in results/.

Tables: the paper column is the paper's (as ../shared/PAPER.md writes it), every row that ran has a reproduced number equal to its
cell's metrics.json, rows outside the plan say "not run". Figures: PNG and PDF files, each the image
that the report draws with the paper's panel count. MLflow: one finished run per cell whose curve
is the cell's curve.csv.
"""
from __future__ import annotations

import csv
import json

import pytest

from resnet.report import figures

from resnet.config.load import load_config, plan_cells
from tests.support.mlflow_store import metric_history, runs_of
from tests.support.paper_text import paper_text
from tests.support.workflow import run_folders

pytest_plugins = ["tests.support.workflow"]

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"
PANELS = {"figure1": 2, "figure4": 2, "figure6": 3, "figure7": 2}


def rows(path):
    with open(path, newline="") as handle:
        return {row["row"]: row for row in csv.DictReader(handle)}


def metrics_of(repo, model, seed=0):
    return json.loads((repo / f"results/runs/smoke/{model}/seed-{seed}/metrics.json").read_text())


@pytest.fixture(scope="module")
def repo(smoke_results_local):
    return smoke_results_local


def test_every_artefact_is_written(repo):
    names = [f"table{n}.{ext}" for n in (1, 2, 3, 6) for ext in ("csv", "md")]
    names += [f"figure{n}.{ext}" for n in (1, 4, 6, 7) for ext in ("png", "pdf")] + ["README.md"]
    missing = [name for name in names if not (repo / "results" / name).is_file()]
    assert not missing
    summary = (repo / "results/README.md").read_text()
    assert "smoke" in summary


def test_table6_has_the_papers_column_and_the_cells_numbers(repo):
    table = {row["model"]: row for row in rows(repo / "results/table6.csv").values() if row["model"]}
    text = paper_text()
    assert sorted(table) == sorted(f"cifar-resnet-{depth}" for depth in text.table6)
    for depth, (params, error) in text.table6.items():
        row = table[f"cifar-resnet-{depth}"]
        assert (float(row["paper_params_millions"]), float(row["paper_test_error"])) == (params, error)
    ran = metrics_of(repo, "cifar-resnet-20")
    assert table["cifar-resnet-20"]["status"] == "done"
    assert float(table["cifar-resnet-20"]["reproduced_test_error"]) == pytest.approx(ran["final"]["test_error"], abs=0.01)
    assert float(table["cifar-resnet-20"]["diff_test_error"]) == pytest.approx(
        ran["final"]["test_error"] - 8.75, abs=0.01)
    assert int(table["cifar-resnet-20"]["params"]) == 269_722
    assert table["cifar-resnet-56"]["status"] == "not run"  # outside the trimmed plan
    for name, error in text.table6_quoted.items():
        quoted = rows(repo / "results/table6.csv")[name]
        assert quoted["status"] == "quoted" and float(quoted["paper_test_error"]) == error


def test_imagenet_tables_read_the_ten_crop_numbers(repo):
    table2 = {row["model"]: row for row in rows(repo / "results/table2.csv").values()}
    table3 = {row["model"]: row for row in rows(repo / "results/table3.csv").values() if row["model"]}
    for model in ("plain-18", "resnet-18"):
        final = metrics_of(repo, model)["final"]
        assert table2[model]["status"] == "done"
        assert float(table2[model]["paper_top1"]) == paper_text().table2[model]
        assert float(table2[model]["reproduced_top1"]) == pytest.approx(final["top1_10crop"], abs=0.01)
    assert table2["plain-34"]["status"] == "not run"
    assert all(row["status"] == "not run" for row in table3.values())  # none of Table 3's cells planned
    for depth, (top1, top5) in paper_text().table3.items():
        assert (float(table3[f"resnet-{depth}"]["paper_top1"]), float(table3[f"resnet-{depth}"]["paper_top5"])) == (top1, top5)


def test_figures_are_the_reports_images_with_the_papers_panels(repo, tmp_path):
    config = load_config(_merged(repo))
    for name, panels in PANELS.items():
        png = (repo / "results" / f"{name}.png").read_bytes()
        assert png.startswith(PNG)
        assert (repo / "results" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        cells = [repo / "results" / "runs" / "smoke" / cell.id / "metrics.json" for cell in plan_cells(config)]
        drawn = getattr(figures, f"write_{name}")(config, cells, tmp_path / f"{name}.png")
        assert drawn["panels"] == panels
        assert (tmp_path / f"{name}.png").read_bytes() == png  # the workflow's file is this drawing


def test_mlflow_has_one_finished_run_per_cell_with_its_curve(repo):
    uri = f"sqlite:///{repo / 'results/mlflow.db'}"
    every = runs_of(uri, "resnet-he2015")
    runs = [run for run in every if run["tags"].get("kind") == "cell"]
    cells = sorted(run_folders(repo))
    assert sorted(run["name"] for run in runs) == sorted(f"smoke/{cell}" for cell in cells)
    assert [run["name"] for run in every if run["tags"].get("kind") == "report"] == ["smoke/report"]
    assert all(run["status"] == "FINISHED" for run in runs)
    # the smoke scale's mlflow.live: false: no job opened the store; the summary step logged the runs
    assert all(json.loads((folder / "metrics.json").read_text())["mlflow_run_id"] is None
               for folder in run_folders(repo).values())
    for run in runs:
        cell = run["tags"]["cell"]
        with open(repo / f"results/runs/smoke/{cell}/curve.csv", newline="") as handle:
            curve = list(csv.DictReader(handle))
        history = metric_history(uri, run["run_id"], "train_error")
        assert [step for step, _ in history] == [int(row["iteration"]) for row in curve]
        expected = [float(row["train_error"]) for row in curve]
        assert [value for _, value in history] == pytest.approx(expected, abs=1e-3)  # curve.csv: 6 digits


def _overrides(repo):
    import yaml

    return yaml.safe_load((repo / "test-overrides.yaml").read_text())  # tests.support.workflow writes it


def _merged(repo):
    """config.yaml with the run's --configfile overrides laid over it, as Snakemake merged them."""
    import yaml

    from resnet.config.load import lay_over

    return lay_over(yaml.safe_load((repo / "config.yaml").read_text()), _overrides(repo))
