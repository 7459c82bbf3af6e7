"""Cells longer than a SLURM time limit finish anyway, through the project's SLURM profile (slurm/).

One `snakemake --profile slurm` run on the local single-node cluster (scripts/slurm-up.sh) trains two
CIFAR cells whose jobs get a 2-minute time limit, several times shorter than their training:

* cifar-resnet-20: SLURM's warning (SIGTERM to the job step, --signal=TERM@30 instead of the
  profile's @600, which only suits long limits) or the limit itself stops the trainer, which writes a
  checkpoint and exits 75; Snakemake resubmits the job (retries) and training resumes. Its curve and
  final numbers equal those of the same cell trained locally without a limit (CPU, one thread,
  engine.deterministic), and its MLflow run is one run whose curve has every step once.
* cifar-plain-20: its training process is killed without warning (SIGKILL; `scancel --signal=KILL`
  would not do: SLURM turns it into SIGTERM first, and the trainer saves) after its first periodic
  checkpoint; the resubmitted job resumes from that checkpoint, losing only the iterations since.

* resnet-18 (ImageNet, synthetic): two training processes (engine.processes, gloo on the CPU, as an
  8-GPU node runs eight) with a loader worker each, stopped by SLURM's warning at every limit: the
  launcher, the processes and their workers all get SIGTERM, the processes checkpoint and exit 75,
  and the cell crosses at least two limits to end done within resources.max_resubmits.

None leaves a half-written file in results/. About 6-10 minutes on two idle cores, more on slower or
busy ones (the jobs and the local reference share the cores).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support import require_cifar
from tests.support.mlflow_store import metric_history, runs_of
from tests.support.slurm import slurm_cluster  # noqa: F401  (session fixture)
from tests.support.workflow import (
    SMOKE_OVERRIDES,
    VENV_BIN,
    check_no_partial_files,
    copy_repo,
    curve_numbers,
    read_csv,
    run_snakemake,
    workflow_env,
    write_overrides,
)

pytestmark = pytest.mark.slow

LONG, KILLED, IMAGENET = "cifar-resnet-20/seed-0", "cifar-plain-20/seed-0", "resnet-18/seed-0"
# 28,800 images at batch 32: over 90 s of training even on a whole idle CPU core (ResNet-20, at
# most ~300 images/s here), more than one 2-minute job holds after its start-up and the 30 s
# warning; so at least two jobs, however fast the machine.
ITERATIONS = 900
BATCH = 32
CHECKPOINT_EVERY = 20
LOG_EVERY = 10
# ImageNet at 32-pixel crops, 8 images a step over two processes: several 2-minute jobs of training.
IMAGENET_ITERATIONS = 800
MAX_RESUBMITS = 12
OVERRIDES = {
    **SMOKE_OVERRIDES,
    "plan": {"cifar10": True, "imagenet": True, "cifar_plain_depths": [20], "cifar_resnet_depths": [20],
             "resnet110_seeds": [], "imagenet_models": ["resnet-18"]},
    "scales": {"smoke": {"cifar10": {"iterations": ITERATIONS, "batch_size": BATCH, "milestones": [450, 675],
                                     "eval_every": 300, "log_every": LOG_EVERY},
                         "imagenet": {"iterations": IMAGENET_ITERATIONS, "batch_size": 8, "milestones": [600],
                                      "eval_every": 400, "log_every": 20},
                         "engine": {"checkpoint_every": CHECKPOINT_EVERY, "processes": 2, "workers": 1},
                         "mlflow": {"live": True}}},  # the job logs its run, continued across resubmissions
    "resources": {**SMOKE_OVERRIDES["resources"],
                  "cifar10": {"gpus": 1, "cpus": 1, "mem_mb": 2000, "runtime_min": 2},
                  "imagenet": {"gpus": 2, "cpus": 1, "mem_mb": 4000, "runtime_min": 2},
                  "max_resubmits": MAX_RESUBMITS},
}
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: .*/rule_train/([^/]+)/\d+\.log\)")
PROGRESS = re.compile(r"\] it (\d+)/")


def target(cell: str) -> str:
    return f"results/runs/smoke/{cell}/metrics.json"


def wildcard_dir(cell: str) -> str:
    model, seed = cell.split("/seed-")
    return f"{model}_{seed}"  # the plugin's log folder for these wildcards


def last_iteration(log: Path) -> int:
    found = PROGRESS.findall(log.read_text(errors="replace")) if log.exists() else []
    return int(found[-1]) if found else 0


def trainer_of(repo: Path, cell: str) -> int | None:
    """PID of the training process of this cell of this copy, if one runs now."""
    wanted = f"--out results/runs/smoke/{cell}".split()
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
            if "resnet" in argv and "train" in argv and all(word in argv for word in wanted) \
                    and Path(proc / "cwd").resolve() == repo.resolve():
                return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


def kill_trainer_after_checkpoint(repo: Path, record: dict, stop: threading.Event) -> None:
    """Once KILLED's trainer is past its first periodic checkpoint, SIGKILL it: no warning, no saving."""
    log = repo / f"results/logs/smoke/{KILLED}.log"
    checkpoint = repo / f"results/runs/smoke/{KILLED}/checkpoint.pt"
    while not stop.wait(0.5):
        if checkpoint.exists() and last_iteration(log) >= CHECKPOINT_EVERY + LOG_EVERY:
            pid = trainer_of(repo, KILLED)
            if pid is None:
                continue
            environ = dict(item.split("=", 1) for item in
                           Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in item)
            record["iteration"] = last_iteration(log)
            os.kill(pid, signal.SIGKILL)
            record["job"] = environ.get("SLURM_JOB_ID")
            return


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):  # noqa: F811
    """The SLURM run (time-limited, one job killed) and, at the same time, a local reference run."""
    require_cifar()
    repo = copy_repo(tmp_path_factory.mktemp("resubmit-slurm"))
    reference = copy_repo(tmp_path_factory.mktemp("resubmit-local"))
    for copy in (repo, reference):
        write_overrides(copy, OVERRIDES)
    record: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=kill_trainer_after_checkpoint, args=(repo, record, stop), daemon=True)
    t0 = time.monotonic()
    # The reference: the long cell without any limit, on this machine, one thread (as in the jobs).
    local = subprocess.Popen([str(VENV_BIN / "snakemake"), target(LONG),
                              "--cores", "1", "--configfile", "test-overrides.yaml"], cwd=reference,
                             env=workflow_env(PYTHONPATH=str(reference)),
                             stdout=open(reference / "snakemake.log", "w"), stderr=subprocess.STDOUT)
    watcher.start()
    try:
        proc = run_snakemake(
            repo, target(LONG), target(KILLED), target(IMAGENET), "--cores", "8", "--profile", "slurm",
            "--configfile", "test-overrides.yaml",
            "--config", "scale=smoke",                       # the profile's own scale is the paper's
            "--slurm-status-command", "sacct",              # accounting runs here; squeue: test_slurm_workflow
            "--slurm-init-seconds-before-status-checks", "5",
            "--set-resources", "train:slurm_extra='--signal=TERM@30'",
            timeout=1800,
        )
    finally:
        stop.set()
        watcher.join(5)
    seconds = time.monotonic() - t0
    assert local.wait(timeout=600) == 0, (reference / "snakemake.log").read_text()[-4000:]
    print(f"\nSLURM run with resubmissions: {seconds:.0f} s (exit {proc.returncode})")
    assert proc.returncode == 0, proc.stdout[-8000:]
    jobs: dict[str, list[str]] = {}
    for job_id, folder in SUBMITTED.findall(proc.stdout):
        jobs.setdefault(folder, []).append(job_id)
    return {"repo": repo, "reference": reference, "log": proc.stdout, "jobs": jobs, "killed": record,
            "cluster": slurm_cluster}


