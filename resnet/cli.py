"""Command line: one command per cell, and the small tools around it.

    python -m resnet train --config config.yaml --cell cifar-resnet-56/seed-0
    python -m resnet plan --config config.yaml          # the cells of the configured plan
    python -m resnet synthetic-imagenet --out DIR       # the small synthetic ImageNet-layout set
    python -m resnet cost --config config.yaml          # projected device-hours of the plan

Exit status: 0 done; 2 bad input (one line says what and how to fix it); 75 interrupted by a
signal after writing a checkpoint (run the same command to resume).
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: try again later


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    from resnet.config import ConfigError
    from resnet.data import DataError
    from resnet.names import ModelNameError
    from resnet.runfiles import CheckpointError

    return ConfigError, DataError, ModelNameError, CheckpointError


def run_dir(config: dict, cell: str) -> Path:
    """Where a cell's files live: results/runs/<scale>/<model>/seed-<n>."""
    return Path("results") / "runs" / config["scale"] / cell


def cmd_train(args: argparse.Namespace) -> int:
    from resnet.config import TrainConfig, load_config, resolve_cell
    from resnet.train import GaveUp, Interrupted, record_failure, train

    if args.train_config:
        cfg = TrainConfig.from_dict(json.loads(args.train_config))
        out = Path(args.out) if args.out else Path("results") / "runs" / cfg.scale / cfg.cell
    else:
        if not args.cell:
            raise SystemExit("error: give --cell MODEL/seed-N (e.g. cifar-resnet-56/seed-0) or --train-config")
        config = load_config(args.config)
        cfg = resolve_cell(config, args.cell)
        out = Path(args.out) if args.out else run_dir(config, cfg.cell)
    if args.launch:
        _maybe_relaunch_distributed(cfg)
    try:
        metrics = train(cfg, out, quiet=args.quiet)
    except GaveUp as stop:
        print(f"failed: {stop}", file=sys.stderr)
        return 0 if args.record_failure else EXIT_INTERRUPTED
    except Interrupted as stop:
        print(f"interrupted: {stop}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _bad_input_errors():
        raise
    except Exception as error:
        if not args.record_failure:
            raise
        traceback.print_exc()
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:500]
        record_failure(cfg, out, reason)
        print(f"failed: {cfg.cell}: {reason} (recorded in {out / 'metrics.json'})", file=sys.stderr)
        return 0
    if not metrics:  # a torchrun process other than 0: process 0 reports
        return 0
    final = metrics.get("final", {})
    shown = {k: round(v, 2) for k, v in final.items() if isinstance(v, float)}
    print(f"{cfg.cell}: {metrics.get('status')} {shown} -> {out}")
    return 0


def _maybe_relaunch_distributed(cfg) -> None:
    """ImageNet on a machine (or allocation) with several GPUs: one process per GPU via torchrun.

    The global batch stays cfg.batch_size (each of the W processes takes batch_size / W).
    """
    import os
    import shutil

    import torch

    if cfg.dataset != "imagenet" or "WORLD_SIZE" in os.environ or not torch.cuda.is_available():
        return
    gpus = torch.cuda.device_count()
    if gpus < 2:
        return
    if cfg.batch_size % gpus:
        raise SystemExit(f"error: batch {cfg.batch_size} does not split over {gpus} GPUs: "
                         f"set recipes.imagenet.batch_size to a multiple of {gpus}")
    torchrun = shutil.which("torchrun") or "torchrun"
    argv = [a for a in sys.argv[1:] if a != "--launch"]
    print(f"{cfg.cell}: {gpus} GPUs visible: relaunching under torchrun, {cfg.batch_size // gpus} images "
          f"per GPU (global batch {cfg.batch_size})", file=sys.stderr, flush=True)
    os.execvp(torchrun, [torchrun, "--standalone", f"--nproc_per_node={gpus}", "-m", "resnet", *argv])


def cmd_plan(args: argparse.Namespace) -> int:
    from resnet.config import load_config, plan_cells

    config = load_config(args.config)
    for cell in plan_cells(config):
        print(f"{cell.id}\t{cell.dataset}\t{run_dir(config, cell.id)}")
    return 0


def cmd_synthetic_imagenet(args: argparse.Namespace) -> int:
    from resnet.data import make_synthetic_imagenet

    print(make_synthetic_imagenet(args.out, seed=args.seed))
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    from resnet.config import load_config
    from resnet.cost import format_cost, plan_cost

    config = load_config(args.config)
    costs, device = plan_cost(config, throughput=args.throughput, measure_iterations=args.measure_iterations)
    print(format_cost(config, costs, device))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resnet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train (or resume) one cell")
    train.add_argument("--config", default="config.yaml", help="the experiment's config.yaml")
    train.add_argument("--cell", help="MODEL/seed-N, e.g. cifar-resnet-56/seed-0")
    train.add_argument("--train-config", help="a resolved training config as JSON (the workflow passes this)")
    train.add_argument("--out", help="run folder (default results/runs/<scale>/<cell>)")
    train.add_argument("--record-failure", action="store_true",
                       help="on failure write metrics.json with status failed and exit 0 (the workflow uses this)")
    train.add_argument("--launch", action="store_true",
                       help="ImageNet with several GPUs visible: run one process per GPU under torchrun")
    train.add_argument("--quiet", action="store_true", help="no progress lines")
    train.set_defaults(func=cmd_train)

    plan = commands.add_parser("plan", help="list the cells of the configured plan")
    plan.add_argument("--config", default="config.yaml")
    plan.set_defaults(func=cmd_plan)

    synthetic = commands.add_parser("synthetic-imagenet", help="write the synthetic ImageNet-layout set")
    synthetic.add_argument("--out", required=True)
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.set_defaults(func=cmd_synthetic_imagenet)

    cost = commands.add_parser("cost", help="projected device-hours of the configured plan, before running it")
    cost.add_argument("--config", default="config.yaml")
    cost.add_argument("--measure-iterations", type=int, default=2,
                      help="timed training steps per model on this device (0: only --throughput rates)")
    cost.add_argument("--throughput", help="CSV with columns model,device,images_per_s (benchmarks/gpu.py writes one)")
    cost.set_defaults(func=cmd_cost)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _bad_input_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
