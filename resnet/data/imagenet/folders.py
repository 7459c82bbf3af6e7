"""ImageNet folders: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``, listed and checked.

ILSVRC2012 is expected with the validation images sorted into class folders, as the common
valprep script does. Labels are ImageFolder's: the class folders of train/ in sorted order; val/
must hold exactly the same class folders (a missing or extra one would shift every label after it).
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from resnet.data.errors import DataError
from resnet.data.imagenet.synthetic import make_synthetic_imagenet


IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


_CONFIG_HINT = ("set data.imagenet in config.yaml to an ILSVRC2012 folder with train/ and val/ class "
                "folders, or 'synthetic'")


def scan_split(root: str | Path, split: str,
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
    return scan_split(root, "train")[0]


def open_rgb(file: str) -> Image.Image:
    try:
        with Image.open(file) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"unreadable image {file!r} ({error}): replace or remove it, or {_CONFIG_HINT}") from None


def resolve_imagenet_root(setting: str | Path, cache_dir: str | Path) -> Path:
    """``data.imagenet`` from config: 'synthetic' builds (once) a synthetic set under cache_dir;
    anything else must be an ImageNet-layout folder with train/ and val/."""
    if str(setting) == "synthetic":
        return make_synthetic_imagenet(Path(cache_dir) / "synthetic-imagenet")
    root = Path(setting).expanduser()
    scan_split(root, "val", scan_split(root, "train")[0])
    return root
