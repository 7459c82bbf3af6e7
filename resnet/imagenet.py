"""ImageNet: folders, the paper's training augmentation (Sec. 3.4), resumable sampling, testing.

Reading order: the folder layout (ILSVRC2012 or a generated synthetic set), the training
transform, the resumable DDP-aware sampler, the training loader, then centre-crop validation
(Figure 4) and 10-crop testing (Tables 2 and 3).

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
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from resnet.data import DataError, derive_seed

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


def _scan(root: str | Path, split: str) -> tuple[list[str], list[tuple[str, int]]]:
    """(sorted class names, [(file, label)]) of ``root/split/<class>/*``, ImageFolder labels."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"ImageNet not found at {str(root)!r}: {_CONFIG_HINT}")
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"ImageNet folder {str(root)!r} has no {split}/ folder: {_CONFIG_HINT}")
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise DataError(f"ImageNet folder {str(folder)!r} has no class folders: {_CONFIG_HINT}")
    samples = []
    for label, name in enumerate(classes):
        files = sorted(entry.path for entry in os.scandir(folder / name)
                       if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise DataError(f"ImageNet class folder {str(folder / name)!r} holds no images: {_CONFIG_HINT}")
        samples.extend((file, label) for file in files)
    return classes, samples


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
    marker = ("Synthetic ImageNet-layout data made by resnet.data.make_synthetic_imagenet; this is "
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
    for split in ("train", "val"):
        _scan(root, split)
    return root


# ---------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------


def _shorter_side_size(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """(width, height) of an image of ``size`` resized to shorter side ``shorter``."""
    width, height = size
    scale = shorter / min(width, height)
    return max(shorter, round(width * scale)), max(shorter, round(height * scale))


def _resize_shorter(image: Image.Image, shorter: int) -> Image.Image:
    return image.resize(_shorter_side_size(image.size, shorter), Image.Resampling.BILINEAR)


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """uint8 HWC PIL image -> float32 CHW in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)


_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_EIGENVALUES = torch.tensor(PCA_EIGENVALUES)
_EIGENVECTORS = torch.tensor(PCA_EIGENVECTORS)


def _pca_lighting(rng: np.random.Generator) -> torch.Tensor:
    """The per-channel RGB offset of AlexNet colour augmentation for one image, shape (3, 1, 1)."""
    alpha = torch.from_numpy(rng.normal(0.0, PCA_STD, 3).astype(np.float32))
    return (_EIGENVECTORS @ (alpha * _EIGENVALUES)).view(3, 1, 1)


class ImageNetTrainSet(Dataset):
    """Training images, indexed by (index, augmentation seed) pairs from ResumableSampler.

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

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, augment_seed = key
        file, label = self.samples[index]
        rng = np.random.default_rng(augment_seed)
        image = _open_rgb(file)
        shorter = int(rng.integers(self.short_side[0], self.short_side[1] + 1))
        width, height = _shorter_side_size(image.size, shorter)
        top, left = int(rng.integers(0, height - self.crop + 1)), int(rng.integers(0, width - self.crop + 1))
        # The crop of the image resized to (width, height), computed by resampling only the crop's
        # box of the original (PIL's resize with box= uses the same filter and pixel centres): 3x
        # faster than resizing the whole image at ImageNet sizes. It differs from resize-then-crop
        # only by the rounding of PIL's 8-bit intermediate between its two passes (at most 2 of 255).
        x_scale, y_scale = image.size[0] / width, image.size[1] / height
        box = (left * x_scale, top * y_scale, (left + self.crop) * x_scale, (top + self.crop) * y_scale)
        image = image.resize((self.crop, self.crop), Image.Resampling.BILINEAR, box=box)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return _to_tensor(image).add_(_pca_lighting(rng)).sub_(_MEAN), label


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
    return dict(num_workers=workers, pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)


def imagenet_train_loader(root: str | Path, batch_size: int, seed: int,
                          short_side: tuple[int, int] = (256, 480), crop: int = 224, workers: int = 8,
                          rank: int = 0, world_size: int = 1,
                          start_sample: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless iterator of this rank's (x, y) training batches.

    ``batch_size`` is the global batch (the paper: 256); each rank gets batch_size / world_size
    images per step. ``start_sample`` = iteration * batch_size resumes a run at the same data
    position with the same augmentation. The folder is checked now; workers start on first next().
    """
    dataset = ImageNetTrainSet(root, short_side, crop)
    sampler = ResumableSampler(len(dataset), batch_size, seed, rank, world_size, start_sample)
    loader = DataLoader(dataset, batch_size=batch_size // world_size, sampler=sampler,
                        **_loader_options(workers))

    def stream() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from loader  # the sampler never ends, so neither does this

    return stream()


# ---------------------------------------------------------------------------------------------
# Validation (centre crop, Figure 4) and 10-crop testing (Tables 2 and 3)
# ---------------------------------------------------------------------------------------------


class ImageNetEvalSet(Dataset):
    """Validation images resized to shorter side ``resize``: the centre crop, or the 10 crops
    (4 corners and centre, then their horizontal flips) as a (10, 3, crop, crop) tensor."""

    def __init__(self, root: str | Path, resize: int = 256, crop: int = 224, ten_crop: bool = False,
                 split: str = "val"):
        if crop > resize:
            raise ValueError(f"crop {crop} exceeds the resized shorter side {resize}")
        self.classes, self.samples = _scan(root, split)
        self.resize, self.crop, self.ten_crop = resize, crop, ten_crop

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        file, label = self.samples[index]
        image = _resize_shorter(_open_rgb(file), self.resize)
        width, height, crop = *image.size, self.crop
        centre = ((width - crop) // 2, (height - crop) // 2)
        if not self.ten_crop:
            return _to_tensor(image.crop((*centre, centre[0] + crop, centre[1] + crop))).sub_(_MEAN), label
        corners = [(0, 0), (width - crop, 0), (0, height - crop), (width - crop, height - crop), centre]
        views = [_to_tensor(image.crop((x, y, x + crop, y + crop))) for x, y in corners]
        views += [view.flip(-1) for view in views]
        return torch.stack(views).sub_(_MEAN), label


def imagenet_val_loader(root: str | Path, batch_size: int, resize: int = 256, crop: int = 224,
                        workers: int = 8, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Centre-crop validation batches (the bold curves of Figure 4), in folder order; re-iterable.

    With world_size > 1 each rank gets the strided share rank::world_size of the images.
    """
    dataset = ImageNetEvalSet(root, resize, crop)
    if world_size > 1:
        dataset = Subset(dataset, range(rank, len(dataset), world_size))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **_loader_options(workers))


def ten_crop_eval(model: torch.nn.Module, root: str | Path, short_side: int = 256, crop: int = 224,
                  batch_size: int = 32, device="cpu", workers: int = 8, split: str = "val") -> dict:
    """Top-1 and top-5 error (%) with 10-crop testing, softmax scores averaged over the crops.

    The paper does not state the test scale of its 10-crop results; the project uses shorter side
    256 (AlexNet's 10-crop convention, [21]). ``batch_size`` counts images (10 crops each). With
    fewer than 5 classes "top-5" is top-min(5, classes), reported as ``top5_k``.
    Deviation: the paper's best single-model and ensemble results (Tables 4 and 5) use
    fully-convolutional multi-scale testing (shorter side in {224, 256, 384, 480, 640}); the
    project reproduces the 10-crop Tables 2 and 3 only.
    """
    dataset = ImageNetEvalSet(root, short_side, crop, ten_crop=True, split=split)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        **{**_loader_options(workers), "persistent_workers": False})
    k = min(5, len(dataset.classes))
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    was_training, top1_correct, topk_correct = model.training, 0, 0
    model.eval()
    try:
        with torch.inference_mode():
            for views, labels in loader:
                images = views.shape[0]
                logits = model(views.to(device, dtype, non_blocking=True).flatten(0, 1))
                if logits.shape != (images * 10, len(dataset.classes)):
                    raise ValueError(f"model returned logits of shape {tuple(logits.shape)} for "
                                     f"{images * 10} crops of {len(dataset.classes)} classes")
                scores = logits.float().softmax(dim=-1).view(images, 10, -1).mean(dim=1)
                hits = scores.topk(k, dim=1).indices == labels.to(scores.device)[:, None]
                top1_correct += int(hits[:, 0].sum())
                topk_correct += int(hits.any(dim=1).sum())
    finally:
        model.train(was_training)
    total = len(dataset)
    return dict(top1_error=100.0 * (1 - top1_correct / total), top5_error=100.0 * (1 - topk_correct / total),
                num_images=total, top5_k=k)
