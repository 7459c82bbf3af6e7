"""Train one cell: iteration-based schedule, periodic evaluation, checkpoints, resume.

    job = resolve_cell(load_config("config.yaml"), "cifar-resnet-56/seed-0")
    metrics = train(job, Path("results/runs/smoke/cifar-resnet-56/seed-0"))

Running the same call again after an interruption resumes from the last checkpoint: model,
optimiser, learning-rate schedule (including the warm-up state), data position, the curve so far
and the MLflow run. Training stops cleanly on SIGTERM / SIGUSR1 / SIGINT (how SLURM warns before
a time limit or preempts): it finishes the current iteration, writes a checkpoint and raises
Interrupted. A non-finite training loss stops the cell as failed (Diverged); the last checkpoint,
written before the divergence, is kept.
"""
from __future__ import annotations

import math
import shutil
import signal
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from resnet.engine import distributed

from resnet.runs import files as runfiles
from resnet.config.job import Job
from resnet.models.measure import count_multiply_adds, count_parameters
from resnet.models.nets import build_model
from resnet.runs.records import DONE, FAILED, Checkpoint, IntervalSums, Metrics, TrainState
from resnet.runs.progress import banner as _banner, progress as _progress
from resnet.engine.step import make_step


class Interrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; run the same command to resume."""


class GaveUp(Interrupted):
    """Interrupted more often than resources.max_resubmits allows; metrics.json says failed."""


class Diverged(Exception):
    """The training loss became NaN or infinite; metrics.json says failed, with the iteration."""


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
        from resnet.config.load import ConfigError  # bad input: one line and exit 2, not a traceback

        raise ConfigError("config key 'engine.device': 'cuda' but no CUDA GPU is visible here: set "
                          "engine.device: auto or cpu, or run on a machine with a GPU")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", distributed.local_rank())
    return torch.device(name)


def learning_rate(recipe, iteration: int, warming_up: bool) -> float:
    """lr for the iteration about to run: warm-up lr, else base lr /10 at each passed milestone."""
    if warming_up and getattr(recipe, "warmup_lr", None) is not None:
        return recipe.warmup_lr
    passed = sum(1 for milestone in recipe.milestones if iteration >= milestone)
    return recipe.lr * recipe.lr_decay**passed


def _recorded_recipe(out: Path) -> tuple[dict | None, Metrics | None]:
    """The recipe the folder's files were made with (metrics.json first, else the checkpoint)."""
    metrics = Metrics.read(out / "metrics.json")
    if metrics is not None:
        return metrics.recipe, metrics
    if (out / "checkpoint.pt").exists():
        return Checkpoint.load(out / "checkpoint.pt").recipe, None
    return None, None


def prepare_run_folder(job: Job, out: Path, may_move: bool = True) -> Metrics | None:
    """Return the finished metrics if this exact recipe is already done; set other recipes' runs aside.

    A folder left by a different recipe (config changed since) is moved to superseded-<time>/
    inside the folder, so nothing computed is lost and the new recipe starts from iteration 0.
    """
    out.mkdir(parents=True, exist_ok=True)
    if may_move:
        for stale in out.glob(".*.tmp"):  # a write cut short by a kill; the real file is intact
            stale.unlink(missing_ok=True)
    previous, metrics = _recorded_recipe(out)
    recipe = job.recipe.to_dict()
    if previous is None:
        return None
    if previous == recipe:
        return metrics if metrics is not None and metrics.done else None
    if not may_move:  # under torchrun, process 0 alone sets the older run aside
        return None
    keep = out / f"superseded-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    keep.mkdir()
    for item in out.iterdir():
        if not item.name.startswith("superseded-"):
            shutil.move(str(item), keep / item.name)
    changed = sorted(key for key in set(recipe) | set(previous) if previous.get(key) != recipe.get(key))
    print(f"{out}: recipe changed ({', '.join(changed)}); previous run kept in {keep.name}/", file=sys.stderr)
    return None


def make_task(job: Job, device: torch.device):
    from resnet.engine.tasks import CifarTask, ImageNetTask

    return (CifarTask if job.dataset == "cifar10" else ImageNetTask)(job, device)


