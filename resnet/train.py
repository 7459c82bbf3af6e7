"""Train one cell: iteration-based schedule, periodic evaluation, checkpoints, resume.

    cfg = resolve_cell(load_config("config.yaml"), "cifar-resnet-56/seed-0")
    metrics = train(cfg, Path("results/runs/smoke/cifar-resnet-56/seed-0"))

Running the same call again after an interruption resumes from the last checkpoint: model,
optimiser, learning-rate schedule (including the warm-up state), data position, the curve so far
and the MLflow run. Training stops cleanly on SIGTERM / SIGUSR1 / SIGINT (how SLURM warns before
a time limit or preempts): it finishes the current iteration, writes a checkpoint and raises
Interrupted.
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from resnet import runfiles
from resnet.config import TrainConfig
from resnet.measure import count_multiply_adds, count_parameters
from resnet.models import build_model
from resnet.step import make_step

# Settings whose change makes an existing run folder a different experiment (resuming would mix
# two recipes). Device, data location, store location and worker counts may change between runs.
SEMANTIC_KEYS = (
    "model", "dataset", "seed", "iterations", "batch_size", "lr", "momentum", "weight_decay",
    "milestones", "lr_decay", "warmup_lr", "warmup_until_train_error", "val_size", "train_subset",
    "test_subset", "train_short_side", "crop", "test_short_side", "eval_every", "log_every",
)


class Interrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; run the same command to resume."""


class GaveUp(Interrupted):
    """Interrupted more often than resources.max_resubmits allows; metrics.json says failed."""