def states(cluster, job_ids: list[str]) -> list[str]:
    return [cluster.accounting(int(job), fields=("State",))["State"].split()[0] for job in job_ids]


def test_long_cell_completes_through_resubmissions(runs):
    repo, reference = runs["repo"], runs["reference"]
    jobs = runs["jobs"][wildcard_dir(LONG)]
    seen = states(runs["cluster"], jobs)
    print(f"\n{LONG}: SLURM jobs {jobs}, states {seen}")
    assert len(jobs) >= 2, f"expected resubmissions, got jobs {jobs}"
    assert seen[-1] == "COMPLETED" and all(s in {"FAILED", "TIMEOUT"} for s in seen[:-1]), seen
    # at least once the warning signal (not the limit) ended a job: it stopped before its limit
    assert "FAILED" in seen, f"no job ended on the warning signal before its time limit: {seen}"
    # a job's log is replaced by the next attempt; Snakemake printed those of the failed jobs
    assert f"interrupted: {LONG}: stopped by SIGTERM" in runs["log"]
    log = (repo / f"results/logs/smoke/{LONG}.log").read_text()
    assert "resuming at iteration" in log, log[-3000:]

    ours = json.loads((repo / target(LONG)).read_text())
    theirs = json.loads((reference / target(LONG)).read_text())
    assert ours["status"] == theirs["status"] == "done"
    assert ours["iterations"] == theirs["iterations"] == ITERATIONS
    assert 1 <= ours["interruptions"] <= len(jobs) - 1 and theirs["interruptions"] == 0
    assert ours["final"] == theirs["final"], "final errors differ from the run without a time limit"
    curve = curve_numbers(repo / f"results/runs/smoke/{LONG}/curve.csv")
    assert curve == curve_numbers(reference / f"results/runs/smoke/{LONG}/curve.csv")
    assert [int(row["iteration"]) for row in curve] == list(range(LOG_EVERY, ITERATIONS + 1, LOG_EVERY))


