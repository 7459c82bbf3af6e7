"""A diverged training is a failure with its reason, never a "done" cell with a 90% error."""
from __future__ import annotations

import csv
import json

import pytest

from resnet.runs.records import load_checkpoint
from tests.support.processes import run_cli

pytestmark = pytest.mark.usefixtures("torch_threads")


def strict(text: str):
    """json.loads that refuses NaN and Infinity, as strict readers do."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def test_a_nan_loss_stops_the_cell_as_failed_and_keeps_the_checkpoint_from_before(tmp_path, make_config):
    import yaml

    config = make_config(cifar10=dict(lr=1e6, iterations=12, milestones=[10], log_every=1, eval_every=12),
                         engine=dict(checkpoint_every=2))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    args = ("train", "--config", str(path), "--cell", "cifar-resnet-20/seed-0", "--out", str(out), "--quiet")

    result = run_cli(*args, "--record-failure")
    assert result.returncode == 0, result.stderr  # recorded; the workflow goes on with the other cells
    metrics = strict((out / "metrics.json").read_text())
    assert metrics["status"] == "failed", metrics
    reason, diverged_at = metrics["reason"], metrics["iterations"]
    assert reason.startswith(f"diverged at iteration {diverged_at} (loss ") and "recipes.cifar10.lr" in reason
    assert 1 < diverged_at < 12
    with open(out / "curve.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert int(rows[-1]["iteration"]) == diverged_at
    assert rows[-1]["train_loss"] in ("nan", "inf", "-inf")  # measured and non-finite: not "missing"
    assert rows[-1]["test_error"] == ""  # not evaluated
    assert all(row["train_loss"] not in ("", "nan", "inf", "-inf") for row in rows[:-1])
    # The checkpoint is the last one written before the divergence: a finite model to go back to.
    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved["state"]["iteration"] < diverged_at and saved["state"]["iteration"] % 2 == 0

    # Without --record-failure (by hand): exit status 1 and the same reason on stderr.
    again = run_cli(*args)
    assert again.returncode == 1 and "diverged at iteration" in again.stderr, again.stderr
