"""A real single-node SLURM cluster for tests, brought up by scripts/slurm-up.sh.

Use the session-scoped fixture in a test module::

    from tests.support.slurm import slurm_cluster  # noqa: F401  (pytest fixture)

    def test_something(slurm_cluster):
        job = slurm_cluster.sbatch("--wrap", "hostname")
        assert slurm_cluster.wait(job) == "COMPLETED"

or the plain functions ``start_cluster()`` / ``stop_cluster()``.

Where SLURM cannot be brought up here (not Linux, not root, no apt-get, the
package install fails) the fixture skips with the reason; with ``CI=true`` in
the environment it fails instead, so that CI never silently skips these tests.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.support import REPO_ROOT, skip_or_fail

SLURM_UP = REPO_ROOT / "scripts" / "slurm-up.sh"
SLURM_DOWN = REPO_ROOT / "scripts" / "slurm-down.sh"
DEFAULT_PREFIX = "/tmp/resnet-slurm"

# job states after which a job will not change any more
FINAL_STATES = {
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
    "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "REVOKED",
}


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started on this machine."""


def unavailable_reason() -> str | None:
    """Why scripts/slurm-up.sh cannot run here, or None when it can."""
    if platform.system() != "Linux":
        return f"a local SLURM cluster needs Linux (this is {platform.system()})"
    if os.geteuid() != 0:
        return "a local SLURM cluster needs root (scripts/slurm-up.sh installs and starts daemons)"
    if shutil.which("apt-get") is None or shutil.which("dpkg-query") is None:
        return "a local SLURM cluster needs a Debian/Ubuntu system with apt-get"
    return None


@dataclass
class SlurmCluster:
    """A running local cluster and small helpers to use it."""

    prefix: Path
    with_dbd: bool
    started_here: bool
    startup_seconds: float
    startup_log: str = field(repr=False, default="")

    # -- commands -----------------------------------------------------------
    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a SLURM client command (sbatch, squeue, sacct, ...) and capture its output."""
        return subprocess.run(list(cmd), capture_output=True, text=True, check=check, timeout=timeout)

    def sbatch(self, *args: str, cwd: str | os.PathLike | None = None) -> int:
        """Submit with ``sbatch --parsable ARGS``; return the job id."""
        proc = subprocess.run(
            ["sbatch", "--parsable", *args], capture_output=True, text=True, cwd=cwd, timeout=60
        )
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)} failed: {proc.stderr.strip()}")
        return int(proc.stdout.strip().split(";")[0])

    def state(self, job_id: int) -> str | None:
        """The job's state (e.g. PENDING, RUNNING, COMPLETED), or None when unknown.

        Asks sacct when accounting runs, else squeue (finished jobs stay visible
        there for MinJobAge seconds)."""
        if self.with_dbd:
            proc = self.run("sacct", "-X", "-n", "-P", "-j", str(job_id), "-o", "State", check=False)
        else:
            proc = self.run("squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T", check=False)
        lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
        if proc.returncode != 0 or not lines:
            return None
        # sacct writes e.g. "CANCELLED by 0"
        return lines[-1].split()[0]

    def wait(self, job_id: int, timeout: float = 120, poll: float = 0.5) -> str:
        """Wait until the job reaches a final state; return that state."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.state(job_id)
            if state in FINAL_STATES:
                return state
            time.sleep(poll)
        raise TimeoutError(f"job {job_id} not finished after {timeout} s (last state: {state})")

    def accounting(self, job_id: int, fields=("JobName", "State", "ExitCode"),
                   timeout: float = 60) -> dict[str, str]:
        """The job's allocation record from sacct (needs accounting), as {field: value}.

        slurmdbd may first hold a placeholder row named "allocation" until the
        controller's job-start message arrives, so wait for the real one."""
        if not self.with_dbd:
            raise RuntimeError("accounting is off (WITH_DBD=0): sacct knows no jobs")
        fields = tuple(fields)
        query = ("JobName", *[f for f in fields if f != "JobName"])
        deadline = time.monotonic() + timeout
        record: dict[str, str] = {}
        while True:
            proc = self.run("sacct", "-X", "-n", "-P", "-j", str(job_id), "-o", ",".join(query),
                            check=False)
            lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
            if lines:
                record = dict(zip(query, lines[-1].split("|")))
                if record["JobName"] != "allocation":
                    return {f: record[f] for f in fields}
            if time.monotonic() > deadline:
                raise TimeoutError(f"sacct has no full record of job {job_id}: {record}")
            time.sleep(0.5)

    def log(self, name: str, lines: int = 40) -> str:
        """The last lines of a daemon log (slurmctld, slurmd, slurmdbd)."""
        path = self.prefix / "log" / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start_cluster(
    *,
    with_dbd: bool = True,
    fake_gpus: int = 2,
    node_cpus: int | None = None,
    prefix: str | os.PathLike | None = None,
    timeout: float = 900,
) -> SlurmCluster:
    """Run scripts/slurm-up.sh; raise SlurmUnavailable where it cannot work here.

    A cluster that was already running with the same settings is reused and
    ``started_here`` is False, so that stop_cluster() leaves it running."""
    reason = unavailable_reason()
    if reason:
        raise SlurmUnavailable(reason)
    prefix = Path(prefix or os.environ.get("SLURM_PREFIX") or DEFAULT_PREFIX)
    env = dict(os.environ, SLURM_PREFIX=str(prefix), WITH_DBD="1" if with_dbd else "0",
               FAKE_GPUS=str(fake_gpus))
    if node_cpus is not None:
        env["NODE_CPUS"] = str(node_cpus)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(SLURM_UP)], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"scripts/slurm-up.sh did not finish within {timeout} s") from exc
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        error = next((ln for ln in proc.stderr.splitlines() if "ERROR" in ln), proc.stderr.strip())
        if "apt-get" in error:
            # no package mirror reachable, no such packages: SLURM cannot be installed here
            raise SlurmUnavailable(error)
        raise RuntimeError(f"scripts/slurm-up.sh failed (exit {proc.returncode}):\n{out}")
    return SlurmCluster(
        prefix=prefix,
        with_dbd=with_dbd,
        started_here="nothing to do" not in proc.stdout,
        startup_seconds=seconds,
        startup_log=out,
    )


def stop_cluster(cluster: SlurmCluster, *, force: bool = False) -> None:
    """Run scripts/slurm-down.sh for a cluster this process started (or always, with force)."""
    if not (cluster.started_here or force):
        return
    subprocess.run(["bash", str(SLURM_DOWN)], env=dict(os.environ, SLURM_PREFIX=str(cluster.prefix)),
                   capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node cluster (accounting on, 2 fake GPUs) for the whole session."""
    try:
        cluster = start_cluster()
    except SlurmUnavailable as exc:
        skip_or_fail(str(exc))
    print(f"\nlocal SLURM cluster ready in {cluster.startup_seconds:.1f} s "
          f"(started here: {cluster.started_here})")
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
