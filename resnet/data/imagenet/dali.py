"""ImageNet input at GPU speed: JPEG decoding and cropping by NVIDIA DALI (optional dependency).

The PIL loader (resnet.imagenet) decodes and crops in DataLoader workers at about 264 images/s
per core (benchmarks/RESULTS.md), so ResNet-18 (about 11,900 images/s on an H100) would need
about 45 cores per GPU. Here the decoding moves to the GPU (DALI's "mixed" decoder: nvJPEG, on
the hardware JPEG engines where the GPU has them) and only the crop's region of each JPEG is
decoded (``fn.decoders.image_slice``); the resampling to crop x crop and the flip run on the GPU
too. What stays on the CPU is reading the file, its header (for the image size) and the draws.

Same samples, same crops as the PIL loader:

- the order is ResumableSampler's (seed, global position) -> (image, augmentation seed), so a
  resumed or re-sharded run reads exactly the batches an uninterrupted one would;
- the crop box, flip and lighting come from resnet.data.imagenet.crops.train_crop, the one function the PIL
  loader uses too; DALI only executes them. Its bilinear antialiased resize of the box matches
  PIL's within a grey level (tests/test_imagenet_input.py);
- the uint8 crops and the lighting offsets go through resnet.data.imagenet.crops.finish_batch, as the PIL
  loader's do.

The pipeline definition is the same on the CPU (``device_id=None``, the CPU decoder), which is how
the tests and the CPU benchmark exercise it without a GPU. Selected by ``data.imagenet_loader``
(resnet.imagenet.pick_loader). torchvision's GPU ``decode_jpeg`` was the alternative; it decodes
whole images (no region decoding) and leaves file reading, resizing and batching to hand-written
code, so DALI it is.
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from resnet.data.errors import DataError
from resnet.data.imagenet.crops import centre_crop, finish_batch, train_crop
from resnet.data.imagenet.folders import open_rgb
from resnet.data.imagenet.listing import ImageNetListing, as_listing
from resnet.data.imagenet.pil import ImageNetTrainSet
from resnet.data.imagenet.sampler import ResumableSampler

INSTALL_HINT = ("install it with `bash scripts/install.sh --dali` (the project's `dali` extra), or set "
                "data.imagenet_loader: pil")
PREFETCH = 2  # batches DALI prepares ahead (its prefetch_queue_depth)


def dali_available() -> bool:
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except ModuleNotFoundError:  # no nvidia namespace at all
        return False


def require_dali() -> None:
    if not dali_available():
        raise DataError(f"data.imagenet_loader is 'dali' but NVIDIA DALI is not installed: {INSTALL_HINT}")


def dali_split(workers: int) -> tuple[int, int]:
    """(DALI CPU threads, reader processes) for ``workers`` CPU workers per GPU process.

    The threads run DALI's CPU side (the host part of decoding, argument handling); the reader
    processes read the files and parse headers. 0 workers: one thread, reading in this process.
    """
    return max(1, workers), (max(1, workers // 4) if workers > 0 else 0)


def slice_window(size: tuple[int, int], box: tuple[float, float, float, float],
                 crop: int) -> tuple[list[int], list[int], list[float], list[float]]:
    """What to decode of an image of ``size`` for the crop of ``box``, and where the box is in it.

    Returns (anchor, shape) of the decoded region and (roi_start, roi_end) of the box within it,
    all (y, x). The region is the box plus the resampling filter's reach (bilinear, antialiased:
    max(1, scale) source pixels) and one pixel, clipped to the image, so the region's own edges
    never reach the filter and the crop equals the crop of the whole decoded image.
    """
    width, height = size
    left, top, right, bottom = box
    reach_x = max(1.0, (right - left) / crop) + 1
    reach_y = max(1.0, (bottom - top) / crop) + 1
    x0, y0 = max(0, math.floor(left - reach_x)), max(0, math.floor(top - reach_y))
    x1, y1 = min(width, math.ceil(right + reach_x)), min(height, math.ceil(bottom + reach_y))
    return [y0, x0], [y1 - y0, x1 - x0], [top - y0, left - x0], [bottom - y0, right - x0]


class _Source:
    """DALI external-source callback: global sample -> the JPEG's bytes, its crop window, flip,
    lighting offset and label. Picklable (it runs in DALI's reader processes); the crop itself
    comes from resnet.data.imagenet.crops's train_crop / centre_crop."""

    def __init__(self, samples: list[tuple[str, int]], crop: int) -> None:
        self.samples, self.crop = samples, crop
        self.worker_init = None  # run in each reader process as it starts (the trainer's signal policy)

    def __setstate__(self, state: dict) -> None:
        """Unpickled in a DALI reader process as it starts: the one hook DALI gives into it."""
        self.__dict__.update(state)
        if self.worker_init is not None:
            self.worker_init()

    def spec(self, key: int, size: tuple[int, int]):
        """The resnet.imagenet.Crop of an image of ``size`` for the key at() gave."""
        raise NotImplementedError

    def position_of(self, info) -> int:
        """The global position of DALI's sample (info: its SampleInfo)."""
        raise NotImplementedError

    def at(self, position: int) -> tuple[int, int]:
        """(sample index, position key) of a global position."""
        raise NotImplementedError

    def __call__(self, info) -> tuple[np.ndarray, ...]:
        index, key = self.at(self.position_of(info))
        file, label = self.samples[index]
        with open(file, "rb") as handle:
            encoded = np.frombuffer(handle.read(), dtype=np.uint8)
        try:
            with Image.open(io.BytesIO(encoded.tobytes())) as image:
                size = image.size
        except (OSError, SyntaxError, ValueError) as error:
            raise DataError(f"unreadable image {file!r} ({error}): replace or remove it") from None
        spec = self.spec(key, size)
        anchor, shape, start, end = slice_window(size, spec.box, self.crop)
        return (encoded, np.array(anchor, np.int32), np.array(shape, np.int32), np.array(start, np.float32),
                np.array(end, np.float32), np.array(int(spec.flip), np.int32), spec.offset, np.array(label, np.int32))


class _TrainSource(_Source):
    def __init__(self, samples, sampler: ResumableSampler, short_side: tuple[int, int], crop: int) -> None:
        super().__init__(samples, crop)
        self.sampler, self.short_side = sampler, short_side
        self.per_rank = sampler.batch_size // sampler.world_size

    def position_of(self, info) -> int:
        """This rank's i-th sample of its k-th batch: the sampler's own interleaving."""
        return self.sampler.position_of(info.iteration, info.idx_in_batch)

    def at(self, position: int) -> tuple[int, int]:
        return self.sampler.sample_at(position)

    def spec(self, augment_seed: int, size: tuple[int, int]):
        return train_crop(size, augment_seed, self.short_side, self.crop)

    def files_of_batch(self, k: int) -> list[str]:
        return [self.samples[self.sampler.sample_at(self.sampler.position_of(k, i))[0]][0]
                for i in range(self.per_rank)]


class _ValSource(_Source):
    """Validation images in folder order, endlessly: each pass is ceil(n / batch) batches, the
    last one padded with the first image (the padding is dropped after the pipeline)."""

    def __init__(self, samples, resize: int, crop: int, batch: int) -> None:
        super().__init__(samples, crop)
        self.resize, self.batch = resize, batch
        self.period = math.ceil(len(samples) / batch) * batch

    def position_of(self, info) -> int:
        return info.iteration * self.batch + info.idx_in_batch

    def at(self, position: int) -> tuple[int, int]:
        offset = position % self.period
        return (offset if offset < len(self.samples) else 0), 0

    def spec(self, _key: int, size: tuple[int, int]):
        return centre_crop(size, self.resize, self.crop)

    def files_of_batch(self, k: int) -> list[str]:
        return [self.samples[self.at(k * self.batch + i)[0]][0] for i in range(self.batch)]


def _pipeline(source: _Source, batch: int, crop: int, threads: int, readers: int, device: torch.device):
    """One pipeline definition for every device: read (source) -> decode the crop's region ->
    resample the box to crop x crop (bilinear, antialiased) -> flip. uint8 HWC out."""
    from nvidia.dali import fn, types
    from nvidia.dali.pipeline import Pipeline

    on_gpu = device.type == "cuda"
    pipe = Pipeline(batch_size=batch, num_threads=threads,
                    device_id=(device.index if device.index is not None else torch.cuda.current_device())
                    if on_gpu else None,
                    py_num_workers=max(1, readers), py_start_method="spawn", prefetch_queue_depth=PREFETCH)
    with pipe:
        encoded, anchor, shape, start, end, flip, offset, label = fn.external_source(
            source=source, num_outputs=8, batch=False, parallel=readers > 0)
        # The pixels as stored, as PIL reads them (resnet.data.imagenet.folders.open_rgb): the crop window
        # comes from the stored size, so an EXIF orientation tag must not turn the image (DALI's default).
        image = fn.decoders.image_slice(encoded, anchor, shape, axis_names="HW", output_type=types.RGB,
                                        adjust_orientation=False, device="mixed" if on_gpu else "cpu")
        image = fn.resize(image, size=[crop, crop], roi_start=start, roi_end=end, roi_relative=False,
                          interp_type=types.INTERP_LINEAR, antialias=True)
        image = fn.flip(image, horizontal=flip)
        pipe.set_outputs(image, offset, label)
    pipe.build()
    return pipe


def _to_torch(tensors, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        from nvidia.dali.plugin.pytorch import feed_ndarray

        dense = tensors.as_tensor()
        out = torch.empty(dense.shape(), dtype=torch.uint8, device=device)
        feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream(device))
        return out
    return torch.from_numpy(np.array(tensors.as_array()))  # a copy: DALI reuses its buffers


class _Batches:
    """pipe.run() as torch tensors; a failing batch is diagnosed into one line naming the file."""

    def __init__(self, source: _Source, batch: int, crop: int, threads: int, readers: int,
                 device: torch.device) -> None:
        require_dali()
        self.source, self.device, self.k = source, device, 0
        self.pipe = _pipeline(source, batch, crop, threads, readers, device)

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        try:
            images, offsets, labels = self.pipe.run()
        except Exception as error:  # noqa: BLE001 - DALI raises RuntimeError for anything
            raise self._diagnose(error) from None
        self.k += 1
        return (_to_torch(images, self.device), torch.from_numpy(np.array(offsets.as_array())),
                torch.from_numpy(np.array(labels.as_array(), dtype=np.int64)))

    def _diagnose(self, error: Exception) -> DataError:
        """DALI's message does not say which file; decoding the batches in flight with PIL does."""
        for k in range(self.k, self.k + PREFETCH + 1):
            for file in self.source.files_of_batch(k):
                open_rgb(file)  # raises the DataError that names the file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return DataError(f"the DALI ImageNet loader failed ({first}); set data.imagenet_loader: pil to "
                         "train without it")


