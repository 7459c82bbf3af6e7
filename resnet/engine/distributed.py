"""Several processes training one cell with DistributedDataParallel (resnet.engine.launch), or one.

The global batch is preserved: each of W processes takes batch_size / W images of every global
batch. Every process evaluates its share of the evaluation images (the counts are summed); process
0 alone writes the run's files and talks to MLflow.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as torch_dist

# The longest a collective may wait for the other processes: longer than anything one process does
# alone between two collectives (its share of an evaluation pass, a checkpoint write; MLflow calls
# run beside the loop, resnet.engine.mirror). A process that has died makes the others fail here
# instead of waiting for ever.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


def rank() -> int:
    """This process's rank under torchrun (0 alone). The one place that reads it."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """The GPU index on this node."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def launched() -> bool:
    """True in a process started by a launcher (resnet.engine.launch, or torchrun) as one of several."""
    return "WORLD_SIZE" in os.environ


class Distributed:
    def __init__(self) -> None:
        self.world_size = world_size()
        self.rank = rank()
        self.enabled = self.world_size > 1
        self.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __enter__(self) -> "Distributed":
        if self.enabled:
            if torch.cuda.is_available():
                self.device = torch.device("cuda", local_rank())
                torch.cuda.set_device(self.device)
            if self.device.type == "cuda":
                torch_dist.init_process_group(backend="nccl", timeout=COLLECTIVE_TIMEOUT, device_id=self.device)
            else:
                torch_dist.init_process_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def any(self, flag: bool) -> bool:
        """True on every process when any process has the flag (a signal reached one of them).

        A collective with a host synchronisation: the loop asks only where the processes meet
        anyway (a curve row, a checkpoint), not at every step."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch_dist.all_reduce(value)
        return bool(value.item() > 0)

    def share_buffers(self, model: torch.nn.Module) -> None:
        """Process 0's buffers (BN's running statistics) on every process, before an evaluation.

        DDP hands process 0's buffers to the others at each training forward, but each process's
        forward then updates its own copy with its share of the batch, so after a step they differ.
        An evaluation sharded over the processes must see one model, the one the checkpoint saves
        (process 0's; the paper's multi-GPU training likewise kept one GPU's statistics). Training
        is unchanged: its next forward hands out process 0's buffers anyway."""
        if not self.enabled:
            return
        with torch.no_grad():
            for buffer in model.buffers():
                torch_dist.broadcast(buffer, src=0)

    def sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return [float(v) for v in values]
        tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, values: list[float]) -> list[list[float]]:
        """Every process's ``values`` (the same length on each), in rank order, on every process."""
        if not self.enabled:
            return [[float(v) for v in values]]
        mine = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        everyone = [torch.empty_like(mine) for _ in range(self.world_size)]
        torch_dist.all_gather(everyone, mine)
        return [tensor.tolist() for tensor in everyone]

    def from_main(self, make):
        """``make()`` computed by process 0 alone and handed to every process (a listing of a large
        folder, once for the whole job). An error there is raised on every process, as its type."""
        if not self.enabled:
            return make()
        box = [None]
        if self.is_main:
            try:
                box = [("value", make())]
            except Exception as error:  # noqa: BLE001 - handed on, then raised here too
                box = [("error", error)]
        torch_dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        kind, value = box[0]
        if kind == "error":
            raise value
        return value

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def print(self, message: str) -> None:
        if self.is_main:
            print(message, flush=True)
