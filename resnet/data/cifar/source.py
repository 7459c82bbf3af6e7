"""CIFAR-10 from disk: three source formats, the completeness check and the decoded cache.

    arrays = load_cifar10("../shared/data/cifar10-jpeg.tar.gz", "results/cache")
    arrays.train_images.shape, arrays.source_kind, arrays.content_hash

Sources: a torchvision CIFAR-10 folder (python pickles), an ImageFolder tree with train/ and test/
class folders, or a tarball (.tar.gz/.tgz/.tar) of one. A source must be the whole of CIFAR-10:
50,000 training and 10,000 test images in 10 classes of 5,000 and 1,000. Anything else (a copy cut
short, a class folder missing its files) is refused with the counts, unless the caller asks for a
partial source (``partial=True``, the config's data.cifar10_partial: small test fixtures). The
recipe keys train_subset / test_subset select subsets of a complete source, later, in the task.

Decoding happens once, into ``<cache>/cifar10-<fingerprint>.npz``. The fingerprint covers what can
change: the size and mtime of every file of a folder source (so one image rewritten inside an
unchanged folder is noticed), and the size, mtime and SHA-256 of a tarball. The cache also records
``content_hash`` (SHA-256 of the decoded arrays and class names), which says exactly which data a
cell saw, whatever the format it came from.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from resnet.runs import files as runfiles
from resnet.data.errors import DataError

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]
IMAGE_SIZE = 32  # pixels, height = width
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CACHE_FORMAT = 2  # bump when decoding or the cache's fields change, so old caches are not reused
# The CIFAR-10 data set (Krizhevsky 2009): 50,000 training and 10,000 test images, 10 classes, balanced.
COMPLETE = {"train": 50_000, "test": 10_000}
NUM_CLASSES = 10

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
    source_kind: str  # "torchvision", "imagefolder" or "tarball"
    content_hash: str  # SHA-256 (hex) of the decoded images, labels and class names


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
    """One 32x32 image as uint8 RGB; any other size is refused from its header, before decoding."""
    try:
        with warnings.catch_warnings():  # the size is checked here; PIL's warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                size = image.size
                pixels = np.asarray(image.convert("RGB")) if size == (IMAGE_SIZE, IMAGE_SIZE) else None
    except Image.DecompressionBombError:  # so large that PIL refuses to open it: the header says how large
        raise DataError(_size_error(where, *_header_size(data))) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"unreadable image {where!r} ({error}): {_CONFIG_HINT}") from None
    if pixels is None:
        raise DataError(_size_error(where, *size))
    return pixels


def _header_size(data: bytes) -> tuple[int | str, int | str]:
    """An image's width and height from its header, with PIL's pixel limit lifted for this read only."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return "?", "?"
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _size_error(where: str, width, height) -> str:
    return f"image {where!r} is {width}x{height}, CIFAR-10 images are 32x32: {_CONFIG_HINT}"


Files = dict[str, dict[str, list[tuple[str, bytes]]]]  # {split: {class: [(file name, bytes)]}}


def _classes_of(files: Files, where: str) -> list[str]:
    """The class names (sorted, ImageFolder labels) after checking the tree's layout."""
    for split in ("train", "test"):
        if split not in files:
            raise DataError(f"CIFAR-10 ImageFolder {where!r} has no {split}/ folder: {_CONFIG_HINT}")
    classes = sorted(files["train"])
    if not classes:
        raise DataError(f"CIFAR-10 ImageFolder {where!r} has no class folders in train/: {_CONFIG_HINT}")
    if sorted(files["test"]) != classes:
        raise DataError(f"CIFAR-10 ImageFolder {where!r}: test/ classes {sorted(files['test'])} differ from "
                        f"train/ classes {classes}: {_CONFIG_HINT}")
    for split in ("train", "test"):
        for name in classes:
            if not files[split][name]:
                raise DataError(f"class folder {split}/{name} in {where!r} holds no images: {_CONFIG_HINT}")
    return classes


