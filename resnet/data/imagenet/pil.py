"""The PIL loader: ImageNet training crops decoded and cut in DataLoader worker processes.

Each worker opens a JPEG, draws its crop (resnet.data.imagenet.crops.train_crop) and resamples only
the crop's box; the uint8 crops go to the training process, where finish_batch makes the net's
input on the device. The GPU path is resnet.data.imagenet.dali; the choice between them,
resnet.data.imagenet.loaders.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from resnet.data.errors import DataError
from resnet.data.imagenet.crops import crop_pixels, finish_batch, train_crop
from resnet.data.imagenet.folders import open_rgb
from resnet.data.imagenet.listing import ImageNetListing, as_listing
from resnet.data.imagenet.sampler import ResumableSampler






class ImageNetTrainSet(Dataset):
    """Training images, indexed by (index, augmentation seed) pairs from ResumableSampler.

    An item is (uint8 HWC crop, float32 RGB offset, label); finish_batch makes the net's input.
    The per-sample randomness (scale, crop position, flip, colour noise) comes only from the seed
    it is handed, so batches are the same whatever the number of loader workers.
    """

    def __init__(self, root: ImageNetListing | str | Path, short_side: tuple[int, int] = (256, 480), crop: int = 224):
        if not crop <= short_side[0] <= short_side[1]:
            raise ValueError(f"need crop <= short_side[0] <= short_side[1], got {crop}, {short_side}")
        listing = as_listing(root)  # the job's listing (a folder is listed here)
        self.classes, self.samples = list(listing.classes), listing.samples("train")
        self.short_side, self.crop = short_side, crop

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        index, augment_seed = key
        file, label = self.samples[index]
        image = open_rgb(file)
        spec = train_crop(image.size, augment_seed, self.short_side, self.crop)
        return torch.from_numpy(crop_pixels(image, spec, self.crop)), torch.from_numpy(spec.offset), label




def loader_options(workers: int) -> dict:
    options = dict(num_workers=workers, pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)
    if workers > 0 and "nvidia.dali.backend" in sys.modules:
        # A process running DALI pipelines has DALI's threads; a fork() of it can deadlock in the
        # child (a lock held by a thread that does not exist there). Workers start fresh instead.
        options["multiprocessing_context"] = "spawn"
    return options


def one_line(error: DataError) -> DataError:
    """A DataError raised in a DataLoader worker comes back with the worker's traceback in its
    message; the error the run stops with is its last line, the worker's own message."""
    lines = str(error).strip().splitlines()
    if len(lines) <= 1:
        return error
    last = lines[-1]
    return DataError(last.split(": ", 1)[1] if last.startswith((f"{DataError.__module__}.DataError", "DataError")) else last)


def imagenet_train_loader(root: ImageNetListing | str | Path, batch_size: int, seed: int,
                          short_side: tuple[int, int] = (256, 480), crop: int = 224, workers: int = 8,
                          rank: int = 0, world_size: int = 1, start_sample: int = 0,
                          device: torch.device | str = "cpu", channels_last: bool = False,
                          worker_init=None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless iterator of this rank's (x, y) training batches on ``device``: the PIL loader.

    ``batch_size`` is the global batch (the paper: 256); each rank gets batch_size / world_size
    images per step. ``start_sample`` = iteration * batch_size resumes a run at the same data
    position with the same augmentation. Workers decode and crop to uint8; finish_batch does the
    rest on the device. The folder is checked now; workers start on first next(), and run
    ``worker_init`` first (the trainer's: leave the stop signals to it).
    """
    dataset = ImageNetTrainSet(root, short_side, crop)
    sampler = ResumableSampler(len(dataset), batch_size, seed, rank, world_size, start_sample)
    loader = DataLoader(dataset, batch_size=batch_size // world_size, sampler=sampler, worker_init_fn=worker_init,
                        **loader_options(workers))

    def stream() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = iter(loader)  # the sampler never ends, so neither does this
        while True:
            try:
                images, offsets, labels = next(batches)
            except DataError as error:
                raise one_line(error) from None
            yield finish_batch(images, offsets, device, channels_last), labels.to(device, non_blocking=True)

    return stream()




