"""Measurements of the models: parameters, multiply-adds (Table 1), layer responses (Figure 7).

Apart from ``resnet.models`` so that the model code does not depend on the paper's tables:
``table1_rows`` puts the computed Table 1 next to ``resnet.paper.TABLE1``.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from resnet import paper
from resnet.models import build_model
from resnet.names import IMAGENET_DEPTHS


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_multiply_adds(model: nn.Module, image_size: int) -> int:
    """Multiply-adds of one forward pass of one image, counted by torch's FlopCounterMode.

    The counter reports FLOPs as 2 per multiply-add of convs and matmuls (BN, ReLU and pooling
    are not counted, as in the paper's Table 1), so the result is FLOPs / 2.
    """
    parameter = next(model.parameters())
    image = torch.zeros(1, 3, image_size, image_size, dtype=parameter.dtype,
                        device=parameter.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(image)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


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


def layer_response_std(model: nn.Module, batches: Iterable[torch.Tensor],
                       device: str | torch.device = "cpu") -> list[float]:
    """Figure 7: std of each 3x3 layer's response (after BN, before addition/ReLU), layer order.

    The std is over all units and images: every element of the layer's output on every image,
    streamed batch by batch as float64 sums and sums of squares (population std, ddof 0).
    ``batches`` yields normalised float images (N, C, H, W); the model runs in eval mode on
    ``device`` (it is moved there) and is put back in its previous train/eval mode.
    """
    pairs = conv3x3_responses(model)
    device = torch.device(device)
    sums = torch.zeros(len(pairs), dtype=torch.float64, device=device)
    squares = torch.zeros_like(sums)
    counts = [0] * len(pairs)

    def hook_for(index):
        def hook(module, inputs, output):
            values = output.detach().to(torch.float64)
            sums[index] += values.sum()
            squares[index] += values.square().sum()
            counts[index] += values.numel()
        return hook

    handles = [bn.register_forward_hook(hook_for(i)) for i, (_, bn) in enumerate(pairs)]
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad():
            for images in batches:
                model(images.to(device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    count = torch.tensor(counts, dtype=torch.float64, device=device)
    mean = sums / count
    variance = (squares / count - mean.square()).clamp(min=0)
    return variance.sqrt().cpu().tolist()
