"""What the configured plan costs before it runs: device-hours per cell and in total.

    python -m resnet cost --config config.yaml                       # measure each model here
    python -m resnet cost --config config.yaml --throughput rates.csv  # rates measured elsewhere

A cell costs iterations x batch / (images per second) of device time. The rate is measured: by
default a short timed run of the project's training step (resnet.step.make_step, with the
engine's bf16 / channels_last / CUDA-graph / compile settings) on random tensors at the cell's batch and
image size, on the device training would use (engine.device); or read from a CSV with columns
model,device,images_per_s (benchmarks/gpu.py writes one). Random tensors leave the input pipeline
out: for ImageNet from JPEG files the loader can be slower than the step (benchmarks/gpu.py
measures by how much). Evaluation and checkpoints are not counted.
"""
from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from resnet.config.load import plan_cells
from resnet.config.sections import Config
from resnet.config.schema import ConfigError
from resnet.config.job import Job, resolve_cell

WARMUP_STEPS = 1  # untimed; with CUDA graphs the step's eager warm-up steps and the capture
MAX_MEASURE_SECONDS = 3.0  # stop timing a model after this long even if fewer iterations ran


@dataclass
class CellCost:
    cell: str
    model: str
    iterations: int
    batch_size: int
    image_size: int
    images_per_s: float
    source: str  # "measured" or the CSV it came from
    input_per_s: float | None = None  # ImageNet: the input's ceiling per device (input_ceiling)
    input_from: str = ""  # how: loader, ms per image, cores

    @property
    def input_bound(self) -> bool:
        return self.input_per_s is not None and self.input_per_s < self.images_per_s

    @property
    def hours(self) -> float:
        return self.iterations * self.batch_size / self.images_per_s / 3600


def image_size(job: Job) -> int:
    return 32 if job.dataset == "cifar10" else job.recipe.crop


