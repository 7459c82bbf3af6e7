"""Several processes (torchrun) training one cell with DistributedDataParallel, or one process.

The global batch is preserved: each of W processes takes batch_size / W images of every global
batch. Process 0 alone evaluates and writes files and MLflow; the others wait at a barrier.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as torch_dist


def rank() -> int:
    """This process's rank under torchrun (0 alone). The one place that reads it."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """The GPU index on this node."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def under_torchrun() -> bool:
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
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch_dist.init_process_group(backend=backend)
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
        """True on every process when any process has the flag (a signal reached one of them)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch_dist.all_reduce(value)
        return bool(value.item() > 0)

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

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def print(self, message: str) -> None:
        if self.is_main:
            print(message, flush=True)