def _assemble(files: Files, classes: list[str], where: str) -> dict:
    """Decode {split: {class: [(name, bytes)]}} with ImageFolder labels (sorted class names)."""
    arrays = {"classes": classes}
    for split in ("train", "test"):
        images, labels = [], []
        for label, name in enumerate(classes):
            members = sorted(files[split][name])
            images.extend(_decode(data, f"{where}/{split}/{name}/{file}") for file, data in members)
            labels.extend([label] * len(members))
        arrays[f"{split}_images"] = np.stack(images)
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
    return arrays


def _image_folder_files(root: Path) -> Files:
    files: Files = {}
    for split in ("train", "test"):
        if not (root / split).is_dir():
            continue
        files[split] = {}
        for class_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            files[split][class_dir.name] = [
                (file.name, file.read_bytes()) for file in class_dir.iterdir()
                if file.suffix.lower() in IMAGE_SUFFIXES
            ]
    return files


def _tarball_files(path: Path) -> Files:
    """An ImageFolder tree read straight from the tar members (possibly under one top folder)."""
    files: Files = {}
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
    return files


def _download(root: Path) -> Path:
    """torchvision's CIFAR-10 into root, once: concurrent jobs wait on a lock for the first one."""
    import fcntl

    import torchvision

    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".download.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        if _torchvision_folder(root) is not None:
            return root / "cifar-10-batches-py"  # another job downloaded it meanwhile
        try:
            torchvision.datasets.CIFAR10(root=str(root), train=True, download=True)
        except Exception as error:  # network errors come in many types; all mean the same here
            raise DataError(f"could not download CIFAR-10 to {str(root)!r} ({str(error)[:200]}): put "
                            f"torchvision's cifar-10-batches-py/ there, or set data.cifar10 in config.yaml to a "
                            f"local copy (data.cifar10_download: false)") from None
    return root / "cifar-10-batches-py"


# ---------------------------------------------------------------------------------------------
# Completeness: the whole of CIFAR-10, or an explicit partial source
# ---------------------------------------------------------------------------------------------


