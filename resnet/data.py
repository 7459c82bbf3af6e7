"""Data for the reproduction: CIFAR-10 and ImageNet sources, the paper's augmentation, 10-crop testing.

The implementation is split in two modules that this one re-exports, so callers only ever write
``from resnet.data import ...``:

- ``resnet.cifar``: CIFAR-10 from a torchvision folder, an ImageFolder tree or a tarball of one,
  decoded once into an ``.npz`` cache; the 45k/5k split (Sec. 4.2); the per-pixel mean; the
  on-device training stream (4-pixel pad, random 32x32 crop, horizontal flip) and evaluation set.
- ``resnet.imagenet``: ImageNet-layout folders (ILSVRC2012 or a generated synthetic set); scale
  augmentation, 224 crops, flips and PCA colour noise (Sec. 3.4); a resumable, DDP-aware sampler;
  the PIL loader and the choice of loader (``data.imagenet_loader``).
- ``resnet.imagenet_dali``: the same training crops decoded and cut on the GPU by NVIDIA DALI
  (optional), and its centre-crop validation.
- ``resnet.imagenet_eval``: centre-crop validation (Figure 4) and 10-crop testing (Tables 2 and 3).

This module itself holds what both share: the error type for bad data and the seed derivation that
makes every random draw a pure function of (seed, stream, counter), so a run resumes exactly at any
iteration without saving random-number-generator state.
"""

from __future__ import annotations

import importlib

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


# Re-exports, resolved lazily (PEP 562) so that resnet.cifar and resnet.imagenet can import
# DataError and derive_seed from here without a circular import.
_EXPORTS = {
    "resnet.cifar": [
        "CIFAR10_CLASSES",
        "CifarArrays",
        "CifarEvalSet",
        "CifarTrainStream",
        "augment_batch",
        "draw_augmentation",
        "eval_batches",
        "load_cifar10",
        "pixel_mean",
        "take_subset",
        "train_val_split",
    ],
    "resnet.imagenet": [
        "IMAGENET_MEAN",
        "PCA_EIGENVALUES",
        "PCA_EIGENVECTORS",
        "ImageNetTrainSet",
        "ResumableSampler",
        "finish_batch",
        "imagenet_classes",
        "imagenet_train_loader",
        "make_synthetic_imagenet",
        "pick_loader",
        "resolve_imagenet_root",
    ],
    "resnet.imagenet_eval": [
        "ImageNetEvalSet",
        "imagenet_val_loader",
        "ten_crop_eval",
    ],
    "resnet.imagenet_dali": [
        "dali_available",
        "dali_train_loader",
        "dali_val_loader",
    ],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["DataError", "derive_seed", *_MODULE_OF]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'resnet.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
