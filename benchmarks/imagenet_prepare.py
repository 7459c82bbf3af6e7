"""Preparing ImageNet from its archives: extraction images/s and GB/s, and the per-job listing.

    .venv/bin/python benchmarks/imagenet_prepare.py [--classes 100] [--per-class 40] [--workers 1 2]

Builds archives in ILSVRC2012's formats (tests/support/ilsvrc.py's writers) with files of the real
set's mean size (about 110 KB: 138 GB over 1,281,167 training images), then times
resnet.data.imagenet.prepare.prepare_imagenet into a fresh folder for each worker count (the
checks, the validation archive, the training classes, the final listing and check, and the sync to
disk), and list_imagenet on the result (what every ImageNet job does once: names and sizes). The
last lines scale both to ILSVRC2012's 1,331,167 images. The archives are read back from the page
cache (they were just written), so this is the extraction's CPU and write cost, not a cold read of
155 GB from a network file system.
"""
from __future__ import annotations

import argparse
import io
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Only light imports at the top: the extraction's worker processes are spawned, and each imports
# this file again (as __mp_main__); benchmarks.common would bring torch into every one of them.
from resnet.config.sections import IMAGENET_SIZES  # noqa: E402
from resnet.data.imagenet.listing import list_imagenet  # noqa: E402
from resnet.data.imagenet.prepare import prepare_imagenet  # noqa: E402

MEAN_FILE_BYTES = 110_000  # ILSVRC2012's training archive: about 138 GB / 1,281,167 images


def jpeg_of_mean_size(seed: int = 0) -> bytes:
    """One JPEG of about the real set's mean file size (noise compresses poorly; 500 x 375 pixels)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    pixels = (pixels // 4 + np.linspace(0, 190, 500, dtype=np.uint8)[None, :, None]).astype(np.uint8)
    for quality in range(95, 10, -5):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= MEAN_FILE_BYTES:
            return buffer.getvalue()
    return buffer.getvalue()


def write_archives(folder: Path, classes: int, per_class: int, val: int) -> int:
    """The three archives (every image the same bytes: extraction does not look inside); their bytes."""
    from tests.support.ilsvrc import add_file, write_devkit

    image = jpeg_of_mean_size()
    wnids = [f"n{10_000_000 + index:08d}" for index in range(classes)]
    with tarfile.open(folder / "ILSVRC2012_img_train.tar", "w") as train:
        for wnid in wnids:
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as one_class:
                for number in range(per_class):
                    add_file(one_class, f"{wnid}_{number}.JPEG", image)
            add_file(train, f"{wnid}.tar", inner.getvalue())
    val_ids = [1 + index % classes for index in range(val)]
    with tarfile.open(folder / "ILSVRC2012_img_val.tar", "w") as archive:
        for number in range(1, val + 1):
            add_file(archive, f"ILSVRC2012_val_{number:08d}.JPEG", image)
    write_devkit(folder / "ILSVRC2012_devkit_t12.tar.gz", wnids, list(range(1, classes + 1)), val_ids,
                 {wnid: per_class for wnid in wnids})
    return sum(path.stat().st_size for path in folder.iterdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--folder", help="where to build and extract (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-prepare-", dir=args.folder) as folder:
        archives = Path(folder) / "archives"
        archives.mkdir()
        size = write_archives(archives, args.classes, args.per_class, args.val)
        images = args.classes * args.per_class + args.val
        real_images = IMAGENET_SIZES["train"] + IMAGENET_SIZES["val"]
        print(f"{images:,} images in {size / 1e9:.2f} GB of archives ({args.classes} classes)", flush=True)
        rows = []
        for workers in args.workers:
            out = Path(folder) / f"prepared-{workers}"
            started = time.perf_counter()
            prepare_imagenet(archives, out, workers=workers, partial=True, stream=io.StringIO())
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            list_imagenet(out)
            listing = time.perf_counter() - started
            rows.append([str(workers), f"{seconds:.1f}", f"{images / seconds:,.0f}", f"{size / seconds / 1e9:.3f}",
                         f"{real_images / (images / seconds) / 3600:.1f}", f"{images / listing:,.0f}",
                         f"{real_images / (images / listing):.0f}"])
            shutil.rmtree(out)
        from benchmarks.common import markdown_table

        print(markdown_table(["workers", "prepare s", "images/s", "GB/s", "ILSVRC2012 h (scaled)",
                              "listing files/s", "ILSVRC2012 listing s (scaled)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
