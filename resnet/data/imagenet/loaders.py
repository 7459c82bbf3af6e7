"""Choosing the ImageNet input path: ``data.imagenet_loader`` (auto, dali, pil)."""

from __future__ import annotations

import torch

from resnet.data.errors import DataError
from resnet.data.imagenet import dali as imagenet_dali


LOADERS = ("auto", "dali", "pil")


def pick_loader(setting: str, device: torch.device | str) -> str:
    """'dali' or 'pil' for ``data.imagenet_loader``: auto takes DALI on CUDA when it is installed.

    DALI on the CPU runs its CPU backend (the tests and the CPU benchmark use it); it is chosen
    there only when asked for by name.
    """
    if setting not in LOADERS:
        raise DataError(f"data.imagenet_loader is {setting!r}: use one of {', '.join(LOADERS)}")
    if setting == "pil":
        return "pil"
    if setting == "dali":
        imagenet_dali.require_dali()
        return "dali"
    return "dali" if torch.device(device).type == "cuda" and imagenet_dali.dali_available() else "pil"


def train_loader(kind: str, **arguments):
    """The training batches of ``kind`` ('pil' or 'dali', from pick_loader): the same arguments and
    batches either way (resnet.data.imagenet.pil.imagenet_train_loader)."""
    if kind == "dali":
        return imagenet_dali.dali_train_loader(**arguments)
    from resnet.data.imagenet.pil import imagenet_train_loader

    return imagenet_train_loader(**arguments)


def val_loader(kind: str, root, **arguments):
    """Centre-crop validation batches of ``kind`` (resnet.data.imagenet.evaluation.imagenet_val_loader)."""
    if kind == "dali":
        return imagenet_dali.dali_val_loader(root, **arguments)
    from resnet.data.imagenet.evaluation import imagenet_val_loader

    return imagenet_val_loader(root, **arguments)