class StopRequest:
    """Turns SIGTERM, SIGUSR1 and SIGINT into a flag checked between iterations."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous = {}

    def __enter__(self) -> "StopRequest":
        for number in self.SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        self.signal_name = signal.Signals(number).name
        print(f"\n{self.signal_name} received: checkpointing after this iteration", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


# ----------------------------------------------------------------------------- set-up

def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("engine.device is 'cuda' but no CUDA GPU is visible: set engine.device: auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def learning_rate(cfg: TrainConfig, iteration: int, warming_up: bool) -> float:
    """lr for the iteration about to run: warm-up lr, else base lr /10 at each passed milestone."""
    if warming_up and cfg.warmup_lr is not None:
        return cfg.warmup_lr
    passed = sum(1 for milestone in cfg.milestones if iteration >= milestone)
    return cfg.lr * cfg.lr_decay**passed


def _semantic(config: dict[str, Any]) -> dict[str, Any]:
    return {key: config.get(key) for key in SEMANTIC_KEYS}


def prepare_run_folder(cfg: TrainConfig, out: Path, may_move: bool = True) -> dict[str, Any] | None:
    """Return the finished metrics if this exact cell is already done; set older runs aside.

    A folder left by a different recipe (config changed since) is moved to superseded-<time>/
    inside the folder, so nothing computed is lost and the new recipe starts from iteration 0.
    """
    out.mkdir(parents=True, exist_ok=True)
    if may_move:
        for stale in out.glob(".*.tmp"):  # a write cut short by a kill; the real file is intact
            stale.unlink(missing_ok=True)
    metrics = runfiles.read_json(out / "metrics.json")
    previous = None
    if metrics is not None:
        previous = metrics.get("config")
    elif (out / "checkpoint.pt").exists():
        previous = runfiles.load_checkpoint(out / "checkpoint.pt").get("config")
    if previous is None:
        return None
    if _semantic(previous) == _semantic(cfg.to_dict()):
        return metrics if metrics is not None and metrics.get("status") == "done" else None
    if not may_move:  # under torchrun, process 0 alone sets the older run aside
        return None
    keep = out / f"superseded-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    keep.mkdir()
    for item in out.iterdir():
        if not item.name.startswith("superseded-"):
            shutil.move(str(item), keep / item.name)
    changed = sorted(k for k in SEMANTIC_KEYS if previous.get(k) != getattr(cfg, k))
    print(f"{out}: recipe changed ({', '.join(changed)}); previous run kept in {keep.name}/", file=sys.stderr)
    return None


def make_task(cfg: TrainConfig, device: torch.device):
    from resnet.tasks import CifarTask, ImageNetTask

    return (CifarTask if cfg.dataset == "cifar10" else ImageNetTask)(cfg, device)


def artefacts_of(model: str) -> list[str]:
    """Which paper tables and figures read this cell (MLflow tag)."""
    from resnet import paper

    tables = [name for name, table in (("table-2", paper.TABLE2), ("table-3", paper.TABLE3), ("table-6", paper.TABLE6))
              if model in table and not table[model].quoted]
    return tables + [figure for figure in paper.FIGURES if model in paper.figure_models(figure)]


# ----------------------------------------------------------------------------- training

def train(cfg: TrainConfig, out: Path, quiet: bool = False) -> dict[str, Any]:
    """Train (or resume, or skip if done) one cell; write its files; return its metrics."""
    out = Path(out)
    done = prepare_run_folder(cfg, out, may_move=os.environ.get("RANK", "0") == "0")
    if done is not None:
        print(f"{cfg.cell}: already done ({out / 'metrics.json'})", file=sys.stderr)
        return done
    from resnet.distributed import Distributed

    with Distributed() as dist, StopRequest() as stop:
        return _train(cfg, out, dist, stop, quiet)


def _train(cfg, out: Path, dist, stop: StopRequest, quiet: bool) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    device = pick_device(cfg.device) if not dist.enabled else dist.device
    task = make_task(cfg, device)
    model = build_model(cfg.model, num_classes=task.num_classes).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    checkpoint_path = out / "checkpoint.pt"
    state = _fresh_state(cfg)
    if checkpoint_path.exists():
        saved = runfiles.load_checkpoint(checkpoint_path)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]
        dist.print(f"{cfg.cell}: resuming at iteration {state['iteration']} from {checkpoint_path}")
    dist.print(_banner(cfg, device, model, dist))
    train_model = dist.wrap(model)
    step = make_step(train_model, optimizer, cfg, device, single_process=not dist.enabled)
    tracker = _open_tracker(cfg, state) if dist.is_main else None
    start_iteration, started = state["iteration"], time.perf_counter()
    interval = {"loss": torch.zeros((), device=device), "wrong": torch.zeros((), device=device), "images": 0,
                "start": time.perf_counter(), "paused": 0.0}

    def save() -> None:
        _carry_interval(state, interval)  # a half-finished log interval travels in the checkpoint
        if not dist.is_main:
            return
        # MLflow first, so the checkpoint's rows_in_mlflow counts the rows logged. Rows logged by a
        # run killed before its next checkpoint are skipped by the resumed Tracker (per metric).
        tracker.log_rows(state["rows"][state["rows_in_mlflow"]:])
        state["rows_in_mlflow"] = len(state["rows"])
        runfiles.save_checkpoint(checkpoint_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(), "state": state, "config": cfg.to_dict(),
        })
        runfiles.write_curve(out / "curve.csv", state["rows"])

    while state["iteration"] < cfg.iterations:
        if dist.any(stop.signal_name is not None):
            state["interruptions"] += 1
            save()
            message = (f"{cfg.cell}: stopped by {stop.signal_name or 'a signal'} at iteration "
                       f"{state['iteration']}/{cfg.iterations}; checkpoint written")
            if state["interruptions"] > cfg.max_resubmits and dist.is_main:
                _give_up(cfg, out, state, save, tracker, message)
            if tracker:
                tracker.finish("KILLED")
            raise Interrupted(message + ", run the same command to resume")
        iteration = state["iteration"]
        lr = learning_rate(cfg, iteration, state["warming_up"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, labels = task.train_batch(iteration)
        t0 = time.perf_counter()
        loss, wrong = step(images, labels)
        if iteration == start_iteration and state["first_step_s"] is None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            state["first_step_s"] = time.perf_counter() - t0  # includes compilation
        interval["loss"] += loss.detach() * labels.shape[0]
        interval["wrong"] += wrong
        interval["images"] += labels.shape[0]
        state["iteration"] = iteration = iteration + 1
        evaluate = iteration % cfg.eval_every == 0 or iteration == cfg.iterations
        if iteration % cfg.log_every == 0 or evaluate:
            row = _close_interval(cfg, state, interval, lr, dist, task)
            pause = time.perf_counter()
            if evaluate and dist.is_main:  # the other processes wait at their next all-reduce
                row.update(task.evaluate(model))
            state["rows"].append(row)
            _warmup_check(cfg, state, row, dist)
            if not quiet:
                dist.print(_progress(cfg, row, state, started, start_iteration))
            interval["paused"] += time.perf_counter() - pause  # evaluation is not training time
        if iteration % cfg.checkpoint_every == 0 or iteration == cfg.iterations:
            pause = time.perf_counter()
            save()
            interval["paused"] += time.perf_counter() - pause

    final = task.final(model) if dist.is_main else {}
    state["step"] = {"path": step.path, "setup_s": round(step.setup_seconds, 3), "captures": step.captures,
                     "eager_steps": step.eager_steps}  # of this (the last) process
    metrics = _metrics(cfg, out, model, task, state, final, device, tracker) if dist.is_main else {}
    dist.barrier()
    return metrics


def record_failure(cfg: TrainConfig, out: Path, reason: str, iterations: int | None = None) -> None:
    """metrics.json with status "failed" and the reason: the tables show it, the next run retries."""
    runfiles.write_json(out / "metrics.json", {
        "cell": cfg.cell, "model": cfg.model, "dataset": cfg.dataset, "seed": cfg.seed, "scale": cfg.scale,
        "status": "failed", "reason": reason, "iterations": iterations, "config": cfg.to_dict()})


def _give_up(cfg, out: Path, state, save, tracker, message: str) -> None:
    """Out of resubmissions: mark the cell failed (the tables say why) and reset the budget.

    The checkpoint stays, so a later run resumes from it with a fresh budget.
    """
    reason = (f"{message}; interrupted {state['interruptions']} times, more than resources.max_resubmits="
              f"{cfg.max_resubmits}: rerun the workflow to resume from the checkpoint")
    state["interruptions"] = 0
    save()
    record_failure(cfg, out, reason, iterations=state["iteration"])
    tracker.set_tags({"failure": reason})
    tracker.finish("FAILED")
    raise GaveUp(reason)


def _banner(cfg: TrainConfig, device: torch.device, model, dist) -> str:
    from resnet.config import REFERENCE_BATCH

    reference = REFERENCE_BATCH[cfg.dataset]
    lr_note = "" if cfg.batch_size == reference else (
        f" (linear scaling rule: the recipe's lr is per batch of {reference}; batch {cfg.batch_size} "
        f"gives lr {cfg.lr:g})")
    return (f"[{cfg.cell}] {cfg.scale} scale on {runfiles.device_name(device)} x{dist.world_size}: "
            f"{count_parameters(model):,} parameters, {cfg.iterations} iterations at batch {cfg.batch_size}, "
            f"lr {cfg.lr:g} /{1 / cfg.lr_decay:g} at {cfg.milestones}{lr_note}")


def _fresh_state(cfg: TrainConfig) -> dict[str, Any]:
    return {"iteration": 0, "warming_up": cfg.warmup_lr is not None, "warmup_ended_at": None,
            "rows": [], "rows_in_mlflow": 0, "carried": None, "mlflow_run_id": None,
            "interruptions": 0, "train_seconds": 0.0, "first_step_s": None}


def _carry_interval(state, interval) -> None:
    """Keep a half-finished log interval in the checkpoint so the resumed curve is identical."""
    carried = state["carried"] or {"loss": 0.0, "wrong": 0, "images": 0}
    state["carried"] = {"loss": carried["loss"] + float(interval["loss"]),
                        "wrong": carried["wrong"] + int(interval["wrong"]),
                        "images": carried["images"] + interval["images"]}
    interval["loss"].zero_(); interval["wrong"].zero_(); interval["images"] = 0


def _close_interval(cfg, state, interval, lr, dist, task) -> dict[str, Any]:
    _carry_interval(state, interval)
    totals = dist.sum([state["carried"]["loss"], state["carried"]["wrong"], state["carried"]["images"]])
    state["carried"] = None
    now = time.perf_counter()
    elapsed = now - interval["start"] - interval["paused"]
    interval["start"], interval["paused"] = now, 0.0
    state["train_seconds"] += elapsed
    images = totals[2]
    return {
        "iteration": state["iteration"],
        "epoch": round(task.epoch_of(state["iteration"]), 4),
        "lr": lr,
        "train_loss": totals[0] / images,
        "train_error": 100.0 * totals[1] / images,
        "val_error": math.nan,
        "test_error": math.nan,
        "images_per_s": (images / elapsed) if elapsed > 0 else math.nan,
        "wall_time_s": round(state["train_seconds"], 3),
    }


def _warmup_check(cfg, state, row, dist) -> None:
    # Sec. 4.2: "we use 0.01 to warm up the training until the training error is below 80% (about
    # 400 iterations), and then go back to 0.1 and continue training".
    if state["warming_up"] and row["train_error"] < cfg.warmup_until_train_error:
        state["warming_up"] = False
        state["warmup_ended_at"] = row["iteration"]
        dist.print(f"{cfg.cell}: training error {row['train_error']:.1f}% < {cfg.warmup_until_train_error}% "
                   f"at iteration {row['iteration']}: warm-up over, lr back to {cfg.lr:g}")


def _progress(cfg, row, state, started, start_iteration) -> str:
    done = row["iteration"] - start_iteration
    rate = done / max(time.perf_counter() - started, 1e-9)
    eta = (cfg.iterations - row["iteration"]) / rate if rate > 0 else math.inf
    evals = "".join(f" | {key.split('_')[0]} err {row[key]:.2f}%" for key in ("val_error", "test_error")
                    if row[key] == row[key])
    return (f"[{cfg.cell}] it {row['iteration']}/{cfg.iterations} ({100 * row['iteration'] / cfg.iterations:.1f}%)"
            f" | lr {row['lr']:.4g} | loss {row['train_loss']:.4f} | train err {row['train_error']:.2f}%{evals}"
            f" | {row['images_per_s']:,.0f} img/s | ETA {_duration(eta)}")


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _open_tracker(cfg: TrainConfig, state: dict[str, Any]):
    from resnet.tracking import Tracker

    tags = {"cell": cfg.cell, "model": cfg.model, "seed": str(cfg.seed), "scale": cfg.scale,
            "dataset": cfg.dataset, "artefacts": ", ".join(artefacts_of(cfg.model)),
            "git_commit": runfiles.git_commit()["commit"]}
    tracker = Tracker(cfg.tracking_uri, cfg.experiment, run_name=f"{cfg.scale}/{cfg.cell}",
                      run_id=state["mlflow_run_id"], tags=tags, params=cfg.to_dict())
    state["mlflow_run_id"] = tracker.run_id
    return tracker


def _metrics(cfg, out, model, task, state, final, device, tracker) -> dict[str, Any]:
    rows = state["rows"]
    trained_images = cfg.batch_size * cfg.iterations
    metrics = {
        "cell": cfg.cell, "model": cfg.model, "dataset": cfg.dataset, "seed": cfg.seed, "scale": cfg.scale,
        "status": "done", "iterations": state["iteration"],
        "final": {"train_error": rows[-1]["train_error"] if rows else None, **final},
        "parameters": count_parameters(model),
        "multiply_adds": count_multiply_adds(model, task.image_size),
        "image_size": task.image_size,
        "wall_time_s": round(state["train_seconds"], 3),
        "images_per_s": round(trained_images / state["train_seconds"], 1) if state["train_seconds"] else None,
        "first_step_s": state["first_step_s"],
        "step": state["step"],
        "warmup_ended_at": state["warmup_ended_at"],
        "interruptions": state["interruptions"],
        "mlflow_run_id": state["mlflow_run_id"],
        "config": cfg.to_dict(),
        "provenance": runfiles.provenance(device, cfg.seed),
    }
    runfiles.write_json(out / "metrics.json", metrics)
    tracker.log_rows([{"iteration": state["iteration"], **{f"final_{k}": v for k, v in metrics["final"].items()
                                                            if isinstance(v, (int, float))}}])
    for name in ("metrics.json", "curve.csv"):
        tracker.log_artifact(out / name)
    tracker.finish("FINISHED")
    return metrics
