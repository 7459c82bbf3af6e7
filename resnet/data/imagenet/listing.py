"""The ImageNet listing: ``root/train/<wnid>/*`` and ``root/val/<wnid>/*``, read once per process.

    listing = list_imagenet(root)     classes, each split's files, and the digest of names and sizes
    listing.samples("train")          [(path, label)], ImageFolder's labels (class folders in sorted order)
    listing.digest                    the data's identity (metrics.json data.content_hash, MLflow's dataset)
    as_listing(source)                what every loader takes: a listing, or a folder listed now
    check_complete(listing, partial)  the counts of ILSVRC2012, unless a deliberate subset

One listing serves the whole job: the training set, both loaders, validation, 10-crop testing and the
data identity all read the same object, so the folder is listed once. It holds names relative to the
root (one string per class), so that it pickles small enough to hand to other processes.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from resnet.config.sections import IMAGENET_SIZES
from resnet.data.errors import DataError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


CONFIG_HINT = ("set data.imagenet in config.yaml to the folder holding ILSVRC2012's three archives, to a folder "
               "with train/ and val/ class folders, or to 'synthetic'")


@dataclass(frozen=True)
class ImageNetListing:
    """What a class-folder ImageNet holds, as listed once.

    ``train`` and ``val`` hold, per class in label order, that class's file names (sorted) joined by
    newlines: compact to pickle (about 30 MB for ILSVRC2012) and the same in every process.
    """

    root: str
    classes: tuple[str, ...]
    train: tuple[str, ...]
    val: tuple[str, ...]
    digest: str  # SHA-256 of every "split/class/name<TAB>size" line, in listing order

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def names(self, split: str) -> list[list[str]]:
        """Per class (label order), the file names of ``split``."""
        return [block.split("\n") for block in getattr(self, split)]

    def samples(self, split: str) -> list[tuple[str, int]]:
        """[(path, label)] of ``split`` in listing order (by class, then by name)."""
        folder = os.path.join(self.root, split)
        return [(os.path.join(folder, wnid, name), label)
                for label, (wnid, names) in enumerate(zip(self.classes, self.names(split))) for name in names]

    def count(self, split: str) -> int:
        return sum(block.count("\n") + 1 for block in getattr(self, split))

    def describe(self) -> str:
        return f"{self.num_classes:,} classes, {self.count('train'):,} training and {self.count('val'):,} validation images"


def _class_folders(root: Path, split: str) -> list[str]:
    if not root.is_dir():
        raise DataError(f"ImageNet not found at {str(root)!r}: {CONFIG_HINT}")
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"ImageNet folder {str(root)!r} has no {split}/ folder: {CONFIG_HINT}")
    # Hidden folders are no classes (.ipynb_checkpoints; a class being extracted, .<wnid>.tmp).
    found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))
    if not found:
        raise DataError(f"ImageNet folder {str(folder)!r} has no class folders: {CONFIG_HINT}")
    return found


def _check_same_classes(folder: Path, found: list[str], classes: list[str]) -> None:
    """val/ must hold exactly train/'s class folders: a missing or extra one would shift every label after it."""
    if found == classes:
        return
    missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
    what = (f"lacks the class folder {missing[0]!r} that train/ has" if missing else
            f"has a class folder {extra[0]!r} that train/ lacks")
    raise DataError(f"ImageNet folder {str(folder)!r} {what} ({len(missing)} missing, {len(extra)} extra): "
                    "both splits need the same class folders")


def _list_class(folder: Path, lines: list[str], prefix: str) -> str:
    """The image names of one class folder (sorted), joined; their "prefix/name<TAB>size" lines appended."""
    entries = sorted((entry for entry in os.scandir(folder)
                      if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file()), key=lambda e: e.name)
    if not entries:
        raise DataError(f"ImageNet class folder {str(folder)!r} holds no images: {CONFIG_HINT}")
    for entry in entries:
        if "\n" in entry.name or "\t" in entry.name:
            raise DataError(f"ImageNet file {entry.path!r} has a tab or a newline in its name: rename it")
        lines.append(f"{prefix}/{entry.name}\t{entry.stat().st_size}\n")
    return "\n".join(entry.name for entry in entries)


def list_imagenet(root: str | Path) -> ImageNetListing:
    """List ``root/train`` and ``root/val`` (the same class folders, each holding images) once.

    Prints one line when done (ILSVRC2012's 1.33 million files take tens of seconds to list)."""
    started = time.perf_counter()
    root = Path(root).expanduser().absolute()
    classes = _class_folders(root, "train")
    lines: list[str] = []
    blocks = {"train": tuple(_list_class(root / "train" / wnid, lines, f"train/{wnid}") for wnid in classes)}
    _check_same_classes(root / "val", _class_folders(root, "val"), classes)
    blocks["val"] = tuple(_list_class(root / "val" / wnid, lines, f"val/{wnid}") for wnid in classes)
    digest = hashlib.sha256("".join(lines).encode()).hexdigest()
    listing = ImageNetListing(str(root), tuple(classes), blocks["train"], blocks["val"], digest)
    print(f"listed ImageNet in {str(root)!r}: {listing.describe()} ({time.perf_counter() - started:.1f} s)",
          file=sys.stderr, flush=True)
    return listing


def as_listing(source: ImageNetListing | str | Path) -> ImageNetListing:
    """A listing as it is, or the folder ``source`` listed now."""
    return source if isinstance(source, ImageNetListing) else list_imagenet(source)


def check_complete(listing: ImageNetListing, partial: bool) -> None:
    """ILSVRC2012's counts (1,000 classes, 1,281,167 + 50,000 images), unless ``partial`` (data.imagenet_partial)."""
    found = (listing.num_classes, listing.count("train"), listing.count("val"))
    expected = (IMAGENET_SIZES["classes"], IMAGENET_SIZES["train"], IMAGENET_SIZES["val"])
    if partial or found == expected:
        return
    raise DataError(f"ImageNet at {listing.root!r} has {found[0]:,} classes, {found[1]:,} training and {found[2]:,} "
                    f"validation images; ILSVRC2012 has {expected[0]:,}, {expected[1]:,} and {expected[2]:,}: point "
                    "data.imagenet at the whole set, or set data.imagenet_partial: true for a deliberate subset")
