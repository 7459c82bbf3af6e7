"""ImageNet: folders, the paper's training augmentation (Sec. 3.4), resumable sampling, testing.

Reading order: the folder layout (ILSVRC2012 or a generated synthetic set), the sampled crop
(one home for the per-sample parameters of both loaders), the PIL training transform, the
resumable DDP-aware sampler, the PIL training loader and the choice of loader
(``data.imagenet_loader``). The DALI loader (JPEG decoding and cropping on the GPU) is in
resnet.imagenet_dali; centre-crop validation (Figure 4) and 10-crop testing (Tables 2 and 3) in
resnet.imagenet_eval.

The paper: "The image is resized with its shorter side randomly sampled in [256, 480] for scale
augmentation. A 224x224 crop is randomly sampled from an image or its horizontal flip, with the
per-pixel mean subtracted. The standard color augmentation in [21] is used." and "In testing, for
comparison studies we adopt the standard 10-crop testing [21]."

ILSVRC2012 is expected as ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (the
validation images sorted into class folders, as the common valprep script does).
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from resnet.runs import files as runfiles
from resnet.data.seeds import DataError, derive_seed

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

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
SYNTHETIC_MARKER = "SYNTHETIC.txt"
_AUGMENT_STREAM = 2  # derive_seed stream tags, distinct from the CIFAR ones
_PERMUTATION_STREAM = 3

_CONFIG_HINT = ("set data.imagenet in config.yaml to an ILSVRC2012 folder with train/ and val/ class "
                "folders, or 'synthetic'")


# ---------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------


def _scan(root: str | Path, split: str,
          classes: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """(sorted class names, [(file, label)]) of ``root/split/<class>/*``, ImageFolder labels.

    With ``classes`` (train/'s, for val/) the split must hold exactly those class folders: a
    missing or extra one would shift every label after it, silently.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"ImageNet not found at {str(root)!r}: {_CONFIG_HINT}")
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"ImageNet folder {str(root)!r} has no {split}/ folder: {_CONFIG_HINT}")
    found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not found:
        raise DataError(f"ImageNet folder {str(folder)!r} has no class folders: {_CONFIG_HINT}")
    if classes is not None and found != classes:
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        what = (f"lacks the class folder {missing[0]!r} that train/ has" if missing else
                f"has a class folder {extra[0]!r} that train/ lacks")
        raise DataError(f"ImageNet folder {str(folder)!r} {what} ({len(missing)} missing, {len(extra)} extra): "
                        "both splits need the same class folders")
    samples = []
    for label, name in enumerate(found):
        files = sorted(entry.path for entry in os.scandir(folder / name)
                       if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise DataError(f"ImageNet class folder {str(folder / name)!r} holds no images: {_CONFIG_HINT}")
        samples.extend((file, label) for file in files)
    return found, samples


def imagenet_classes(root: str | Path) -> list[str]:
    """Class folder names of ``root/train`` in label order."""
    return _scan(root, "train")[0]


def _open_rgb(file: str) -> Image.Image:
    try:
        with Image.open(file) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"unreadable image {file!r} ({error}): replace or remove it, or {_CONFIG_HINT}") from None


def make_synthetic_imagenet(out_dir: str | Path, num_classes: int = 10, train_per_class: int = 20,
                            val_per_class: int = 5, min_side: int = 40, max_side: int = 72,
                            seed: int = 0) -> Path:
    """A small ImageNet-layout set of synthetic JPEGs for tests and offline runs; returns its root.

    Each class has its own colour and stripe orientation and frequency, with per-image noise,
    phase and size (sides drawn independently in [min_side, max_side], so aspect ratios vary).
    Idempotent: a complete set with the same parameters is returned at once. Built in a temporary
    folder next to ``out_dir`` and renamed into place, so a killed run never leaves half a set.
    """
    out_dir = Path(out_dir)
    parameters = dict(num_classes=num_classes, train_per_class=train_per_class,
                      val_per_class=val_per_class, min_side=min_side, max_side=max_side, seed=seed)
    marker = ("Synthetic ImageNet-layout data made by resnet.imagenet.make_synthetic_imagenet; this is "
              "NOT ILSVRC2012 and its errors say nothing about the paper's numbers.\n"
              f"parameters: {json.dumps(parameters, sort_keys=True)}\n")
    if (out_dir / SYNTHETIC_MARKER).is_file():
        if (out_dir / SYNTHETIC_MARKER).read_text() == marker:
            return out_dir
        shutil.rmtree(out_dir)  # a synthetic set with other parameters: rebuild
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise DataError(f"{str(out_dir)!r} exists and is not a synthetic ImageNet set: choose an empty "
                        "or new folder for it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    staging.chmod(0o777 & ~runfiles.umask())  # mkdtemp makes 0700; the set is for everyone the umask allows
    try:
        rng = np.random.default_rng(seed)
        for split, per_class in (("train", train_per_class), ("val", val_per_class)):
            for label in range(num_classes):
                folder = staging / split / f"synthetic_n{label:04d}"
                folder.mkdir(parents=True)
                for number in range(per_class):
                    image = _synthetic_image(rng, label, num_classes, min_side, max_side)
                    image.save(folder / f"synthetic_n{label:04d}_{number:05d}.JPEG", quality=90)
        (staging / SYNTHETIC_MARKER).write_text(marker)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.rename(staging, out_dir)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if (out_dir / SYNTHETIC_MARKER).is_file():  # a concurrent build finished first
            return out_dir
        raise
    return out_dir


def _synthetic_image(rng: np.random.Generator, label: int, num_classes: int, min_side: int,
                     max_side: int) -> Image.Image:
    width, height = (int(side) for side in rng.integers(min_side, max_side + 1, size=2))
    colour = 255.0 * np.array(colorsys.hsv_to_rgb(label / num_classes, 0.7, 0.9))
    angle = math.pi * ((label * 0.618) % 1.0)
    frequency = 2 + label % 3  # stripes across the longer side
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    phase = rng.uniform(0, 2 * math.pi)
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * frequency * (x * math.cos(angle) + y * math.sin(angle)) + phase)
    pixels = colour * (0.45 + 0.55 * stripes)[..., None] + rng.normal(0, 20, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def resolve_imagenet_root(setting: str | Path, cache_dir: str | Path) -> Path:
    """``data.imagenet`` from config: 'synthetic' builds (once) a synthetic set under cache_dir;
    anything else must be an ImageNet-layout folder with train/ and val/."""
    if str(setting) == "synthetic":
        return make_synthetic_imagenet(Path(cache_dir) / "synthetic-imagenet")
    root = Path(setting).expanduser()
    _scan(root, "val", _scan(root, "train")[0])
    return root


# ---------------------------------------------------------------------------------------------
# The sampled crop: one home for the per-sample parameters of every loader
# ---------------------------------------------------------------------------------------------


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


def _shorter_side_size(size: tuple[int, int], shorter: int) -> tuple[int, int]:
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
    width, height = _shorter_side_size(size, shorter)
    top, left = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
    flip = bool(rng.random() < 0.5)
    alpha = rng.normal(0.0, PCA_STD, 3).astype(np.float32)
    offset = (_EIGENVECTORS_NP @ (alpha * _EIGENVALUES_NP)).astype(np.float32)
    return Crop(_box_of(size, (width, height), left, top, crop), flip, offset)


def centre_crop(size: tuple[int, int], resize: int, crop: int) -> Crop:
    """The centre crop x crop window of the image resized to shorter side ``resize`` (validation)."""
    width, height = _shorter_side_size(size, resize)
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


_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)


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
    x.sub_(_MEAN.to(device))
    return x if channels_last else x.contiguous()


class ImageNetTrainSet(Dataset):
    """Training images, indexed by (index, augmentation seed) pairs from ResumableSampler.

    An item is (uint8 HWC crop, float32 RGB offset, label); finish_batch makes the net's input.
    The per-sample randomness (scale, crop position, flip, colour noise) comes only from the seed
    it is handed, so batches are the same whatever the number of loader workers.
    """

    def __init__(self, root: str | Path, short_side: tuple[int, int] = (256, 480), crop: int = 224):
        if not crop <= short_side[0] <= short_side[1]:
            raise ValueError(f"need crop <= short_side[0] <= short_side[1], got {crop}, {short_side}")
        self.classes, self.samples = _scan(root, "train")
        self.short_side, self.crop = short_side, crop

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        index, augment_seed = key
        file, label = self.samples[index]
        image = _open_rgb(file)
        spec = train_crop(image.size, augment_seed, self.short_side, self.crop)
        return torch.from_numpy(crop_pixels(image, spec, self.crop)), torch.from_numpy(spec.offset), label


# ---------------------------------------------------------------------------------------------
# Resumable, DDP-aware sampling
# ---------------------------------------------------------------------------------------------


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
        self._permutations: dict[int, np.ndarray] = {}

    def set_position(self, samples_seen: int) -> None:
        """Continue from ``samples_seen`` global samples (iteration * global batch) on next iter()."""
        self.position = samples_seen

    def epoch_of(self, samples_seen: int) -> float:
        return samples_seen / self.num_samples

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, _PERMUTATION_STREAM, epoch))
            self._permutations = {k: v for k, v in self._permutations.items() if k == epoch - 1}
            self._permutations[epoch] = torch.randperm(self.num_samples, generator=generator).numpy()
        return self._permutations[epoch]

    def sample_at(self, position: int) -> tuple[int, int]:
        """The (index, augmentation seed) pair at a global position."""
        epoch, offset = divmod(position, self.num_samples)
        return int(self._permutation(epoch)[offset]), derive_seed(self.seed, _AUGMENT_STREAM, position)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start = self.position
        while True:
            for position in range(start + self.rank, start + self.batch_size, self.world_size):
                yield self.sample_at(position)
            start += self.batch_size


def _loader_options(workers: int) -> dict:
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


def imagenet_train_loader(root: str | Path, batch_size: int, seed: int,
                          short_side: tuple[int, int] = (256, 480), crop: int = 224, workers: int = 8,
                          rank: int = 0, world_size: int = 1, start_sample: int = 0,
                          device: torch.device | str = "cpu",
                          channels_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless iterator of this rank's (x, y) training batches on ``device``: the PIL loader.

    ``batch_size`` is the global batch (the paper: 256); each rank gets batch_size / world_size
    images per step. ``start_sample`` = iteration * batch_size resumes a run at the same data
    position with the same augmentation. Workers decode and crop to uint8; finish_batch does the
    rest on the device. The folder is checked now; workers start on first next().
    """
    dataset = ImageNetTrainSet(root, short_side, crop)
    sampler = ResumableSampler(len(dataset), batch_size, seed, rank, world_size, start_sample)
    loader = DataLoader(dataset, batch_size=batch_size // world_size, sampler=sampler,
                        **_loader_options(workers))

    def stream() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = iter(loader)  # the sampler never ends, so neither does this
        while True:
            try:
                images, offsets, labels = next(batches)
            except DataError as error:
                raise one_line(error) from None
            yield finish_batch(images, offsets, device, channels_last), labels.to(device, non_blocking=True)

    return stream()


# ---------------------------------------------------------------------------------------------
# Choosing the loader: data.imagenet_loader
# ---------------------------------------------------------------------------------------------

LOADERS = ("auto", "dali", "pil")


def pick_loader(setting: str, device: torch.device | str) -> str:
    """'dali' or 'pil' for ``data.imagenet_loader``: auto takes DALI on CUDA when it is installed.

    DALI on the CPU runs its CPU backend (the tests and the CPU benchmark use it); it is chosen
    there only when asked for by name.
    """
    from resnet.data.imagenet import dali as imagenet_dali

    if setting not in LOADERS:
        raise DataError(f"data.imagenet_loader is {setting!r}: use one of {', '.join(LOADERS)}")
    if setting == "pil":
        return "pil"
    if setting == "dali":
        imagenet_dali.require_dali()
        return "dali"
    return "dali" if torch.device(device).type == "cuda" and imagenet_dali.dali_available() else "pil"
