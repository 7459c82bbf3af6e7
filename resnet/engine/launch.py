"""Several training processes for one ImageNet cell: one per GPU, or ``engine.processes`` on a CPU.

    python -m resnet train --launch ...    (the workflow's train jobs)

The launcher starts N copies of the same train command with RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT set (a free port on this host; the processes meet in
torch.distributed, NCCL on GPUs, gloo on a CPU), waits for all of them and ends with their verdict.
It does what torchrun did for the project, minus two things that broke the stop protocol: torchrun
kills its processes 30 s after passing a signal on (a large net's checkpoint on a cluster file
system can take longer), and it ends with 1 whatever its processes reported, so a time limit never
reached the workflow as the trainer's 75.

- A stop signal (TERM, USR1, INT) is passed on to every process; they checkpoint and exit 75, and the
  launcher waits for them however long that takes (SLURM's kill at the time limit is the deadline).
  Under SLURM every process of the job step gets the signal anyway; a second copy changes nothing.
- A process that ends with an error while the others still run: the others would wait in their
  next collective, so they get SIGTERM (a checkpoint, if they can) and, GRACE_S later, SIGKILL.
- Exit status, as for one process (resnet.cli): 0 done; 75 interrupted after a checkpoint; 1 the cell
  failed (diverged, or interrupted more than resources.max_resubmits; process 0 wrote metrics.json);
  2 bad input; 73 another trainer holds the run folder (nothing recorded: the folder is not this
  run's); another status if a process crashed. With --record-failure, a failure is recorded in
  metrics.json (by process 0, or here with the failing process's last line when process 0 could
  not) and the launcher ends 0, as one process does.

Each process prints its own lines to the job's log; its standard error passes through here, so that
the last line of a failing process names the failure.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from resnet.config.schema import ConfigError
from resnet.engine.distributed import launched
from resnet.engine.stops import STOP_SIGNALS

GRACE_S = 60.0  # after one process failed: how long the others get to stop before SIGKILL
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_BUSY, EXIT_INTERRUPTED = 1, 2, 73, 75  # resnet.cli's statuses


def processes_for(job) -> int:
    """How many training processes ``job`` runs as: 1, or N for an ImageNet cell (engine.processes;
    0: one per visible GPU)."""
    if job.dataset != "imagenet" or launched():
        return 1
    wanted = job.engine.processes
    cuda = torch.cuda.is_available() and job.engine.device != "cpu"
    if cuda:
        gpus = torch.cuda.device_count()
        if wanted > gpus:
            raise ConfigError(f"config key 'engine.processes': {wanted} processes but {gpus} GPU(s) visible: set "
                              f"engine.processes: 0 (one per GPU) or at most {gpus}")
        wanted = wanted or gpus
    processes = max(1, wanted)
    batch, group = job.recipe.batch_size, job.recipe.bn_group
    if batch % processes or (group and (batch // processes) % group):
        raise ConfigError(f"recipes.imagenet.batch_size {batch} does not split over {processes} training processes"
                          f" (into BN groups of {group}): use a multiple of {processes}, or set engine.processes "
                          f"(and resources.imagenet.gpus) to a divisor of the batch")
    return processes


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(rank: int, world: int, port: int, cuda: bool) -> dict[str, str]:
    environment = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                   "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    if not cuda:  # the job's CPU threads shared out among its processes
        threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
        environment["OMP_NUM_THREADS"] = str(max(1, threads // world))
    return environment


class _Process:
    """One training process: its status once it ended, and the last line it wrote to stderr."""

    def __init__(self, rank: int, command: list[str], environment: dict[str, str]) -> None:
        self.rank, self.last_line, self.ended_at = rank, "", None
        self.popen = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._pass_on_stderr, daemon=True)
        self._reader.start()

    def _pass_on_stderr(self) -> None:
        for line in self.popen.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            if line.strip():
                self.last_line = line.strip()

    @property
    def status(self) -> int | None:
        status = self.popen.poll()
        if status is not None and self.ended_at is None:
            self.ended_at = time.monotonic()
            self._reader.join(timeout=5)
        return status


def run_processes(job, processes: int, argv: list[str], out: Path, record_failure: bool,
                  retry_of: str | None) -> int:
    """Train ``job`` as ``processes`` processes of ``argv`` (the train command's arguments, without
    --launch and --record-failure); the exit status of the whole (see the module's docstring)."""
    cuda = torch.cuda.is_available() and job.engine.device != "cpu"
    port = _free_port()
    print(f"{job.cell}: {processes} training processes ({'one GPU each' if cuda else 'gloo, on the CPU'}), "
          f"{job.recipe.batch_size // processes} images each (global batch {job.recipe.batch_size})",
          file=sys.stderr, flush=True)
    _prepare_data(job)
    command = [sys.executable, "-m", "resnet", *argv]
    children = [_Process(rank, command, _environment(rank, processes, port, cuda)) for rank in range(processes)]
    previous = {number: signal.signal(number, lambda number, _: _pass_on(children, number)) for number in STOP_SIGNALS}
    try:
        _wait(children)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return _verdict(job, children, out, record_failure, retry_of)


def _prepare_data(job) -> None:
    """ImageNet from its archives, prepared here (once; at once if done) before the processes start:
    an hour's extraction by process 0 alone would outlast the others' wait for its listing."""
    from resnet.config.preflight import imagenet_kind

    if imagenet_kind(job.data.imagenet) != "archives":
        return
    from resnet.config.preflight import prepared_root
    from resnet.data.imagenet.prepare import prepare_imagenet

    prepare_imagenet(Path(job.data.imagenet).expanduser(), prepared_root(job.data), workers=max(1, job.engine.workers),
                     partial=job.data.imagenet_partial)


def _pass_on(children: list[_Process], number: int) -> None:
    for child in children:
        if child.popen.poll() is None:
            child.popen.send_signal(number)


def _wait(children: list[_Process]) -> None:
    """Until every process ended; once one failed, the others get SIGTERM, then SIGKILL."""
    killed_at = None
    while any(child.status is None for child in children):
        failed = [child for child in children if child.status not in (None, 0, EXIT_INTERRUPTED)]
        if failed and killed_at is None:
            killed_at = time.monotonic()
            _pass_on(children, signal.SIGTERM)
        elif killed_at is not None and time.monotonic() - killed_at > GRACE_S:
            _pass_on(children, signal.SIGKILL)
        time.sleep(0.1)


def _verdict(job, children: list[_Process], out: Path, record_failure: bool, retry_of: str | None) -> int:
    from resnet.engine.outcome import record_failure as write_failure
    from resnet.runs.lock import hold_run_folder
    from resnet.runs.records import Metrics, RecordError

    statuses = [child.status for child in children]
    if all(status == 0 for status in statuses):
        return 0
    if statuses[0] == EXIT_BUSY:  # process 0 found the folder held by another trainer: not ours to write
        return EXIT_BUSY
    if all(status in (0, EXIT_INTERRUPTED) for status in statuses):
        return EXIT_INTERRUPTED
    first = min((child for child in children if child.status not in (0, EXIT_INTERRUPTED)),
                key=lambda child: child.ended_at)
    try:
        recorded = Metrics.read(Path(out) / "metrics.json")
    except RecordError:
        recorded = None
    if statuses[0] == EXIT_FAILED and recorded is not None and not recorded.done:
        return 0 if record_failure else EXIT_FAILED  # the cell failed, and process 0 said why
    what = first.last_line or f"exited with status {first.status}"
    if not record_failure:
        print(f"failed: {job.cell}: training process {first.rank}: {what}", file=sys.stderr, flush=True)
        return first.status if first.status and first.status > 0 else EXIT_FAILED
    reason = f"training process {first.rank} of {len(children)} failed: {what}"[:500]
    with hold_run_folder(out):  # process 0 has ended: written only if no other trainer took the folder since
        write_failure(job, Path(out), reason, retry_of=retry_of)
    print(f"failed: {job.cell}: {reason} (recorded in {Path(out) / 'metrics.json'})", file=sys.stderr, flush=True)
    return 0
