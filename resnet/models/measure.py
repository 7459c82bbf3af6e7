"""Measurements of the models: parameters, multiply-adds (Table 1), layer responses (Figure 7).

Apart from ``resnet.models`` so that the model code does not depend on the paper's tables:
``table1_rows`` puts the computed Table 1 next to ``resnet.paper.TABLE1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Iterable

import torch
from torch import nn

from resnet import paper
from resnet.models.nets import build_model
from resnet.paper.names import IMAGENET_DEPTHS


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_multiply_adds(model: nn.Module, image_size: int) -> int:
    """Multiply-adds of one forward pass of one image: every convolution and fully connected layer.

    Counted as the paper's Table 1 counts them: BN, ReLU, additions and pooling are left out. A
    forward hook on each Conv2d and Linear adds its output elements times the multiply-adds behind
    each one (kernel area x input channels per group; input features). This gives exactly the count
    of torch's FlopCounterMode halved (tests/test_models.py compares the two). The forward pass runs
    on the meta device (shapes only, the model's weights untouched), so counting costs no
    arithmetic: ResNet-1202's real one-image pass took seconds on a 2-core CPU.
    """
    from torch.func import functional_call

    total = 0

    def conv(module: nn.Conv2d, inputs, output: torch.Tensor) -> None:
        nonlocal total
        kernel_h, kernel_w = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kernel_h * kernel_w

    def linear(module: nn.Linear, inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = [module.register_forward_hook(conv if isinstance(module, nn.Conv2d) else linear)
               for module in model.modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    shapes_only = {name: torch.empty_like(tensor, device="meta")
                   for name, tensor in [*model.named_parameters(), *model.named_buffers()]}
    image = torch.zeros(1, 3, image_size, image_size, dtype=next(model.parameters()).dtype, device="meta")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            functional_call(model, shapes_only, (image,))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total


def table1_rows() -> list[dict]:
    """Table 1, computed: one row per ImageNet ResNet (option B, 1000 classes, 224x224)."""
    rows = []
    for depth in IMAGENET_DEPTHS:
        model = build_model(f"resnet-{depth}-b")
        spec = model.spec
        paper_row = paper.TABLE1[f"resnet-{depth}"]
        rows.append({
            "name": spec.name,
            "layers": spec.depth,
            "block": "bottleneck" if spec.bottleneck else "basic",
            "blocks_per_stage": spec.blocks_per_stage,
            **dict(zip(model.stage_names, spec.blocks_per_stage)),
            "parameters": count_parameters(model),
            "multiply_adds_e9": count_multiply_adds(model, 224) / 1e9,
            "paper_multiply_adds_e9": paper_row.multiply_adds_e9,
        })
    return rows


def conv3x3_responses(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """Every 3x3 conv (the first conv included) in forward order, with the BN that follows it.

    Returns (conv layer name, its BN module); the BN's output is the layer's "response"
    of Figure 7.  Each ``convK`` is followed by ``bnK`` in the same parent module.
    """
    pairs = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            parent, _, leaf = name.rpartition(".")
            bn_name = (parent + "." if parent else "") + leaf.replace("conv", "bn", 1)
            pairs.append((name, model.get_submodule(bn_name)))
    return pairs


class LayerResponses:
    """Running float64 sums of each 3x3 layer's response (``recording_layer_responses``)."""

    def __init__(self, count: int, device: torch.device) -> None:
        self.sums = torch.zeros(count, dtype=torch.float64, device=device)
        self.squares = torch.zeros_like(self.sums)
        self.counts = [0] * count

    def add(self, index: int, output: torch.Tensor) -> None:
        values = output.detach().to(torch.float64)
        self.sums[index] += values.sum()
        self.squares[index] += values.square().sum()
        self.counts[index] += values.numel()

    def stds(self) -> list[float]:
        """Population std (ddof 0) of each layer's response over every unit of every image seen."""
        count = torch.tensor(self.counts, dtype=torch.float64, device=self.sums.device)
        mean = self.sums / count
        variance = (self.squares / count - mean.square()).clamp(min=0)
        return [float(s) for s in variance.sqrt().cpu().tolist()]


@contextmanager
def recording_layer_responses(model: nn.Module, device: str | torch.device = "cpu") -> Iterator[LayerResponses]:
    """Figure 7's measurement on whatever forward passes run inside the block (hooks on the BNs).

    So that an evaluation pass measures the responses too: ``with recording_layer_responses(model)
    as responses: error_rate(model, ...)``, then ``responses.stds()``.
    """
    pairs = conv3x3_responses(model)
    responses = LayerResponses(len(pairs), torch.device(device))

    def hook_for(index):
        def hook(module, inputs, output):
            responses.add(index, output)
        return hook

    handles = [bn.register_forward_hook(hook_for(i)) for i, (_, bn) in enumerate(pairs)]
    try:
        yield responses
    finally:
        for handle in handles:
            handle.remove()


def layer_response_std(model: nn.Module, batches: Iterable[torch.Tensor],
                       device: str | torch.device = "cpu") -> list[float]:
    """Figure 7: std of each 3x3 layer's response (after BN, before addition/ReLU), layer order.

    The std is over all units and images: every element of the layer's output on every image,
    streamed batch by batch as float64 sums and sums of squares (population std, ddof 0).
    ``batches`` yields normalised float images (N, C, H, W); the model runs in eval mode on
    ``device`` (it is moved there) and is put back in its previous train/eval mode.
    """
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    try:
        with recording_layer_responses(model, device) as responses, torch.no_grad():
            for images in batches:
                model(images.to(device))
    finally:
        model.train(was_training)
    return responses.stds()
