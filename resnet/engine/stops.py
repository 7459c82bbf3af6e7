"""How a training run stops before its end: a signal (StopRequest, Interrupted, GaveUp) or divergence.

SIGTERM, SIGUSR1 and SIGINT (how SLURM warns before a time limit or preempts, and Ctrl-C) become a
flag the loop reads; the loop then writes a checkpoint and raises Interrupted (exit status 75).
Helper processes (DataLoader workers, DALI's readers) ignore these signals (``ignore_stop_signals``):
SLURM signals every process of the job step, and the decision is the trainer's alone.

``signal_point`` is where a test delivers a real signal at a chosen moment: with the environment
variable RESNET_SIGNAL_AT=POINT:ITERATION[:SIGNAL[:group]] (POINT one of step, evaluation,
checkpoint), process 0 sends SIGNAL (default TERM) to itself, or with ``group`` to its whole process
group as SLURM and Ctrl-C do, once, when it reaches that point at that iteration. Unset, it does
nothing. It changes only when a signal arrives, not what the trainer does with it.
"""
from __future__ import annotations

import os
import signal
import sys

# The signals that stop a training run with a checkpoint: SLURM's warning before a time limit or a
# preemption (TERM, or USR1 where a site sends that), and Ctrl-C (INT). The workflow's train jobs
# forward the same ones to the trainer (workflow/rules/train.smk reads this tuple).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
SIGNAL_AT = "RESNET_SIGNAL_AT"
POINTS = ("step", "evaluation", "checkpoint")


class Interrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; run the same command to resume."""


class GaveUp(Interrupted):
    """Interrupted more often than resources.max_resubmits allows; metrics.json says failed."""


class Diverged(Exception):
    """The training loss became NaN or infinite; metrics.json says failed, with the iteration."""


class StopRequest:
    """Turns SIGTERM, SIGUSR1 and SIGINT into a flag the loop reads."""

    SIGNALS = STOP_SIGNALS

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous = {}

    def __enter__(self) -> "StopRequest":
        for number in self.SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        first = self.signal_name is None
        self.signal_name = signal.Signals(number).name
        if first:
            print(f"\n{self.signal_name} received: stopping with a checkpoint at the next safe point",
                  file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def ignore_stop_signals(*_) -> None:
    """In a helper process (a loader worker): leave the stop signals to the trainer.

    Takes and ignores any arguments, so it serves as a DataLoader ``worker_init_fn``.
    """
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


_fired: set[tuple[str, int]] = set()


def signal_point(point: str, iteration: int, rank: int = 0) -> None:
    """Deliver the signal RESNET_SIGNAL_AT asks for, if this is its point and iteration (process 0)."""
    spec = os.environ.get(SIGNAL_AT)
    if not spec or rank != 0:
        return
    parts = spec.split(":")
    if len(parts) < 2 or parts[0] not in POINTS or not parts[1].isdigit():
        raise ValueError(f"{SIGNAL_AT}={spec!r}: expected POINT:ITERATION[:SIGNAL[:group]], POINT one of "
                         f"{', '.join(POINTS)}")
    if parts[0] != point or int(parts[1]) != iteration or (point, iteration) in _fired:
        return
    _fired.add((point, iteration))
    number = signal.Signals["SIG" + (parts[2] if len(parts) > 2 else "TERM")]
    if len(parts) > 3 and parts[3] == "group":
        os.killpg(os.getpgrp(), number)
    else:
        os.kill(os.getpid(), number)
