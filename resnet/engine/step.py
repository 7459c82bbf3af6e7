"""The training step: forward, loss, backward and the SGD update, eager or as one CUDA graph.

The CIFAR nets are small: at batch 128 a step is a few hundred short kernels, and launching them
one by one from Python leaves a GPU mostly idle. With ``engine.cuda_graphs`` the whole step
(forward, cross-entropy, backward, and torch.optim.SGD's update with momentum and weight decay) is
captured once as a CUDA graph and replayed every iteration: one launch per step.

How the graph stays faithful to the eager step:

* The first ``WARMUP_STEPS`` calls are ordinary eager steps (on a side stream, as CUDA graph
  capture requires); they create the momentum buffers and let cuDNN, cuBLAS and torch.compile
  initialise. Every call, warm-up or replay, is one real SGD step on the batch it is given.
* A graph bakes in the Python floats it saw, the learning rate among them. The step compares the
  optimiser's learning rates with those of the captured graph at every call and captures a new
  graph when they change (the paper's schedule changes lr two or three times per run).
* Parameters, momentum buffers and BN statistics are updated in place, at fixed addresses, so
  evaluation, checkpointing and resuming see the same tensors whether the step is eager or
  graphed. Inputs are copied into static buffers before each replay.
* A batch of another shape, dtype or memory format (never the case for the training stream) runs
  eagerly. A capture that fails falls back to the eager step for the rest of the run, with a
  warning; ``TrainStep.mode`` says which way the step ran and is recorded in metrics.json.

``engine.compile`` runs the model through torch.compile (inductor's fused kernels); with CUDA
graphs the compiled kernels are what the graph captures. The time spent in warm-up (compilation
included) and capture is ``TrainStep.setup_seconds``, reported apart from the training rate.
"""
from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

WARMUP_STEPS = 3


