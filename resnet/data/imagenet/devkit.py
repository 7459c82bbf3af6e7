"""The ILSVRC2012 devkit (ILSVRC2012_devkit_t12.tar.gz): the classes, and the class of each validation image.

Inside the archive (under ILSVRC2012_devkit_t12/):

- ``data/meta.mat``: a struct array ``synsets`` with fields ILSVRC2012_ID, WNID, words, gloss,
  num_children, children, wordnet_height, num_train_images. The classes are the leaf synsets
  (num_children 0): 1,000 of the 1,860, with ILSVRC2012_IDs 1 to 1000 in the devkit's own order,
  which is not the sorted order of their WNIDs;
- ``data/ILSVRC2012_validation_ground_truth.txt``: line n is the ILSVRC2012_ID of the class of
  ILSVRC2012_val_<n, 8 digits>.JPEG.

So a validation image's folder is WNID(ID on its line), and its label the position of that WNID
among the sorted WNIDs (ImageFolder's labels, as torchvision.datasets.ImageNet's), never ID - 1.
The fields are read by name (torchvision's reader takes them by position).
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from resnet.data.errors import DataError
from resnet.data.imagenet.listing import ImageNetListing

META = "data/meta.mat"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"


def val_file_name(number: int) -> str:
    """The name of validation image ``number`` (1-based), as in ILSVRC2012_img_val.tar."""
    return f"ILSVRC2012_val_{number:08d}.JPEG"


@dataclass(frozen=True)
class Devkit:
    path: str
    wnid_of_id: dict[int, str]  # ILSVRC2012_ID -> WNID of the classes (the leaf synsets)
    val_ids: tuple[int, ...]  # the ground truth: val_ids[n - 1] is the ILSVRC2012_ID of validation image n

    @property
    def classes(self) -> list[str]:
        return sorted(self.wnid_of_id.values())

    def val_classes(self) -> dict[str, str]:
        """Validation file name -> WNID of its class."""
        return {val_file_name(number): self.wnid_of_id[ilsvrc_id]
                for number, ilsvrc_id in enumerate(self.val_ids, start=1)}


def _member(archive: tarfile.TarFile, path: str, suffix: str) -> bytes:
    for member in archive:
        if member.isfile() and (member.name == suffix or member.name.endswith("/" + suffix)):
            return archive.extractfile(member).read()
    raise DataError(f"{path!r} holds no {suffix}: it is not ILSVRC2012's devkit (ILSVRC2012_devkit_t12.tar.gz)")


def _synsets(path: str, meta: bytes) -> dict[int, str]:
    import scipy.io

    try:
        synsets = scipy.io.loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
        ids, wnids, children = (synsets[field] for field in ("ILSVRC2012_ID", "WNID", "num_children"))
        leaves = {int(ilsvrc_id): str(wnid) for ilsvrc_id, wnid, count in zip(ids, wnids, children) if int(count) == 0}
    except (KeyError, ValueError, TypeError, IndexError) as error:
        raise DataError(f"{path!r}: {META} is not ILSVRC2012's synset table ({type(error).__name__}: {error}): "
                        "download the devkit again") from None
    if not leaves or len(set(leaves.values())) != len(leaves):
        raise DataError(f"{path!r}: {META} lists {len(leaves)} leaf synsets with {len(set(leaves.values()))} distinct "
                        "WNIDs: download the devkit again")
    return leaves


def read_devkit(path: str | Path) -> Devkit:
    """The classes and the validation ground truth of a devkit archive, checked against each other."""
    path = str(path)
    try:
        with tarfile.open(path, "r:*") as archive:
            meta = _member(archive, path, META)
        with tarfile.open(path, "r:*") as archive:
            truth = _member(archive, path, GROUND_TRUTH)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{path!r} cannot be read as a .tar.gz ({error}): it is truncated or corrupt, download "
                        "ILSVRC2012_devkit_t12.tar.gz again") from None
    wnid_of_id = _synsets(path, meta)
    try:
        val_ids = tuple(int(line) for line in truth.decode().split())
    except (UnicodeDecodeError, ValueError) as error:
        raise DataError(f"{path!r}: {GROUND_TRUTH} is not one class id per line ({error})") from None
    unknown = sorted(set(val_ids) - set(wnid_of_id))
    if unknown:
        raise DataError(f"{path!r}: {GROUND_TRUTH} names class id {unknown[0]}, which {META} does not list as a class "
                        f"({len(unknown)} such ids): download the devkit again")
    return Devkit(path, wnid_of_id, val_ids)


def check_val_labels(listing: ImageNetListing, devkit: Devkit, partial: bool = False) -> None:
    """Every validation image in the folder of its ground-truth class, and (unless ``partial``) every
    ground-truth image there.

    A validation set sorted in another order than the devkit's (the classic slip) would train fine
    and test at chance; here it stops with one line.
    """
    expected = devkit.val_classes()
    placed = {name: wnid for wnid, names in zip(listing.classes, listing.names("val")) for name in names}
    wrong = sorted((name, wnid) for name, wnid in placed.items() if expected.get(name) != wnid)
    if wrong:
        name, wnid = wrong[0]
        truth = expected.get(name)
        where = f"the devkit's ground truth puts it in {truth}" if truth else "the devkit's ground truth does not list it"
        raise DataError(f"ImageNet validation image val/{wnid}/{name} is in the wrong class folder ({where}; "
                        f"{len(wrong):,} of {len(placed):,} images misplaced) in {listing.root!r}: sort val/ by "
                        f"{devkit.path!r}, or point data.imagenet at the three ILSVRC2012 archives to prepare it")
    missing = sorted(set(expected) - set(placed))
    if missing and not partial:
        raise DataError(f"ImageNet at {listing.root!r} lacks validation image {missing[0]} ({len(missing):,} of the "
                        f"devkit's {len(expected):,} missing): prepare it again from the archives")
