"""The workflow through the project's SLURM profile: `snakemake --cores 8 --profile slurm` from the
root of a fresh copy of the repository, against the single-node cluster of scripts/slurm-up.sh.

The plan is the end-to-end smoke plan (tests/support/workflow.py: real CIFAR-10, synthetic ImageNet,
CPU, deterministic kernels, one thread per job). Every training job must have gone through sbatch,
and results/ must hold the same tables and the same reproduced numbers as the same plan run locally
(the session fixture smoke_results_local): training on the CPU with deterministic kernels and one
thread is reproducible bit for bit, so numbers are compared exactly as written; only timings
(throughput, wall time, dates, hosts, job ids) may differ.

The two CIFAR cells are packed into one SLURM job (config resources.cifar_cells_per_job: 2, Snakemake's
job group "cifar"): one job id, one GPU, their CPUs and memory added up, both training side by side,
and each with the numbers it has when trained alone (the local run trains one cell per job).

Job status is checked with squeue (the profile's default, which also works without accounting);
tests/test_slurm_resubmit.py uses sacct.
"""
from __future__ import annotations

import json
import re
import time

import pytest

from tests.support import require_cifar
from tests.support.slurm import slurm_cluster  # noqa: F401  (session fixture)
from tests.support.workflow import (
    SMOKE_OVERRIDES,
    check_no_partial_files,
    copy_repo,
    curve_numbers,
    read_csv,
    run_folders,
    run_snakemake,
    write_overrides,
)

# the session fixture smoke_results_local, registered once so that every module shares one local run
pytest_plugins = ["tests.support.workflow"]

pytestmark = pytest.mark.slow

# rule_<rule>/<wildcards>/<jobid>.log for one job, group_<group>_<rules>/<jobid>.log for a group job
SUBMITTED = re.compile(r"Job \S+ has been submitted with SLURM jobid (\d+) \(log: .*/(?:rule|group)_(\w+)/(?:([^/]*)/)?\d+\.log\)")
CIFAR_CELLS_PER_JOB = 2
# table columns that are measurements of the machine, not reproduced numbers
TIMING = re.compile(r"time|per_s|/s|second|hour|minute|date|host|device|commit|job|gpu_h|throughput", re.I)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):  # noqa: F811
    require_cifar()
    repo = copy_repo(tmp_path_factory.mktemp("smoke-slurm"))
    # mlflow.live: each packed cell logs its own MLflow run from inside the shared job
    write_overrides(repo, {**SMOKE_OVERRIDES, "resources": {**SMOKE_OVERRIDES["resources"],
                                                            "cifar_cells_per_job": CIFAR_CELLS_PER_JOB},
                           "scales": {"smoke": {"mlflow": {"live": True}}}})
    t0 = time.monotonic()
    # The profile's own scale is the paper's (tests/test_slurm_profile.py); this run asks for smoke.
    proc = run_snakemake(repo, "--cores", "8", "--profile", "slurm", "--configfile", "test-overrides.yaml",
                         "--config", "scale=smoke", "--slurm-init-seconds-before-status-checks", "5", timeout=1200)
    print(f"\nsmoke plan through SLURM: exit {proc.returncode} after {time.monotonic() - t0:.0f} s in {repo}")
    assert proc.returncode == 0, proc.stdout[-8000:]
    return {"repo": repo, "log": proc.stdout, "cluster": slurm_cluster}


def test_every_training_job_went_through_sbatch(slurm_run):
    submitted = SUBMITTED.findall(slurm_run["log"])
    train_jobs = {job for job, rule, _ in submitted if rule in ("train", "cifar_train")}
    cells = run_folders(slurm_run["repo"])
    # one job per ImageNet cell, one for the pair of CIFAR cells
    assert cells and len(train_jobs) == len(cells) - 1, (sorted(cells), submitted)
    for cell, folder in cells.items():
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["status"] == "done", (cell, metrics.get("reason"))
        # the training process ran inside one of the submitted SLURM jobs
        assert metrics["provenance"]["slurm_job_id"] in train_jobs, (cell, metrics["provenance"])
    for job in sorted(train_jobs):
        record = slurm_run["cluster"].accounting(int(job), fields=("State", "ExitCode"))
        assert record == {"State": "COMPLETED", "ExitCode": "0:0"}, (job, record)
    # the report jobs went through SLURM too
    assert {rule for _, rule, _ in submitted} >= {"train", "table", "figure", "summary"}


