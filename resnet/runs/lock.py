"""A run folder belongs to one trainer at a time: the lock file .<run>.lock beside it.

    with hold_run_folder(out):         # raises RunFolderBusy, naming the holder, if another has it
        ...train...

The lock is the kernel's (flock on results/runs/<scale>/<model>/.seed-<n>.lock), held from the
start of a training to its end by the trainer's process 0 (the only process that moves, deletes or
writes the folder's files). The kernel releases it when that process ends in any way, a SIGKILL
included, so a crashed trainer never leaves it stuck. The file itself stays; it says who held the
folder last (pid, host, start, command), which is what a second trainer prints when it is refused.
It lives beside the run folder, not in it: the folder holds the run's files alone, a trainer
refused at its start (bad input) leaves nothing in it, and moving the folder aside moves no lock.

A process may hold the same folder's lock more than once (the command line holds it around
train(), which holds it too); only the outermost release frees it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

# How often a waiting trainer tries the lock again.
POLL_S = 2.0
# How long a train job of the workflow waits for a run folder that another trainer holds before it
# exits 73 (and Snakemake resubmits it): long enough for a SLURM job requeued while its first
# instance still drains (that one writes its checkpoint and ends), short enough not to sit on an
# allocation behind a trainer started by hand (workflow/rules/train.smk passes it).
WORKFLOW_WAIT_S = 120.0

# Folders this process holds: resolved path -> (open lock file, depth).
_HELD: dict[Path, tuple[int, int]] = {}


def lock_path(folder: Path) -> Path:
    """The lock file of a run folder: .<name>.lock beside it (hidden from globs such as seed-*)."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


class RunFolderBusy(Exception):
    """Another trainer holds the run folder; the message names the folder and the holder."""


def holder_of(folder: Path) -> str:
    """Who holds (or last held) the folder's lock, as its lock file says: "pid P on host H ..."."""
    try:
        text = lock_path(folder).read_text().strip()
    except OSError:
        text = ""
    return text or "a process that has not said who it is yet"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            # A file system without locks (some Lustre mounts): the folder cannot be guarded here.
            print(f"warning: the file system of this run folder does not support locks "
                  f"({error.strerror}): nothing stops a second trainer of the same cell", file=sys.stderr)
            return True
        raise


def _busy_line(folder: Path, waited_s: float) -> str:
    waited = f" (waited {waited_s:.0f} s)" if waited_s else ""
    return (f"run folder '{folder}' is in use by another trainer of this cell: {holder_of(folder)}{waited}; "
            f"two trainers would mix their files, so this one stops: run it again once that one has "
            f"ended (its lock is released when its process ends, however it ends)")


@contextmanager
def hold_run_folder(folder: Path, wait_s: float = 0.0, echo: Callable[[str], None] | None = None
                    ) -> Iterator[None]:
    """Hold ``folder``'s lock for the block; wait up to ``wait_s`` for another holder, else raise
    RunFolderBusy with one line naming the folder and the holder (pid, host, since, command)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _HELD:  # held by this process already: nested
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth - 1)
        return
    fd = os.open(lock_path(folder), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        _acquire(fd, folder, wait_s, echo or (lambda line: print(line, file=sys.stderr, flush=True)))
        _stamp(fd)
        _HELD[key] = (fd, 1)
        try:
            yield
        finally:
            del _HELD[key]
    finally:
        os.close(fd)  # releases the lock (the kernel does the same when the process dies)


def _acquire(fd: int, folder: Path, wait_s: float, echo: Callable[[str], None]) -> None:
    if _try_lock(fd):
        return
    if wait_s <= 0:
        raise RunFolderBusy(_busy_line(folder, 0))
    echo(f"run folder '{folder}' is in use by {holder_of(folder)}: waiting up to {wait_s:.0f} s for it")
    started = time.monotonic()
    while time.monotonic() - started < wait_s:
        time.sleep(min(POLL_S, max(0.0, wait_s - (time.monotonic() - started))))
        if _try_lock(fd):
            echo(f"run folder '{folder}' is free after {time.monotonic() - started:.0f} s")
            return
    raise RunFolderBusy(_busy_line(folder, time.monotonic() - started))


def _stamp(fd: int) -> None:
    """Write who holds the folder into its lock file (read by a refused trainer)."""
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    text = f"pid {os.getpid()} on host {socket.gethostname()} since {since} ({' '.join(sys.argv)[:300]})\n"
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    except OSError:  # a full disk: the lock is held all the same, only the note of who holds it is missing
        pass