def measure_images_per_s(job: Job, device: torch.device, iterations: int = 3) -> float:
    """Images/s of the project's training step on random data at the cell's batch and image size."""
    from resnet.models.nets import build_model
    from resnet.engine.step import WARMUP_STEPS as GRAPH_WARMUP, make_step

    torch.manual_seed(0)
    recipe = job.recipe
    size, classes = image_size(job), 10 if job.dataset == "cifar10" else 1000
    model = build_model(recipe.model, num_classes=classes, bn_group=recipe.bn_group).to(device)
    memory_format = torch.channels_last if job.engine.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    step = make_step(model, optimizer, job, device)
    images = torch.randn(recipe.batch_size, 3, size, size, device=device).contiguous(memory_format=memory_format)
    labels = torch.randint(0, classes, (recipe.batch_size,), device=device)
    for _ in range(GRAPH_WARMUP + 1 if step.graphs else WARMUP_STEPS):  # + 1: the capture
        step(images, labels)
    _synchronize(device)
    done, started = 0, time.perf_counter()
    while done < max(1, iterations):
        step(images, labels)
        done += 1
        if time.perf_counter() - started > MAX_MEASURE_SECONDS:
            break
    _synchronize(device)
    return done * recipe.batch_size / (time.perf_counter() - started)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def input_ceiling(loader: str, short_side: tuple[int, int], crop: int, cores: float, device: torch.device,
                  images: int = 16) -> tuple[float, float]:
    """(images/s, CPU ms per image): the ceiling of the ImageNet input with ``cores`` CPU cores.

    The CPU time per training sample of the loader training would use ('pil' or 'dali', after
    resnet.imagenet.pick_loader), measured on one thread on ``images`` synthetic JPEGs at ImageNet
    sizes (300-500 px sides) with the cell's scale range and crop; the ceiling is cores x 1000 / ms
    (the loader's work spreads over its workers). For DALI on a GPU this counts its CPU side only
    (reading, headers, the draws, the host part of decoding); benchmarks/gpu.py measures the whole.
    """
    import tempfile

    from resnet.data.imagenet.listing import list_imagenet
    from resnet.data.imagenet.pil import ImageNetTrainSet
    from resnet.data.imagenet.sampler import ResumableSampler
    from resnet.data.imagenet.synthetic import make_synthetic_imagenet

    with tempfile.TemporaryDirectory(prefix="cost-imagenet-") as folder:
        root = make_synthetic_imagenet(Path(folder) / "jpegs", num_classes=4, train_per_class=-(-images // 4),
                                                val_per_class=1, min_side=300, max_side=500, seed=0)
        dataset = ImageNetTrainSet(list_imagenet(root), tuple(short_side), crop)  # the one listing of the set
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if loader == "dali":
                from resnet.data.imagenet import dali as imagenet_dali

                sampler = ResumableSampler(len(dataset), len(dataset), seed=0)
                source = imagenet_dali._TrainSource(dataset.samples, sampler, tuple(short_side), crop)
                batches = imagenet_dali._Batches(source, len(dataset), crop, threads=1, readers=0, device=device)
                batches.next()  # start-up, untimed
                started = time.process_time()
                batches.next()
                _synchronize(device)
            else:
                dataset[(0, 0)]
                started = time.process_time()
                for index in range(len(dataset)):
                    dataset[(index, index)]
            ms = 1000 * (time.process_time() - started) / len(dataset)
        finally:
            torch.set_num_threads(threads)
    return cores * 1000 / ms, ms


def read_throughput(path: str | Path, device: torch.device) -> dict[str, float]:
    """{model: images/s} of the CSV rows for this device (its type, e.g. cuda, or its full name)."""
    from resnet.paper.names import canonical_name
    from resnet.runs.provenance import device_name

    names = {device.type, device_name(device)}
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise ConfigError(f"--throughput file '{path}' cannot be read ({error})") from None
    if rows and not {"model", "device", "images_per_s"} <= set(rows[0]):
        raise ConfigError(f"--throughput file '{path}' needs the columns model,device,images_per_s")
    rates = {}
    for row in rows:
        if row["device"].strip() in names and float(row["images_per_s"]) > 0:
            rates[canonical_name(row["model"].strip())] = float(row["images_per_s"])
    return rates


def plan_cost(config: Config, throughput: str | Path | None = None, measure_iterations: int = 2,
              device: torch.device | None = None) -> tuple[list[CellCost], torch.device]:
    """The cost of every cell of the plan, and the device it is for.

    Rates come from ``throughput`` where it has the model for this device; the other models are
    measured here (once per model, batch and image size) unless ``measure_iterations`` is 0.
    """
    from resnet.engine.device import pick_device

    device = device or pick_device(config.engine.device)
    listed = read_throughput(throughput, device) if throughput else {}
    measured: dict[tuple, float] = {}
    ceilings: dict[tuple, tuple[float, float]] = {}
    imagenet = config.resources.imagenet
    cores = imagenet.cpus / max(1, imagenet.gpus)  # per device: what the profile asks for
    costs = []
    for cell in plan_cells(config):
        job = resolve_cell(config, cell.id)
        recipe = job.recipe
        if recipe.model in listed:
            rate, source = listed[recipe.model], str(throughput)
        else:
            if measure_iterations <= 0:
                raise ConfigError(f"no rate for {recipe.model} on {device.type} in '{throughput}' and measuring is off "
                                  "(--measure-iterations 0): add a row or let it measure")
            key = (recipe.model, recipe.batch_size, image_size(job))
            if key not in measured:
                started = time.perf_counter()
                measured[key] = measure_images_per_s(job, device, measure_iterations)
                print(f"measured {recipe.model} at batch {recipe.batch_size}, {image_size(job)}px: {measured[key]:,.1f} "
                      f"images/s ({time.perf_counter() - started:.1f} s)", file=sys.stderr, flush=True)
            rate, source = measured[key], "measured"
        cost = CellCost(cell.id, recipe.model, recipe.iterations, recipe.batch_size, image_size(job), rate, source)
        if job.dataset == "imagenet":
            from resnet.data.imagenet.loaders import pick_loader

            loader = pick_loader(job.data.imagenet_loader, device)
            key = (loader, tuple(recipe.train_short_side), recipe.crop)
            if key not in ceilings:
                ceilings[key] = input_ceiling(loader, recipe.train_short_side, recipe.crop, cores, device)
            cost.input_per_s = ceilings[key][0]
            cost.input_from = f"{loader}, {ceilings[key][1]:.2f} ms/image x {cores:g} cores"
        costs.append(cost)
    return costs, device


def format_cost(config: Config, costs: list[CellCost], device: torch.device) -> str:
    from resnet.runs.provenance import device_name

    header = ["cell", "iterations", "batch", "image", "images/s", "device-hours", "rate from", "input images/s",
              "input"]
    rows = [[c.cell, f"{c.iterations:,}", str(c.batch_size), f"{c.image_size}px", f"{c.images_per_s:,.1f}" if c.images_per_s < 100 else f"{c.images_per_s:,.0f}",
             f"{c.hours:.3f}", c.source, "" if c.input_per_s is None else f"{c.input_per_s:,.0f}",
             "" if c.input_per_s is None else ("INPUT-BOUND" if c.input_bound else "keeps up")] for c in costs]
    total = sum(c.hours for c in costs)
    rows.append(["total", "", "", "", "", f"{total:.3f}", "", "", ""])
    from tabulate import tabulate

    lines = [tabulate(rows, headers=header, tablefmt="plain", disable_numparse=True)]
    sources = sorted({c.source for c in costs})
    note = (f"scale {config.scale}, {len(costs)} cells; device {device_name(device)}; images/s "
            f"{' and '.join('measured here (training step on random data)' if s == 'measured' else 'from ' + s for s in sources)}. "
            "Device-hours of training steps only (no evaluation, no checkpoints, no input pipeline).")
    inputs = sorted({c.input_from for c in costs if c.input_per_s is not None})
    if inputs:
        bound = [c.cell for c in costs if c.input_bound]
        note += (f"\nImageNet input ceiling per device: measured CPU time per training image here ({'; '.join(inputs)} "
                 "per device, resources.imagenet cpus / gpus). "
                 + (f"Input-bound (the input is slower than the step; the hours above are too low): "
                    f"{', '.join(bound)}; data.imagenet_loader: dali moves decoding to the GPU, or ask for more "
                    "resources.imagenet.cpus." if bound else "No cell is input-bound."))
    return "\n".join([*lines, "", note])
