"""CIFAR-10: sources, the decoded cache, the 45k/5k split and the paper's augmentation (Sec. 4.2).

Reading order: where the images come from (three formats), the cache, the split and the mean,
then the training stream that lives on the device, then the evaluation set.

The paper: "We follow the simple data augmentation in [24] for training: 4 pixels are padded on
each side, and a 32x32 crop is randomly sampled from the padded image or its horizontal flip. For
testing, we only evaluate the single view of the original 32x32 image." and "The network inputs
are 32x32 images, with the per-pixel mean subtracted."
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from resnet.data import DataError, derive_seed

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
IMAGE_SIZE = 32  # pixels, height = width
PAD = 4  # pixels of zero padding on each side before the random crop, Sec. 4.2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CACHE_FORMAT = 1  # bump when decoding changes, so old caches are not reused

_PERMUTATION_STREAM = 0  # derive_seed stream tags: one for epoch orders, one for augmentation
_AUGMENT_STREAM = 1

_CONFIG_HINT = (
    "set data.cifar10 in config.yaml to a torchvision CIFAR-10 folder, an ImageFolder tree or a "
    ".tar.gz of one, or set data.cifar10_download: true when online"
)


@dataclass
class CifarArrays:
    """CIFAR-10 in memory: uint8 NHWC images, int64 labels, class names in label order."""

    train_images: np.ndarray  # uint8 (50000, 32, 32, 3)
    train_labels: np.ndarray  # int64 (50000,)
    test_images: np.ndarray  # uint8 (10000, 32, 32, 3)
    test_labels: np.ndarray  # int64 (10000,)
    classes: list[str]
    source: str  # the resolved source path the arrays were decoded from


# ---------------------------------------------------------------------------------------------
# Sources: torchvision pickles, an ImageFolder tree, a tarball of one
# ---------------------------------------------------------------------------------------------


def _torchvision_folder(path: Path) -> Path | None:
    """The folder holding data_batch_1..5 and test_batch, if path is (or holds) one."""
    for candidate in (path, path / "cifar-10-batches-py"):
        if (candidate / "data_batch_1").is_file() and (candidate / "test_batch").is_file():
            return candidate
    return None


def _is_tarball(path: Path) -> bool:
    return path.name.lower().endswith(TAR_SUFFIXES)


def _read_torchvision(folder: Path) -> dict:
    """The python-pickle batches as torchvision downloads them (read here without md5 checks)."""

    def read_batches(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for name in names:
            file = folder / name
            if not file.is_file():
                raise DataError(f"CIFAR-10 batch {str(file)!r} is missing: {_CONFIG_HINT}")
            try:
                with open(file, "rb") as handle:
                    batch = pickle.load(handle, encoding="latin1")
                data = np.asarray(batch["data"], dtype=np.uint8)
                images.append(data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1))
                labels.append(np.asarray(batch.get("labels", batch.get("fine_labels")), np.int64))
            except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:
                raise DataError(f"CIFAR-10 batch {str(file)!r} is unreadable ({error}): {_CONFIG_HINT}") from None
        return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)

    train_images, train_labels = read_batches([f"data_batch_{i}" for i in range(1, 6)])
    test_images, test_labels = read_batches(["test_batch"])
    classes = list(CIFAR10_CLASSES)
    if (folder / "batches.meta").is_file():
        with open(folder / "batches.meta", "rb") as handle:
            classes = list(pickle.load(handle, encoding="latin1")["label_names"])
    return dict(train_images=train_images, train_labels=train_labels, test_images=test_images,
                test_labels=test_labels, classes=classes)


def _decode(data: bytes, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"unreadable image {where!r} ({error}): {_CONFIG_HINT}") from None
    if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise DataError(f"image {where!r} is {pixels.shape[1]}x{pixels.shape[0]}, CIFAR-10 images are "
                        f"32x32: {_CONFIG_HINT}")
    return pixels


def _assemble(files: dict[str, dict[str, list[tuple[str, bytes]]]], where: str) -> dict:
    """Decode {split: {class: [(name, bytes)]}} with ImageFolder labels (sorted class names)."""
    for split in ("train", "test"):
        if split not in files:
            raise DataError(f"CIFAR-10 ImageFolder {where!r} has no {split}/ folder: {_CONFIG_HINT}")
    classes = sorted(files["train"])
    if not classes:
        raise DataError(f"CIFAR-10 ImageFolder {where!r} has no class folders in train/: {_CONFIG_HINT}")
    if sorted(files["test"]) != classes:
        raise DataError(f"CIFAR-10 ImageFolder {where!r}: test/ classes {sorted(files['test'])} differ from "
                        f"train/ classes {classes}: {_CONFIG_HINT}")
    arrays = {"classes": classes}
    for split in ("train", "test"):
        images, labels = [], []
        for label, name in enumerate(classes):
            members = sorted(files[split][name])
            if not members:
                raise DataError(f"class folder {split}/{name} in {where!r} holds no images: {_CONFIG_HINT}")
            images.extend(_decode(data, f"{where}/{split}/{name}/{file}") for file, data in members)
            labels.extend([label] * len(members))
        arrays[f"{split}_images"] = np.stack(images)
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
    return arrays


def _read_image_folder(root: Path) -> dict:
    files: dict[str, dict[str, list[tuple[str, bytes]]]] = {}
    for split in ("train", "test"):
        if not (root / split).is_dir():
            continue
        files[split] = {}
        for class_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            files[split][class_dir.name] = [
                (file.name, file.read_bytes()) for file in class_dir.iterdir()
                if file.suffix.lower() in IMAGE_SUFFIXES
            ]
    return _assemble(files, str(root))


def _read_tarball(path: Path) -> dict:
    """An ImageFolder tree read straight from the tar members (possibly under one top folder)."""
    files: dict[str, dict[str, list[tuple[str, bytes]]]] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                parts = Path(member.name).parts
                if member.isdir() and len(parts) >= 2 and parts[-2] in ("train", "test"):
                    files.setdefault(parts[-2], {}).setdefault(parts[-1], [])
                if not member.isfile() or len(parts) < 3 or parts[-3] not in ("train", "test"):
                    continue
                if not parts[-1].lower().endswith(IMAGE_SUFFIXES):
                    continue
                data = archive.extractfile(member).read()
                files.setdefault(parts[-3], {}).setdefault(parts[-2], []).append((parts[-1], data))
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"CIFAR-10 tarball {str(path)!r} is unreadable ({error}): {_CONFIG_HINT}") from None
    return _assemble(files, str(path))


def _download(root: Path) -> Path:
    import torchvision

    try:
        torchvision.datasets.CIFAR10(root=str(root), train=True, download=True)
    except Exception as error:  # network errors come in many types; all mean the same here
        raise DataError(f"could not download CIFAR-10 to {str(root)!r} ({error}): set data.cifar10 in "
                        "config.yaml to a local copy, or set data.cifar10_download: false") from None
    return root / "cifar-10-batches-py"


# ---------------------------------------------------------------------------------------------
# The decoded cache
# ---------------------------------------------------------------------------------------------


def _fingerprint(path: Path) -> str:
    """Hash of the resolved path and the size and mtime of what makes up the source."""
    parts = [f"format={CACHE_FORMAT}", str(path)]
    stats = [path]
    if path.is_dir():
        folder = _torchvision_folder(path)
        if folder is not None:
            stats = sorted(folder.iterdir())
        else:  # an ImageFolder tree: the split and class folders change mtime when files come or go
            stats = [path, *sorted(p for split in ("train", "test") if (path / split).is_dir()
                                   for p in [path / split, *(path / split).iterdir()])]
    for item in stats:
        info = item.stat()
        parts.append(f"{item.name}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _save_atomic(file: Path, arrays: dict) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temporary, file)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _load_cache(file: Path) -> dict | None:
    try:
        with np.load(file, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # absent, or a torn file from a killed run
        return None


def load_cifar10(source: str | Path, cache_dir: str | Path, download: bool = False) -> CifarArrays:
    """CIFAR-10 from a torchvision folder, an ImageFolder tree or a (.tar.gz/.tgz/.tar) of one.

    Decoded once into ``cache_dir/cifar10-<hash>.npz`` (hash of the resolved source path, size and
    mtime); later calls read the cache in well under a few seconds. Class order: sorted folder
    names (ImageFolder convention), which for CIFAR-10 equals torchvision's label order.
    The paper's numbers are for the original (lossless) batches; a JPEG copy such as the offline
    tarball in shared/data decodes to slightly different pixels.
    """
    path = Path(source).expanduser().resolve()
    if not path.exists() and (not download or _is_tarball(path)):
        raise DataError(f"CIFAR-10 not found at {str(source)!r}: {_CONFIG_HINT}")
    downloadable = not path.exists() or (path.is_dir() and _torchvision_folder(path) is None
                                         and not (path / "train").is_dir())
    if download and downloadable:
        path = _download(path).resolve()
    cache_file = Path(cache_dir) / f"cifar10-{_fingerprint(path)}.npz"
    cached = _load_cache(cache_file)
    if cached is None:
        if path.is_file() and _is_tarball(path):
            arrays = _read_tarball(path)
        elif path.is_dir() and _torchvision_folder(path) is not None:
            arrays = _read_torchvision(_torchvision_folder(path))
        elif path.is_dir():
            arrays = _read_image_folder(path)
        else:
            raise DataError(f"CIFAR-10 source {str(path)!r} is neither a folder nor a .tar.gz/.tgz/.tar: "
                            f"{_CONFIG_HINT}")
        arrays = {**arrays, "classes": np.asarray(arrays["classes"]), "source": np.asarray(str(path))}
        _save_atomic(cache_file, arrays)
        cached = arrays
    return CifarArrays(
        train_images=cached["train_images"], train_labels=cached["train_labels"].astype(np.int64),
        test_images=cached["test_images"], test_labels=cached["test_labels"].astype(np.int64),
        classes=[str(name) for name in cached["classes"]], source=str(cached["source"]),
    )


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
    generator = torch.Generator().manual_seed(derive_seed(seed, _AUGMENT_STREAM, iteration))
    offsets = torch.randint(0, 2 * PAD + 1, (batch_size, 2), generator=generator)
    flips = torch.rand(batch_size, generator=generator) < 0.5
    return offsets, flips


def _normalise(images_uint8_nchw: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return images_uint8_nchw.float().div_(255.0).sub_(mean)


def _finish(x: torch.Tensor, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return x.to(dtype=dtype).contiguous(memory_format=memory_format)


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
    offsets, flips = offsets.to(device), flips.to(device)
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
        self._permutations: dict[int, np.ndarray] = {}

    def epoch_of(self, iteration: int) -> float:
        """Epochs completed before ``iteration`` (fractional)."""
        return iteration * self.batch_size / self.num_samples

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, _PERMUTATION_STREAM, epoch))
            self._permutations = {  # keep two epochs: a batch may straddle a boundary
                key: value for key, value in self._permutations.items() if key == epoch - 1
            }
            self._permutations[epoch] = torch.randperm(self.num_samples, generator=generator).numpy()
        return self._permutations[epoch]

    def indices(self, iteration: int) -> np.ndarray:
        """The dataset indices of the batch at ``iteration``."""
        positions = iteration * self.batch_size + np.arange(self.batch_size, dtype=np.int64)
        epochs, offsets = np.divmod(positions, self.num_samples)
        chosen = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):
            in_epoch = epochs == epoch
            chosen[in_epoch] = self._permutation(int(epoch))[offsets[in_epoch]]
        return chosen

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(self.indices(iteration)).to(self.device, non_blocking=True)
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
