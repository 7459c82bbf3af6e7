"""CIFAR-10: the 45k/5k split and the paper's augmentation (Sec. 4.2), on the device.

Where the images come from (three formats), the completeness check and the decoded cache live in
``resnet.cifar_source`` (``load_cifar10``, ``CifarArrays``, re-exported here). Reading order here:
the split and the mean, then the training stream that lives on the device, then the evaluation set.

The paper: "We follow the simple data augmentation in [24] for training: 4 pixels are padded on
each side, and a 32x32 crop is randomly sampled from the padded image or its horizontal flip. For
testing, we only evaluate the single view of the original 32x32 image." and "The network inputs
are 32x32 images, with the per-pixel mean subtracted."
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from resnet.data.cifar.source import IMAGE_SIZE
from resnet.data.seeds import EpochOrders, Stream, derive_seed

PAD = 4  # pixels of zero padding on each side before the random crop, Sec. 4.2



# ---------------------------------------------------------------------------------------------
# Split, subset, mean
# ---------------------------------------------------------------------------------------------


def train_val_split(num_train: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, disjoint (train, validation) indices: the paper's 45k/5k split (Sec. 4.2).

    Model choices are made on the validation part; nothing is ever selected on the test set.
    """
    if not 0 <= val_size <= num_train:
        raise ValueError(f"val_size {val_size} must lie in [0, {num_train}]")
    order = np.random.default_rng(seed).permutation(num_train)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