def dali_train_loader(root: ImageNetListing | str | Path, batch_size: int, seed: int, short_side: tuple[int, int] = (256, 480),
                      crop: int = 224, workers: int = 8, rank: int = 0, world_size: int = 1, start_sample: int = 0,
                      device: torch.device | str = "cpu", channels_last: bool = False,
                      readers: int | None = None, worker_init=None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless iterator of this rank's (x, y) training batches on ``device``: the DALI loader.

    The same arguments and the same batches (within a grey level) as
    resnet.imagenet.imagenet_train_loader. ``workers`` sets the CPU side (dali_split); ``readers``
    overrides the number of reader processes (0: read in this process).
    """
    require_dali()
    device = torch.device(device)
    dataset = ImageNetTrainSet(root, short_side, crop)  # checks the folder and the sizes
    sampler = ResumableSampler(len(dataset), batch_size, seed, rank, world_size, start_sample)
    threads, default_readers = dali_split(workers)
    source = _TrainSource(dataset.samples, sampler, short_side, crop)
    source.worker_init = worker_init

    def stream() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = _Batches(source, batch_size // world_size, crop, threads,
                           default_readers if readers is None else readers, device)
        while True:
            images, offsets, labels = batches.next()
            yield finish_batch(images, offsets, device, channels_last), labels.to(device, non_blocking=True)

    return stream()


class DaliValBatches:
    """Centre-crop validation batches through the DALI pipeline, in folder order; re-iterable.

    The crop is resnet.data.imagenet.crops.centre_crop's box, as the PIL validation loader's. The pipeline
    is built on the first pass and kept for the next ones.
    """

    def __init__(self, root: ImageNetListing | str | Path, batch_size: int, resize: int = 256, crop: int = 224, workers: int = 8,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu",
                 channels_last: bool = False, readers: int | None = None, worker_init=None) -> None:
        require_dali()
        if crop > resize:
            raise ValueError(f"crop {crop} exceeds the resized shorter side {resize}")
        samples = as_listing(root).samples("val")[rank::world_size]
        self.count, self.batch = len(samples), min(batch_size, len(samples))
        self.source = _ValSource(samples, resize, crop, self.batch)
        self.source.worker_init = worker_init
        self.device, self.channels_last = torch.device(device), channels_last
        threads, default_readers = dali_split(workers)
        self._build = lambda: _Batches(self.source, self.batch, crop, threads,
                                       default_readers if readers is None else readers, self.device)
        self._batches = None

    def __len__(self) -> int:
        return math.ceil(self.count / self.batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._batches is None:
            self._batches = self._build()
        left = self.count
        for _ in range(len(self)):
            images, _, labels = self._batches.next()
            keep = min(left, self.batch)
            left -= keep
            yield (finish_batch(images[:keep], None, self.device, self.channels_last),
                   labels[:keep].to(self.device, non_blocking=True))


def dali_val_loader(root: ImageNetListing | str | Path, batch_size: int, resize: int = 256, crop: int = 224, workers: int = 8,
                    rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu",
                    channels_last: bool = False, readers: int | None = None, worker_init=None) -> DaliValBatches:
    """Centre-crop validation (Figure 4) through DALI; the arguments of imagenet_val_loader."""
    return DaliValBatches(root, batch_size, resize, crop, workers, rank, world_size, device, channels_last, readers,
                          worker_init)
