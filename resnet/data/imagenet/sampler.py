"""Which sample, with which augmentation, each process reads at each global position.

A pure function of (seed, position), so a run resumes at any iteration (on any number of
processes) and every loader (PIL, DALI) reads the same samples.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler

from resnet.data.seeds import EpochOrders, Stream, derive_seed


class ResumableSampler(Sampler):
    """An endless stream of (index, augmentation seed) pairs; position = global samples seen.

    Global position p is sample ``permutation(seed, p // N)[p % N]`` (a fresh permutation each
    epoch; an epoch ending mid-batch continues into the next one, nothing is dropped) with
    augmentation seed derive_seed(seed, p). ``batch_size`` is the GLOBAL batch: global batch k is
    positions [k*B, (k+1)*B), and rank r of world_size takes positions k*B + r, k*B + r + world_size,
    ... (its strided share, B / world_size of them). The union over ranks is the same global batch
    whatever the world size, so a run may resume on a different number of GPUs.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, start_sample: int = 0):
        if batch_size % world_size != 0 or not 0 <= rank < world_size:
            raise ValueError(f"global batch {batch_size} must split evenly over world_size {world_size} "
                             f"(rank {rank})")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.position = start_sample
        self._orders = EpochOrders(num_samples, seed, Stream.IMAGENET_EPOCH_ORDER)

    def set_position(self, samples_seen: int) -> None:
        """Continue from ``samples_seen`` global samples (iteration * global batch) on next iter()."""
        self.position = samples_seen

    def epoch_of(self, samples_seen: int) -> float:
        return samples_seen / self.num_samples

    def position_of(self, batch: int, index: int) -> int:
        """The global position of this rank's ``index``-th sample of its ``batch``-th batch from here.

        The one home of the rank interleaving: the PIL loader (``__iter__``) and the DALI loader
        (resnet.data.imagenet.dali) both read their samples through it.
        """
        return self.position + batch * self.batch_size + self.rank + index * self.world_size

    def sample_at(self, position: int) -> tuple[int, int]:
        """The (index, augmentation seed) pair at a global position."""
        epoch, offset = divmod(position, self.num_samples)
        return int(self._orders(epoch)[offset]), derive_seed(self.seed, Stream.IMAGENET_AUGMENTATION, position)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_rank, batch = self.batch_size // self.world_size, 0
        while True:
            for index in range(per_rank):
                yield self.sample_at(self.position_of(batch, index))
            batch += 1
