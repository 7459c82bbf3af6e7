"""Batch normalisation over groups of the batch ("ghost" batch norm), for the paper's BN batch.

He et al. 2015 train CIFAR-10 with a mini-batch of 128 on two GPUs (Sec. 4.2), so each BN layer
normalises with the statistics of the 64 images on its GPU.  One process with a batch of 128
would normalise over all 128.  ``GhostBatchNorm2d(channels, group=64)`` restores the paper's BN
batch: in training mode each run of ``group`` consecutive images of the (per-process) batch is
normalised with its own mean and variance, exactly as ``nn.BatchNorm2d`` would normalise that
run alone.

* ``group = 0``, or a batch of at most ``group`` images, is plain ``nn.BatchNorm2d`` (the same
  call, so the same kernel and bit-identical outputs and running statistics).
* Eval mode is unchanged: the running averages normalise every image.
* A batch of more than ``group`` images that ``group`` does not divide is refused (ValueError).
* The state_dict is that of ``nn.BatchNorm2d`` (``group`` is not saved), and the class is an
  ``nn.BatchNorm2d``, so checkpoints, initialisation and the Figure 7 hooks see plain BN.

Running statistics: each group updates its own copy of the running mean and variance with
PyTorch's rule (momentum, unbiased variance of the group), as each of the paper's GPUs updated
its replica from its 64 images; the layer keeps the mean of those copies.  The paper's framework
kept one replica's statistics (those of one GPU); the mean of the groups has the same expectation
with less noise, and stays one buffer of the usual shape.  Because the update is linear, this is
the same as updating once with the mean of the groups' batch means and unbiased variances.

Works inside a CUDA graph and under torch.compile: the grouping depends only on the batch's
shape (a Python int), never on tensor values; there is no host synchronisation.  Under
DistributedDataParallel each process groups its own batch.  channels_last inputs stay
channels_last (each group is a contiguous slice of the batch), and bf16 autocast behaves as in
``nn.BatchNorm2d`` (statistics and buffers in fp32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GhostBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training-mode statistics are over groups of ``group`` images."""

    def __init__(self, num_features: int, group: int = 0, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        if not isinstance(group, int) or isinstance(group, bool) or group < 0:
            raise ValueError(f"BN group must be an integer >= 0 (0 = plain batch norm), got {group!r}")
        if group and (self.momentum is None or not self.track_running_stats):
            # The cumulative average (momentum=None) reads the step count on the host.
            raise ValueError("ghost batch norm (group > 0) needs a float momentum and running stats")
        self.group = group

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", group={self.group}" if self.group else "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if not self.training or self.group == 0 or batch <= self.group:
            return super().forward(x)
        if batch % self.group:
            raise ValueError(
                f"a batch of {batch} images does not split into BN groups of {self.group}: the "
                f"per-process batch must be a multiple of the BN group (recipe bn_group), or 0 "
                f"for plain batch norm")
        self._check_input_dim(x)
        self.num_batches_tracked.add_(1)
        chunks = x.split(self.group)
        means = [self.running_mean.clone() for _ in chunks]
        variances = [self.running_var.clone() for _ in chunks]
        # Each group exactly as plain BN on that group alone, updating its own copy of the stats.
        outputs = [F.batch_norm(chunk, mean, var, self.weight, self.bias, True, self.momentum, self.eps)
                   for chunk, mean, var in zip(chunks, means, variances)]
        # Deviation (README): the paper's framework kept one GPU's running statistics; the layer
        # keeps the mean of the groups' updates (the same expectation, less noise).
        with torch.no_grad():
            self.running_mean.copy_(torch.stack(means).mean(0))
            self.running_var.copy_(torch.stack(variances).mean(0))
        return torch.cat(outputs)


def batch_norm(channels: int, group: int = 0) -> nn.BatchNorm2d:
    """The BN layer of the models: plain ``nn.BatchNorm2d`` for group 0, else ghost BN."""
    return GhostBatchNorm2d(channels, group) if group else nn.BatchNorm2d(channels)