class TrainStep:
    """``step(images, labels) -> (loss, wrong)``: one SGD step; device tensors, no host sync.

    With graphs the returned tensors are the graph's static outputs, overwritten by the next call:
    use them (e.g. add them to a running sum) before calling again.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, *,
                 bf16: bool = False, graphs: bool = False, compile: bool = False, graph_factory=None) -> None:
        self.model, self.optimizer, self.device = model, optimizer, torch.device(device)
        self.bf16 = bf16 and self.device.type == "cuda"
        self.graphs = graphs
        self.forward = torch.compile(model, dynamic=False) if compile else model
        self.compiled = compile
        # CudaGraph on a GPU. The tests hand in a stand-in that replays the step eagerly with the
        # learning rates frozen at capture, to check this class's bookkeeping without CUDA.
        self._graph_factory = graph_factory or CudaGraph
        self._warmup_left = WARMUP_STEPS if graphs else 0
        self._graph = None
        self._side_stream = None
        self._graph_lrs: tuple | None = None
        self._static: tuple[torch.Tensor, torch.Tensor] | None = None
        self._outputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.setup_seconds = 0.0  # warm-up (compilation) and captures, synchronised
        self.captures = 0
        self.eager_steps = 0
        self.replays = 0
        self.failure: str | None = None

    @property
    def mode(self) -> str:
        """How the step ran: 'eager', 'cuda-graph', with '+compile', or why the graph was given up."""
        kind = "cuda-graph" if self.graphs else "eager"
        if self.failure:
            kind = f"eager (CUDA graph capture failed: {self.failure})"
        return kind + ("+compile" if self.compiled else "")

    def _work(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step itself; what a graph captures."""
        # No autocast weight cache: inside a capture the cached casts would belong to the graph.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            logits = self.forward(images)
            loss = F.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach().float(), (logits.detach().argmax(1) != labels).sum()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.train()
        if not self.graphs:
            return self._eager(images, labels, timed=self.compiled and self.eager_steps == 0)
        if self._warmup_left > 0:
            self._warmup_left -= 1
            return self._eager(images, labels, timed=True, side_stream=True)
        if not self._fits(images, labels):
            return self._eager(images, labels)
        lrs = tuple(group["lr"] for group in self.optimizer.param_groups)
        if self._graph is None or lrs != self._graph_lrs:
            try:
                self._capture(images, labels, lrs)
            except Exception as error:  # an op that cannot be captured: train on, eagerly
                self._give_up_graphs(error)
                return self._eager(images, labels)
        static_images, static_labels = self._static
        static_images.copy_(images)
        static_labels.copy_(labels)
        self._graph.replay()
        self.replays += 1
        return self._outputs

    # ------------------------------------------------------------------------------------------

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _eager(self, images, labels, timed: bool = False, side_stream: bool = False):
        self.eager_steps += 1
        started = time.perf_counter()
        if side_stream and self.device.type == "cuda":
            stream = self._stream()
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                outputs = self._work(images, labels)
            torch.cuda.current_stream(self.device).wait_stream(stream)
        else:
            outputs = self._work(images, labels)
        if timed:
            self._sync()
            self.setup_seconds += time.perf_counter() - started
        return outputs

    def _stream(self):
        """The side stream of the warm-up steps and the captures: the same one, so the cuBLAS and
        cuDNN state made per stream in the warm-up is there when the capture starts."""
        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream(self.device)
        return self._side_stream

    def _fits(self, images: torch.Tensor, labels: torch.Tensor) -> bool:
        if self._static is None:
            return True
        static_images, static_labels = self._static
        return (images.shape == static_images.shape and images.dtype == static_images.dtype
                and images.stride() == static_images.stride() and labels.shape == static_labels.shape
                and labels.dtype == static_labels.dtype)

    def _capture(self, images: torch.Tensor, labels: torch.Tensor, lrs: tuple) -> None:
        started = time.perf_counter()
        self._sync()
        # Drop the previous graph and everything allocated in its memory pool (the gradients and
        # the outputs) before capturing the next one.
        self._graph, self._outputs = None, None
        self.optimizer.zero_grad(set_to_none=True)
        if self._static is None:
            self._static = (torch.empty_like(images), torch.empty_like(labels))
        graph = self._graph_factory()
        stream = self._stream() if self.device.type == "cuda" else None
        self._outputs = graph.capture(lambda: self._work(*self._static), stream)
        self._graph, self._graph_lrs = graph, lrs
        self.captures += 1
        self._sync()
        self.setup_seconds += time.perf_counter() - started

    def _give_up_graphs(self, error: Exception) -> None:
        self.graphs, self._graph, self._outputs = False, None, None
        self.failure = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
        self.optimizer.zero_grad(set_to_none=True)
        print(f"warning: the training step could not be captured as a CUDA graph ({self.failure}); "
              f"training goes on eagerly. Set engine.cuda_graphs: false to skip the attempt.", file=sys.stderr)


class CudaGraph:
    """A CUDA graph of one function: ``capture(fn)`` records fn's kernels (running none of them)
    and returns its outputs, static tensors that each ``replay()`` refills."""

    def __init__(self) -> None:
        self.graph = torch.cuda.CUDAGraph()

    def capture(self, fn, stream=None):
        with torch.cuda.graph(self.graph, stream=stream):
            return fn()

    def replay(self) -> None:
        self.graph.replay()


def make_step(model, optimizer, job, device: torch.device, single_process: bool = True) -> TrainStep:
    """The step training uses for ``job`` (a resnet.job.Job) on ``device``.

    CUDA graphs for CIFAR cells in one process (``engine.cuda_graphs``): ImageNet nets keep a GPU
    busy with their own kernels, and a DistributedDataParallel step's all-reduce would have to be
    captured too. torch.compile where ``engine.compile`` asks for it. On CUDA, cuDNN autotuning
    (``torch.backends.cudnn.benchmark``) unless ``engine.deterministic``.
    """
    cuda = torch.device(device).type == "cuda"
    engine = job.engine
    graphs = cuda and engine.cuda_graphs and job.dataset == "cifar10" and single_process
    if cuda:
        # Every step has the same shapes, so cuDNN may time its convolution algorithms once (in
        # the first, eager steps, before any capture) and keep the fastest. Process-wide; off
        # with engine.deterministic, whose point is repeatable kernels.
        torch.backends.cudnn.benchmark = not engine.deterministic
    return TrainStep(model, optimizer, device, bf16=engine.bf16, graphs=graphs, compile=engine.compile)
