"""data.imagenet to the listing a job trains on, and the images themselves.

    imagenet_listing(data, workers)   the checked listing of what data.imagenet names (one per job)
    resolve_imagenet_root(...)        only the folder it resolves to
    open_rgb(file)                    an image file as RGB, or one line naming it

data.imagenet (resnet.config.preflight.imagenet_kind) is one of:

- ``synthetic``: a small generated set (resnet.data.imagenet.synthetic), built once under data.cache;
- a folder holding ILSVRC2012's three archives: the class folders are prepared from them once into
  data.imagenet_prepared (resnet.data.imagenet.prepare; by the workflow's imagenet_data rule, or
  here by the first job that finds them missing, e.g. on node-local scratch) and used only where
  the preparation finished and the folder still holds what it wrote (the same digest);
- a folder with train/<wnid>/ and val/<wnid>/, as a valprep script or torchvision leaves it: used as
  it is; when the devkit archive lies beside them, the validation labels are checked against it.

ILSVRC2012's counts are checked unless data.imagenet_partial (the synthetic set is never ILSVRC2012).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from resnet.config.preflight import check_archive_folder, imagenet_kind, prepared_root
from resnet.config.sections import IMAGENET_ARCHIVES, Data
from resnet.data.errors import DataError
from resnet.data.imagenet.listing import CONFIG_HINT, ImageNetListing, check_complete, list_imagenet
from resnet.data.imagenet.synthetic import make_synthetic_imagenet


def open_rgb(file: str) -> Image.Image:
    """The image as RGB, whatever it is stored as: CMYK or greyscale JPEG, a PNG under a .JPEG name.

    The pixels as stored: an EXIF orientation tag is not applied (torchvision's ImageFolder loader
    does not either), and the DALI loader is told the same (resnet.data.imagenet.dali).
    """
    try:
        with Image.open(file) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"unreadable image {file!r} ({error}): replace or remove it, or {CONFIG_HINT}") from None


def imagenet_listing(data: Data, workers: int = 1) -> ImageNetListing:
    """The listing of the ImageNet that data.* names, checked; prepared from the archives first if need be.

    ``workers``: processes that extract the training archive when this job has to prepare it.
    """
    return find_imagenet(data.imagenet, data.cache, prepared_root(data), data.imagenet_partial, workers)


def resolve_imagenet_root(setting: str | Path, cache_dir: str | Path) -> Path:
    """The class-folder root that ``setting`` (data.imagenet) names, counts unchecked (the tests' sets)."""
    return Path(find_imagenet(str(setting), cache_dir, Path(setting) / "prepared", partial=True).root)


def find_imagenet(setting: str, cache_dir: str | Path, prepared: Path, partial: bool, workers: int = 1) -> ImageNetListing:
    kind = imagenet_kind(str(setting))
    if kind == "synthetic":
        return list_imagenet(make_synthetic_imagenet(Path(cache_dir) / "synthetic-imagenet"))
    if kind == "archives":
        from resnet.data.imagenet.prepare import prepare_imagenet

        check_archive_folder(Path(setting).expanduser(), prepared)  # here too: the disk it will fill, before hours
        manifest = prepare_imagenet(Path(setting).expanduser(), prepared, workers=workers, partial=partial)
        listing = list_imagenet(prepared)
        if listing.digest != manifest["digest"]:
            raise DataError(f"the prepared ImageNet in {str(prepared)!r} changed after it was prepared "
                            f"({listing.describe()}; prepared: {manifest['train_images']:,} training and "
                            f"{manifest['val_images']:,} validation images): delete that folder to prepare "
                            "it afresh")
        check_complete(listing, partial)
        return listing
    listing = list_imagenet(setting)  # a missing folder: one line naming it
    check_complete(listing, partial)
    devkit = Path(setting).expanduser() / IMAGENET_ARCHIVES["devkit"]
    if devkit.is_file():
        from resnet.data.imagenet.devkit import check_val_labels, read_devkit

        check_val_labels(listing, read_devkit(devkit), partial=partial)
    return listing
