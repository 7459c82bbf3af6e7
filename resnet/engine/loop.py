"""Train one cell: iteration-based schedule, periodic evaluation, checkpoints, resume.

    job = resolve_cell(load_config("config.yaml"), "cifar-resnet-56/seed-0")
    metrics = train(job, Path("results/runs/smoke/cifar-resnet-56/seed-0"))

Running the same call again after an interruption resumes from the last checkpoint: model,
optimiser, learning-rate schedule (including the warm-up state), data position, the curve so far
and the MLflow run. Training stops cleanly on SIGTERM / SIGUSR1 / SIGINT (how SLURM warns before
a time limit or preempts): it finishes the current iteration (one process) or log interval
(several processes, which agree on stopping where they meet anyway), also when the signal came
during an evaluation or a checkpoint write, then writes a checkpoint and raises Interrupted. A
non-finite training loss stops the cell as failed (Diverged); the last checkpoint, written before
the divergence, is kept.
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from resnet.config.job import Job
from resnet.engine import distributed
from resnet.engine.device import pick_device
from resnet.engine.interval import Interval, carried_of, close_interval, snapshot_intervals
from resnet.engine.mirror import Mirror
from resnet.engine.outcome import record_failure, write_metrics
from resnet.engine.schedule import learning_rate, warmup_check
from resnet.engine.step import make_step
from resnet.engine.stops import Diverged, GaveUp, Interrupted, StopRequest, signal_point
from resnet.engine.tasks import make_task
from resnet.models.nets import build_model
from resnet.runs import files as runfiles
from resnet.runs.folder import check_room, prepare_run_folder
from resnet.runs.lock import hold_run_folder
from resnet.runs.progress import banner, progress
from resnet.runs.records import CHECKPOINT_FIX, Checkpoint, CheckpointError, Metrics, TrainState

def train(job: Job, out: Path, quiet: bool = False, retry_of: str | None = None,
          wait_s: float = 0.0) -> Metrics | None:
    """Train (or resume, or skip if done) one cell; write its files; return its metrics.

    ``retry_of``: the workflow's rerun token of the record this run replaces (resnet.runs.folder
    .rerun_token; recorded in metrics.json). Returns None on training processes other than 0.
    Process 0 holds the run folder's lock throughout (RunFolderBusy if another trainer holds it
    for longer than ``wait_s``) and alone prepares the folder; the others start after it has.
    """
    out = Path(out)
    main = distributed.rank() == 0
    with hold_run_folder(out, wait_s=wait_s) if main else nullcontext():
        done = prepare_run_folder(job, out) if main else None
        from resnet.engine.distributed import Distributed

        with Distributed() as dist, StopRequest() as stop:
            if dist.any(done is not None):  # process 0 found the cell done; every process stops
                if done is not None:
                    print(f"{job.cell}: already done ({out / 'metrics.json'})", file=sys.stderr)
                return done
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
        self.task = make_task(job, self.device, dist)
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
            if saved.recipe != self.recipe.to_dict():  # process 0 set any other recipe's files aside
                raise CheckpointError(f"checkpoint '{self.checkpoint_path}' is of another recipe or cell: "
                                      f"{CHECKPOINT_FIX}")
            self.model.load_state_dict(saved.model)
            self.optimizer.load_state_dict(saved.optimizer)
            torch.set_rng_state(saved.torch_rng)
            self.state = saved.state
            dist.print(f"{job.cell}: resuming at iteration {self.state.iteration} from {self.checkpoint_path}")
        if dist.is_main:  # a checkpoint that cannot be written is refused now, not after its iterations
            check_room(out, _checkpoint_bytes(self.model, self.checkpoint_path))
        dist.print(banner(job, self.device, self.model, dist))
        self.step = make_step(dist.wrap(self.model), self.optimizer, job, self.device, single_process=not dist.enabled)
        # mlflow.live false: no MLflow here; the workflow's summary step (or mlflow-sync) logs the run
        self.mirror = Mirror(job, self.state) if dist.is_main and job.mlflow.live else None
        self.interval = Interval(carried_of(self.state.carried, dist), self.device)  # resumed: the stop's sums

    def save(self) -> None:
        state = self.state
        signal_point("checkpoint", state.iteration, self.dist.rank)
        # A half-finished log interval travels in the checkpoint, each process's sums apart.
        state.carried = snapshot_intervals(self.interval, self.dist)
        self._check_replicas()
        if not self.dist.is_main:
            return
        # The rows not yet in MLflow go to the mirror's thread; the checkpoint counts those the run
        # holds so far (a resumed Tracker skips what its earlier attempts logged, per metric), and
        # names the run (the first checkpoint waits for it to open).
        if self.mirror:
            self.mirror.opened()
            self.mirror.log_rows()
        Checkpoint(recipe=self.recipe.to_dict(), model=self.model.state_dict(),
                   optimizer=self.optimizer.state_dict(), torch_rng=torch.get_rng_state(),
                   state=state).save(self.checkpoint_path)
        runfiles.write_curve(self.out / "curve.csv", state.rows)

    def _check_replicas(self) -> None:
        """Several processes hold the same weights (their gradients are averaged before every
        update), bit for bit: checked at each checkpoint, since only process 0's weights are saved."""
        if not self.dist.enabled:
            return
        with torch.no_grad():
            params = [p.detach().double() for p in self.model.parameters()]
            mine = [float(sum(p.sum() for p in params)), float(sum(p.square().sum() for p in params))]
        everyone = self.dist.gather(mine)
        if any(other != everyone[0] for other in everyone):
            raise RuntimeError(f"the {self.dist.world_size} training processes hold different weights at iteration "
                               f"{self.state.iteration} (sum, sum of squares per process: {everyone}): their "
                               f"updates were not the same")

    def stop_requested(self, met: bool) -> bool:
        """Whether to stop now. One process: a signal reached it. Several: one reached any of them,
        asked only where they have just met (``met``: a curve row, a checkpoint, the start), so
        that no step waits for a collective and all processes stop at the same iteration."""
        if not self.dist.enabled:
            return self.stop.signal_name is not None
        return met and self.dist.any(self.stop.signal_name is not None)

    def train(self) -> Metrics | None:
        recipe, state = self.recipe, self.state
        start_iteration, started = state.iteration, time.perf_counter()
        met = True
        while state.iteration < recipe.iterations:
            if self.stop_requested(met):
                self._interrupted()
            iteration = state.iteration
            signal_point("step", iteration, self.dist.rank)
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
            met = iteration % recipe.log_every == 0 or evaluate
            if met:
                self._log_row(lr, evaluate, started, start_iteration)
            if iteration % self.job.engine.checkpoint_every == 0 or iteration == recipe.iterations:
                pause = time.perf_counter()
                self.save()
                self.interval.paused += time.perf_counter() - pause
                met = True
        return self._finish()

    def _log_row(self, lr: float, evaluate: bool, started: float, start_iteration: int) -> None:
        state = self.state
        row = close_interval(state, self.interval, lr, self.dist, self.task)
        self.interval = Interval(None, self.device)  # the next interval, from zero
        if not math.isfinite(row["train_loss"]):
            self._diverged(row)
        pause = time.perf_counter()
        if evaluate:  # every process evaluates its share of the images (resnet.engine.tasks)
            signal_point("evaluation", row["iteration"], self.dist.rank)
            self.dist.share_buffers(self.model)
            if row["iteration"] == self.recipe.iterations and getattr(self.task, "final_is_last_evaluation", False):
                # The final numbers (with their extras, e.g. Figure 7's layer responses) come from
                # this evaluation's passes over the data; the row shows the same errors.
                self.final = self.task.final(self.model)
                row.update({key: value for key, value in self.final.items() if key in row})
            else:
                row.update(self.task.evaluate(self.model))
        state.rows.append(row)
        warmup_check(self.job, state, row, self.dist)
        if not self.quiet:
            self.dist.print(progress(self.job, row, state, started, start_iteration))
        self.interval.paused += time.perf_counter() - pause  # evaluation is not training time

    def _interrupted(self) -> None:
        """Every process: a checkpoint, then Interrupted, or GaveUp (all at once: the state they
        share counts the interruptions) once there were more than resources.max_resubmits."""
        state = self.state
        state.interruptions += 1
        self.save()
        message = (f"{self.job.cell}: stopped by {self.stop.signal_name or 'a signal'} at iteration "
                   f"{state.iteration}/{self.recipe.iterations}; checkpoint written")
        if state.interruptions > self.job.max_resubmits:
            reason = (f"{message}; interrupted {state.interruptions} times, more than resources.max_resubmits="
                      f"{self.job.max_resubmits}: rerun the workflow to resume from the checkpoint")
            state.interruptions = 0  # the checkpoint stays: a later run resumes with a fresh budget
            self.save()
            self._fail(reason)
            raise GaveUp(reason)
        if self.mirror:
            self.mirror.finish("KILLED")
            self.mirror.close()
        raise Interrupted(message + ", run the same command to resume")

    def _diverged(self, row: dict[str, Any]) -> None:
        """Stop as failed; the checkpoint on disk is the last one from before the divergence."""
        reason = (f"diverged at iteration {row['iteration']} (loss {row['train_loss']}): lower the learning "
                  f"rate (recipes.{self.recipe.dataset}.lr); the checkpoint from before is kept")
        if self.dist.is_main:
            self.state.rows.append(row)
            runfiles.write_curve(self.out / "curve.csv", self.state.rows)  # the diverged row, as 'nan'
        self._fail(reason, iterations=row["iteration"])
        raise Diverged(reason)

    def _fail(self, reason: str, iterations: int | None = None) -> None:
        """Process 0 records the failure in metrics.json (and MLflow); the others only stop."""
        if not self.dist.is_main:
            return
        record_failure(self.job, self.out, reason, iterations=iterations or self.state.iteration,
                       retry_of=self.retry_of)
        if self.mirror:
            self.mirror.log_rows()
            self.mirror.finish("FAILED", reason)
            self.mirror.close()

    def _finish(self) -> Metrics | None:
        # final() ran with the last row unless this process resumed after it; every process takes part
        if self.final is None:
            self.dist.share_buffers(self.model)
            self.final = self.task.final(self.model)
        final = self.final
        step = self.step
        step_info = {"mode": step.mode, "setup_s": round(step.setup_seconds, 3), "captures": step.captures,
                     "eager_steps": step.eager_steps}  # of this (the last) process
        self.dist.barrier()  # the last collective: from here on process 0 works alone
        if not self.dist.is_main:
            return None
        if self.mirror:
            self.mirror.flush()  # the run id, for metrics.json
        metrics = write_metrics(self.job, self.out, self.model, self.task, self.state, final, step_info, self.device,
                                self.retry_of)
        if self.mirror:  # the files are written: the cell is done whatever MLflow says from here
            self.mirror.result(metrics, self.out)
            self.mirror.close()
        return metrics


def _checkpoint_bytes(model: torch.nn.Module, existing: Path) -> int:
    """About the size of this cell's checkpoint: the last one's, else weights, buffers and SGD momentum."""
    if existing.exists():
        return existing.stat().st_size
    tensors = list(model.parameters()) * 2 + list(model.buffers())
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)
