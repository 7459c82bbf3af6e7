"""One centre-crop validation pass of an ImageNet net, by 1 process and by N processes side by side.

    .venv/bin/python benchmarks/eval_processes.py                    # ResNet-18, 1 and 2 processes
    .venv/bin/python benchmarks/eval_processes.py --processes 1 2 4 --images 512

Each process evaluates its share rank::N of the validation images (resnet.data.imagenet.evaluation
with rank / world size, the loader the training uses), and the counts are summed over a gloo
process group, as ImageNetTask.evaluate does; the time is the slowest process's, from a barrier
before the pass to one after it. The same synthetic JPEGs (ImageNet-like sizes) and the same
weights for every N; the wrong counts must agree. On a CPU the processes share its cores, so the
ratio shows the work is split, and the speed-up is bounded by the cores; on a node with one GPU per
process the pass should take about 1/N.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import markdown_table  # noqa: E402
from resnet.data.imagenet.evaluation import imagenet_val_loader  # noqa: E402
from resnet.data.imagenet.synthetic import make_synthetic_imagenet  # noqa: E402
from resnet.engine.launch import _free_port  # noqa: E402
from resnet.engine.tasks import error_counts  # noqa: E402
from resnet.models.nets import build_model  # noqa: E402


def _pass(rank: int, world: int, port: int, root: str, model_name: str, args, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, args.threads // world))
    torch_dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=10).eval()
    batches = imagenet_val_loader(root, batch_size=args.batch, resize=args.resize, crop=args.crop,
                                  workers=args.workers, rank=rank, world_size=world)
    torch_dist.barrier()
    started = time.perf_counter()
    wrong, total = error_counts(model, batches, "cpu")
    counts = torch.tensor([wrong, total], dtype=torch.float64)
    torch_dist.all_reduce(counts)
    torch_dist.barrier()
    if rank == 0:
        results.put((time.perf_counter() - started, int(counts[0]), int(counts[1])))
    torch_dist.destroy_process_group()


def measure(world: int, root: str, args) -> tuple[float, int, int]:
    results = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_pass, args=(world, _free_port(), root, args.model, args, results), nprocs=world,
                       start_method="spawn")
    return results.get()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default="resnet-18")
    parser.add_argument("--images", type=int, default=256, help="validation images (10 classes)")
    parser.add_argument("--resize", type=int, default=128, help="shorter side before the centre crop")
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="loader workers per process")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads shared out")
    parser.add_argument("--rounds", type=int, default=2, help="passes per process count, alternating")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eval-processes-") as folder:
        root = make_synthetic_imagenet(Path(folder) / "set", num_classes=10, train_per_class=1,
                                       val_per_class=max(1, args.images // 10), min_side=args.resize,
                                       max_side=int(args.resize * 1.5))
        print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
              f"{args.model}, {args.images} images at {args.crop}px", flush=True)
        seconds = {world: [] for world in args.processes}
        counts = {}
        for _ in range(args.rounds):
            for world in args.processes:
                took, wrong, total = measure(world, str(root), args)
                seconds[world].append(took)
                counts[world] = (wrong, total)
                print(f"{world} process(es): {took:.2f} s, {wrong} of {total} wrong", flush=True)
        assert len(set(counts.values())) == 1, f"the processes' counts differ: {counts}"
        base = min(seconds[args.processes[0]])
        rows = [[str(world), f"{min(seconds[world]):.2f}", f"{min(seconds[world]) / base:.2f}",
                 f"{counts[world][0]} / {counts[world][1]}"] for world in args.processes]
        print()
        print(markdown_table(["processes", "seconds per pass (best)", f"vs {args.processes[0]}", "wrong / images"],
                             rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
