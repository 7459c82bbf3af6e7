"""The training step (resnet.step): eager, and the bookkeeping of the whole-step CUDA graph.

A real CUDA graph needs a GPU, which the test machine lacks; benchmarks/gpu.py checks the real
graph against the eager step on a GPU. Here a stand-in for the graph (FrozenGraph) does what a
CUDA graph does to the Python side of the step: capture runs nothing and returns static outputs,
and every replay runs the step with the learning rates the capture saw, refilling those outputs.
With it, the graphed step must train exactly as the eager one: same losses, same weights.
"""
from __future__ import annotations

import pytest
import torch

from resnet.models.nets import build_model
from resnet.engine.step import WARMUP_STEPS, TrainStep, make_step


class FrozenGraph:
    """Stand-in for resnet.step.CudaGraph (no CUDA here): replays with the capture's lr baked in."""

    log: list[str] = []

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def capture(self, fn, stream=None):
        self.fn, self.lrs = fn, [group["lr"] for group in self.optimizer.param_groups]
        self.outputs = (torch.full((), float("nan")), torch.full((), -1, dtype=torch.int64))
        FrozenGraph.log.append(f"capture lr={self.lrs[0]:g}")
        return self.outputs

    def replay(self) -> None:
        current = [group["lr"] for group in self.optimizer.param_groups]
        for group, lr in zip(self.optimizer.param_groups, self.lrs):
            group["lr"] = lr
        try:
            loss, wrong = self.fn()
        finally:
            for group, lr in zip(self.optimizer.param_groups, current):
                group["lr"] = lr
        self.outputs[0].copy_(loss)
        self.outputs[1].copy_(wrong)


class BrokenGraph(FrozenGraph):
    def capture(self, fn, stream=None):
        raise RuntimeError("operation not permitted when stream is capturing")


def _setup(graphs: bool, graph_factory=None):
    torch.manual_seed(0)
    model = build_model("cifar-resnet-8")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    factory = (lambda: graph_factory(optimizer)) if graph_factory else None
    return model, optimizer, TrainStep(model, optimizer, torch.device("cpu"), graphs=graphs, graph_factory=factory)


def _batches(count: int, batch: int = 8, odd_at: int | None = None):
    generator = torch.Generator().manual_seed(1)
    for i in range(count):
        size = batch // 2 if i == odd_at else batch
        yield torch.randn(size, 3, 32, 32, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def _train(graphs: bool, graph_factory=None, steps: int = 12, odd_at: int | None = None):
    """Steps with the lr schedule changing twice; (losses, wrongs, final weights, step)."""
    model, optimizer, step = _setup(graphs, graph_factory)
    losses, wrongs = [], []
    for i, (images, labels) in enumerate(_batches(steps, odd_at=odd_at)):
        for group in optimizer.param_groups:
            group["lr"] = 0.1 if i < 6 else (0.01 if i < 10 else 0.001)
        loss, wrong = step(images, labels)
        losses.append(float(loss))  # read at once: a graph's outputs are refilled by the next call
        wrongs.append(int(wrong))
    return losses, wrongs, {k: v.clone() for k, v in model.state_dict().items()}, step


@pytest.fixture(autouse=True)
def _deterministic():
    torch.use_deterministic_algorithms(True)
    FrozenGraph.log = []
    yield
    torch.use_deterministic_algorithms(False)


def _assert_same_training(a, b):
    assert a[0] == b[0] and a[1] == b[1]
    assert a[2].keys() == b[2].keys()
    for name in a[2]:
        assert torch.equal(a[2][name], b[2][name]), name


def test_graphed_step_trains_exactly_as_the_eager_step_and_recaptures_when_lr_changes():
    eager = _train(graphs=False)
    graphed = _train(graphs=True, graph_factory=FrozenGraph)
    _assert_same_training(eager, graphed)
    step = graphed[3]
    # warm-up steps eager; one capture per learning rate (0.1 after the warm-up, 0.01, 0.001)
    assert step.eager_steps == WARMUP_STEPS and step.replays == 12 - WARMUP_STEPS
    assert FrozenGraph.log == ["capture lr=0.1", "capture lr=0.01", "capture lr=0.001"]
    assert step.captures == 3 and step.mode == "cuda-graph" and step.setup_seconds > 0
    assert eager[3].mode == "eager" and eager[3].captures == 0


def test_a_graph_without_recapture_would_train_differently():
    """The stand-in really freezes the lr: never recapturing changes the weights (the check above can fail)."""
    eager = _train(graphs=False)
    model, optimizer, step = _setup(True, FrozenGraph)
    for i, (images, labels) in enumerate(_batches(12)):
        for group in optimizer.param_groups:
            group["lr"] = 0.1 if i < 6 else 0.01
        if step._graph is not None:
            step._graph_lrs = tuple(group["lr"] for group in optimizer.param_groups)  # hide the change
        step(images, labels)
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in eager[2].items())


