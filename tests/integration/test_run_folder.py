"""A run folder belongs to one trainer and one recipe, and its faults end in one line.

Real trainers (``python -m resnet train`` processes, and train() in process) on tiny CIFAR cells:

- a checkpoint of another cell beside a failed record of this cell is set aside with that record,
  not resumed;
- a second trainer of a folder another trainer holds stops at once with exit status 73 and one line
  naming the folder and the holder (pid, host); it moves and deletes nothing, not even a temporary
  file being written; a trainer killed with SIGKILL leaves no lock behind, and the next one removes
  the temporary files of earlier trainers (only those); with --wait-for-folder the second trainer
  waits for the folder and then trains;
- a full disk (a 4 MiB tmpfs): one line and no traceback, the last checkpoint kept; a rerun is
  refused before it trains; the workflow's mode records the failure, or says in one line that even
  that could not be written.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from resnet.engine.loop import train
from resnet.engine.outcome import record_failure
from resnet.runs.records import Checkpoint, load_checkpoint
from tests.support import REPO_ROOT, skip_or_fail
from tests.support.configs import job_of
from tests.support.processes import PYTHON, run_cli, subprocess_env

pytestmark = pytest.mark.usefixtures("torch_threads")

CELL = "cifar-resnet-20/seed-0"
EXIT_BUSY = 73


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train_args(config: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(config), "--cell", CELL, "--out", str(out), "--quiet", *extra]


def start_trainer(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "resnet", *train_args(config, out, *extra)], cwd=REPO_ROOT,
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the trainer ended first:\n{process.stderr.read()}"
        assert time.monotonic() < deadline, f"no {path.name} within {timeout} s"
        time.sleep(0.05)


def stop(process: subprocess.Popen, sig: int = signal.SIGKILL) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    return process.wait(timeout=120)


def long_config(make_config) -> dict:
    """A cell that trains for minutes (it is stopped by a signal), checkpointing every 2 iterations."""
    return copy.deepcopy(make_config(cifar10=dict(iterations=4000, milestones=[3000], eval_every=4000),
                                     engine=dict(checkpoint_every=2), mlflow={"live": False}))


# ---------------------------------------------------------------------------------------------
# Another cell's checkpoint beside this cell's failed record (issue item 3)
# ---------------------------------------------------------------------------------------------


def test_a_checkpoint_of_another_cell_beside_a_failed_record_is_set_aside_not_resumed(tmp_path, make_config):
    config = make_config(mlflow={"live": False})
    plain = job_of(config, "cifar-plain-20/seed-1")
    assert train(plain, tmp_path / "plain", quiet=True).done
    job = job_of(config, CELL)
    out = tmp_path / "resnet"
    out.mkdir()
    record_failure(job, out, "an earlier failure")
    shutil.copy(tmp_path / "plain" / "checkpoint.pt", out / "checkpoint.pt")

    metrics = train(job, out, quiet=True)
    assert metrics.done and metrics.recipe == job.recipe.to_dict()
    saved = Checkpoint.load(out / "checkpoint.pt")
    assert saved.recipe == job.recipe.to_dict()  # trained as ResNet-20, from iteration 0
    assert [row["iteration"] for row in saved.state.rows] == [2, 3, 4, 6]  # every row of its own
    (kept,) = out.glob("superseded-*")  # both files of the folder's mix, kept side by side
    assert sorted(path.name for path in kept.iterdir()) == ["checkpoint.pt", "metrics.json"]
    assert Checkpoint.load(kept / "checkpoint.pt").recipe["model"] == "cifar-plain-20"
    assert json.loads((kept / "metrics.json").read_text())["reason"] == "an earlier failure"


# ---------------------------------------------------------------------------------------------
# One trainer per folder (issue item 4)
# ---------------------------------------------------------------------------------------------


def test_a_second_trainer_of_a_held_folder_stops_with_one_line_and_touches_nothing(tmp_path, make_config):
    config = long_config(make_config)
    first_config = write_config(tmp_path / "first.yaml", config)
    other = copy.deepcopy(config)
    other["recipes"]["cifar10"]["lr"] = 0.2  # another recipe: it would set the first one's files aside
    other_config = write_config(tmp_path / "other.yaml", other)
    out = tmp_path / "run"
    first = start_trainer(first_config, out)
    try:
        wait_for(out / "checkpoint.pt", first)
        writing = out / ".metrics.json.a1b2c3.tmp"  # a write of the first trainer's, in progress
        writing.write_text("{")
        second = run_cli(*train_args(other_config, out))
        assert second.returncode == EXIT_BUSY, second.stderr
        (line,) = lines_of(second.stderr)
        assert line.startswith("busy: ") and f"'{out}'" in line
        assert f"pid {first.pid} on host {socket.gethostname()}" in line
        assert first.poll() is None  # the first trainer goes on, its folder as it was
        assert writing.exists() and not list(out.glob("superseded-*"))
        assert load_checkpoint(out / "checkpoint.pt")["recipe"] == job_of(config, CELL).recipe.to_dict()

        # Killed without warning, the first trainer leaves no lock: the next one takes the folder,
        # removes the temporary files earlier trainers left (only those) and resumes.
        assert stop(first) == -signal.SIGKILL
        saved_at = load_checkpoint(out / "checkpoint.pt")["state"]["iteration"]
        (out / "notes.txt.tmp").write_text("not a trainer's file")
        third = start_trainer(first_config, out)
        try:
            assert f"resuming at iteration {saved_at}" in third.stdout.readline()
            assert not writing.exists() and (out / "notes.txt.tmp").exists()
        finally:
            assert stop(third, signal.SIGTERM) == 75  # a checkpoint, then the usual interrupted status
    finally:
        stop(first)


HOLD = """
import sys, time
from resnet.runs.lock import hold_run_folder
with hold_run_folder(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_with_a_wait_the_second_trainer_trains_once_the_folder_is_free(tmp_path, make_config):
    config = write_config(tmp_path / "config.yaml", make_config(mlflow={"live": False}))
    out = tmp_path / "run"
    holder = subprocess.Popen([PYTHON, "-c", HOLD, str(out), "5"], cwd=REPO_ROOT, env=subprocess_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run_cli(*train_args(config, out, "--wait-for-folder", "120"))
    finally:
        stop(holder)
    assert result.returncode == 0, result.stderr
    assert f"is in use by pid {holder.pid} on host" in result.stderr and "waiting up to 120 s" in result.stderr
    assert json.loads((out / "metrics.json").read_text())["status"] == "done"


# ---------------------------------------------------------------------------------------------
# A full disk (issue item 6)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: room for one ResNet-20 checkpoint (2.2 MB), not for the next one beside it."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        skip_or_fail(f"cannot mount a 4 MiB tmpfs for the full-disk test (needs root and mount): "
                      f"{made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def fill(folder: Path) -> None:
    """Fill the file system of ``folder`` to the last block."""
    try:
        with open(folder / "filler", "wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
    except OSError:
        pass
    assert os.statvfs(folder).f_bavail == 0


def test_a_full_disk_is_one_line_keeps_the_checkpoint_and_is_refused_before_training(tmp_path, make_config,
                                                                                     small_disk):
    config = write_config(tmp_path / "config.yaml", make_config(
        cifar10=dict(iterations=12, milestones=[8], eval_every=12), engine=dict(checkpoint_every=2),
        mlflow={"live": False}))
    out = small_disk / "run"
    first = run_cli(*train_args(config, out))
    assert first.returncode == 1, first.stderr
    (line,) = lines_of(first.stderr)
    assert line.startswith(f"error: no space left for '{out}/checkpoint.pt'") and "resumes" in line
    assert load_checkpoint(out / "checkpoint.pt")["state"]["iteration"] == 2  # the last good one, intact
    assert not list(out.glob(".*.tmp"))

    again = run_cli(*train_args(config, out))  # refused before training: nothing to redo and lose again
    assert again.returncode == 1, again.stderr
    (line,) = lines_of(again.stderr)
    assert line.startswith(f"error: no space left for '{out}'") and "MiB free" in line
    assert "resuming" in again.stdout and "it 4/12" not in again.stdout

    recorded = run_cli(*train_args(config, out, "--record-failure"))  # the workflow's train jobs
    assert recorded.returncode == 0, recorded.stderr
    (line,) = lines_of(recorded.stderr)
    assert line.startswith("failed: ") and "no space left" in line
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "no space left" in metrics["reason"]

    (out / "metrics.json").unlink()
    fill(small_disk)  # not even the failure record fits now
    unrecorded = run_cli(*train_args(config, out, "--record-failure"))
    assert unrecorded.returncode == 1, unrecorded.stderr
    (line,) = lines_of(unrecorded.stderr)
    assert "no space left" in line and "could not be recorded either" in line
    assert not (out / "metrics.json").exists()
