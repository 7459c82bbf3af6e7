"""Training one cell (resnet.train): run files, MLflow mirror, resume, warm-up, DDP, real learning.

Everything runs on the CPU on the real JPEG CIFAR-10 (decoded once per session into a temporary
cache, see conftest.py) and on the generated synthetic ImageNet-layout set. Runs are tiny (a few
iterations of batch 16) except the learning test, which is marked slow.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from resnet.config.job import Job
from resnet.runs.files import CURVE_COLUMNS
from resnet.runs.records import load_checkpoint
from tests.support.mlflow_store import metric_history, runs_of
from resnet.engine.loop import train
from resnet.engine.schedule import learning_rate
from resnet.engine.stops import StopRequest
from tests.support import REPO_ROOT
from tests.support.configs import config_builder, job_args, job_of
from tests.support.processes import PYTHON, TEST_THREADS, subprocess_env

pytestmark = pytest.mark.usefixtures("torch_threads")

# The curve columns that must not depend on the machine's speed (images_per_s and wall_time_s do).
EXACT_COLUMNS = ["iteration", "epoch", "lr", "train_loss", "train_error", "val_error", "test_error"]


def read_curve(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == CURVE_COLUMNS
        return [{key: (float(value) if value != "" else math.nan) for key, value in row.items()} for row in reader]


def same(a: float, b: float, tol: float = 1e-6) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def assert_curves_equal(got: list[dict], want: list[dict]) -> None:
    assert [row["iteration"] for row in got] == [row["iteration"] for row in want]
    for mine, theirs in zip(got, want):
        for key in EXACT_COLUMNS:
            assert same(mine[key], theirs[key]), (key, mine, theirs)


def the_run(cfg: Job) -> dict:
    runs = [run for run in runs_of(cfg.mlflow.tracking_uri, cfg.mlflow.experiment) if run["tags"].get("cell") == cfg.cell]
    assert len(runs) == 1, f"expected one MLflow run for {cfg.cell}, found {len(runs)}"
    return runs[0]


def no_temporary_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp-" in p.name]


# ---------------------------------------------------------------------------------------------
# 1. Smoke runs write the run files and exactly one MLflow run
# ---------------------------------------------------------------------------------------------


def test_cifar_smoke_run_writes_curve_metrics_and_one_mlflow_run(make_config, tmp_path):
    # checkpoints every 4 iterations of 6: the periodic one at 4, and the final one at the end
    cfg = job_of(make_config(engine=dict(checkpoint_every=4)), "cifar-resnet-20/seed-0")
    assert (cfg.recipe.iterations, cfg.recipe.log_every, cfg.recipe.eval_every) == (6, 2, 3)
    out = tmp_path / "run"
    metrics = dataclasses.asdict(train(cfg, out, quiet=True))

    # curve.csv: a row at every log interval and at every evaluation; evaluations filled only there.
    curve = read_curve(out / "curve.csv")
    assert [row["iteration"] for row in curve] == [2, 3, 4, 6]
    for row in curve:
        evaluated = row["iteration"] % cfg.recipe.eval_every == 0 or row["iteration"] == cfg.recipe.iterations
        assert (not math.isnan(row["val_error"])) == evaluated
        assert (not math.isnan(row["test_error"])) == evaluated
        assert 0.0 <= row["train_error"] <= 100.0 and row["train_loss"] > 0
        assert row["lr"] == pytest.approx(learning_rate(cfg.recipe, int(row["iteration"]) - 1, False))
        assert row["images_per_s"] > 0
    assert curve[0]["lr"] == pytest.approx(0.1 * 16 / 128)  # linear scaling from the recipe's batch 128
    assert curve[-1]["lr"] == pytest.approx(0.1 * 16 / 128 * 0.1)  # after the milestone at 4
    assert curve[-1]["epoch"] == pytest.approx(6 * 16 / 512, abs=1e-4)

    # metrics.json
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["status"] == "done" and saved["iterations"] == 6 and saved["cell"] == "cifar-resnet-20/seed-0"
    assert saved["parameters"] == 269_722  # the paper's 0.27M, exact option-A count
    assert saved["multiply_adds"] > 0
    # the step that ran: eager on the CPU (CUDA graphs are CUDA only), 6 eager steps, no capture
    assert saved["step"] == {"mode": "eager", "setup_s": 0.0, "captures": 0, "eager_steps": 6}
    final = saved["final"]
    assert final["test_error"] == pytest.approx(curve[-1]["test_error"], abs=1e-4)
    assert final["val_error"] == pytest.approx(curve[-1]["val_error"], abs=1e-4)
    assert final["train_error"] == pytest.approx(curve[-1]["train_error"], abs=1e-4)
    stds = final["layer_response_std"]
    assert len(stds) == 19 and all(s > 0 and math.isfinite(s) for s in stds)  # 19 3x3 layers in ResNet-20
    provenance = saved["provenance"]
    from resnet.runs.provenance import git_commit

    assert provenance["git"]["commit"] == git_commit()["commit"] and "dirty" in provenance["git"]
    assert provenance["versions"]["torch"] == torch.__version__
    assert provenance["device"].startswith("cpu") and provenance["seed"] == 0
    assert saved["recipe"] == cfg.recipe.to_dict()
    assert saved["warmup_ended_at"] is None and saved["interruptions"] == 0
    assert load_checkpoint(out / "checkpoint.pt")["state"]["iteration"] == 6  # the final checkpoint
    assert no_temporary_files(out) == []

    # MLflow: exactly one run, with the cell's tags, the config as params, the curve as metrics.
    run = the_run(cfg)
    assert run["run_id"] == saved["mlflow_run_id"] and run["status"] == "FINISHED"
    assert run["tags"]["seed"] == "0" and run["tags"]["mlflow.source.git.commit"] == provenance["git"]["commit"]
    assert run["params"]["model"] == "cifar-resnet-20"
    assert float(run["params"]["lr"]) == pytest.approx(cfg.recipe.lr)
    assert json.loads(run["params"]["milestones"]) == list(cfg.recipe.milestones)
    assert run["params"]["batch_size"] == "16" and run["params"]["iterations"] == "6"
    history = metric_history(cfg.mlflow.tracking_uri, run["run_id"], "train_error")
    assert [step for step, _ in history] == [row["iteration"] for row in curve]
    assert [value for _, value in history] == pytest.approx([row["train_error"] for row in curve], abs=1e-4)
    assert [step for step, _ in metric_history(cfg.mlflow.tracking_uri, run["run_id"], "test_error")] == [3, 6]
    assert run["metrics"]["final/test_error"] == pytest.approx(final["test_error"])
    from mlflow.tracking import MlflowClient

    artifacts = {item.path for item in MlflowClient(tracking_uri=cfg.mlflow.tracking_uri).list_artifacts(run["run_id"])}
    assert {"metrics.json", "curve.csv"} <= artifacts


def test_cifar_final_numbers_are_the_last_evaluation_in_one_pass(make_config, tmp_path, monkeypatch):
    # Evaluations at iterations 3 and 6: one pass over the test set and one over the validation set
    # each. The final numbers (metrics.json) and Figure 7's layer responses come from the second
    # pass; no further pass after the loop.
    from resnet.data.cifar import stream as cifar
    from resnet.models.measure import layer_response_std
    from resnet.models.nets import build_model
    from resnet.engine.distributed import Distributed
    from resnet.engine.tasks import CifarTask

    passes = []
    batches = cifar.CifarEvalSet.batches

    def counted(self, *args, **kwargs):
        passes.append(len(self.labels))
        return batches(self, *args, **kwargs)

    monkeypatch.setattr(cifar.CifarEvalSet, "batches", counted)
    cfg = job_of(make_config(), "cifar-resnet-20/seed-0")
    assert cfg.recipe.val_size > 0 and (cfg.recipe.iterations, cfg.recipe.eval_every) == (6, 3)
    metrics = train(cfg, tmp_path / "run", quiet=True)
    assert len(passes) == 4  # (test, validation) at iterations 3 and 6
    curve = read_curve(tmp_path / "run" / "curve.csv")
    assert metrics.final["test_error"] == curve[-1]["test_error"]
    assert metrics.final["val_error"] == curve[-1]["val_error"]
    # The responses recorded during the test pass equal Figure 7's measurement in a pass of its own.
    monkeypatch.setattr(cifar.CifarEvalSet, "batches", batches)
    model = build_model(cfg.recipe.model, num_classes=10, bn_group=cfg.recipe.bn_group)
    model.load_state_dict(load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"])
    if cfg.engine.channels_last:  # as trained and evaluated
        model = model.to(memory_format=torch.channels_last)
    task = CifarTask(cfg, torch.device("cpu"), Distributed())  # one process
    alone = layer_response_std(model, (x for x, _ in task.test.batches(500)))
    assert metrics.final["layer_response_std"] == pytest.approx(alone, rel=1e-6)


def test_imagenet_smoke_run_has_ten_crop_numbers(make_config, tmp_path):
    cfg = job_of(make_config(), "resnet-18/seed-0")
    assert cfg.dataset == "imagenet" and cfg.data_source == "synthetic" and cfg.engine.workers == 0
    out = tmp_path / "run"
    metrics = dataclasses.asdict(train(cfg, out, quiet=True))
    curve = read_curve(out / "curve.csv")
    assert [row["iteration"] for row in curve] == [2, 4]
    assert all(not math.isnan(row["val_error"]) for row in curve)  # centre-crop validation (Figure 4)
    assert all(math.isnan(row["test_error"]) for row in curve)  # ImageNet has no test column
    final = metrics["final"]
    assert metrics["status"] == "done" and metrics["parameters"] > 1_000_000 and metrics["multiply_adds"] > 0
    assert final["test_short_side"] == 36
    # The 10-crop errors are the final checkpoint's, scored here apart: each validation image's
    # softmax averaged over its 10 views (TenCrop at shorter side 36), top-1 and top-5 of 10 classes.
    assert (final["top1_10crop"], final["top5_10crop"]) == pytest.approx(ten_crop_errors(cfg, out), abs=1e-9)
    assert final["val_error"] == pytest.approx(curve[-1]["val_error"], abs=1e-4)
    run = the_run(cfg)
    assert run["status"] == "FINISHED" and run["tags"]["dataset"] == "imagenet"
    assert [s for s, _ in metric_history(cfg.mlflow.tracking_uri, run["run_id"], "train_error")] == [2, 4]


def ten_crop_errors(cfg: Job, out: Path) -> tuple[float, float]:
    """(top-1, top-5) error in % of the run's final checkpoint with 10-crop testing, one image at a time."""
    from resnet.data.imagenet.crops import finish_batch
    from resnet.data.imagenet.evaluation import ImageNetEvalSet
    from resnet.data.imagenet.folders import resolve_imagenet_root
    from resnet.models.nets import build_model

    saved = load_checkpoint(out / "checkpoint.pt")
    assert saved["state"]["iteration"] == cfg.recipe.iterations
    views = ImageNetEvalSet(resolve_imagenet_root(cfg.data_source, cfg.data.cache), cfg.recipe.test_short_side,
                            cfg.recipe.crop, ten_crop=True)
    model = build_model(cfg.recipe.model, num_classes=len(views.classes), bn_group=cfg.recipe.bn_group)
    model.load_state_dict(saved["model"])
    model.eval()
    top1 = top5 = 0
    with torch.no_grad():
        for index in range(len(views)):
            crops, label = views[index]
            scores = model(finish_batch(crops, None)).softmax(1).mean(0)
            ranked = sorted(range(len(scores)), key=lambda k: -float(scores[k]))
            top1 += ranked[0] != label
            top5 += label not in ranked[:5]
    return 100.0 * top1 / len(views), 100.0 * top5 / len(views)


