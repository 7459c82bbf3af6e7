"""CPU cost of one ImageNet training sample: the PIL loader's transform, resize-then-crop, and the
DALI pipeline's CPU backend.

    .venv/bin/python benchmarks/cpu_imagenet_transform.py [--images 100] [--rounds 3]

On synthetic JPEGs at ImageNet-like sizes (300-500 px sides, as benchmarks/gpu.py's `imagenet`
section), one process, one thread: milliseconds per image, wall and CPU time, of

* whole-resize: decode, resize the whole image to the sampled shorter side in [256, 480], crop
  224, flip (the textbook order of Sec. 3.4);
* pil: resnet.imagenet.ImageNetTrainSet (the PIL loader's worker), which resamples only the
  crop's box and returns uint8 (lighting and mean are done on the device, for both loaders);
* dali-cpu: resnet.imagenet_dali's pipeline on DALI's CPU backend (one DALI thread, files read in
  this process), batches of 25: read, decode only the crop's region, resample, flip. On a GPU the
  decode and the resampling move to the GPU ("mixed"); benchmarks/gpu.py measures that;
* decode: PIL's JPEG decode alone, the floor of the PIL paths.

All take the same samples (ResumableSampler, seed 0) and the same draws. Rounds alternate between
them so that changing background load hits all alike. CPU ms x images/s = cores busy: the PIL
loader's ceiling is 1000 / (pil CPU ms) images/s per core (resnet.cost uses this measurement).
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
from resnet.data.imagenet.crops import shorter_side_size
from resnet.data.imagenet.folders import open_rgb
from resnet.data.imagenet.pil import ImageNetTrainSet
from resnet.data.imagenet.sampler import ResumableSampler
from resnet.data.imagenet.synthetic import make_synthetic_imagenet
from resnet.data.imagenet import dali as imagenet_dali

DALI_BATCH = 25


def whole_resize(dataset: ImageNetTrainSet, key: tuple[int, int]) -> np.ndarray:
    """Sec. 3.4 in its textbook order, with the draws of ImageNetTrainSet.__getitem__."""
    from PIL import Image

    index, seed = key
    rng = np.random.default_rng(seed)
    image = open_rgb(dataset.samples[index][0])
    low, high = dataset.short_side
    resized = image.resize(shorter_side_size(image.size, int(rng.integers(low, high + 1))),
                           Image.Resampling.BILINEAR)
    width, height = resized.size
    top, left = int(rng.integers(0, height - dataset.crop + 1)), int(rng.integers(0, width - dataset.crop + 1))
    crop = resized.crop((left, top, left + dataset.crop, top + dataset.crop))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.array(crop)


def decode_only(dataset: ImageNetTrainSet, key: tuple[int, int]) -> None:
    open_rgb(dataset.samples[key[0]][0])


class DaliCpu:
    """The DALI loader's pipeline on its CPU backend, one thread, reading in this process."""

    def __init__(self, dataset: ImageNetTrainSet, count: int) -> None:
        sampler = ResumableSampler(len(dataset), DALI_BATCH, seed=0)
        source = imagenet_dali._TrainSource(dataset.samples, sampler, dataset.short_side, dataset.crop)
        self.batches = imagenet_dali._Batches(source, DALI_BATCH, dataset.crop, threads=1, readers=0,
                                              device=torch.device("cpu"))
        self.count = count

    def run(self) -> list[np.ndarray]:
        """``count`` images (rounded up to whole batches), as the pipeline hands them over."""
        out = []
        for _ in range(-(-self.count // DALI_BATCH)):
            out.extend(self.batches.next()[0].numpy())
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100, help="synthetic JPEGs (default 100)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-imagenet-cpu-") as folder:
        per_class = max(1, args.images // 4)
        root = make_synthetic_imagenet(Path(folder) / "jpegs", num_classes=4, train_per_class=per_class,
                                                val_per_class=1, min_side=300, max_side=500, seed=0)
        dataset = ImageNetTrainSet(root)
        sampler = ResumableSampler(len(dataset), DALI_BATCH, seed=0)
        count = -(-len(dataset) // DALI_BATCH) * DALI_BATCH  # whole DALI batches
        keys = [sampler.sample_at(position) for position in range(count)]
        paths = {"whole-resize": lambda: [whole_resize(dataset, key) for key in keys],
                 "pil": lambda: [dataset[key][0] for key in keys],
                 "decode": lambda: [decode_only(dataset, key) for key in keys]}
        dali = None
        if imagenet_dali.dali_available():
            dali = DaliCpu(dataset, count)
            paths["dali-cpu"] = dali.run
        else:
            print("NVIDIA DALI is not installed: no dali-cpu row (bash scripts/install.sh --dali)", file=sys.stderr)
        first = {name: fn() for name, fn in paths.items()}  # warm the file cache, the code paths, DALI
        wall, cpu = dict.fromkeys(paths, 0.0), dict.fromkeys(paths, 0.0)
        started = time.perf_counter()
        for _ in range(args.rounds):
            for name, fn in paths.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall[name] += time.perf_counter() - t0
                cpu[name] += time.process_time() - c0
        pil = [dataset[key][0].numpy().astype(int) for key in keys]
        gaps = {"whole-resize": max(int(np.abs(a - b.astype(int)).max()) for a, b in zip(pil, first["whole-resize"]))}
        if dali:
            # the pipeline's second pass (the first was the warm-up) holds the next epoch's samples
            check = DaliCpu(dataset, count).run()
            gaps["dali-cpu"] = max(int(np.abs(a - b.astype(int)).max()) for a, b in zip(pil, check))
    images = args.rounds * count
    wall_ms = {name: 1000 * s / images for name, s in wall.items()}
    cpu_ms = {name: 1000 * s / images for name, s in cpu.items()}
    rows = [[name, f"{wall_ms[name]:.2f}", f"{cpu_ms[name]:.2f}", f"{1000 / cpu_ms[name]:,.0f}",
             "-" if name == "decode" else f"{cpu_ms['pil'] / cpu_ms[name]:.2f}x",
             str(gaps.get(name, "-")) if name != "pil" else "0"] for name in paths]
    print(f"{count} samples of {len(dataset)} synthetic JPEGs (300-500 px sides), {args.rounds} rounds, one "
          f"thread, {time.perf_counter() - started:.0f} s; max pixel difference from pil: "
          + ", ".join(f"{name} {gap}/255" for name, gap in gaps.items()) + "\n")
    print(markdown_table(["path", "ms/image", "CPU ms/image", "images/s/core", "pil / path (CPU)",
                          "max diff from pil"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
