"""An ImageNet cell as several training processes, as a cluster node runs it (resnet.engine.launch).

Two processes with gloo on the CPU stand for a node's GPUs: the same launcher the workflow's train
jobs use (`python -m resnet train --launch`), the same share of every batch and of the evaluation
images per process, the same stop protocol. Each run starts in a session of its own; a stop comes
as a real SIGTERM to the whole process group (launcher, training processes, loader workers), as
SLURM signals every process of a job step, at a chosen point (RESNET_SIGNAL_AT, resnet.engine.stops).
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from resnet.runs.records import load_checkpoint
from tests.support import REPO_ROOT
from tests.support.configs import job_args, job_of
from tests.support.processes import PYTHON, run_cli, subprocess_env
from tests.unit.test_imagenet_input import need_dali

CELL = "resnet-18/seed-0"
# 12 iterations at a global batch of 8 (4 per process): rows at 4, 6, 8 and 12 (evaluations at 6 and
# 12), checkpoints at 3, 6, 9 and 12, so a stop can fall inside a log interval.
IMAGENET = dict(batch_size=8, iterations=12, milestones=[9], log_every=4, eval_every=6)
ENGINE = dict(processes=2, workers=2, checkpoint_every=3, deterministic=True)


def launch(cfg, out, signal_at: str | None = None, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m resnet train --launch` for the job, in a new session (its own process group)."""
    env = subprocess_env(**({"RESNET_SIGNAL_AT": signal_at} if signal_at else {}))
    if not signal_at:
        env.pop("RESNET_SIGNAL_AT", None)
    return subprocess.run([PYTHON, "-m", "resnet", "train", "--launch", *job_args(cfg), "--out", str(out), "--quiet",
                           *extra], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)


def config(make_config, loader: str = "pil", **engine):
    return job_of(make_config(imagenet=IMAGENET, engine={**ENGINE, **engine},
                              scales={"smoke": {"data": {"imagenet_loader": loader}}}), CELL)


NUMBERS = ("iteration", "epoch", "lr", "train_loss", "train_error", "val_error", "test_error")  # not the timings


def rows_of(out) -> list[tuple]:
    """The checkpoint's curve rows, their reproduced numbers as stored (float32 sums exactly), NaN as None."""
    return [tuple(None if row[key] != row[key] else row[key] for key in NUMBERS)
            for row in load_checkpoint(out / "checkpoint.pt")["state"]["rows"]]


