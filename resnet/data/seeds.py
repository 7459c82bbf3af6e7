"""What the data modules share: the error type for bad data and the seed derivation.

The data itself lives in the modules that define it; import from them directly:

- ``resnet.cifar_source``: CIFAR-10 from a torchvision folder, an ImageFolder tree or a tarball of
  one, checked complete and decoded once into an ``.npz`` cache (``load_cifar10``).
- ``resnet.cifar``: the train/validation split (Sec. 4.2), the per-pixel mean, the on-device
  training stream (4-pixel pad, random 32x32 crop, horizontal flip) and the evaluation set.
- ``resnet.imagenet``: ImageNet-layout folders (ILSVRC2012 or a generated synthetic set); scale
  augmentation, 224 crops, flips and PCA colour noise (Sec. 3.4); a resumable, DDP-aware sampler;
  the PIL loader and the choice of loader (``data.imagenet_loader``).
- ``resnet.imagenet_dali``: the same training crops decoded and cut on the GPU by NVIDIA DALI
  (optional), and its centre-crop validation.
- ``resnet.imagenet_eval``: centre-crop validation (Figure 4) and 10-crop testing (Tables 2 and 3).

``derive_seed`` makes every random draw a pure function of (seed, stream, counter), so a run
resumes exactly at any iteration without saving random-number-generator state.
"""

from __future__ import annotations

import numpy as np


class DataError(ValueError):
    """Missing or malformed data; the message is one line naming the path and the fix."""


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from non-negative integer keys, e.g. (seed, stream, epoch).

    Different key tuples give statistically independent streams (numpy's SeedSequence hashing),
    so a training stream never needs to carry generator state: any draw can be recomputed.
    """
    words = np.random.SeedSequence([int(key) for key in keys]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])