# ---------------------------------------------------------------------------------------------
# 2. Interrupted and resumed equals uninterrupted
# ---------------------------------------------------------------------------------------------

RESUME_RECIPE = dict(batch_size=16, iterations=12, milestones=[8], log_every=2, eval_every=6)
RESUME_ENGINE = dict(checkpoint_every=4)


@pytest.fixture(scope="module")
def resume_setup(tmp_path_factory, cifar_cache_dir, mlflow_template_db):
    """The uninterrupted reference run (folder A) and the config the interrupted runs use."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(TEST_THREADS)  # the subprocesses use the same count (bitwise comparison)
    try:
        base = tmp_path_factory.mktemp("resume")
        build = config_builder(base, cifar_cache_dir, mlflow_template_db)
        cfg = job_of(build(cifar10=RESUME_RECIPE, engine=RESUME_ENGINE), "cifar-resnet-20/seed-0")
        assert cfg.engine.deterministic and cfg.engine.device == "cpu"
        reference = dataclasses.replace(cfg, mlflow=dataclasses.replace(cfg.mlflow, experiment="reference"))
        metrics = dataclasses.asdict(train(reference, base / "A", quiet=True))
    finally:
        torch.set_num_threads(previous)
    return cfg, base / "A", metrics


def start_training(cfg: Job, out: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "resnet", "train", *job_args(cfg), "--out", str(out)],
        cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)


def finish_training(cfg: Job, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "resnet", "train", *job_args(cfg), "--out", str(out), "--quiet"],
        cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)


def assert_resumed_equals_reference(cfg: Job, out: Path, reference: Path, reference_metrics: dict,
                                    interruptions: int, clean: bool = True) -> None:
    curve, want = read_curve(out / "curve.csv"), read_curve(reference / "curve.csv")
    iterations = [int(row["iteration"]) for row in curve]
    assert iterations == [2, 4, 6, 8, 10, 12]  # no duplicate, no missing row
    assert_curves_equal(curve, want)
    # bit for bit, not only to curve.csv's 6 digits: a row whose interval spans the stop sums the
    # same float32 losses in the same order as the uninterrupted run
    rows = load_checkpoint(out / "checkpoint.pt")["state"]["rows"]
    want_rows = load_checkpoint(reference / "checkpoint.pt")["state"]["rows"]
    for key in ("train_loss", "train_error"):
        assert [row[key] for row in rows] == [row[key] for row in want_rows], key
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["interruptions"] == interruptions
    for key in ("train_error", "val_error", "test_error"):
        assert metrics["final"][key] == pytest.approx(reference_metrics["final"][key], abs=1e-6), key
    assert metrics["final"]["layer_response_std"] == pytest.approx(reference_metrics["final"]["layer_response_std"],
                                                                   rel=1e-5)
    # One MLflow run for the cell, continued across the interruption, its history without repeats.
    run = the_run(cfg)
    assert run["run_id"] == metrics["mlflow_run_id"] == load_checkpoint(out / "checkpoint.pt")["state"]["mlflow_run_id"]
    assert run["status"] == "FINISHED"
    history = metric_history(cfg.mlflow.tracking_uri, run["run_id"], "train_error")
    assert [step for step, _ in history] == iterations
    if clean:  # (a SIGKILL may leave a temporary file of an interrupted write: never a torn file)
        assert no_temporary_files(out) == []


def test_interrupted_mid_interval_by_sigusr1_resumes_identically(resume_setup, tmp_path):
    cfg, reference, reference_metrics = resume_setup
    # A real SIGUSR1 arrives while iteration 5 is about to run (the trainer sends it to itself there,
    # RESNET_SIGNAL_AT, resnet.engine.stops), inside the log interval 4-6 and between checkpoints:
    # the trainer finishes the iteration, checkpoints at 5 and exits 75.
    cfg = dataclasses.replace(cfg, mlflow=dataclasses.replace(cfg.mlflow, experiment="sigusr1"))
    out = tmp_path / "B"
    code = subprocess.run([PYTHON, "-m", "resnet", "train", *job_args(cfg), "--out", str(out)], cwd=REPO_ROOT,
                          env=subprocess_env(RESNET_SIGNAL_AT="step:4:USR1"), capture_output=True, text=True,
                          timeout=300)
    stderr = code.stderr
    assert code.returncode == 75, stderr
    assert "SIGUSR1" in stderr and "resume" in stderr
    assert not (out / "metrics.json").exists()
    saved = load_checkpoint(out / "checkpoint.pt")
    stopped = saved["state"]["iteration"]
    assert stopped == 5 and stopped % cfg.recipe.log_every != 0 and stopped % cfg.engine.checkpoint_every != 0
    assert saved["state"]["carried"][0]["images"] == (stopped % cfg.recipe.log_every) * cfg.recipe.batch_size
    assert saved["state"]["interruptions"] == 1
    assert no_temporary_files(out) == []
    partial = read_curve(out / "curve.csv")
    assert [row["iteration"] for row in partial] == list(range(2, stopped + 1, 2))
    assert the_run(cfg)["status"] == "KILLED"

    result = finish_training(cfg, out)
    assert result.returncode == 0, result.stderr
    assert f"resuming at iteration {stopped}" in result.stdout
    assert_resumed_equals_reference(cfg, out, reference, reference_metrics, interruptions=1)


def test_killed_after_first_checkpoint_resumes_identically(resume_setup, tmp_path):
    cfg, reference, reference_metrics = resume_setup
    cfg = dataclasses.replace(cfg, mlflow=dataclasses.replace(cfg.mlflow, experiment="sigkill"))
    out = tmp_path / "C"
    process = subprocess.Popen(
        [PYTHON, "-m", "resnet", "train", *job_args(cfg), "--out", str(out), "--quiet"],
        cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not (out / "checkpoint.pt").exists():
            assert process.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    assert not (out / "metrics.json").exists()
    at = load_checkpoint(out / "checkpoint.pt")["state"]["iteration"]
    assert at % cfg.engine.checkpoint_every == 0 and 0 < at < cfg.recipe.iterations
    result = finish_training(cfg, out)
    assert result.returncode == 0, result.stderr
    assert_resumed_equals_reference(cfg, out, reference, reference_metrics, interruptions=0, clean=False)


def test_stop_request_turns_signals_into_a_flag_and_restores_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    with StopRequest() as stop:
        assert stop.signal_name is None
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        assert stop.signal_name == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) is before


# ---------------------------------------------------------------------------------------------
# 3. Warm-up (Sec. 4.2: ResNet-110 at lr 0.01 until training error < 80%, then back to 0.1)
# ---------------------------------------------------------------------------------------------


def test_learning_rate_schedule_with_warmup(make_config):
    config = make_config(cifar10=dict(batch_size=128, iterations=100, milestones=[50, 75]))
    deep, shallow = job_of(config, "cifar-resnet-110/seed-0"), job_of(config, "cifar-resnet-56/seed-0")
    assert deep.recipe.warmup_lr == pytest.approx(0.01) and deep.recipe.warmup_until_train_error == 80.0
    assert shallow.recipe.warmup_lr is None
    assert learning_rate(deep.recipe, 0, warming_up=True) == pytest.approx(0.01)
    assert learning_rate(deep.recipe, 60, warming_up=True) == pytest.approx(0.01)  # warm-up outranks milestones
    assert learning_rate(deep.recipe, 0, warming_up=False) == pytest.approx(0.1)  # back to 0.1, not 0.01
    assert learning_rate(deep.recipe, 49, warming_up=False) == pytest.approx(0.1)
    assert learning_rate(deep.recipe, 50, warming_up=False) == pytest.approx(0.01)
    assert learning_rate(deep.recipe, 75, warming_up=False) == pytest.approx(0.001)
    assert learning_rate(shallow.recipe, 0, warming_up=True) == pytest.approx(0.1)  # no warm-up configured


@pytest.mark.parametrize("threshold, ends", [(100.0, True), (1e-9, False)], ids=["threshold-met", "never-met"])
def test_warmup_in_a_real_run(make_config, tmp_path, threshold, ends):
    # ResNet-20 warms up because min_depth is lowered to 20. Threshold 100%: the first interval ends
    # the warm-up unless all of its 64 images were wrong. Threshold 1e-9%: only a perfect interval
    # would end it, which an untrained net does not have. No milestones: the lr stays put otherwise.
    warmup = dict(min_depth=20, lr=0.01, until_train_error=threshold)
    cfg = job_of(make_config(cifar10=dict(warmup=warmup, log_every=4, iterations=8, eval_every=8,
                                          milestones=[]), engine=dict(checkpoint_every=8)), "cifar-resnet-20/seed-0")
    base, warm = 0.1 * 16 / 128, 0.01 * 16 / 128
    assert cfg.recipe.warmup_lr == pytest.approx(warm)
    metrics = dataclasses.asdict(train(cfg, tmp_path / "run", quiet=True))
    curve = read_curve(tmp_path / "run" / "curve.csv")
    assert [row["iteration"] for row in curve] == [4, 8]
    assert curve[0]["lr"] == pytest.approx(warm)
    if ends:
        assert curve[0]["train_error"] < threshold
        assert metrics["warmup_ended_at"] == 4
        assert curve[1]["lr"] == pytest.approx(base)
    else:
        assert metrics["warmup_ended_at"] is None
        assert curve[1]["lr"] == pytest.approx(warm)


# ---------------------------------------------------------------------------------------------
# 4. Two processes (the launcher, gloo on the CPU) train one cell with the global batch preserved
# ---------------------------------------------------------------------------------------------


def test_ddp_two_processes_on_cpu(make_config, tmp_path):
    cfg = job_of(make_config(imagenet=dict(batch_size=8, iterations=4, log_every=1, eval_every=4, milestones=[3]),
                             engine=dict(checkpoint_every=4, processes=2)), "resnet-18/seed-0")
    out = tmp_path / "ddp"
    result = subprocess.run(  # the workflow's launch path: two processes, gloo on the CPU
        [PYTHON, "-m", "resnet", "train", "--launch", *job_args(cfg), "--out", str(out), "--quiet"],
        cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["provenance"]["world_size"] == 2
    assert metrics["recipe"]["batch_size"] == 8  # the global batch
    assert metrics["final"]["top1_10crop"] >= metrics["final"]["top5_10crop"]
    curve = read_curve(out / "curve.csv")
    assert [row["iteration"] for row in curve] == [1, 2, 3, 4]
    run = the_run(cfg)
    assert run["status"] == "FINISHED" and run["run_id"] == metrics["mlflow_run_id"]
    assert [s for s, _ in metric_history(cfg.mlflow.tracking_uri, run["run_id"], "train_error")] == [1, 2, 3, 4]

    # The global batch of 8 is preserved: iteration 1 (the first row) is the initial model on the
    # same 8 images as a single process would take, split 4 + 4 over the ranks. In training mode BN
    # normalises each rank's 4 images by their own statistics, so the row is the mean of the two
    # halves' losses (and the errors summed over all 8 images), computed here independently.
    from resnet.data.imagenet.folders import resolve_imagenet_root
    from resnet.data.imagenet.pil import imagenet_train_loader
    from resnet.models.nets import build_model

    root = resolve_imagenet_root(cfg.data_source, cfg.data.cache)
    args = dict(root=root, batch_size=8, seed=cfg.recipe.seed, short_side=tuple(cfg.recipe.train_short_side), crop=cfg.recipe.crop,
                workers=0)
    _, whole_labels = next(imagenet_train_loader(**args))
    halves = [next(imagenet_train_loader(rank=rank, world_size=2, **args)) for rank in (0, 1)]
    assert [len(labels) for _, labels in halves] == [4, 4]
    assert sorted(torch.cat([labels for _, labels in halves]).tolist()) == sorted(whole_labels.tolist())
    torch.manual_seed(cfg.recipe.seed)
    model = build_model(cfg.recipe.model, num_classes=10).train()
    losses, wrong = [], 0
    with torch.no_grad():
        for images, labels in halves:
            logits = model(images)
            losses.append(torch.nn.functional.cross_entropy(logits, labels).item())
            wrong += int((logits.argmax(1) != labels).sum())
    assert curve[0]["train_loss"] == pytest.approx(sum(losses) / 2, rel=1e-4)
    assert curve[0]["train_error"] == pytest.approx(100.0 * wrong / 8, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# 6. Real learning on real CIFAR-10
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resnet20_learns_cifar10(make_config, tmp_path):
    cfg = job_of(make_config(cifar10=dict(
        batch_size=128, lr=0.1, iterations=LEARN_ITERATIONS, milestones=[LEARN_DROP], train_subset=10_000,
        test_subset=2_000, val_size=500, log_every=50, eval_every=LEARN_ITERATIONS),
        engine=dict(checkpoint_every=LEARN_ITERATIONS)), "cifar-resnet-20/seed-0")
    assert cfg.recipe.lr == pytest.approx(0.1)
    started = time.perf_counter()
    metrics = dataclasses.asdict(train(cfg, tmp_path / "run", quiet=True))
    seconds = time.perf_counter() - started
    accuracy = 100.0 - metrics["final"]["test_error"]
    print(f"ResNet-20, {LEARN_ITERATIONS} iterations of 128 on 10k CIFAR-10 images: test accuracy "
          f"{accuracy:.1f}% on 2,000 test images in {seconds:.0f} s")
    curve = read_curve(tmp_path / "run" / "curve.csv")
    assert curve[-1]["train_loss"] < curve[0]["train_loss"] - 0.3  # the loss goes down
    assert accuracy >= LEARN_THRESHOLD  # chance is 10%


# Measured (2-core CPU, 1 thread, ~220 images/s, 118 s of training): 45.2% test accuracy after 200
# iterations (2.6 epochs of the 10k subset), train error 58.7% over the last 40 iterations. The
# threshold leaves room for other thread counts and platforms; chance is 10%.
LEARN_ITERATIONS, LEARN_DROP, LEARN_THRESHOLD = 200, 160, 35.0
