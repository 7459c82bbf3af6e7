"""Every random draw of the data, as a pure function of (seed, stream, counter).

``derive_seed`` makes each draw recomputable from its keys, so a run resumes exactly at any
iteration without saving random-number-generator state. ``Stream`` names the kinds of draws, so no
two kinds share a sequence; ``EpochOrders`` is the one definition of "a fresh permutation each
epoch" that the CIFAR stream and the ImageNet sampler both walk.
"""

from __future__ import annotations

import enum

import numpy as np
import torch


class Stream(enum.IntEnum):
    """The stream tag of each kind of draw (the second key of derive_seed)."""

    CIFAR_EPOCH_ORDER = 0
    CIFAR_AUGMENTATION = 1
    IMAGENET_AUGMENTATION = 2
    IMAGENET_EPOCH_ORDER = 3


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from non-negative integer keys, e.g. (seed, stream, epoch).

    Different key tuples give statistically independent streams (numpy's SeedSequence hashing),
    so a training stream never needs to carry generator state: any draw can be recomputed.
    """
    words = np.random.SeedSequence([int(key) for key in keys]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


class EpochOrders:
    """The order of the samples in each epoch: ``permutation(seed, stream, epoch)`` of range(n).

    Two epochs are kept (a batch may straddle an epoch boundary); any other is recomputed.
    """

    def __init__(self, num_samples: int, seed: int, stream: Stream) -> None:
        self.num_samples, self.seed, self.stream = num_samples, seed, stream
        self._orders: dict[int, np.ndarray] = {}

    def __call__(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.stream, epoch))
            self._orders = {key: value for key, value in self._orders.items() if key == epoch - 1}
            self._orders[epoch] = torch.randperm(self.num_samples, generator=generator).numpy()
        return self._orders[epoch]