def artefacts_of(model: str) -> list[str]:
    """Which paper tables and figures read this cell (MLflow tag): ["table-6", "figure-6", ...]."""
    from resnet import paper

    return [item.key for item in paper.appearances(model)]


# ----------------------------------------------------------------------------- training

def train(job: Job, out: Path, quiet: bool = False, retry_of: str | None = None) -> Metrics | None:
    """Train (or resume, or skip if done) one cell; write its files; return its metrics.

    ``retry_of``: the failure id this run retries (recorded in metrics.json; the workflow's retry
    trigger reads it). Returns None on torchrun processes other than 0.
    """
    out = Path(out)
    done = prepare_run_folder(job, out, may_move=distributed.rank() == 0)
    if done is not None:
        print(f"{job.cell}: already done ({out / 'metrics.json'})", file=sys.stderr)
        return done
    from resnet.engine.distributed import Distributed

    with Distributed() as dist, StopRequest() as stop:
        return _Run(job, out, dist, stop, quiet, retry_of).train()


class _Run:
    """One training process of one cell: the loop and the files it keeps up to date."""

    def __init__(self, job: Job, out: Path, dist, stop: StopRequest, quiet: bool, retry_of: str | None) -> None:
        self.job, self.recipe, self.out, self.dist, self.stop = job, job.recipe, out, dist, stop
        self.quiet, self.retry_of = quiet, retry_of
        self.final: dict[str, Any] | None = None  # the task's final numbers, once measured
        torch.manual_seed(self.recipe.seed)
        if job.engine.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.device = pick_device(job.engine.device) if not dist.enabled else dist.device
        self.task = make_task(job, self.device)
        model = build_model(self.recipe.model, num_classes=self.task.num_classes, bn_group=self.recipe.bn_group)
        self.model = model.to(self.device)
        if job.engine.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.recipe.lr, momentum=self.recipe.momentum,
                                         weight_decay=self.recipe.weight_decay)
        self.checkpoint_path = out / "checkpoint.pt"
        self.state = TrainState(warming_up=getattr(self.recipe, "warmup_lr", None) is not None)
        if self.checkpoint_path.exists():
            saved = Checkpoint.load(self.checkpoint_path)
            self.model.load_state_dict(saved.model)
            self.optimizer.load_state_dict(saved.optimizer)
            torch.set_rng_state(saved.torch_rng)
            self.state = saved.state
            dist.print(f"{job.cell}: resuming at iteration {self.state.iteration} from {self.checkpoint_path}")
        dist.print(_banner(job, self.device, self.model, dist))
        self.step = make_step(dist.wrap(self.model), self.optimizer, job, self.device, single_process=not dist.enabled)
        # mlflow.live false: no MLflow here; the workflow's summary step (or mlflow-sync) logs the run
        self.tracker = _open_tracker(job, self.state) if dist.is_main and job.tracking.live else None
        self.interval = _Interval(_carried_of(self.state.carried, dist), self.device)  # resumed: the stop's sums

    def save(self) -> None:
        state = self.state
        # A half-finished log interval travels in the checkpoint, each process's sums apart.
        state.carried = _snapshot_intervals(self.interval, self.dist)
        if not self.dist.is_main:
            return
        # MLflow first, so the checkpoint's rows_in_mlflow counts the rows logged. Rows logged by a
        # run killed before its next checkpoint are skipped by the resumed Tracker (per metric).
        # Rows the store refused (a warning said why) stay counted as unsent and go with the next save.
        if self.tracker and self.tracker.log_rows(state.rows[state.rows_in_mlflow:]):
            state.rows_in_mlflow = len(state.rows)
        Checkpoint(recipe=self.recipe.to_dict(), model=self.model.state_dict(),
                   optimizer=self.optimizer.state_dict(), torch_rng=torch.get_rng_state(),
                   state=state).save(self.checkpoint_path)
        runfiles.write_curve(self.out / "curve.csv", state.rows)

    def train(self) -> Metrics | None:
        recipe, state = self.recipe, self.state
        start_iteration, started = state.iteration, time.perf_counter()
        while state.iteration < recipe.iterations:
            if self.dist.any(self.stop.signal_name is not None):
                self._interrupted()
            iteration = state.iteration
            lr = learning_rate(recipe, iteration, state.warming_up)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            images, labels = self.task.train_batch(iteration)
            t0 = time.perf_counter()
            loss, wrong = self.step(images, labels)
            if iteration == start_iteration and state.first_step_s is None:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                state.first_step_s = time.perf_counter() - t0  # includes compilation
            self.interval.add(loss, wrong, labels.shape[0])
            state.iteration = iteration = iteration + 1
            evaluate = iteration % recipe.eval_every == 0 or iteration == recipe.iterations
            if iteration % recipe.log_every == 0 or evaluate:
                self._log_row(lr, evaluate, started, start_iteration)
            if iteration % self.job.engine.checkpoint_every == 0 or iteration == recipe.iterations:
                pause = time.perf_counter()
                self.save()
                self.interval.paused += time.perf_counter() - pause
        return self._finish()

    def _log_row(self, lr: float, evaluate: bool, started: float, start_iteration: int) -> None:
        state = self.state
        row = _close_interval(state, self.interval, lr, self.dist, self.task)
        self.interval = _Interval(None, self.device)  # the next interval, from zero
        if not math.isfinite(row["train_loss"]):
            self._diverged(row)
        pause = time.perf_counter()
        if evaluate and self.dist.is_main:  # the other processes wait at their next all-reduce
            if row["iteration"] == self.recipe.iterations and getattr(self.task, "final_is_last_evaluation", False):
                # The final numbers (with their extras, e.g. Figure 7's layer responses) come from
                # this evaluation's passes over the data; the row shows the same errors.
                self.final = self.task.final(self.model)
                row.update({key: value for key, value in self.final.items() if key in row})
            else:
                row.update(self.task.evaluate(self.model))
        state.rows.append(row)
        _warmup_check(self.job, state, row, self.dist)
        if not self.quiet:
            self.dist.print(_progress(self.job, row, state, started, start_iteration))
        self.interval.paused += time.perf_counter() - pause  # evaluation is not training time

    def _interrupted(self) -> None:
        state = self.state
        state.interruptions += 1
        self.save()
        message = (f"{self.job.cell}: stopped by {self.stop.signal_name or 'a signal'} at iteration "
                   f"{state.iteration}/{self.recipe.iterations}; checkpoint written")
        if state.interruptions > self.job.max_resubmits and self.dist.is_main:
            reason = (f"{message}; interrupted {state.interruptions} times, more than resources.max_resubmits="
                      f"{self.job.max_resubmits}: rerun the workflow to resume from the checkpoint")
            state.interruptions = 0  # the checkpoint stays: a later run resumes with a fresh budget
            self.save()
            self._fail(reason, "FAILED")
            raise GaveUp(reason)
        if self.tracker:
            self.tracker.finish("KILLED")
        raise Interrupted(message + ", run the same command to resume")

    def _diverged(self, row: dict[str, Any]) -> None:
        """Stop as failed; the checkpoint on disk is the last one from before the divergence."""
        reason = (f"diverged at iteration {row['iteration']} (loss {row['train_loss']}): lower the learning "
                  f"rate (recipes.{self.recipe.dataset}.lr); the checkpoint from before is kept")
        if self.dist.is_main:
            self.state.rows.append(row)
            runfiles.write_curve(self.out / "curve.csv", self.state.rows)  # the diverged row, as 'nan'
            if self.tracker:
                self.tracker.log_rows(self.state.rows[self.state.rows_in_mlflow:])
            self._fail(reason, "FAILED", iterations=row["iteration"])
        raise Diverged(reason)

    def _fail(self, reason: str, mlflow_status: str, iterations: int | None = None) -> None:
        record_failure(self.job, self.out, reason, iterations=iterations or self.state.iteration,
                       retry_of=self.retry_of)
        if self.tracker:
            self.tracker.set_tags({"failure": reason})
            self.tracker.finish(mlflow_status)

    def _finish(self) -> Metrics | None:
        final = {}
        if self.dist.is_main:  # final() ran with the last row unless this process resumed after it
            final = self.final if self.final is not None else self.task.final(self.model)
        step = self.step
        step_info = {"path": step.path, "setup_s": round(step.setup_seconds, 3), "captures": step.captures,
                     "eager_steps": step.eager_steps}  # of this (the last) process
        metrics = None
        if self.dist.is_main:
            metrics = _metrics(self.job, self.out, self.model, self.task, self.state, final, step_info, self.device,
                               self.tracker, self.retry_of)
        self.dist.barrier()
        return metrics


