"""What a table reports agrees with the cell's curve and checkpoint, or says that it does not.

One real tiny cell (ResNet-20, 6 iterations) trained in process, then its files changed the ways a
hand edit or a mix-up changes them. Each time Table 6 is still written, and the row says why it
shows no number, in one line naming the file and the fix:

- final.test_error edited in metrics.json: it disagrees with curve.csv's last row;
- the same edit in curve.csv too: it disagrees with the checkpoint's state;
- a number written as text ("90,5"): the file and the key are named (no traceback);
- a metrics.json that is a copy of a superseded run's record: named as such.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from resnet.report.tables import write_table6
from resnet.runs import files as runfiles

CELL = "cifar-resnet-20/seed-0"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cifar_cache_dir, mlflow_template_db):
    """(raw config, run folder) of the cell, trained once for the module."""
    import torch

    from resnet.engine.loop import train
    from tests.support.configs import config_builder, job_of

    base = tmp_path_factory.mktemp("agreement")
    config = config_builder(base, cifar_cache_dir, mlflow_template_db)(mlflow={"live": False})
    folder = base / "results" / "runs" / "smoke" / CELL
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train(job_of(config, CELL), folder, quiet=True).done
    finally:
        torch.set_num_threads(previous)
    return config, folder


@pytest.fixture
def cell(trained, tmp_path) -> tuple[dict, Path]:
    """(raw config, run folder): this test's copy of the trained cell."""
    config, folder = trained
    copy = tmp_path / "results" / "runs" / "smoke" / CELL
    shutil.copytree(folder, copy)
    return config, copy


def table6_row(config: dict, folder: Path, tmp_path: Path) -> dict:
    out = tmp_path / "table6.csv"
    write_table6(config, [folder / "metrics.json"], out)
    with open(out, newline="") as handle:
        (row,) = [row for row in csv.DictReader(handle) if row["model"] == "cifar-resnet-20"]
    return row


def edit_metrics(folder: Path, **final) -> None:
    values = json.loads((folder / "metrics.json").read_text())
    values["final"].update(final)
    (folder / "metrics.json").write_text(json.dumps(values))


def test_a_cell_whose_files_agree_is_reported(cell, tmp_path):
    config, folder = cell
    row = table6_row(config, folder, tmp_path)
    final = json.loads((folder / "metrics.json").read_text())["final"]
    assert row["status"] == "done" and float(row["reproduced_test_error"]) == pytest.approx(final["test_error"])


def test_an_edited_number_is_not_reported_and_the_row_says_why(cell, tmp_path):
    config, folder = cell
    edit_metrics(folder, test_error=1.25)
    row = table6_row(config, folder, tmp_path)
    assert row["status"] == "failed" and row["reproduced_test_error"] == ""
    reason = row["reason"]
    assert f"'{folder / 'metrics.json'}' final.test_error is 1.25, curve.csv has" in reason
    assert "delete metrics.json to recompute it from checkpoint.pt" in reason


def test_a_number_edited_in_the_curve_too_still_disagrees_with_the_checkpoint(cell, tmp_path):
    config, folder = cell
    edit_metrics(folder, test_error=1.25)
    rows = runfiles.read_curve(folder / "curve.csv")
    rows[-1]["test_error"] = 1.25
    runfiles.write_curve(folder / "curve.csv", rows)
    reason = table6_row(config, folder, tmp_path)["reason"]
    assert "final.test_error is 1.25, checkpoint.pt has" in reason


def test_a_number_written_as_text_names_the_file_and_the_key(cell, tmp_path):
    config, folder = cell
    edit_metrics(folder, test_error="90,5")
    row = table6_row(config, folder, tmp_path)  # the table is written: no traceback, no lost table
    assert row["status"] == "failed"
    assert row["reason"].startswith(f"seed-0 failed: '{folder / 'metrics.json'}': final.test_error is '90,5', "
                                    f"not a number")


def test_a_copy_of_a_superseded_record_is_not_taken_for_the_cell(cell, tmp_path):
    config, folder = cell
    older = folder / "superseded-20260101-000000"
    older.mkdir()
    shutil.copy(folder / "metrics.json", older / "metrics.json")  # what Snakemake puts back after a failed job
    reason = table6_row(config, folder, tmp_path)["reason"]
    assert "is a copy of superseded-20260101-000000/metrics.json" in reason