def test_a_batch_of_another_shape_runs_eagerly_between_replays():
    eager = _train(graphs=False, odd_at=8)
    graphed = _train(graphs=True, graph_factory=FrozenGraph, odd_at=8)
    _assert_same_training(eager, graphed)
    assert graphed[3].eager_steps == WARMUP_STEPS + 1


def test_a_failed_capture_falls_back_to_eager_training_and_says_so(capsys):
    eager = _train(graphs=False)
    fallback = _train(graphs=True, graph_factory=BrokenGraph)
    _assert_same_training(eager, fallback)
    step = fallback[3]
    assert step.captures == 0 and step.replays == 0 and step.eager_steps == 12
    assert step.mode.startswith("eager (CUDA graph capture failed: RuntimeError: operation not permitted")
    assert "engine.cuda_graphs: false" in capsys.readouterr().err


def _cfg(dataset="cifar10", **engine):
    """What make_step reads of a resnet.job.Job: the dataset and the engine section."""
    from types import SimpleNamespace

    values = dict(bf16=True, cuda_graphs=True, compile=False, deterministic=False)
    return SimpleNamespace(dataset=dataset, engine=SimpleNamespace(**{**values, **engine}))


def test_make_step_uses_graphs_only_for_cifar_on_cuda_in_one_process():
    model = build_model("cifar-resnet-8")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cpu = make_step(model, optimizer, _cfg(), torch.device("cpu"))
    assert not cpu.graphs and not cpu.bf16 and cpu.mode == "eager"  # graphs and bf16 are CUDA only
    cuda = torch.device("cuda")  # no CUDA call is made while building the step
    assert make_step(model, optimizer, _cfg(), cuda).graphs
    assert make_step(model, optimizer, _cfg(), cuda).bf16
    assert not make_step(model, optimizer, _cfg(dataset="imagenet"), cuda).graphs
    assert not make_step(model, optimizer, _cfg(cuda_graphs=False), cuda).graphs
    assert not make_step(model, optimizer, _cfg(), cuda, single_process=False).graphs


def test_make_step_lets_cudnn_autotune_on_cuda_unless_deterministic():
    model = build_model("cifar-resnet-8")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        make_step(model, optimizer, _cfg(deterministic=False), torch.device("cpu"))
        assert torch.backends.cudnn.benchmark is False  # the CPU leaves it alone
        make_step(model, optimizer, _cfg(deterministic=False), torch.device("cuda"))
        assert torch.backends.cudnn.benchmark is True
        make_step(model, optimizer, _cfg(deterministic=True), torch.device("cuda"))
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before


def test_compiled_step_trains_as_the_eager_step_and_reports_its_compile_time():
    """engine.compile: torch.compile's kernels (inductor; on the CPU, C++) give the eager step's numbers."""
    eager = _train(graphs=False, steps=3)
    model, optimizer, step = _setup(False)
    compiled = TrainStep(model, optimizer, torch.device("cpu"), compile=True)
    losses = [float(compiled(images, labels)[0]) for images, labels in _batches(3)]
    assert losses == pytest.approx(eager[0], rel=1e-4, abs=1e-5)
    for name, value in model.state_dict().items():
        assert torch.allclose(value.float(), eager[2][name].float(), rtol=1e-3, atol=1e-5), name
    assert compiled.mode == "eager+compile" and compiled.setup_seconds > 0
