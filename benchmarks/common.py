"""What the benchmark scripts share: the two training paths, the timer, data and the table.

The two paths train the same model with the same optimiser; they differ in everything around it:

* baseline: how popular PyTorch reproductions of the CIFAR ResNets train (the akamaster
  reproduction and the PyTorch tutorials): a torchvision.datasets-style Dataset over uint8 arrays,
  torchvision.transforms RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize on
  PIL images in DataLoader workers, fp32, eager, contiguous NCHW.
* project: the project's own path (resnet.step.make_step): the data set resident on the device
  in a CifarTrainStream, augmented there in batch; channels_last; on CUDA bf16 autocast and,
  with cuda_graphs, the whole step (forward, backward, SGD update) replayed as one CUDA graph.
"""
from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from resnet.config.sections import Data, Engine, MLflowSettings  # noqa: E402
from resnet.config.job import CifarRecipe, Job  # noqa: E402
from resnet.models.nets import build_model  # noqa: E402

BENCH_DATA = REPO_ROOT / ".bench-data"  # git-ignored: decoded caches, copied tarballs
SHARED_CIFAR = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the akamaster reproduction's Normalize (ImageNet-style)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


# ----------------------------------------------------------------------------- data

def cifar_train_arrays(source: str | Path | None, size: int = 50_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 NHWC images, int64 labels, description): real CIFAR-10 when ``source`` exists,
    else random arrays of the same size (throughput does not depend on the pixels)."""
    if source is not None and Path(source).exists():
        from resnet.data.cifar.source import load_cifar10

        arrays = load_cifar10(source, BENCH_DATA)
        return arrays.train_images[:size], arrays.train_labels[:size], f"CIFAR-10 from {source}"
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (size, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size).astype(np.int64)
    return images, labels, f"random uint8 arrays ({size} x 32x32x3)"


def default_cifar_source() -> Path | None:
    for candidate in (BENCH_DATA / "cifar10-jpeg.tar.gz", SHARED_CIFAR):
        if candidate.exists():
            return candidate
    return None


class ArrayDataset(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10 without the files: PIL image from a uint8 array, then transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def baseline_loader(images: np.ndarray, labels: np.ndarray, batch_size: int, workers: int,
                    pin_memory: bool) -> torch.utils.data.DataLoader:
    from torchvision import transforms

    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
    ])
    return torch.utils.data.DataLoader(ArrayDataset(images, labels, transform), batch_size=batch_size,
                                       shuffle=True, num_workers=workers, pin_memory=pin_memory,
                                       drop_last=True, persistent_workers=workers > 0)


def endless(loader):
    while True:
        yield from loader


# ----------------------------------------------------------------------------- the paths

def bench_config(model: str, batch_size: int, device: str, *, bf16: bool, channels_last: bool,
                 cuda_graphs: bool, compile: bool = False, bn_group: int = 0) -> Job:
    """A Job carrying what resnet.step.make_step reads (the paper's CIFAR optimiser, Sec. 4.2)."""
    recipe = CifarRecipe(model=model, dataset="cifar10", seed=0, batch_size=batch_size, lr=0.1, momentum=0.9,
                         weight_decay=1e-4, iterations=1, milestones=(), lr_decay=0.1, bn_group=bn_group, eval_every=1,
                         log_every=1, warmup_lr=None, warmup_until_train_error=None, val_size=0, train_subset=0,
                         test_subset=0)
    engine = Engine(device=device, bf16=bf16, channels_last=channels_last, cuda_graphs=cuda_graphs, compile=compile,
                    deterministic=False, checkpoint_every=1, workers=0, processes=1)
    data = Data(cifar10="", cifar10_download=False, cifar10_partial=False, imagenet="synthetic",
                imagenet_prepared="auto", imagenet_partial=True, imagenet_loader="auto", cache=str(BENCH_DATA))
    return Job(recipe=recipe, scale="bench", engine=engine, data=data,
               mlflow=MLflowSettings(tracking_uri="", experiment="bench", live=False), max_resubmits=0)


def make_model_and_step(job: Job, device: torch.device, num_classes: int = 10):
    """Model, optimiser and step exactly as resnet.train builds them."""
    from resnet.engine.step import make_step

    torch.manual_seed(0)
    recipe = job.recipe
    model = build_model(recipe.model, num_classes=num_classes, bn_group=recipe.bn_group).to(device)
    if job.engine.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    return model, optimizer, make_step(model, optimizer, job, device)


def plain_step(model, optimizer):
    """The baseline's step: fp32, eager, what a reproduction's train loop does."""
    criterion = torch.nn.CrossEntropyLoss()

    def step(images, labels):
        model.train()
        logits = model(images)
        loss = criterion(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach(), (logits.detach().argmax(1) != labels).sum()

    return step


def project_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, device: torch.device,
                    channels_last: bool):
    """The project's stream: uint8 set on the device, crop and flip there (resnet.cifar)."""
    from resnet.data.cifar.stream import CifarTrainStream, pixel_mean

    stream = CifarTrainStream(images, labels, pixel_mean(images), batch_size, seed=0, device=device,
                              augment=True, channels_last=channels_last)
    iteration = 0
    while True:
        yield stream.batch(iteration)
        iteration += 1


def baseline_batches(loader, device: torch.device):
    for images, labels in endless(loader):
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


# ----------------------------------------------------------------------------- timing

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    images_per_s: float
    ms_per_step: float
    steps: int
    first_steps_s: float  # the warm-up steps: compilation / graph capture, worker start-up
    peak_memory_gb: float | None


def time_steps(step, batches, batch_size: int, device: torch.device, *, warmup: int, steps: int | None = None,
               seconds: float | None = None, chunk: int = 10) -> Timing:
    """Time ``step`` on ``batches`` (fetching included) after ``warmup`` untimed steps.

    Runs ``steps`` steps, or chunks of ``chunk`` steps until ``seconds`` have passed; the device is
    synchronised only at the ends of chunks, so the GPU queue stays full as in training.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(warmup):
        step(*next(batches))
    synchronize(device)
    first = time.perf_counter() - started
    done, started = 0, time.perf_counter()
    while True:
        todo = chunk if steps is None else min(chunk, steps - done)
        for _ in range(todo):
            step(*next(batches))
        done += todo
        synchronize(device)
        elapsed = time.perf_counter() - started
        if (steps is not None and done >= steps) or (steps is None and elapsed >= (seconds or 0)):
            break
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Timing(done * batch_size / elapsed, 1000 * elapsed / done, done, first, peak)


def release(device: torch.device) -> None:
    """Free what the previous measurement held (compiled graphs, their memory pools)."""
    gc.collect()
    try:
        torch._dynamo.reset()
    except Exception:
        pass
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- output

def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table of already formatted cells (tabulate, as pandas' to_markdown)."""
    from tabulate import tabulate

    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)


def fmt(value, spec: str = ",.0f", missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return missing
    return format(value, spec)
