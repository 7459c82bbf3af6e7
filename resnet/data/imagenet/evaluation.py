"""ImageNet evaluation: centre-crop validation (Figure 4) and 10-crop testing (Tables 2 and 3).

Both read ``root/val/<class>/*`` with train/'s class list (a val/ with other class folders is an
error, not shifted labels). Workers send uint8 crops; the mean is subtracted on the device
(resnet.imagenet.finish_batch). The DALI loader has its own centre-crop validation
(resnet.imagenet_dali.dali_val_loader, the same crop box); 10-crop testing stays on PIL: it runs
once per cell, on 50,000 images, against 600,000 training iterations of 256 (README, "Data").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import TenCrop

from resnet.data.errors import DataError
from resnet.data.imagenet.crops import centre_crop, crop_pixels, finish_batch, shorter_side_size
from resnet.data.imagenet.folders import open_rgb
from resnet.data.imagenet.listing import ImageNetListing, as_listing
from resnet.data.imagenet.pil import loader_options, one_line


def _resize_shorter(image: Image.Image, shorter: int) -> Image.Image:
    return image.resize(shorter_side_size(image.size, shorter), Image.Resampling.BILINEAR)


class ImageNetEvalSet(Dataset):
    """Validation images at shorter side ``resize``: the centre crop as uint8 HWC, or the 10 crops
    as uint8 (10, crop, crop, 3).

    The centre crop resamples only its box of the original (resnet.imagenet.crop_pixels, as the
    training crop and the DALI loader do). The 10 crops are torchvision's TenCrop of the resized
    image: the 4 corners and the centre, then the same 5 of the mirrored image.
    """

    def __init__(self, root: ImageNetListing | str | Path, resize: int = 256, crop: int = 224, ten_crop: bool = False,
                 split: str = "val"):
        if crop > resize:
            raise ValueError(f"crop {crop} exceeds the resized shorter side {resize}")
        listing = as_listing(root)  # the job's listing (a folder is listed here)
        self.classes, self.samples = list(listing.classes), listing.samples(split)
        self.resize, self.crop, self.ten_crop = resize, crop, ten_crop
        self._ten = TenCrop(crop)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        file, label = self.samples[index]
        image = open_rgb(file)
        if not self.ten_crop:
            return torch.from_numpy(crop_pixels(image, centre_crop(image.size, self.resize, self.crop), self.crop)), label
        views = self._ten(_resize_shorter(image, self.resize))
        return torch.from_numpy(np.stack([np.asarray(view, dtype=np.uint8) for view in views])), label


class EvalBatches:
    """Re-iterable (x, y) batches of a DataLoader over uint8 crops, finished on ``device``; the
    crops of 10-crop items come flattened, image by image (10 rows per label)."""

    def __init__(self, loader: DataLoader, device: torch.device | str, channels_last: bool) -> None:
        self.loader, self.device, self.channels_last = loader, device, channels_last

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        try:
            for images, labels in self.loader:
                yield (finish_batch(images.flatten(0, -4), None, self.device, self.channels_last),
                       labels.to(self.device, non_blocking=True))
        except DataError as error:
            raise one_line(error) from None


def imagenet_val_loader(root: ImageNetListing | str | Path, batch_size: int, resize: int = 256, crop: int = 224,
                        workers: int = 8, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu",
                        channels_last: bool = False, worker_init=None) -> EvalBatches:
    """Centre-crop validation batches (the bold curves of Figure 4), in folder order; re-iterable.

    With world_size > 1 each rank gets the strided share rank::world_size of the images.
    ``worker_init`` runs in each loader worker as it starts (the trainer's: ignore stop signals).
    """
    dataset = _share(ImageNetEvalSet(root, resize, crop), rank, world_size)
    return EvalBatches(DataLoader(dataset, batch_size=batch_size, shuffle=False, worker_init_fn=worker_init,
                                  **loader_options(workers)), device, channels_last)


def _share(dataset: Dataset, rank: int, world_size: int) -> Dataset:
    """This process's strided share rank::world_size of an evaluation set (all of it alone)."""
    return dataset if world_size == 1 else Subset(dataset, range(rank, len(dataset), world_size))


class TenCropCounts(NamedTuple):
    """10-crop testing of one process's share of the images: how many it got right."""

    top1_correct: int
    topk_correct: int  # right within the top k (5, or the number of classes if fewer)
    images: int
    k: int


def ten_crop_counts(model: torch.nn.Module, root: ImageNetListing | str | Path, short_side: int = 256, crop: int = 224,
                    batch_size: int = 32, device="cpu", workers: int = 8, split: str = "val", rank: int = 0,
                    world_size: int = 1, worker_init=None) -> TenCropCounts:
    """10-crop testing of the share rank::world_size of the images; softmax scores averaged over the crops.

    ``batch_size`` counts images (10 crops each). The errors of all processes together are
    100 * (1 - sum(correct) / sum(images)) (ten_crop_eval for one process).
    """
    full = ImageNetEvalSet(root, short_side, crop, ten_crop=True, split=split)
    classes, dataset = len(full.classes), _share(full, rank, world_size)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, worker_init_fn=worker_init,
                        **{**loader_options(workers), "persistent_workers": False})
    k = min(5, classes)
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    was_training, top1_correct, topk_correct = model.training, 0, 0
    model.eval()
    try:
        with torch.inference_mode():
            for views, labels in EvalBatches(loader, device, channels_last=False):
                images = labels.shape[0]
                logits = model(views.to(dtype))
                if logits.shape != (images * 10, classes):
                    raise ValueError(f"model returned logits of shape {tuple(logits.shape)} for "
                                     f"{images * 10} crops of {classes} classes")
                scores = logits.float().softmax(dim=-1).view(images, 10, -1).mean(dim=1)
                hits = scores.topk(k, dim=1).indices == labels.to(scores.device)[:, None]
                top1_correct += int(hits[:, 0].sum())
                topk_correct += int(hits.any(dim=1).sum())
    finally:
        model.train(was_training)
    return TenCropCounts(top1_correct, topk_correct, len(dataset), k)


def ten_crop_eval(model: torch.nn.Module, root: ImageNetListing | str | Path, short_side: int = 256, crop: int = 224,
                  batch_size: int = 32, device="cpu", workers: int = 8, split: str = "val") -> dict:
    """Top-1 and top-5 error (%) with 10-crop testing, softmax scores averaged over the crops.

    The paper does not state the test scale of its 10-crop results; the project uses shorter side
    256 (AlexNet's 10-crop convention, [21]). With fewer than 5 classes "top-5" is top-min(5,
    classes), reported as ``top5_k``.
    Deviation: the paper's best single-model and ensemble results (Tables 4 and 5) use
    fully-convolutional multi-scale testing (shorter side in {224, 256, 384, 480, 640}); the
    project reproduces the 10-crop Tables 2 and 3 only.
    """
    counts = ten_crop_counts(model, root, short_side, crop, batch_size, device, workers, split)
    return dict(top1_error=100.0 * (1 - counts.top1_correct / counts.images),
                top5_error=100.0 * (1 - counts.topk_correct / counts.images), num_images=counts.images,
                top5_k=counts.k)
