"""How a training run stops before its end: a signal (StopRequest, Interrupted, GaveUp) or divergence.

SIGTERM, SIGUSR1 and SIGINT (how SLURM warns before a time limit or preempts, and Ctrl-C) become a
flag the loop reads; the loop then writes a checkpoint and raises Interrupted (exit status 75).
"""
from __future__ import annotations

import signal
import sys

# The signals that stop a training run with a checkpoint: SLURM's warning before a time limit or a
# preemption (TERM, or USR1 where a site sends that), and Ctrl-C (INT). The workflow's train jobs
# forward the same ones to the trainer (workflow/rules/train.smk reads this tuple).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Interrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; run the same command to resume."""


class GaveUp(Interrupted):
    """Interrupted more often than resources.max_resubmits allows; metrics.json says failed."""


class Diverged(Exception):
    """The training loss became NaN or infinite; metrics.json says failed, with the iteration."""


class StopRequest:
    """Turns SIGTERM, SIGUSR1 and SIGINT into a flag checked between iterations."""

    SIGNALS = STOP_SIGNALS

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous = {}

    def __enter__(self) -> "StopRequest":
        for number in self.SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        self.signal_name = signal.Signals(number).name
        print(f"\n{self.signal_name} received: checkpointing after this iteration", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
