"""Tables, figures and the summary (resnet.report) from real run folders; CPU, about half a minute.

A module fixture trains four tiny real CIFAR-10 cells (plain-20, ResNet-20, ResNet-110 seeds 0
and 1; two iterations each) into a temporary results folder, marks ResNet-56 failed with a
failed metrics.json and leaves plain-56 and ImageNet not run.  Exact arithmetic (ResNet-110's
"best (mean±std)", ImageNet differences) is checked on small hand-made run folders.
"""
from __future__ import annotations

import contextlib
import copy
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from resnet import paper

from resnet.report.cells import collect
from resnet.report import figures
from resnet.report.figures import write_figure1, write_figure6
from resnet.report.summary import write_summary
from resnet.report.tables import write_table1, write_table2, write_table3, write_table6

from resnet.runs import files as runfiles
from resnet.config.load import REPO_ROOT, load_config, plan_cells
from resnet.config.job import resolve_cell
from resnet.runs.records import Metrics
from tests.support import CIFAR_TARBALL

TRAINED = ("cifar-plain-20/seed-0", "cifar-resnet-20/seed-0", "cifar-resnet-110/seed-0",
           "cifar-resnet-110/seed-1")
FAILED_CELL = "cifar-resnet-56/seed-0"
FAILURE = "stopped by SIGTERM at iteration 1/2; interrupted 21 times, more than resources.max_resubmits=20"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_config(tmp: Path, **plan) -> dict:
    """config.yaml at smoke scale, shrunk to two iterations, with data and store under tmp."""
    raw = copy.deepcopy(yaml.safe_load((REPO_ROOT / "config.yaml").read_text()))
    raw["scales"]["smoke"]["cifar10"].update(
        iterations=2, milestones=[1], eval_every=2, log_every=1, batch_size=16, bn_group=0,
        train_subset=64, val_size=32, test_subset=32)
    raw["scales"]["smoke"]["data"].update(cifar10=str(CIFAR_TARBALL), cache=str(tmp / "cache"))
    raw["scales"]["smoke"]["engine"].update(checkpoint_every=2, device="cpu")
    raw["mlflow"]["tracking_uri"] = f"sqlite:///{tmp}/mlflow.db"
    raw["plan"].update(imagenet=False, cifar_plain_depths=[20, 56], cifar_resnet_depths=[20, 56, 110],
                       cifar_seeds=[0], resnet110_seeds=[0, 1])
    raw["plan"].update(plan)
    return load_config(raw)


def run_folder(results: Path, cell: str, scale: str = "smoke") -> Path:
    return results / "runs" / scale / cell


def files(config, results: Path) -> list[Path]:
    """The metrics.json of every planned cell: what the workflow hands a table or figure."""
    return [run_folder(results, cell.id) / "metrics.json" for cell in plan_cells(config)]


def write_failed(results: Path, cell: str, reason: str = FAILURE) -> None:
    model, seed = cell.split("/seed-")
    Metrics(cell=cell, model=model, dataset="cifar10", seed=int(seed), scale="smoke", status="failed",
            recipe={}, settings={}, reason=reason, failure_id="f00").write(run_folder(results, cell) / "metrics.json")


def write_done(results: Path, cell: str, final: dict, dataset: str = "cifar10") -> None:
    """A hand-made finished cell: metrics.json with the given final numbers and a short curve whose
    last row shows them, as training writes it (resnet.report.cells.disagreement checks that)."""
    model, seed = cell.split("/seed-")
    folder = run_folder(results, cell)
    Metrics(cell=cell, model=model, dataset=dataset, seed=int(seed), scale="smoke", status="done", recipe={},
            settings={}, iterations=4, final=final, parameters=1,
            provenance={"git": {"commit": "abc", "dirty": False}, "device": "cpu", "versions": {"torch": "x"}},
            ).write(folder / "metrics.json")
    rows = [{"iteration": i, "train_error": 90.0 - i, "val_error": 80.0 if i % 2 == 0 else None,
             "test_error": 85.0 if i % 2 == 0 and dataset == "cifar10" else None} for i in range(1, 5)]
    rows[-1].update({key: value for key, value in final.items() if key in rows[-1]})
    runfiles.write_curve(folder / "curve.csv", rows)