@pytest.mark.parametrize("loader", ["pil", "dali"])
def test_stopped_twice_by_the_group_two_processes_resume_to_the_uninterrupted_run(make_config, tmp_path, loader):
    if loader == "dali":
        need_dali()
    cfg = config(make_config, loader)
    reference = launch(cfg, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert reference.stderr.count("listed ImageNet") == 1  # by process 0, for both processes
    out = tmp_path / "stopped"

    # 1. SIGTERM to the group during iteration 1: the processes agree at the next checkpoint (3),
    # inside the row 1-4, and each keeps its own half of the row's sums.
    first = launch(cfg, out, "step:1:TERM:group")
    assert first.returncode == 75, first.stderr[-3000:]
    assert "killed by signal" not in first.stderr and "Traceback" not in first.stderr
    saved = load_checkpoint(out / "checkpoint.pt")["state"]
    assert saved["iteration"] == 3 and saved["interruptions"] == 1
    assert [c["images"] for c in saved["carried"]] == [3 * 4, 3 * 4]  # per process, 4 images a step

    # 2. SIGTERM to the group during the evaluation at 6: the pass ends, the checkpoint is written.
    second = launch(cfg, out, "evaluation:6:TERM:group")
    assert second.returncode == 75, second.stderr[-3000:]
    assert "killed by signal" not in second.stderr
    saved = load_checkpoint(out / "checkpoint.pt")["state"]
    assert saved["iteration"] == 6 and saved["rows"][-1]["iteration"] == 6 and saved["rows"][-1]["val_error"] >= 0

    third = launch(cfg, out)
    assert third.returncode == 0, third.stderr[-3000:]
    # The curve and the final numbers are the uninterrupted run's, bit for bit.
    assert rows_of(out) == rows_of(tmp_path / "reference")
    metrics = json.loads((out / "metrics.json").read_text())
    want = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert metrics["final"] == want["final"] and metrics["interruptions"] == 2
    assert metrics["provenance"]["world_size"] == 2 and metrics["data"]["loader"] == loader
    # One process evaluating the final weights gets the two processes' sharded numbers, image for image.
    again = run_cli("evaluate", str(out), timeout=600)
    assert again.returncode == 0 and "(the recorded number)" in again.stdout, again.stdout + again.stderr[-2000:]


def test_two_processes_train_as_one_process_on_the_same_global_batch_and_bn_groups(make_config, tmp_path):
    """The weights after the steps: process 0's (the checkpoint; every checkpoint also checks that the
    processes' weights agree bit for bit) against one process, here, that trains on both shares of
    each global batch with BN over the same groups (resnet.models.ghost_bn)."""
    from resnet.data.imagenet.folders import resolve_imagenet_root
    from resnet.data.imagenet.pil import imagenet_train_loader
    from resnet.engine.schedule import learning_rate
    from resnet.models.nets import build_model

    cfg = job_of(make_config(imagenet={**IMAGENET, "batch_size": 16, "iterations": 2, "milestones": [1],
                                       "eval_every": 2, "log_every": 2}, engine={**ENGINE, "checkpoint_every": 2}), CELL)
    run = launch(cfg, tmp_path / "two")
    assert run.returncode == 0, run.stderr[-3000:]
    weights = load_checkpoint(tmp_path / "two" / "checkpoint.pt")["model"]

    recipe = cfg.recipe
    root = resolve_imagenet_root(cfg.data_source, cfg.data.cache)
    shares = [imagenet_train_loader(root=root, batch_size=recipe.batch_size, seed=recipe.seed,
                                    short_side=tuple(recipe.train_short_side), crop=recipe.crop, workers=0, rank=rank,
                                    world_size=2) for rank in (0, 1)]
    torch.manual_seed(recipe.seed)
    model = build_model(recipe.model, num_classes=10, bn_group=recipe.batch_size // 2)  # a group per process
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    for iteration in range(recipe.iterations):
        (x0, y0), (x1, y1) = next(shares[0]), next(shares[1])
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, iteration, warming_up=False)
        loss = torch.nn.functional.cross_entropy(model(torch.cat([x0, x1])), torch.cat([y0, y1]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    # Apart by float32 sums in another order, amplified by BN over 8 images (1x1 pixels in the last
    # stage): measured here 2.7e-6 where the weights moved 0.025 from their start. With BN over all
    # 16 images, or without the gradients averaged over the processes, they are as far apart as
    # they moved.
    torch.manual_seed(recipe.seed)
    start = dict(build_model(recipe.model, num_classes=10).named_parameters())
    moved = max(float((parameter.detach() - start[name]).abs().max()) for name, parameter in model.named_parameters())
    apart = max(float((weights[name] - parameter.detach()).abs().max()) for name, parameter in model.named_parameters())
    assert moved > 0.01 and apart < 0.01 * moved, (apart, moved)


def test_a_stop_during_a_checkpoint_write_ends_in_a_checkpoint_and_75(make_config, tmp_path):
    cfg = config(make_config)
    run = launch(cfg, tmp_path / "out", "checkpoint:3:TERM:group")
    assert run.returncode == 75, run.stderr[-3000:]
    saved = load_checkpoint(tmp_path / "out" / "checkpoint.pt")["state"]
    assert saved["iteration"] == 3 and saved["interruptions"] == 1


@pytest.mark.parametrize("processes", [1, 2])
def test_more_stops_than_max_resubmits_fail_the_cell_once_from_every_process(make_config, tmp_path, processes):
    cfg = job_of(make_config(imagenet=IMAGENET, engine={**ENGINE, "processes": processes},
                             resources={"max_resubmits": 1}), CELL)
    out = tmp_path / "out"
    first = launch(cfg, out, "step:1:TERM:group")
    assert first.returncode == 75, first.stderr[-3000:]
    second = launch(cfg, out, "step:4:TERM:group")
    # Two stops, one more than max_resubmits: every process gives up together (exit 1, the
    # launcher's too), process 0 records the failure once; the checkpoint stays for a later run.
    assert second.returncode == 1, second.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "more than resources.max_resubmits=1" in metrics["reason"]
    # (one process stops at the next iteration, several where they next meet: the checkpoint at 6)
    assert load_checkpoint(out / "checkpoint.pt")["state"]["iteration"] == (5 if processes == 1 else 6)
    # The workflow's jobs record failures and end 0 (the tables say why; the next workflow run retries).
    third = launch(cfg, tmp_path / "again", "step:1:TERM:group", "--record-failure")
    assert third.returncode == 75
    fourth = launch(cfg, tmp_path / "again", "step:4:TERM:group", "--record-failure")
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["status"] == "failed"


def test_a_process_that_fails_stops_the_others_and_is_recorded_with_its_line(make_config, tmp_path):
    """Process 1 meets a corrupt image that process 0 never reads: the launcher stops process 0
    (which would wait in its next collective) and records process 1's own line."""
    from resnet.data.imagenet.folders import resolve_imagenet_root
    from resnet.data.imagenet.listing import list_imagenet
    from resnet.data.imagenet.sampler import ResumableSampler

    cfg = config(make_config, workers=0)
    root = resolve_imagenet_root(cfg.data_source, cfg.data.cache)
    broken = tmp_path / "imagenet"
    subprocess.run(["cp", "-r", str(root), str(broken)], check=True)
    samples = list_imagenet(broken).samples("train")
    sampler = ResumableSampler(len(samples), cfg.recipe.batch_size, cfg.recipe.seed, rank=1, world_size=2)
    victim = samples[sampler.sample_at(sampler.position_of(0, 0))[0]][0]
    first_of_rank_0 = {samples[ResumableSampler(len(samples), cfg.recipe.batch_size, cfg.recipe.seed, rank=0,
                                                world_size=2).sample_at(p)[0]][0] for p in range(0, 8, 2)}
    assert victim not in first_of_rank_0
    with open(victim, "wb") as handle:
        handle.write(b"not a JPEG")
    cfg = job_of(make_config(imagenet=IMAGENET, engine={**ENGINE, "workers": 0},
                             scales={"smoke": {"data": {"imagenet": str(broken), "imagenet_partial": True}}}), CELL)
    run = launch(cfg, tmp_path / "out", None, "--record-failure", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert "training process 1 of 2 failed" in metrics["reason"] and os.path.basename(victim) in metrics["reason"]


def test_several_processes_ask_about_a_stop_only_where_they_meet(make_config, tmp_path):
    """No collective at every step: the loop asks the other processes about a stop at the start, and
    after each curve row and checkpoint, where they meet anyway. A process group of one process
    (gloo, in this test's process) stands for several; the loop cannot tell the difference."""
    import torch.distributed as torch_dist

    from resnet.engine.distributed import Distributed
    from resnet.engine.launch import _free_port
    from resnet.engine.loop import _Run
    from resnet.engine.stops import StopRequest
    from resnet.runs.folder import prepare_run_folder

    cfg = job_of(make_config(imagenet={**IMAGENET, "eval_every": 12},
                             engine={**ENGINE, "processes": 1, "workers": 0, "checkpoint_every": 6}), CELL)
    asked = []

    class Counting(Distributed):
        def any(self, flag: bool) -> bool:
            asked.append(flag)
            return super().any(flag)

    dist = Counting()
    dist.enabled = True
    torch_dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        assert prepare_run_folder(cfg, tmp_path / "out") is None  # as train() does, before the loop
        with StopRequest() as stop:
            metrics = _Run(cfg, tmp_path / "out", dist, stop, True, None).train()
    finally:
        torch_dist.destroy_process_group()
    assert metrics.status == "done"
    # rows at 4, 8, 12 and checkpoints at 6, 12: asked at the start and at 4, 6, 8, not at each of 12 steps
    assert asked == [False] * 4


def test_a_store_that_never_answers_holds_up_nothing(make_config, tmp_path):
    """An MLflow server that accepts connections and never answers: training runs to its end and
    writes its files; the MLflow calls wait on their own thread, and the end waits for them a
    bounded time (RESNET_MLFLOW_WAIT_S, here 2 s) with one warning."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    uri = f"http://127.0.0.1:{server.getsockname()[1]}"
    cfg = job_of(make_config(imagenet=IMAGENET, engine={**ENGINE, "processes": 1, "workers": 0},
                             mlflow={"tracking_uri": uri, "experiment": "never", "live": True}), CELL)
    try:
        run = subprocess.run([PYTHON, "-m", "resnet", "train", *job_args(cfg), "--out", str(tmp_path / "out"),
                              "--quiet"], cwd=REPO_ROOT, env=subprocess_env(RESNET_MLFLOW_WAIT_S="2"),
                             capture_output=True, text=True, timeout=300)
    finally:
        server.close()
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["status"] == "done"
    assert "calls still pending after 2 s" in run.stderr
