"""CIFAR ResNet train-step time on the CPU: the project's path against a plain PyTorch baseline.

    .venv/bin/python benchmarks/cpu_train_step.py                  # ResNet-20 and 56, batch 128
    .venv/bin/python benchmarks/cpu_train_step.py --models cifar-resnet-20 --steps 5
    .venv/bin/python benchmarks/cpu_train_step.py --models cifar-resnet-20 --bn-group 64 --with-variants

Both paths train the same model with the same SGD (benchmarks/common.py says what each does). On
the CPU the project's step is fp32 and eager (bf16 and CUDA graphs are CUDA only), so what differs
here is the input pipeline (set in memory, batch augmentation vs PIL transforms in DataLoader
workers) and the memory format (channels_last vs NCHW). Warm-up steps are excluded; both paths are
measured in the same process. Real CIFAR-10 is used when ../shared/data holds it (decoded once into
.bench-data/), else random arrays of the same size.

``--with-variants`` adds what else a CPU could do with the same step: bf16 autocast on the CPU
(evaluation would stay fp32), torch.compile (inductor's CPU kernels), and NCHW instead of
channels_last. ``--bn-group 64`` is the paper scale's BN groups (the recipe the CPU reference run trains).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    baseline_batches, baseline_loader, bench_config, cifar_train_arrays, default_cifar_source, fmt,
    make_model_and_step, markdown_table, plain_step, project_batches, release, time_steps, Timing,
)
from resnet.models.nets import build_model  # noqa: E402


def paths(model_name: str, images, labels, args) -> dict[str, tuple]:
    """(step, batches) of each path, for the same model and optimiser."""
    device = torch.device("cpu")
    built = {}
    # Baseline: DataLoader workers + torchvision transforms, fp32, eager, NCHW.
    torch.manual_seed(0)
    model = build_model(model_name).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loader = baseline_loader(images, labels, args.batch_size, args.workers, pin_memory=False)
    built["baseline"] = (plain_step(model, optimizer), baseline_batches(loader, device))
    # The project's path: on-device stream + resnet.step.make_step + channels_last.
    variants = [("project", True, False)]
    if args.with_nchw or args.with_variants:
        variants.append(("project-nchw", False, False))
    if args.with_variants:
        variants.append(("project-compile", True, True))
    for name, channels_last, compile in variants:
        cfg = bench_config(model_name, args.batch_size, "cpu", bf16=True, channels_last=channels_last,
                           cuda_graphs=True, compile=compile, bn_group=args.bn_group)
        _, _, step = make_model_and_step(cfg, device)
        built[name] = (step, project_batches(images, labels, args.batch_size, device, channels_last))
    if args.with_variants:
        cfg = bench_config(model_name, args.batch_size, "cpu", bf16=True, channels_last=True, cuda_graphs=False,
                           bn_group=args.bn_group)
        model, optimizer, _ = make_model_and_step(cfg, device)
        built["project-bf16"] = (cpu_bf16_step(model, optimizer),
                                 project_batches(images, labels, args.batch_size, device, True))
    return built


def cpu_bf16_step(model, optimizer):
    """The project's step with bf16 autocast on the CPU (engine.bf16 is CUDA-only: this measures why)."""
    def step(images, labels):
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(images)
            loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach().float(), (logits.detach().argmax(1) != labels).sum()

    return step


def measure(model_name: str, images, labels, args) -> dict[str, Timing]:
    """Warm up every path, then time them in alternating rounds so that a change in background
    load on the machine hits all paths alike; a path's time is the sum of its rounds."""
    device = torch.device("cpu")
    built = paths(model_name, images, labels, args)
    for step, batches in built.values():
        time_steps(step, batches, args.batch_size, device, warmup=args.warmup, steps=1)
    per_round = max(1, args.steps // args.rounds)
    seconds = {name: 0.0 for name in built}
    for _ in range(args.rounds):
        for name, (step, batches) in built.items():
            timing = time_steps(step, batches, args.batch_size, device, warmup=0, steps=per_round)
            seconds[name] += timing.steps * timing.ms_per_step / 1000
    steps = per_round * args.rounds
    del built
    release(device)
    return {name: Timing(steps * args.batch_size / total, 1000 * total / steps, steps, 0.0, None)
            for name, total in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cifar-resnet-20", "cifar-resnet-56"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per path (default 12 for ResNet-20, 6 deeper)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per path")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds per path")
    parser.add_argument("--with-nchw", action="store_true", help="also time the project's path in NCHW")
    parser.add_argument("--with-variants", action="store_true",
                        help="also time bf16 autocast on the CPU, torch.compile and NCHW")
    parser.add_argument("--bn-group", type=int, default=0, help="BN group of the project's nets (paper scale: 64)")
    parser.add_argument("--workers", type=int, default=2, help="baseline DataLoader workers")
    parser.add_argument("--cifar", default=None, help="CIFAR-10 source (default: ../shared/data tarball if present)")
    args = parser.parse_args(argv)

    source = Path(args.cifar) if args.cifar else default_cifar_source()
    images, labels, description = cifar_train_arrays(source)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
          f"data: {description}", flush=True)
    rows, started = [], time.perf_counter()
    for model_name in args.models:
        depth = int(model_name.rsplit("-", 1)[-1])
        steps = args.steps or (12 if depth <= 20 else 6)
        results = measure(model_name, images, labels, argparse.Namespace(**{**vars(args), "steps": steps}))
        base = results["baseline"].images_per_s
        for path, timing in results.items():
            rows.append([model_name, path, f"{timing.ms_per_step:.0f}", fmt(timing.images_per_s),
                         f"{timing.images_per_s / base:.2f}x"])
            print(f"{model_name} {path}: {timing.ms_per_step:.0f} ms/step over {timing.steps} steps", flush=True)
    print(f"\nbatch {args.batch_size}, {args.warmup} warm-up steps excluded, "
          f"{time.perf_counter() - started:.0f} s in all\n")
    print(markdown_table(["model", "path", "ms/step", "images/s", "vs baseline"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