def test_cifar_cells_share_one_gpu_job_side_by_side(slurm_run):
    cells = run_folders(slurm_run["repo"])
    job_of = {cell: json.loads((folder / "metrics.json").read_text())["provenance"]["slurm_job_id"]
              for cell, folder in cells.items()}
    cifar = sorted(cell for cell in cells if cell.startswith("cifar-"))
    imagenet = sorted(cell for cell in cells if not cell.startswith("cifar-"))
    assert len(cifar) == CIFAR_CELLS_PER_JOB and len({job_of[cell] for cell in cifar}) == 1, job_of
    assert len({job_of[cell] for cell in imagenet}) == len(imagenet), job_of  # one job each
    assert not {job_of[cell] for cell in imagenet} & {job_of[cifar[0]]}
    job = job_of[cifar[0]]
    # what the job held: one GPU, one node, each cell's CPUs and memory (SMOKE_OVERRIDES: 1 CPU, 2000 MB)
    tres = dict(item.split("=", 1) for item in slurm_run["cluster"].accounting(
        int(job), fields=("AllocTRES",))["AllocTRES"].split(","))
    assert (tres["gres/gpu"], tres["node"], tres["cpu"]) == ("1", "1", str(CIFAR_CELLS_PER_JOB)), tres
    assert tres["mem"] in (f"{2000 * CIFAR_CELLS_PER_JOB}M", f"{2000 * CIFAR_CELLS_PER_JOB / 1000:g}G"), tres
    # side by side: inside the job, Snakemake started every cell's rule before the first one finished
    # (packed one after another, the job's log would read start, finish, start, finish)
    log = next((slurm_run["repo"] / ".snakemake" / "slurm_logs").glob(f"group_*/{job}.log")).read_text()
    assert log.split("Finished jobid")[0].count("localrule train:") == CIFAR_CELLS_PER_JOB, log[-4000:]
    # each cell kept its own log and MLflow run id
    assert len({json.loads((cells[cell] / "metrics.json").read_text())["mlflow_run_id"] for cell in cifar}) == 2
    for cell in cifar:
        assert f"[{cell}]" in (slurm_run["repo"] / "results/logs/smoke" / f"{cell}.log").read_text()


def test_same_cells_and_numbers_as_a_local_run(slurm_run, smoke_results_local):
    ours, theirs = run_folders(slurm_run["repo"]), run_folders(smoke_results_local)
    assert sorted(ours) == sorted(theirs)
    for cell in ours:
        a = json.loads((ours[cell] / "metrics.json").read_text())
        b = json.loads((theirs[cell] / "metrics.json").read_text())
        assert (a["status"], a["iterations"], a["final"]) == (b["status"], b["iterations"], b["final"]), cell
        assert curve_numbers(ours[cell] / "curve.csv") == curve_numbers(theirs[cell] / "curve.csv"), cell


def test_same_tables_as_a_local_run(slurm_run, smoke_results_local):
    ours, theirs = slurm_run["repo"] / "results", smoke_results_local / "results"
    tables = sorted(path.name for path in theirs.glob("table*.csv"))
    assert tables == ["table1.csv", "table2.csv", "table3.csv", "table6.csv"]
    for name in tables:
        a, b = read_csv(ours / name), read_csv(theirs / name)
        assert len(a) == len(b), name
        assert a and list(a[0]) == list(b[0]), name
        kept = [column for column in a[0] if not TIMING.search(column)]
        assert [{c: row[c] for c in kept} for row in a] == [{c: row[c] for c in kept} for row in b], name
    for name in ("figure1.png", "figure4.png", "figure6.png", "figure7.png", "README.md"):
        assert (ours / name).stat().st_size > 0, name


def test_no_half_written_files(slurm_run):
    problems = check_no_partial_files(slurm_run["repo"] / "results")
    assert not problems, "\n".join(problems)
