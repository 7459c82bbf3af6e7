"""The local SLURM cluster from scripts/slurm-up.sh runs jobs the way the
project's SLURM profile needs: GPU requests, accounting, time-limit warnings."""

import sys
import time

import pytest

from tests.support.slurm import slurm_cluster  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow


def test_gpu_job_completes_and_sees_its_gpu(slurm_cluster, tmp_path):  # noqa: F811
    out = tmp_path / "job.out"
    script = (
        'echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"; '
        f'{sys.executable} -c "import sys; print(sys.executable)"'
    )
    job = slurm_cluster.sbatch(
        "--gres=gpu:1", "--time=2", "--job-name=gpu-check", f"--output={out}",
        f"--chdir={tmp_path}", "--wrap", script,
    )
    state = slurm_cluster.wait(job, timeout=120)
    text = out.read_text() if out.exists() else ""
    assert state == "COMPLETED", f"job {job}: {state}\n{text}\n{slurm_cluster.log('slurmctld')}"
    assert slurm_cluster.with_dbd
    # the accounting database, not only squeue, knows the job
    record = slurm_cluster.accounting(job)
    assert record == {"JobName": "gpu-check", "State": "COMPLETED", "ExitCode": "0:0"}, record
    lines = text.splitlines()
    visible = [ln for ln in lines if ln.startswith("CUDA_VISIBLE_DEVICES=")]
    assert visible and visible[0] != "CUDA_VISIBLE_DEVICES=unset", text
    # jobs run on this machine, so the project's interpreter is usable inside them
    assert sys.executable in lines, text


def test_impossible_request_is_refused_at_submission(slurm_cluster):  # noqa: F811
    with pytest.raises(RuntimeError, match="sbatch"):
        slurm_cluster.sbatch("--cpus-per-task=4096", "--wrap", "true")


def test_time_limit_warning_signal_reaches_batch_script(slurm_cluster, tmp_path):  # noqa: F811
    # SLURM's smallest time limit is one minute; the controller checks limits and
    # warning signals about every 30 s, so USR1@50 arrives 10-40 s after start.
    script = tmp_path / "warned.sh"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH --time=1\n"
        "#SBATCH --signal=B:USR1@50\n"
        "#SBATCH --job-name=usr1-check\n"
        "date +%s > started\n"
        "on_usr1() { date +%s > got-usr1; kill \"$child\" 2>/dev/null; exit 0; }\n"
        "trap on_usr1 USR1\n"
        # wait (not a foreground sleep) lets bash run the trap at once
        "sleep 300 & child=$!\n"
        "wait \"$child\"\n"
        "echo 'no USR1 before the time limit' >&2\n"
        "exit 3\n"
    )
    t0 = time.monotonic()
    job = slurm_cluster.sbatch(f"--chdir={tmp_path}", f"--output={tmp_path}/job.out", str(script))
    state = slurm_cluster.wait(job, timeout=150)
    waited = time.monotonic() - t0
    marker = tmp_path / "got-usr1"
    assert marker.exists(), (
        f"job {job} ended {state} after {waited:.0f} s without USR1\n"
        + (tmp_path / "job.out").read_text()
    )
    delay = int(marker.read_text()) - int((tmp_path / "started").read_text())
    print(f"\nUSR1 arrived {delay} s after the job started (time limit 60 s)")
    assert state == "COMPLETED"
    assert delay < 60