def test_imagenet_cell_of_two_processes_crosses_time_limits(runs):
    jobs = runs["jobs"][wildcard_dir(IMAGENET)]
    seen = states(runs["cluster"], jobs)
    print(f"\n{IMAGENET}: SLURM jobs {jobs}, states {seen}")
    assert 3 <= len(jobs) <= MAX_RESUBMITS + 1, f"expected at least two limits crossed, got jobs {jobs}"
    assert seen[-1] == "COMPLETED" and all(s in {"FAILED", "TIMEOUT"} for s in seen[:-1]), seen
    assert f"interrupted: {IMAGENET}: stopped by SIGTERM" in runs["log"]
    assert "killed by signal" not in runs["log"]  # no loader worker died of the signal
    metrics = json.loads((runs["repo"] / target(IMAGENET)).read_text())
    assert metrics["status"] == "done" and metrics["iterations"] == IMAGENET_ITERATIONS
    assert metrics["provenance"]["world_size"] == 2 and 2 <= metrics["interruptions"] <= len(jobs) - 1
    curve = read_csv(runs["repo"] / f"results/runs/smoke/{IMAGENET}/curve.csv")
    assert [int(row["iteration"]) for row in curve] == list(range(20, IMAGENET_ITERATIONS + 1, 20))


def test_mlflow_run_continues_across_jobs(runs):
    uri = f"sqlite:///{runs['repo'] / 'results' / 'mlflow.db'}"
    found = {run["name"]: run for run in runs_of(uri, "resnet-he2015")}
    for cell in (LONG, KILLED):
        run = found[f"smoke/{cell}"]  # one run per cell, however many jobs it took
        assert run["status"] == "FINISHED"
        curve = read_csv(runs["repo"] / f"results/runs/smoke/{cell}/curve.csv")
        for key in ("train_loss", "lr", "test_error"):
            history = metric_history(uri, run["run_id"], key)
            expected = [(int(row["iteration"]), float(row[key])) for row in curve if row[key] != ""]
            assert [step for step, _ in history] == [step for step, _ in expected], f"{cell} {key}: gaps or repeats"
            assert [value for _, value in history] == pytest.approx([value for _, value in expected], rel=1e-5)
    assert len([name for name in found if name.startswith("smoke/")]) == 3


def test_job_killed_without_warning_resumes_from_last_checkpoint(runs):
    killed = runs["killed"]
    assert "job" in killed, "the killer never found the job to kill"
    # every attempt's resume line: failed attempts' logs as Snakemake printed them, then the last one
    log = runs["log"] + (runs["repo"] / f"results/logs/smoke/{KILLED}.log").read_text()
    resumed = [int(n) for n in re.findall(rf"{KILLED}: resuming at iteration (\d+)", log)]
    print(f"\n{KILLED}: killed in job {killed['job']} at iteration ~{killed['iteration']}, resumed at {resumed}")
    # one resume started from the periodic checkpoint before the kill: lost at most the iterations since
    assert any(n % CHECKPOINT_EVERY == 0 and n >= CHECKPOINT_EVERY
               and n <= killed["iteration"] < n + CHECKPOINT_EVERY + LOG_EVERY for n in resumed), resumed
    metrics = json.loads((runs["repo"] / target(KILLED)).read_text())
    assert metrics["status"] == "done" and metrics["iterations"] == ITERATIONS
    curve = read_csv(runs["repo"] / f"results/runs/smoke/{KILLED}/curve.csv")
    assert [int(row["iteration"]) for row in curve] == list(range(LOG_EVERY, ITERATIONS + 1, LOG_EVERY))
    assert states(runs["cluster"], runs["jobs"][wildcard_dir(KILLED)])[-1] == "COMPLETED"


def test_no_half_written_files(runs):
    problems = check_no_partial_files(runs["repo"] / "results")
    assert not problems, "\n".join(problems)
