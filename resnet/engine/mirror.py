"""The cell's MLflow run, written beside the training loop: process 0 hands every call to one thread.

A store that is slow or stuck (a busy SQLite file, a tracking server that does not answer) never
holds up training, nor the other processes, which would otherwise wait for process 0 in their next
collective until its timeout. The thread starts no subprocess (git is asked for the commit before
it starts, and mlflow imported): loader workers are forked beside it, and a forked worker keeps a
copy of every pipe open at that instant; a subprocess started on the thread then waited for its
pipe's other end, held by a worker, until the worker ended (seen here: a run hung at its end). The calls run in order on the thread; the loop waits for them only
where it needs their result (``flush``: the run id before metrics.json is written) and at the end
(``close``), each time at most ``WAIT_S``. What did not reach the store by then stays in the run
folder's files, and ``python -m resnet mlflow-sync`` (or the next resume) sends it.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from pathlib import Path
from typing import Callable

from resnet.engine.outcome import open_tracker
from resnet.runs.provenance import git_commit
from resnet.runs.records import Metrics, TrainState

# Seconds the loop waits for the MLflow calls at flush and close; RESNET_MLFLOW_WAIT_S sets another.
WAIT_S = float(os.environ.get("RESNET_MLFLOW_WAIT_S", "300"))


class Mirror:
    """One MLflow run, fed from a queue. Never raises: trouble is one warning (resnet.tracking)."""

    def __init__(self, job, state: TrainState) -> None:
        import mlflow.tracking  # noqa: F401 - imported here, before the thread and the loader workers

        self.job, self.state, self.tracker = job, state, None
        self._git = git_commit()
        self._opened = threading.Event()
        self._calls: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="mlflow-mirror", daemon=True)
        self._thread.start()
        self._submit(self._open)

    def _open(self) -> None:
        try:
            self.tracker = open_tracker(self.job, self.state, self._git)
        finally:
            self._opened.set()

    def opened(self) -> None:
        """Wait (at most WAIT_S, once) until the run is open: its id goes into the checkpoints, so that
        a resumed cell continues its run instead of starting another."""
        if not self._opened.is_set() and not self._opened.wait(WAIT_S):
            print(f"warning: MLflow ({self.job.mlflow.tracking_uri}): the run did not open within {WAIT_S:.0f} s; "
                  f"training goes on, the run folder's files hold every number", file=sys.stderr, flush=True)
            self._opened.set()

    def _submit(self, call: Callable[[], object] | None) -> None:
        self._calls.put(call)

    def _work(self) -> None:
        while True:
            call = self._calls.get()
            try:
                if call is None:
                    return
                call()
            except Exception as error:  # noqa: BLE001 - the Tracker guards its calls; this is a last resort
                print(f"warning: MLflow: {type(error).__name__}: {error}".splitlines()[0], file=sys.stderr, flush=True)
            finally:
                self._calls.task_done()

    def log_rows(self) -> None:
        """The curve rows the run does not hold yet (state.rows_in_mlflow counts those it does)."""
        state = self.state
        rows, upto = list(state.rows[state.rows_in_mlflow:]), len(state.rows)

        def send() -> None:
            if self.tracker is not None and self.tracker.log_rows(rows):
                state.rows_in_mlflow = max(state.rows_in_mlflow, upto)

        self._submit(send)

    def finish(self, status: str, reason: str | None = None) -> None:
        """Mark the run FAILED (with the reason) or KILLED (an interruption; a resumed run sets it RUNNING)."""
        def send() -> None:
            if self.tracker is None:
                return
            if reason:
                self.tracker.set_tags({"failure": reason})
            self.tracker.finish(status)

        self._submit(send)

    def result(self, metrics: Metrics, folder: Path) -> None:
        """A finished cell: the rest of its curve, its data set, final numbers and files, FINISHED."""
        self.log_rows()
        data = metrics.data or {}

        def send() -> None:
            if self.tracker is None:
                return
            self.tracker.log_dataset(metrics.dataset, data.get("content_hash"), data.get("source", ""))
            self.tracker.log_result(metrics, folder)

        self._submit(send)

    def flush(self) -> None:
        """Wait (at most WAIT_S) until every call made so far has run."""
        done = threading.Event()
        self._submit(done.set)
        if not done.wait(WAIT_S):
            print(f"warning: MLflow ({self.job.mlflow.tracking_uri}): calls still pending after {WAIT_S:.0f} s; "
                  f"training goes on, the run folder's files hold every number", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Send what is queued (at most WAIT_S), then stop the thread."""
        self._submit(None)
        self._thread.join(WAIT_S)
        if self._thread.is_alive():
            print(f"warning: MLflow ({self.job.mlflow.tracking_uri}): calls still pending after {WAIT_S:.0f} s at "
                  f"the end: `python -m resnet mlflow-sync` sends what the run folder holds", file=sys.stderr,
                  flush=True)