def record_failure(job: Job, out: Path, reason: str, iterations: int | None = None,
                   retry_of: str | None = None) -> Metrics:
    """metrics.json with status "failed" and the reason: the tables show it, the next run retries it."""
    recipe = job.recipe
    metrics = Metrics(cell=job.cell, model=recipe.model, dataset=recipe.dataset, seed=recipe.seed, scale=job.scale,
                      status=FAILED, recipe=recipe.to_dict(), settings=job.settings(), iterations=iterations,
                      reason=reason, failure_id=uuid.uuid4().hex[:12], retry_of=retry_of)
    metrics.write(out / "metrics.json")
    return metrics


class _Interval:
    """A log interval's running sums in this process: from zero, or a resumed run's from its checkpoint."""

    def __init__(self, carried: IntervalSums | None, device: torch.device) -> None:
        carried = carried or IntervalSums()
        self.loss = torch.tensor(float(carried.loss), dtype=torch.float32, device=device)
        self.wrong = torch.tensor(float(carried.wrong), dtype=torch.float32, device=device)
        self.images = carried.images
        self.seconds_before = carried.seconds
        self.start, self.paused = time.perf_counter(), 0.0

    def add(self, loss: torch.Tensor, wrong: torch.Tensor, images: int) -> None:
        """One step's mean loss and wrong count, kept on the device (no host synchronisation)."""
        self.loss += loss.detach() * images
        self.wrong += wrong
        self.images += images

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start - self.paused

    def sums(self) -> IntervalSums:
        return IntervalSums(loss=float(self.loss), wrong=int(self.wrong), images=self.images, seconds=self.seconds())


