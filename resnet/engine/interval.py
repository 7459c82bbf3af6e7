"""A log interval: the running sums of the iterations between two curve rows, and the row they make.

The sums stay on the device between rows (no host synchronisation per step). A checkpoint inside
an interval saves every process's sums as they stand, so the resumed row is the same additions in
the same order as an uninterrupted run.
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch

from resnet.runs.records import IntervalSums, TrainState


class Interval:
    """A log interval's running sums in this process: from zero, or a resumed run's from its checkpoint."""

    def __init__(self, carried: IntervalSums | None, device: torch.device) -> None:
        carried = carried or IntervalSums()
        self.loss = torch.tensor(float(carried.loss), dtype=torch.float32, device=device)
        self.wrong = torch.tensor(float(carried.wrong), dtype=torch.float32, device=device)
        self.images = carried.images
        self.seconds_before = carried.seconds
        self.start, self.paused = time.perf_counter(), 0.0

    def add(self, loss: torch.Tensor, wrong: torch.Tensor, images: int) -> None:
        """One step's mean loss and wrong count, kept on the device (no host synchronisation)."""
        self.loss += loss.detach() * images
        self.wrong += wrong
        self.images += images

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start - self.paused

    def sums(self) -> IntervalSums:
        return IntervalSums(loss=float(self.loss), wrong=int(self.wrong), images=self.images, seconds=self.seconds())


def snapshot_intervals(interval: Interval, dist) -> list[IntervalSums] | None:
    """Every process's half-finished log interval, in rank order (None on a row boundary).

    The running sums are saved as they are (float32 values, exact as Python floats) and left
    untouched; a resumed run starts its sums from exactly those values (carried_of). A row's
    loss is then the same float32 additions in the same order, however many stops fell inside its
    interval. Its training seconds so far travel with it: a row whose interval spans a stop divides
    its images by the time actually spent on them (before and after the stop), and wall_time_s
    keeps the seconds trained before the stop. A collective: every process calls it.
    """
    mine = interval.sums()
    everyone = dist.gather([mine.loss, mine.wrong, mine.images, mine.seconds])
    if all(images == 0 for _, _, images, _ in everyone):
        return None
    return [IntervalSums(loss=loss, wrong=int(wrong), images=int(images), seconds=seconds)
            for loss, wrong, images, seconds in everyone]


def carried_of(carried: list[IntervalSums] | None, dist) -> IntervalSums | None:
    """This process's share of the sums a checkpoint carried.

    The same number of processes: each takes its own, so the row spanning the stop sums the same
    numbers in the same order as an uninterrupted run. Another number of processes (a run resumed
    on other GPUs): process 0 takes the totals, the others start from zero; the row's numbers are
    the same sums, added in another order (float32 rounding may differ in the last digit).
    """
    if not carried:
        return None
    if len(carried) == dist.world_size:
        return carried[dist.rank]
    if dist.rank != 0:
        return None
    return IntervalSums(loss=sum(c.loss for c in carried), wrong=sum(c.wrong for c in carried),
                        images=sum(c.images for c in carried), seconds=max(c.seconds for c in carried))


def close_interval(state: TrainState, interval: Interval, lr, dist, task) -> dict[str, Any]:
    """The curve row of a finished log interval, its sums added over the processes."""
    totals = dist.sum([float(interval.loss), int(interval.wrong), interval.images])
    elapsed = interval.seconds()
    state.carried = None
    state.train_seconds += elapsed
    images = totals[2]
    return {
        "iteration": state.iteration,
        "epoch": round(task.epoch_of(state.iteration), 4),
        "lr": lr,
        "train_loss": totals[0] / images,
        "train_error": 100.0 * totals[1] / images,
        "val_error": math.nan,
        "test_error": math.nan,
        "images_per_s": (images / elapsed) if elapsed > 0 else math.nan,
        "wall_time_s": round(state.train_seconds, 3),
    }
