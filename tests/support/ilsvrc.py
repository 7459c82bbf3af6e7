"""Tiny ILSVRC2012 archives in exactly the official formats, and the odd files real ImageNet holds.

    archives = make_archives(tmp_path / "ilsvrc")    # the three archives, a few classes, tiny images
    archives.truth                                   # validation file name -> WNID of its class

- ILSVRC2012_img_train.tar: one inner tar per class, <wnid>.tar, holding <wnid>_<n>.JPEG (flat);
- ILSVRC2012_img_val.tar: ILSVRC2012_val_<8 digits>.JPEG, flat, stored in a shuffled order;
- ILSVRC2012_devkit_t12.tar.gz: ILSVRC2012_devkit_t12/data/meta.mat (scipy.io.savemat of the struct
  array ``synsets`` with the devkit's fields in its order: ILSVRC2012_ID, WNID, words, gloss,
  num_children, children, wordnet_height, num_train_images) and
  ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt (line n: the ILSVRC2012_ID of
  validation image n).

As in the real devkit, the classes' ILSVRC2012_IDs do not follow the sorted order of their WNIDs, and
meta.mat also lists synsets that are not classes (num_children > 0). A ground truth applied to the
files in archive order, or read as "label = ID - 1", puts images in the wrong folders.
"""
from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331"]
# ILSVRC2012_ID of each class above: not in sorted-WNID order (the real devkit's 1 is n02119789).
IDS = [3, 1, 4, 2, 6, 5]
INNER = [(7, "n00001740", "entity"), (8, "n01440000", "fish")]  # synsets that are not classes
FIELDS = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
          "num_train_images"]


@dataclass
class Archives:
    folder: Path
    classes: list[str]
    truth: dict[str, str]  # validation file name -> WNID
    train_counts: dict[str, int] = field(default_factory=dict)

    @property
    def train(self) -> Path:
        return self.folder / "ILSVRC2012_img_train.tar"

    @property
    def val(self) -> Path:
        return self.folder / "ILSVRC2012_img_val.tar"

    @property
    def devkit(self) -> Path:
        return self.folder / "ILSVRC2012_devkit_t12.tar.gz"


def class_image(rng: np.random.Generator, label: int, classes: int) -> Image.Image:
    """A small image of a class: its own colour, stripes and noise, sides 40-72 px."""
    width, height = (int(side) for side in rng.integers(40, 73, size=2))
    hue = np.array([np.cos(2 * np.pi * label / classes), np.cos(2 * np.pi * (label / classes + 1 / 3)),
                    np.cos(2 * np.pi * (label / classes + 2 / 3))])
    y, x = np.mgrid[0:height, 0:width]
    stripes = 0.5 + 0.5 * np.sin((x if label % 2 else y) / (2 + label % 3))
    pixels = 128 + 100 * hue * stripes[..., None] + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=options.pop("format", "JPEG"), quality=90, **options)
    return buffer.getvalue()


def odd_files(rng: np.random.Generator, label: int, classes: int) -> dict[str, bytes]:
    """The four odd kinds of file ILSVRC2012 holds, as (suffix, bytes): a CMYK JPEG, a greyscale JPEG,
    a PNG under a .JPEG name, and a JPEG whose EXIF orientation tag says to turn it (6: 90 degrees)."""
    image = class_image(rng, label, classes)
    exif = Image.Exif()
    exif[0x0112] = 6
    return {"cmyk": jpeg_bytes(image.convert("CMYK")), "grey": jpeg_bytes(image.convert("L")),
            "png": jpeg_bytes(image, format="PNG"), "exif": jpeg_bytes(image, exif=exif)}


def add_file(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_330_000_000, 0o644
    archive.addfile(info, io.BytesIO(data))


def meta_mat(classes: list[str], ids: list[int], counts: dict[str, int]) -> bytes:
    """data/meta.mat in the devkit's structure (the classes first, by ID, then the other synsets)."""
    import scipy.io

    rows = sorted(zip(ids, classes))
    synsets = np.zeros((len(rows) + len(INNER), 1), dtype=[(name, object) for name in FIELDS])
    for i, (ilsvrc_id, wnid) in enumerate(rows):
        synsets[i, 0] = (ilsvrc_id, wnid, f"class {wnid}", "a class", 0, np.zeros((0, 0)), 0, counts[wnid])
    for i, (ilsvrc_id, wnid, words) in enumerate(INNER, start=len(rows)):
        synsets[i, 0] = (ilsvrc_id, wnid, words, "not a class", 2, np.array([1, 2]), 3, 0)
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


def write_devkit(path: Path, classes: list[str], ids: list[int], val_ids: list[int], counts: dict[str, int]) -> None:
    with tarfile.open(path, "w:gz") as devkit:
        add_file(devkit, "ILSVRC2012_devkit_t12/data/meta.mat", meta_mat(classes, ids, counts))
        truth = "".join(f"{ilsvrc_id}\n" for ilsvrc_id in val_ids).encode()
        add_file(devkit, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)


def make_archives(folder: Path, num_classes: int = 4, train_per_class: int = 5, val_per_class: int = 3,
                  odd: bool = False, seed: int = 0) -> Archives:
    """The three archives of a tiny ILSVRC2012 in ``folder``. ``odd``: each class's training tar also
    holds the four odd kinds of file (odd_files)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    classes, ids = WNIDS[:num_classes], IDS[:num_classes]
    assert sorted(ids) == list(range(1, num_classes + 1)), "class ids are 1..classes"
    labels = sorted(classes)
    counts = {}
    with tarfile.open(folder / "ILSVRC2012_img_train.tar", "w") as train:
        for wnid in rng.permutation(classes):  # the outer tar in no particular order
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as one_class:
                files = {f"{wnid}_{n}.JPEG": jpeg_bytes(class_image(rng, labels.index(wnid), num_classes))
                         for n in range(1, train_per_class + 1)}
                if odd:
                    files.update({f"{wnid}_{kind}.JPEG": data
                                  for kind, data in odd_files(rng, labels.index(wnid), num_classes).items()})
                for name, data in files.items():
                    add_file(one_class, name, data)
            counts[str(wnid)] = len(files)
            add_file(train, f"{wnid}.tar", inner.getvalue())
    val_classes = [wnid for wnid in classes for _ in range(val_per_class)]
    val_classes = [val_classes[i] for i in rng.permutation(len(val_classes))]  # image n's class, shuffled
    truth = {f"ILSVRC2012_val_{n:08d}.JPEG": wnid for n, wnid in enumerate(val_classes, start=1)}
    with tarfile.open(folder / "ILSVRC2012_img_val.tar", "w") as val:
        names = list(truth)
        for i in rng.permutation(len(names)):  # stored in a shuffled order, as a tar may be
            add_file(val, names[i], jpeg_bytes(class_image(rng, labels.index(truth[names[i]]), num_classes)))
    id_of = dict(zip(classes, ids))
    write_devkit(folder / "ILSVRC2012_devkit_t12.tar.gz", classes, ids, [id_of[w] for w in val_classes], counts)
    return Archives(folder, labels, truth, counts)