def check_complete(counts: dict[str, list[int]], classes: list[str], where: str) -> None:
    """Refuse a source that is not all of CIFAR-10; ``counts[split][label]`` = images of a class.

    One line with the counts found, what CIFAR-10 has, and the two ways out.
    """
    per_class = {split: total // NUM_CLASSES for split, total in COMPLETE.items()}
    off = [f"{split}/{name}: {counts[split][label]:,}" for split in ("train", "test")
           for label, name in enumerate(classes) if counts[split][label] != per_class[split]]
    if len(classes) == NUM_CLASSES and not off:
        return
    found = (f"{sum(counts['train']):,} training and {sum(counts['test']):,} test images in "
             f"{len(classes)} classes")
    detail = f" (off: {', '.join(off[:4])}{', ...' if len(off) > 4 else ''})" if off else ""
    raise DataError(
        f"CIFAR-10 source {where!r} is incomplete: {found}{detail}; CIFAR-10 has 50,000 and 10,000 in "
        f"10 classes of 5,000 and 1,000: point data.cifar10 at a complete copy, or set "
        f"data.cifar10_partial: true to train on this one as it is")


def _counts_of_files(files: Files, classes: list[str]) -> dict[str, list[int]]:
    return {split: [len(files[split][name]) for name in classes] for split in ("train", "test")}


def _counts_of_arrays(arrays: dict) -> dict[str, list[int]]:
    classes = len(arrays["classes"])
    return {split: np.bincount(np.asarray(arrays[f"{split}_labels"], np.int64), minlength=classes).tolist()[:classes]
            for split in ("train", "test")}


# ---------------------------------------------------------------------------------------------
# The decoded cache
# ---------------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(path: Path) -> str:
    """Hash of the resolved source path and of everything in it that can change.

    A tarball: its size, mtime and SHA-256. A folder: the relative path, size and mtime of every
    file (a torchvision folder's batches, an ImageFolder's images), so rewriting one image inside an
    unchanged folder gives a new fingerprint and a fresh decode.
    """
    parts = [f"format={CACHE_FORMAT}", str(path)]
    if path.is_file():
        info = path.stat()
        parts.append(f"{info.st_size}:{info.st_mtime_ns}:{_sha256_file(path)}")
    elif path.is_dir():
        folder = _torchvision_folder(path)
        roots = [folder] if folder is not None else [path / split for split in ("train", "test")]
        for root in roots:
            for directory, subdirs, names in os.walk(root):
                subdirs.sort()
                for name in sorted(names):
                    file = Path(directory) / name
                    info = file.stat()
                    parts.append(f"{file.relative_to(path)}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def content_hash(arrays: dict) -> str:
    """SHA-256 of the decoded images and labels (train, then test) and the class names."""
    digest = hashlib.sha256()
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{value.dtype.str}:{value.shape}\n".encode())
        digest.update(value.data)
    digest.update("\n".join(str(name) for name in arrays["classes"]).encode())
    return digest.hexdigest()


def _save_cache(file: Path, arrays: dict) -> None:
    with runfiles.atomic_open(file) as handle:
        np.savez(handle, **arrays)


def _load_cache(file: Path) -> dict | None:
    try:
        with np.load(file, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # absent, or a torn file from a killed run
        return None


def _decode_source(path: Path, partial: bool) -> tuple[dict, str]:
    """(arrays, source kind) of a source; an incomplete folder or tarball is refused before decoding."""
    if path.is_file() and _is_tarball(path):
        kind, files = "tarball", _tarball_files(path)
    elif path.is_dir() and _torchvision_folder(path) is not None:
        return _read_torchvision(_torchvision_folder(path)), "torchvision"
    elif path.is_dir():
        kind, files = "imagefolder", _image_folder_files(path)
    else:
        raise DataError(f"CIFAR-10 source {str(path)!r} is neither a folder nor a .tar.gz/.tgz/.tar: "
                        f"{_CONFIG_HINT}")
    classes = _classes_of(files, str(path))
    if not partial:  # counting is cheap; decoding 60,000 images is not
        check_complete(_counts_of_files(files, classes), classes, str(path))
    return _assemble(files, classes, str(path)), kind


def load_cifar10(source: str | Path, cache_dir: str | Path, download: bool = False,
                 partial: bool = False) -> CifarArrays:
    """CIFAR-10 from a torchvision folder, an ImageFolder tree or a (.tar.gz/.tgz/.tar) of one.

    Decoded once into ``cache_dir/cifar10-<fingerprint>.npz``; later calls read the cache in well
    under a few seconds. Class order: sorted folder names (ImageFolder convention), which for
    CIFAR-10 equals torchvision's label order. A source that is not the whole of CIFAR-10 raises
    DataError unless ``partial`` (data.cifar10_partial). The paper's numbers are for the original
    (lossless) batches; a JPEG copy such as the offline tarball in shared/data decodes to slightly
    different pixels.
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
        arrays, kind = _decode_source(path, partial)
        if not partial:
            check_complete(_counts_of_arrays(arrays), list(arrays["classes"]), str(path))
        arrays = {**arrays, "classes": np.asarray(arrays["classes"]), "source": np.asarray(str(path)),
                  "source_kind": np.asarray(kind), "content_hash": np.asarray(content_hash(arrays))}
        _save_cache(cache_file, arrays)
        cached = arrays
    elif not partial:  # a cache decoded for a partial run is still refused for a complete one
        check_complete(_counts_of_arrays(cached), [str(name) for name in cached["classes"]], str(path))
    return CifarArrays(
        train_images=cached["train_images"], train_labels=cached["train_labels"].astype(np.int64),
        test_images=cached["test_images"], test_labels=cached["test_labels"].astype(np.int64),
        classes=[str(name) for name in cached["classes"]], source=str(cached["source"]),
        source_kind=str(cached["source_kind"]), content_hash=str(cached["content_hash"]),
    )
