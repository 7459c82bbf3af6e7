"""The paper's ImageNet crops (Sec. 3.4): one home for the per-sample parameters of every loader.

The paper: "The image is resized with its shorter side randomly sampled in [256, 480] for scale
augmentation. A 224x224 crop is randomly sampled from an image or its horizontal flip, with the
per-pixel mean subtracted. The standard color augmentation in [21] is used."

``train_crop`` and ``centre_crop`` draw where a crop comes from (a box in the original image, a
flip, a colour offset); ``crop_pixels`` cuts it with PIL, the DALI loader (resnet.data.imagenet.dali)
cuts the same box on the GPU; ``finish_batch`` turns either loader's uint8 crops into the net's input.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image


# Deviation: the paper subtracts the per-pixel mean. With scale augmentation (shorter side in
# [256, 480]) and random crops, the per-pixel mean over crops is essentially constant within each
# channel, so the project subtracts the per-channel ImageNet mean (RGB, [0, 1] units; the values
# torchvision and fb.resnet.torch use). No division by the standard deviation: the paper only
# subtracts the mean.
IMAGENET_MEAN = (0.485, 0.456, 0.406)


# AlexNet-style PCA colour augmentation ("the standard color augmentation in [21]", Krizhevsky et
# al. 2012): add eigvec @ (alpha * eigval) to every pixel, alpha ~ N(0, 0.1) per image and
# component. The eigen-decomposition of ImageNet RGB covariance ([0, 1] units) as published with
# fb.resnet.torch (datasets/imagenet.lua); rows of PCA_EIGENVECTORS are R, G, B.
PCA_STD = 0.1


PCA_EIGENVALUES = (0.2175, 0.0188, 0.0045)


PCA_EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


class Crop(NamedTuple):
    """Where a crop comes from and what is done to it; the same for the PIL and the DALI loader.

    ``box`` (left, top, right, bottom) is in the ORIGINAL image's pixels (floats): the crop is that
    box resampled bilinearly (antialiased) to crop x crop, then mirrored if ``flip``. ``offset`` is
    the RGB colour offset added after scaling to [0, 1] (PCA lighting; zero for evaluation).
    """

    box: tuple[float, float, float, float]
    flip: bool
    offset: np.ndarray  # float32, shape (3,)


_NO_OFFSET = np.zeros(3, dtype=np.float32)


_EIGENVALUES_NP = np.array(PCA_EIGENVALUES, dtype=np.float32)


_EIGENVECTORS_NP = np.array(PCA_EIGENVECTORS, dtype=np.float32)


def shorter_side_size(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """(width, height) of an image of ``size`` resized to shorter side ``shorter``."""
    width, height = size
    scale = shorter / min(width, height)
    return max(shorter, round(width * scale)), max(shorter, round(height * scale))


def _box_of(size: tuple[int, int], resized: tuple[int, int], left: int, top: int, crop: int) -> tuple:
    """The box in the original image of the crop at (left, top) of the image resized to ``resized``."""
    x_scale, y_scale = size[0] / resized[0], size[1] / resized[1]
    return (left * x_scale, top * y_scale, (left + crop) * x_scale, (top + crop) * y_scale)


def train_crop(size: tuple[int, int], augment_seed: int, short_side: tuple[int, int], crop: int) -> Crop:
    """Sec. 3.4's random draws for one training sample of an image of ``size`` (width, height).

    A pure function of the augmentation seed (ResumableSampler: a function of (seed, position),
    that is of (seed, epoch, sample)): shorter side uniform in [short_side], a crop x crop window
    uniform in the resized image, a flip with probability 1/2, and the PCA lighting
    ("the standard color augmentation in [21]").
    """
    rng = np.random.default_rng(augment_seed)
    shorter = int(rng.integers(short_side[0], short_side[1] + 1))
    width, height = shorter_side_size(size, shorter)
    top, left = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
    flip = bool(rng.random() < 0.5)
    alpha = rng.normal(0.0, PCA_STD, 3).astype(np.float32)
    offset = (_EIGENVECTORS_NP @ (alpha * _EIGENVALUES_NP)).astype(np.float32)
    return Crop(_box_of(size, (width, height), left, top, crop), flip, offset)


def centre_crop(size: tuple[int, int], resize: int, crop: int) -> Crop:
    """The centre crop x crop window of the image resized to shorter side ``resize`` (validation)."""
    width, height = shorter_side_size(size, resize)
    left, top = (width - crop) // 2, (height - crop) // 2
    return Crop(_box_of(size, (width, height), left, top, crop), False, _NO_OFFSET)


def crop_pixels(image: Image.Image, spec: Crop, crop: int) -> np.ndarray:
    """The crop of ``spec`` as uint8 HWC.

    The crop of the image resized to the sampled size, computed by resampling only the crop's box
    of the original (PIL's resize with box= uses the same filter and pixel centres): 3x faster than
    resizing the whole image at ImageNet sizes. It differs from resize-then-crop only by the
    rounding of PIL's 8-bit intermediate between its two passes (at most 2 of 255).
    """
    image = image.resize((crop, crop), Image.Resampling.BILINEAR, box=spec.box)
    if spec.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.array(image, dtype=np.uint8)  # a writable copy (torch.from_numpy)


@functools.lru_cache(maxsize=None)
def _mean_on(device: torch.device) -> torch.Tensor:
    """IMAGENET_MEAN as a (1, 3, 1, 1) tensor on ``device``, copied there once (not per batch)."""
    return torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).to(device)


def finish_batch(images: torch.Tensor, offsets: torch.Tensor | None, device: torch.device | str = "cpu",
                 channels_last: bool = False) -> torch.Tensor:
    """uint8 NHWC crops (and their RGB offsets) -> the float NCHW input of the net, on ``device``.

    Both loaders hand over uint8 (a quarter of float32's bytes through worker pipes and the PCIe
    bus); the [0, 1] scaling, the PCA lighting offset and the mean subtraction happen here, on the
    device. The result is channels_last in memory (a view of NHWC) unless ``channels_last`` is false.
    """
    device = torch.device(device)
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    if offsets is not None:
        x.add_(offsets.to(device, torch.float32, non_blocking=True).view(-1, 3, 1, 1))
    x.sub_(_mean_on(device))
    return x if channels_last else x.contiguous()