@contextlib.contextmanager
def one_thread():
    """One intra-op thread: the tiny batches gain nothing from more, and on a shared CPU extra
    threads contend with other processes and run several times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config, results folder) with four real tiny cells, one failed cell, the rest not run."""
    from resnet.engine.loop import train

    tmp = tmp_path_factory.mktemp("report")
    config = make_config(tmp)
    results = tmp / "results"
    with one_thread():
        for cell in TRAINED:
            train(resolve_cell(config, cell), run_folder(results, cell), quiet=True)
    write_failed(results, FAILED_CELL)
    return config, results


def metrics_of(results: Path, cell: str) -> dict:
    return runfiles.read_json(run_folder(results, cell) / "metrics.json")


def rows_by_model(frame: pd.DataFrame) -> dict[str, dict]:
    """Rows keyed by registry model, quoted rows (no model) by their label."""
    return {r["model"] if isinstance(r["model"], str) and r["model"] else r["row"]: r
            for r in frame.to_dict("records")}


# ----------------------------------------------------------------------------- collect

def markdown_rows(text: str) -> list[dict[str, str]]:
    """The rows of the Markdown table in a tableN.md, as {column: cell text} (escaped pipes kept)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]

    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]

    header = cells(lines[0])
    assert set(lines[1]) <= set("|:- "), "the second line is the alignment row"
    return [dict(zip(header, cells(line), strict=True)) for line in lines[2:]]


def test_collect_reads_every_planned_cell(trained):
    config, results = trained
    cells = collect(config, files(config, results))
    assert set(cells) == set(TRAINED) | {FAILED_CELL, "cifar-plain-56/seed-0"}
    for cell in TRAINED:
        assert cells[cell].status == "done"
        assert list(cells[cell].curve["iteration"]) == [1, 2]
        assert cells[cell].metrics["final"] == metrics_of(results, cell)["final"]
    assert (cells[FAILED_CELL].status, cells[FAILED_CELL].reason) == ("failed", FAILURE)
    assert cells["cifar-plain-56/seed-0"].status == "not run"
    assert cells["cifar-plain-56/seed-0"].curve is None


# ----------------------------------------------------------------------------- Table 6

def test_table6_sets_reproduced_beside_paper(trained, tmp_path):
    config, results = trained
    write_table6(config, files(config, results), tmp_path / "table6.csv")
    frame = pd.read_csv(tmp_path / "table6.csv", keep_default_na=False, na_values=[""])
    rows = rows_by_model(frame)
    assert list(frame["row"][:6]) == ["Maxout", "NIN", "DSN", "FitNet", "Highway-19", "Highway-32"]
    assert all(rows[k]["status"] == "quoted" for k in ("Maxout", "NIN", "DSN", "FitNet"))

    resnet20 = rows["cifar-resnet-20"]
    test_error = metrics_of(results, "cifar-resnet-20/seed-0")["final"]["test_error"]
    assert (resnet20["row"], resnet20["status"], resnet20["seeds"]) == ("ResNet-20", "done", 1)
    assert resnet20["paper_test_error"] == 8.75 and resnet20["paper_params_millions"] == 0.27
    assert resnet20["reproduced_test_error"] == pytest.approx(test_error)
    assert resnet20["diff_test_error"] == pytest.approx(test_error - 8.75)
    assert resnet20["params"] == paper.CIFAR_OPTION_A_PARAMETERS["cifar-resnet-20"] == 269_722

    resnet110 = rows["cifar-resnet-110"]
    errors = [metrics_of(results, f"cifar-resnet-110/seed-{s}")["final"]["test_error"] for s in (0, 1)]
    assert (resnet110["paper_test_error"], resnet110["paper_mean"], resnet110["paper_std"]) == (6.43, 6.61, 0.16)
    assert resnet110["seeds"] == 2
    assert resnet110["reproduced_test_error"] == pytest.approx(min(errors))
    assert resnet110["reproduced_mean"] == pytest.approx(statistics.fmean(errors))
    assert resnet110["diff_test_error"] == pytest.approx(min(errors) - 6.43)

    assert (rows["cifar-resnet-56"]["status"], rows["cifar-resnet-56"]["reason"]) == ("failed", f"seed-0 failed: {FAILURE}")
    assert pd.isna(rows["cifar-resnet-56"]["reproduced_test_error"])
    assert rows["cifar-resnet-32"]["status"] == "not run"
    assert rows["cifar-resnet-1202"]["params"] == 19_421_274  # counted from the model, not trained

    markdown = (tmp_path / "table6.md").read_text()
    assert "Scale: `smoke`" in markdown and "Not comparable to the paper" in markdown
    table = markdown_rows(markdown)
    assert [row["row"] for row in table] == list(frame["row"])  # every row, in the paper's order
    shown = next(row for row in table if row["model"] == "cifar-resnet-110")
    assert shown["row"] == "ResNet-110" and shown["params"] == "1,727,962"
    assert shown["reproduced_test_error"] == f"{min(errors):.2f}" and shown["paper_test_error"] == "6.43"
    assert next(row for row in table if row["model"] == "cifar-resnet-32")["reproduced_test_error"] == ""


def test_resnet110_best_mean_std_over_handmade_seeds(tmp_path):
    errors = [6.81, 6.43, 6.70, 6.50, 6.61]
    config = make_config(tmp_path, cifar_plain_depths=[], cifar_resnet_depths=[110],
                         resnet110_seeds=[0, 1, 2, 3, 4, 5])
    results = tmp_path / "results"
    for seed, error in enumerate(errors):
        write_done(results, f"cifar-resnet-110/seed-{seed}", {"test_error": error, "train_error": 1.0})
    write_failed(results, "cifar-resnet-110/seed-5", "out of memory")
    row = rows_by_model(write_table6(config, files(config, results), tmp_path / "t6.csv"))["cifar-resnet-110"]
    assert row["reproduced_test_error"] == 6.43  # best of the done seeds, as the paper reports
    assert row["reproduced_mean"] == pytest.approx(6.61)
    assert row["reproduced_std"] == pytest.approx(statistics.stdev(errors))  # sample std (ddof 1)
    assert row["diff_test_error"] == pytest.approx(0.0) and row["diff_mean"] == pytest.approx(0.0)
    assert (row["seeds"], row["status"]) == (5, "done")
    assert row["reason"] == "5 of 6 seeds done; seed-5 failed: out of memory"


def test_unfinished_cell_is_not_run_with_its_progress(tmp_path):
    config = make_config(tmp_path, cifar_plain_depths=[], cifar_resnet_depths=[20])
    results = tmp_path / "results"
    write_done(results, "cifar-resnet-20/seed-0", {"test_error": 9.0})
    (run_folder(results, "cifar-resnet-20/seed-0") / "metrics.json").unlink()
    cell = collect(config, files(config, results))["cifar-resnet-20/seed-0"]
    assert (cell.status, cell.reason) == ("not run", "unfinished: curve.csv reaches iteration 4, no metrics.json yet")


# ----------------------------------------------------------------------------- Tables 1, 2, 3

def test_imagenet_tables_not_run_keep_paper_values(trained, tmp_path):
    config, results = trained
    table2 = write_table2(config, files(config, results), tmp_path / "table2.csv")
    assert list(table2["paper_top1"]) == [27.94, 28.54, 27.88, 25.03]
    assert set(table2["status"]) == {"not run"} and table2["reproduced_top1"].isna().all()
    write_table3(config, files(config, results), tmp_path / "table3.csv")
    rows = rows_by_model(pd.read_csv(tmp_path / "table3.csv", keep_default_na=False, na_values=[""]))
    assert [rows[k]["status"] for k in ("VGG-16", "GoogLeNet", "PReLU-net")] == ["quoted"] * 3
    assert pd.isna(rows["GoogLeNet"]["paper_top1"]) and rows["GoogLeNet"]["paper_top5"] == 9.15
    assert (rows["resnet-34-b"]["row"], rows["resnet-34-b"]["paper_top1"], rows["resnet-34-b"]["paper_top5"]) \
        == ("ResNet-34 B", 24.52, 7.46)
    assert {r["status"] for k, r in rows.items() if not paper.TABLE3[k].quoted} == {"not run"}
    assert "Scale: `smoke`" in (tmp_path / "table3.md").read_text()


def test_imagenet_tables_from_handmade_cells(tmp_path):
    config = make_config(tmp_path, imagenet=True, imagenet_models=["plain-18", "resnet-34-b"], cifar10=False)
    results = tmp_path / "results"
    write_done(results, "plain-18/seed-0", {"val_error": 31.0, "top1_10crop": 30.0, "top5_10crop": 11.0,
                                            "test_short_side": 256}, dataset="imagenet")
    write_failed(results, "resnet-34-b/seed-0", "CUDA error")
    row = rows_by_model(write_table2(config, files(config, results), tmp_path / "t2.csv"))["plain-18"]
    assert (row["reproduced_top1"], row["diff_top1"], row["test_short_side"]) == (30.0, pytest.approx(2.06), 256)
    rows = rows_by_model(write_table3(config, files(config, results), tmp_path / "t3.csv"))
    assert rows["resnet-34-b"]["status"] == "failed" and "CUDA error" in rows["resnet-34-b"]["reason"]
    assert rows["resnet-50"]["reason"] == "not in the configured plan"


def test_table1_multiply_adds_match_the_paper(tmp_path):
    with one_thread():
        frame = write_table1(tmp_path / "table1.csv")
    assert list(frame["layers"]) == [18, 34, 50, 101, 152]
    assert list(frame["paper_multiply_adds_e9"]) == [1.8, 3.6, 3.8, 7.6, 11.3]
    assert (frame["diff_percent"].abs() < 5).all()
    assert list(frame["conv4_x"]) == [2, 6, 6, 23, 36]
    assert pd.read_csv(tmp_path / "table1.csv")["parameters"].tolist() == frame["parameters"].tolist()
    table = markdown_rows((tmp_path / "table1.md").read_text())
    assert [(row["row"], row["model"]) for row in table][-1] == ("152-layer", "resnet-152")
    assert [row["parameters"] for row in table] == [f"{n:,}" for n in frame["parameters"]]


# ----------------------------------------------------------------------------- figures

@pytest.mark.parametrize("name, panels", [("figure1", 2), ("figure4", 2), ("figure6", 3), ("figure7", 2)])
def test_figures_render_in_the_paper_layout(trained, tmp_path, name, panels):
    config, results = trained
    written = getattr(figures, f"write_{name}")(config, files(config, results), tmp_path / f"{name}.png")
    assert written == {"png": tmp_path / f"{name}.png", "pdf": tmp_path / f"{name}.pdf", "panels": panels}
    assert written["png"].read_bytes()[:8] == PNG_SIGNATURE
    assert written["pdf"].read_bytes()[:5] == b"%PDF-"
    assert not list(tmp_path.glob(".*.tmp"))


def test_figures_render_with_nothing_run(tmp_path):
    config = make_config(tmp_path)
    for name, panels in (("figure6", 3), ("figure7", 2)):
        written = getattr(figures, f"write_{name}")(config, files(config, tmp_path / "empty"), tmp_path / f"{name}.png")
        assert written["panels"] == panels and written["png"].read_bytes()[:8] == PNG_SIGNATURE


# ----------------------------------------------------------------------------- summary, determinism

def test_summary_states_scale_status_and_links(trained, tmp_path):
    config, results = trained
    write_table6(config, files(config, results), tmp_path / "tables" / "table6.csv")
    write_figure6(config, files(config, results), tmp_path / "figures" / "figure6.png")
    text = write_summary(config, files(config, results), tmp_path / "README.md")
    assert text == (tmp_path / "README.md").read_text()
    assert "**Scale: `smoke`.**" in text and "NOT comparable to the paper" in text
    assert "6 planned: 4 done, 1 failed, 1 not run." in text
    assert f"- `{FAILED_CELL}`: {FAILURE}" in text
    assert "- `cifar-plain-56/seed-0`: no metrics.json yet" in text
    assert "[tables/table6.md](tables/table6.md) ([csv](tables/table6.csv))" in text
    assert "[figures/figure6.png](figures/figure6.png) ([pdf](figures/figure6.pdf))" in text
    assert "- Table 2: not written yet" in text
    assert "ResNet-110 test error:" in text  # listed among the largest gaps at smoke scale
    commit = metrics_of(results, TRAINED[0])["provenance"]["git"]["commit"]
    assert commit in text and "torch" in text


def test_outputs_are_deterministic(trained, tmp_path):
    config, results = trained
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        write_table6(config, files(config, results), out / "table6.csv")
        write_figure1(config, files(config, results), out / "figure1.png")
        write_summary(config, files(config, results), out / "README.md")
    for name in ("table6.csv", "table6.md", "figure1.png", "figure1.pdf", "README.md"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