def _snapshot_intervals(interval: _Interval, dist) -> list[IntervalSums] | None:
    """Every process's half-finished log interval, in rank order (None on a row boundary).

    The running sums are saved as they are (float32 values, exact as Python floats) and left
    untouched; a resumed run starts its sums from exactly those values (_carried_of). A row's
    loss is then the same float32 additions in the same order, however many stops fell inside its
    interval. Its training seconds so far travel with it: a row whose interval spans a stop divides
    its images by the time actually spent on them (before and after the stop), and wall_time_s
    keeps the seconds trained before the stop. A collective: every process calls it.
    """
    mine = interval.sums()
    everyone = dist.gather([mine.loss, mine.wrong, mine.images, mine.seconds])
    if all(images == 0 for _, _, images, _ in everyone):
        return None
    return [IntervalSums(loss=loss, wrong=int(wrong), images=int(images), seconds=seconds)
            for loss, wrong, images, seconds in everyone]


def _carried_of(carried: list[IntervalSums] | None, dist) -> IntervalSums | None:
    """This process's share of the sums a checkpoint carried.

    The same number of processes: each takes its own, so the row spanning the stop sums the same
    numbers in the same order as an uninterrupted run. Another number of processes (a run resumed
    on other GPUs): process 0 takes the totals, the others start from zero; the row's numbers are
    the same sums, added in another order (float32 rounding may differ in the last digit).
    """
    if not carried:
        return None
    if len(carried) == dist.world_size:
        return carried[dist.rank]
    if dist.rank != 0:
        return None
    return IntervalSums(loss=sum(c.loss for c in carried), wrong=sum(c.wrong for c in carried),
                        images=sum(c.images for c in carried), seconds=max(c.seconds for c in carried))


