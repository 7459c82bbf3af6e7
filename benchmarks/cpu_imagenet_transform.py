"""CPU cost of one ImageNet training sample, the project's transform against resize-then-crop.

    .venv/bin/python benchmarks/cpu_imagenet_transform.py [--images 100] [--rounds 3]

On synthetic JPEGs at ImageNet-like sizes (300-500 px sides, as benchmarks/gpu.py's `imagenet`
section), one process, one thread: milliseconds per image of

* whole-resize: decode, resize the whole image to the sampled shorter side in [256, 480], crop
  224, flip, colour, mean (the textbook order of Sec. 3.4);
* project: resnet.imagenet.ImageNetTrainSet, which resamples only the crop's box;
* decode: the JPEG decode alone, the floor of both.

The two transforms take the same random draws. Rounds alternate between them so that changing
background load hits both alike. A DataLoader worker does exactly this work per image, so
1000 / (ms per image) x workers bounds the loader's images/s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import markdown_table  # noqa: E402
from resnet import imagenet  # noqa: E402


def whole_resize(dataset: imagenet.ImageNetTrainSet, key: tuple[int, int]) -> torch.Tensor:
    """Sec. 3.4 in its textbook order, with the draws of ImageNetTrainSet.__getitem__."""
    from PIL import Image

    index, seed = key
    rng = np.random.default_rng(seed)
    image = imagenet._open_rgb(dataset.samples[index][0])
    low, high = dataset.short_side
    resized = imagenet._resize_shorter(image, int(rng.integers(low, high + 1)))
    width, height = resized.size
    top, left = int(rng.integers(0, height - dataset.crop + 1)), int(rng.integers(0, width - dataset.crop + 1))
    crop = resized.crop((left, top, left + dataset.crop, top + dataset.crop))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return imagenet._to_tensor(crop).add_(imagenet._pca_lighting(rng)).sub_(imagenet._MEAN)


def decode_only(dataset: imagenet.ImageNetTrainSet, key: tuple[int, int]) -> None:
    imagenet._open_rgb(dataset.samples[key[0]][0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100, help="synthetic JPEGs (default 100)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-imagenet-cpu-") as folder:
        per_class = max(1, args.images // 4)
        root = imagenet.make_synthetic_imagenet(Path(folder) / "jpegs", num_classes=4, train_per_class=per_class,
                                                val_per_class=1, min_side=300, max_side=500, seed=0)
        dataset = imagenet.ImageNetTrainSet(root)
        keys = [(i, 1000 + i) for i in range(len(dataset))]
        paths = {"whole-resize": lambda key: whole_resize(dataset, key), "project": dataset.__getitem__,
                 "decode": lambda key: decode_only(dataset, key)}
        for fn in paths.values():  # warm the file cache and the code paths
            fn(keys[0])
        seconds = dict.fromkeys(paths, 0.0)
        started = time.perf_counter()
        for _ in range(args.rounds):
            for name, fn in paths.items():
                t0 = time.perf_counter()
                for key in keys:
                    fn(key)
                seconds[name] += time.perf_counter() - t0
        count = args.rounds * len(keys)
        gap = max(float((dataset[key][0] - whole_resize(dataset, key)).abs().max()) for key in keys)
    ms = {name: 1000 * s / count for name, s in seconds.items()}
    rows = [[name, f"{ms[name]:.2f}", f"{1000 / ms[name]:,.0f}",
             "-" if name == "decode" else f"{ms['whole-resize'] / ms[name]:.2f}x"] for name in paths]
    print(f"{len(keys)} synthetic JPEGs (300-500 px sides), {args.rounds} rounds, one thread, "
          f"{time.perf_counter() - started:.0f} s; project vs whole-resize: max pixel difference "
          f"{gap * 255:.2f}/255\n")
    print(markdown_table(["transform", "ms/image", "images/s/core", "vs whole-resize"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