def take_subset(images: np.ndarray, labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded subset of n examples with classes as balanced as n allows (smoke scale)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == label)) for label in classes]
    chosen = [indices[: n // len(classes)] for indices in per_class]
    rest = np.concatenate([indices[n // len(classes):] for indices in per_class])
    chosen.append(rng.permutation(rest)[: n - sum(len(c) for c in chosen)])
    keep = np.sort(np.concatenate(chosen))
    return images[keep], labels[keep]


def pixel_mean(images_uint8_nhwc: np.ndarray) -> torch.Tensor:
    """The per-pixel mean image of the training images, float32 (3, 32, 32) in [0, 1] units."""
    mean = np.mean(images_uint8_nhwc, axis=0, dtype=np.float64) / 255.0
    return torch.from_numpy(mean.transpose(2, 0, 1).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Training stream: the whole set on the device, augmented there in batch
# ---------------------------------------------------------------------------------------------


def draw_augmentation(seed: int, iteration: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop offsets (B, 2) as (dy, dx) in [0, 2*PAD] and flips (B,) for one iteration.

    Drawn on the CPU from a generator seeded by (seed, iteration), so the batch is the same on any
    device and a resumed run needs no generator state.
    """
    generator = torch.Generator().manual_seed(derive_seed(seed, Stream.CIFAR_AUGMENTATION, iteration))
    offsets = torch.randint(0, 2 * PAD + 1, (batch_size, 2), generator=generator)
    flips = torch.rand(batch_size, generator=generator) < 0.5
    return offsets, flips


def _normalise(images_uint8_nchw: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return images_uint8_nchw.float().div_(255.0).sub_(mean)


def _finish(x: torch.Tensor, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return x.to(dtype=dtype).contiguous(memory_format=memory_format)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on ``device`` without stopping the host: on CUDA through pinned memory, an
    asynchronous copy (from pageable memory the copy would wait for the GPU's queue to drain)."""
    if torch.device(device).type != "cuda" or tensor.device.type == "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def augment_batch(images_uint8_nchw: torch.Tensor, mean: torch.Tensor, offsets: torch.Tensor,
                  flips: torch.Tensor, dtype: torch.dtype = torch.float32,
                  channels_last: bool = False) -> torch.Tensor:
    """Mean-subtract, zero-pad 4, crop 32x32 at ``offsets`` and flip where ``flips``; vectorised.

    The padding is applied to the mean-subtracted image, so the padded border is 0 after mean
    subtraction, i.e. the mean colour of that pixel position in the original image (the common
    reading of "4 pixels are padded on each side" for a mean-subtracted input; padding the raw image
    with black would instead put -mean on the border).
    """
    batch, device = images_uint8_nchw.shape[0], images_uint8_nchw.device
    padded = F.pad(_normalise(images_uint8_nchw, mean), (PAD, PAD, PAD, PAD))
    span = torch.arange(IMAGE_SIZE, device=device)
    offsets, flips = to_device(offsets, device), to_device(flips, device)
    rows = offsets[:, 0, None] + span  # (B, 32)
    cols = offsets[:, 1, None] + span
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch_index = torch.arange(batch, device=device)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]  # (B,32,32,3)
    return _finish(crops.permute(0, 3, 1, 2), dtype, channels_last)


class CifarTrainStream:
    """Training batches as a pure function of (seed, iteration), from images held on the device.

    Sampling is without replacement in epochs: position p = iteration * B + j of the endless
    stream is sample ``permutation(seed, p // N)[p % N]``. When an epoch ends mid-batch the batch
    continues with the next epoch's permutation, so no sample is dropped and every batch is full.
    Crop offsets and flips come from (seed, iteration). Resuming at iteration k gives exactly the
    batches an uninterrupted run would have seen.
    """

    def __init__(self, images_uint8_nhwc: np.ndarray, labels: np.ndarray, mean: torch.Tensor,
                 batch_size: int, seed: int, device, augment: bool = True,
                 channels_last: bool = False, dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.images = torch.from_numpy(np.ascontiguousarray(images_uint8_nhwc)).permute(0, 3, 1, 2)
        self.images = self.images.contiguous().to(self.device)  # uint8 NCHW, the whole set
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(self.device)
        self.mean = mean.to(self.device, torch.float32)
        self.num_samples, self.batch_size, self.seed = len(self.labels), batch_size, seed
        self.augment, self.channels_last, self.dtype = augment, channels_last, dtype
        self._orders = EpochOrders(self.num_samples, seed, Stream.CIFAR_EPOCH_ORDER)

    def epoch_of(self, iteration: int) -> float:
        """Epochs completed before ``iteration`` (fractional)."""
        return iteration * self.batch_size / self.num_samples

    def indices(self, iteration: int) -> np.ndarray:
        """The dataset indices of the batch at ``iteration``."""
        positions = iteration * self.batch_size + np.arange(self.batch_size, dtype=np.int64)
        epochs, offsets = np.divmod(positions, self.num_samples)
        chosen = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):
            in_epoch = epochs == epoch
            chosen[in_epoch] = self._orders(int(epoch))[offsets[in_epoch]]
        return chosen

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = to_device(torch.from_numpy(self.indices(iteration)), self.device)
        images, labels = self.images.index_select(0, index), self.labels.index_select(0, index)
        if not self.augment:
            return _finish(_normalise(images, self.mean), self.dtype, self.channels_last), labels
        offsets, flips = draw_augmentation(self.seed, iteration, self.batch_size)
        return augment_batch(images, self.mean, offsets, flips, self.dtype, self.channels_last), labels


# ---------------------------------------------------------------------------------------------
# Evaluation: the single original view, uploaded once
# ---------------------------------------------------------------------------------------------


class CifarEvalSet:
    """Evaluation images held on the device once; ``batches`` yields mean-subtracted (x, y)."""

    def __init__(self, images, labels, mean: torch.Tensor, device, channels_last: bool = False,
                 dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        if isinstance(images, torch.Tensor):  # already uint8 NCHW, possibly on the device
            self.images = images.to(self.device)
        else:
            self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
            self.images = self.images.contiguous().to(self.device)
        self.labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor)
                                      else labels, dtype=torch.int64).to(self.device)
        self.mean = mean.to(self.device, torch.float32)
        self.channels_last, self.dtype = channels_last, dtype

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            images = self.images[start:start + batch_size]
            x = _finish(_normalise(images, self.mean), self.dtype, self.channels_last)
            yield x, self.labels[start:start + batch_size]


def eval_batches(images, labels, mean: torch.Tensor, batch_size: int, device,
                 channels_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over (x, y) without augmentation. For repeated evaluation build a CifarEvalSet
    once and call its ``batches`` so the images are not uploaded again."""
    return CifarEvalSet(images, labels, mean, device, channels_last).batches(batch_size)
