"""The files real ImageNet holds, through both input paths: CMYK JPEGs, greyscale JPEGs, a PNG under a
.JPEG name and JPEGs with an EXIF orientation tag each become an RGB crop of the expected size, the
same through the PIL loader and DALI's (its CPU backend here) within the loaders' tolerance; a file
that cannot be decoded is one line naming it. The odd files come from tests/support/ilsvrc.py.

Both loaders take the pixels as stored (an EXIF orientation is not applied): PIL reads them so, and
DALI is told so; a DALI that turned the image would cut its crop window from another picture.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet.data.errors import DataError
from resnet.data.imagenet import dali as imagenet_dali
from resnet.data.imagenet import evaluation as imagenet_eval
from resnet.data.imagenet.folders import open_rgb
from resnet.data.imagenet.listing import list_imagenet
from resnet.data.imagenet.pil import imagenet_train_loader
from tests.support.ilsvrc import class_image, jpeg_bytes, odd_files

SMALL = dict(short_side=(36, 48), crop=32)
KINDS = ("cmyk", "grey", "png", "exif")


def need_dali() -> None:
    if not imagenet_dali.dali_available():
        message = "NVIDIA DALI is not installed (bash scripts/install.sh --test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def odd_set(tmp_path_factory) -> Path:
    """Two classes, each with one ordinary JPEG and the four odd kinds, in train/ and val/."""
    root = tmp_path_factory.mktemp("odd") / "set"
    rng = np.random.default_rng(3)
    for split in ("train", "val"):
        for label, wnid in enumerate(("n01", "n02")):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            (folder / f"{wnid}_plain.JPEG").write_bytes(jpeg_bytes(class_image(rng, label, 2)))
            for kind, data in odd_files(rng, label, 2).items():
                (folder / f"{wnid}_{kind}.JPEG").write_bytes(data)
    return root


def test_each_odd_file_is_an_rgb_image_of_its_stored_size(odd_set):
    for kind in KINDS:
        file = odd_set / "train" / "n01" / f"n01_{kind}.JPEG"
        with Image.open(file) as stored:
            mode, size, orientation = stored.mode, stored.size, stored.getexif().get(0x0112)
        assert (mode, orientation) == {"cmyk": ("CMYK", None), "grey": ("L", None), "png": ("RGB", None),
                                       "exif": ("RGB", 6)}[kind]
        image = open_rgb(str(file))
        assert image.mode == "RGB" and image.size == size  # the stored pixels, not turned by the tag


def test_the_odd_files_train_the_same_through_pil_and_dali(odd_set):
    need_dali()
    listing = list_imagenet(odd_set)
    options = dict(batch_size=10, seed=4, workers=0, **SMALL)  # one batch: every image once
    (x, y), (dx, dy) = next(imagenet_train_loader(listing, **options)), next(imagenet_dali.dali_train_loader(listing, **options))
    assert x.shape == dx.shape == (10, 3, 32, 32) and torch.equal(y, dy)
    gap = ((x - dx) * 255).abs().round().flatten(1).amax(1)  # per image, grey levels
    # The loaders' tolerance (tests/unit/test_imagenet_input.py): a grey level, up to 3 at the image's border.
    assert float(gap.max()) <= 3, gap


def test_the_odd_files_validate_the_same_through_pil_and_dali_and_ten_crop(odd_set):
    need_dali()
    listing = list_imagenet(odd_set)
    pil = list(imagenet_eval.imagenet_val_loader(listing, batch_size=10, resize=36, crop=32, workers=0))
    dali = list(imagenet_dali.dali_val_loader(listing, batch_size=10, resize=36, crop=32, workers=0))
    assert [tuple(x.shape) for x, _ in pil] == [tuple(x.shape) for x, _ in dali] == [(10, 3, 32, 32)]
    assert float((pil[0][0] - dali[0][0]).abs().max()) * 255 <= 2.01
    ten = imagenet_eval.ImageNetEvalSet(listing, 36, 32, ten_crop=True)
    assert all(tuple(ten[index][0].shape) == (10, 32, 32, 3) for index in range(len(ten)))


def test_an_undecodable_file_is_one_line_naming_it_through_every_path(odd_set, tmp_path):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(odd_set, root)
    for split in ("train", "val"):
        (root / split / "n02" / "n02_text.JPEG").write_bytes(b"<html>not an image</html>" * 40)
    listing = list_imagenet(root)
    attempts = [lambda: next(imagenet_train_loader(listing, batch_size=12, seed=0, workers=0, **SMALL)),
                lambda: list(imagenet_eval.imagenet_val_loader(listing, 12, 36, 32, workers=0)),
                lambda: imagenet_eval.ImageNetEvalSet(listing, 36, 32, ten_crop=True)[10]]  # the last: n02_text
    if imagenet_dali.dali_available():
        attempts += [lambda: next(imagenet_dali.dali_train_loader(listing, batch_size=12, seed=0, workers=0, **SMALL)),
                     lambda: list(imagenet_dali.dali_val_loader(listing, 12, 36, 32, workers=0))]
    for attempt in attempts:
        with pytest.raises(DataError) as caught:
            attempt()
        message = str(caught.value)
        assert "\n" not in message and "n02_text.JPEG" in message, message