def _close_interval(state: TrainState, interval: _Interval, lr, dist, task) -> dict[str, Any]:
    """The curve row of a finished log interval, its sums added over the processes."""
    totals = dist.sum([float(interval.loss), int(interval.wrong), interval.images])
    elapsed = interval.seconds()
    state.carried = None
    state.train_seconds += elapsed
    images = totals[2]
    return {
        "iteration": state.iteration,
        "epoch": round(task.epoch_of(state.iteration), 4),
        "lr": lr,
        "train_loss": totals[0] / images,
        "train_error": 100.0 * totals[1] / images,
        "val_error": math.nan,
        "test_error": math.nan,
        "images_per_s": (images / elapsed) if elapsed > 0 else math.nan,
        "wall_time_s": round(state.train_seconds, 3),
    }


def _warmup_check(job, state, row, dist) -> None:
    # Sec. 4.2: "we use 0.01 to warm up the training until the training error is below 80% (about
    # 400 iterations), and then go back to 0.1 and continue training".
    recipe = job.recipe
    if state.warming_up and row["train_error"] < recipe.warmup_until_train_error:
        state.warming_up = False
        state.warmup_ended_at = row["iteration"]
        dist.print(f"{job.cell}: training error {row['train_error']:.1f}% < {recipe.warmup_until_train_error}% "
                   f"at iteration {row['iteration']}: warm-up over, lr back to {recipe.lr:g}")


def _open_tracker(job: Job, state: TrainState):
    """The cell's MLflow run: the one the checkpoint names, else a new one (MLflow trouble: a warning)."""
    from resnet.tracking.run import Tracker, run_description, run_params, run_tags

    model = job.recipe.model
    tags = run_tags(cell=job.cell, model=model, seed=job.recipe.seed, scale=job.scale, dataset=job.dataset,
                    artefacts=artefacts_of(model), git=runfiles.git_commit())
    tracker = Tracker(job.tracking.tracking_uri, job.tracking.experiment, run_name=f"{job.scale}/{job.cell}",
                      run_id=state.mlflow_run_id, tags=tags,
                      params=run_params(job.recipe.to_dict(), job.settings()),
                      description=run_description(model=model, cell=job.cell, scale=job.scale))
    if tracker.started_new:  # also when the store lost the checkpoint's run: the new run gets the whole curve
        state.rows_in_mlflow = 0
    if tracker.run_id is not None:  # unreachable store: keep the old id, a later job continues that run
        state.mlflow_run_id = tracker.run_id
    return tracker


def _metrics(job, out, model, task, state: TrainState, final, step_info, device, tracker, retry_of) -> Metrics:
    rows, recipe = state.rows, job.recipe
    trained_images = recipe.batch_size * recipe.iterations
    metrics = Metrics(
        cell=job.cell, model=recipe.model, dataset=recipe.dataset, seed=recipe.seed, scale=job.scale,
        status=DONE, recipe=recipe.to_dict(), settings=job.settings(), iterations=state.iteration,
        retry_of=retry_of,
        final={"train_error": rows[-1]["train_error"] if rows else None, **final},
        parameters=count_parameters(model),
        multiply_adds=count_multiply_adds(model, task.image_size),
        image_size=task.image_size,
        wall_time_s=round(state.train_seconds, 3),
        images_per_s=round(trained_images / state.train_seconds, 1) if state.train_seconds else None,
        first_step_s=state.first_step_s,
        step=step_info,
        warmup_ended_at=state.warmup_ended_at,
        interruptions=state.interruptions,
        mlflow_run_id=state.mlflow_run_id,
        data=task.data_info,
        provenance=runfiles.provenance(device, recipe.seed),
    )
    metrics.write(out / "metrics.json")
    # The files are written: the cell is done whatever MLflow says from here (trouble is a warning).
    if tracker is None:
        return metrics
    if tracker.log_rows(rows[state.rows_in_mlflow:]):  # rows not yet in this run (a new run: all)
        state.rows_in_mlflow = len(rows)
    data = metrics.data or {}
    tracker.log_dataset(recipe.dataset, data.get("content_hash"), data.get("source", ""))
    tracker.log_result(metrics, out)
    return metrics
