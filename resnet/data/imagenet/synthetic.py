"""A small synthetic set in ImageNet's folder layout, for tests, the smoke scale and offline runs."""

from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from resnet.data.errors import DataError
from resnet.runs.files import umask


SYNTHETIC_MARKER = "SYNTHETIC.txt"


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
    staging.chmod(0o777 & ~umask())  # mkdtemp makes 0700; the set is for everyone the umask allows
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
