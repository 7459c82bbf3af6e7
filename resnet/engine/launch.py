"""One training process per GPU: the relaunch of a train command under torchrun."""
from __future__ import annotations

import os
import shutil
import sys

import torch

from resnet.config.schema import ConfigError
from resnet.engine.distributed import under_torchrun


def relaunch_distributed(job) -> None:
    """ImageNet on a machine (or allocation) with several GPUs: one process per GPU via torchrun.

    The global batch stays the recipe's batch_size (each of the W processes takes batch_size / W).
    """
    batch = job.recipe.batch_size
    if job.dataset != "imagenet" or under_torchrun() or not torch.cuda.is_available():
        return
    gpus = torch.cuda.device_count()
    if gpus < 2:
        return
    if batch % gpus or (job.recipe.bn_group and (batch // gpus) % job.recipe.bn_group):
        raise ConfigError(f"recipes.imagenet.batch_size {batch} does not split over the {gpus} GPUs visible "
                          f"(into groups of bn_group {job.recipe.bn_group}): use a multiple of {gpus}, or set "
                          f"resources.imagenet.gpus to the GPUs the job gets")
    torchrun = shutil.which("torchrun") or "torchrun"
    argv = [a for a in sys.argv[1:] if a != "--launch"]
    print(f"{job.cell}: {gpus} GPUs visible: relaunching under torchrun, {batch // gpus} images "
          f"per GPU (global batch {batch})", file=sys.stderr, flush=True)
    os.execvp(torchrun, [torchrun, "--standalone", f"--nproc_per_node={gpus}", "-m", "resnet", *argv])
