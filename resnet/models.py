"""Plain and residual networks of He et al. 2015, registered by name.

Names (used in config, file paths and MLflow):

* CIFAR-10, 10 classes: ``cifar-plain-{d}`` and ``cifar-resnet-{d}`` for any depth d = 6n+2
  (n >= 1); the paper trains 20, 32, 44, 56, 110, 1202 (Sec. 4.2).
* ImageNet, 1000 classes: ``plain-{d}`` and ``resnet-{d}`` for d in 18, 34, 50, 101, 152
  (Table 1); 50 and deeper use bottleneck blocks.
* Residual nets take an optional shortcut suffix (Sec. 3.3): ``-a`` zero-padding identity,
  ``-b`` projection only where the shape changes, ``-c`` projection on every shortcut.
  Defaults: A on CIFAR (Sec. 4.2) and for ResNet-18/34 (Table 2, Figure 4), B for 50/101/152
  (Sec. 3.3, "Deeper Bottleneck Architectures").  The canonical name drops a default suffix:
  ``resnet-34-a`` -> ``resnet-34``, ``resnet-50-b`` -> ``resnet-50``; ``resnet-34-b`` stays.
* Bottleneck nets take an optional ``-v1.5`` (stride on the 3x3, as torchvision does);
  the default is the paper's V1 (stride on the first 1x1).

Paper counts the tests check (``resnet.paper``): option-A CIFAR nets have 269,722 (20),
464,154 (32), 658,586 (44), 853,018 (56), 1,727,962 (110) and 19,421,274 (1202) parameters;
option-B ImageNet nets have torchvision's 11.7M .. 60.2M; multiply-adds at 224x224 are
1.8 / 3.6 / 3.8 / 7.6 / 11.3 x 1e9 (Table 1).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from resnet import paper

CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)  # He et al. 2015, Table 6
IMAGENET_DEPTHS = (18, 34, 50, 101, 152)  # He et al. 2015, Table 1
# Blocks per stage conv2_x..conv5_x, He et al. 2015, Table 1.
IMAGENET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3),
                   101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
CIFAR_WIDTHS = (16, 32, 64)  # filters on 32x32, 16x16, 8x8 maps, He et al. 2015, Sec. 4.2
IMAGENET_WIDTHS = (64, 128, 256, 512)  # 3x3 filters per stage, He et al. 2015, Table 1
BOTTLENECK_EXPANSION = 4  # 1x1 expands to 4x the width, He et al. 2015, Table 1
SHORTCUTS = {"A": "zero-padding identity", "B": "projection where the shape changes",
             "C": "projection on every shortcut"}

_GRAMMAR = ("names: cifar-{plain,resnet}-{6n+2}, {plain,resnet}-{18,34,50,101,152}, "
            "optional shortcut suffix -a/-b/-c for resnets, optional -v1.5 for 50/101/152")
_NAME = re.compile(r"^(?P<cifar>cifar-)?(?P<family>plain|resnet)-(?P<depth>\d+)"
                   r"(?:-(?P<option>[a-z]))?(?P<v15>-v1\.5)?$")


class ModelNameError(ValueError):
    """A model name the registry does not know; the message says what would work."""


@dataclass(frozen=True)
class ModelSpec:
    name: str  # canonical registry name
    dataset: str  # "cifar10" | "imagenet"
    family: str  # "plain" | "resnet"
    depth: int  # weighted layers, as the paper counts them
    shortcut: str | None  # "A" | "B" | "C"; None for plain nets
    bottleneck: bool
    blocks_per_stage: tuple[int, ...]
    variant: str = "v1"  # "v1" (paper) | "v1.5" (stride on the bottleneck's 3x3)

    @property
    def num_classes(self) -> int:
        return 10 if self.dataset == "cifar10" else 1000


def parse_model_name(name: str) -> ModelSpec:
    """Parse a registry name into a ModelSpec; raise ModelNameError saying how to fix it."""
    match = _NAME.match(name) if isinstance(name, str) else None
    if match is None and isinstance(name, str) and _NAME.match(name.strip().lower()):
        raise ModelNameError(f"unknown model {name!r}: names are lowercase without spaces; "
                             f"use {name.strip().lower()!r}")
    if match is None:
        raise ModelNameError(f"unknown model {name!r}: use e.g. 'resnet-34' or "
                             f"'cifar-resnet-56' ({_GRAMMAR})")
    cifar, family, depth = bool(match["cifar"]), match["family"], int(match["depth"])
    option, v15 = match["option"], bool(match["v15"])
    prefix = "cifar-" if cifar else ""
    if cifar:
        if depth < 8 or (depth - 2) % 6:
            lower, upper = (depth - 2) // 6 * 6 + 2, ((depth - 2) // 6 + 1) * 6 + 2
            hint = f"try {lower} or {upper}" if lower >= 8 else f"try {max(upper, 8)}"
            raise ModelNameError(f"unknown model {name!r}: CIFAR depth {depth} is not 6n+2 "
                                 f"with n >= 1; {hint} (e.g. '{prefix}{family}-20')")
        blocks, bottleneck = ((depth - 2) // 6,) * 3, False
    else:
        if depth not in IMAGENET_BLOCKS:
            raise ModelNameError(
                f"unknown model {name!r}: ImageNet depths are 18, 34, 50, 101, 152; use e.g. "
                f"'resnet-34' or 'cifar-resnet-56' ({_GRAMMAR})")
        blocks, bottleneck = IMAGENET_BLOCKS[depth], depth >= 50
    if option is not None and option.upper() not in SHORTCUTS:
        raise ModelNameError(f"unknown shortcut option '-{option}' in {name!r}: the options "
                             f"are -a (zero-padding identity), -b (projection where the shape "
                             f"changes), -c (projection everywhere); e.g. "
                             f"'{prefix}resnet-{depth}-b'")
    if family == "plain" and option is not None:
        raise ModelNameError(f"unknown model {name!r}: plain nets have no shortcuts, so no "
                             f"-{option} suffix; use '{prefix}plain-{depth}' or "
                             f"'{prefix}resnet-{depth}-{option}'")
    if v15 and not bottleneck:
        raise ModelNameError(f"unknown model {name!r}: -v1.5 applies only to bottleneck nets "
                             f"(plain/resnet-50, 101, 152); drop the suffix")
    shortcut = None
    if family == "resnet":
        default = "B" if bottleneck else "A"
        shortcut = option.upper() if option else default
    canonical = f"{prefix}{family}-{depth}"
    if shortcut is not None and shortcut != default:
        canonical += f"-{shortcut.lower()}"
    canonical += "-v1.5" if v15 else ""
    return ModelSpec(canonical, "cifar10" if cifar else "imagenet", family, depth, shortcut,
                     bottleneck, blocks, "v1.5" if v15 else "v1")


def canonical_name(name: str) -> str:
    """The one spelling of a model: the shortcut suffix is dropped when it is the default."""
    return parse_model_name(name).name


# --------------------------------------------------------------------------------------------
# Building blocks.
# --------------------------------------------------------------------------------------------


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: identity, subsampled by the stride, with the new channels zero (no parameters).

    He et al. 2015, Sec. 3.3 (A): "the shortcut still performs identity mapping, with extra zero
    entries padded for increasing dimensions ... performed with a stride of 2".  The zeros go
    after the existing channels.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride, self.extra_channels = stride, out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:  # constant fixed at construction, not data-dependent
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


def make_shortcut(option: str | None, in_channels: int, out_channels: int,
                  stride: int) -> nn.Module | None:
    """The shortcut of one block: None for plain nets, else option A, B or C (Sec. 3.3)."""
    if option is None:
        return None
    shape_changes = stride != 1 or in_channels != out_channels
    if option == "C" or (option == "B" and shape_changes):
        return nn.Sequential(conv1x1(in_channels, out_channels, stride),
                             nn.BatchNorm2d(out_channels))
    if option == "A" and shape_changes:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs (He et al. 2015, Figure 2 / Figure 5 left); plain when shortcut is None.

    ``variant`` is accepted for a uniform signature; a basic block has one stride placement.
    """

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: str | None,
                 variant: str = "v1"):
        super().__init__()
        self.out_channels = width
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(shortcut, in_channels, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:  # fixed at construction: plain nets have none
            identity = self.shortcut(x)
            out = out + identity  # the addition comes before the block's last ReLU
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand x4 (He et al. 2015, Figure 5 right)."""

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: str | None,
                 variant: str = "v1"):
        super().__init__()
        out_channels = width * BOTTLENECK_EXPANSION
        self.out_channels = out_channels
        # The paper's V1 subsamples with the FIRST 1x1 conv of a stage's first block (Table 1:
        # "down-sampling is performed by conv3_1, conv4_1, and conv5_1 with a stride of 2");
        # torchvision's V1.5 puts the stride on the 3x3 instead.  V1 is the default here.
        stride_1x1, stride_3x3 = (1, stride) if variant == "v1.5" else (stride, 1)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride_3x3)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.shortcut is not None:  # fixed at construction: plain nets have none
            identity = self.shortcut(x)
            out = out + identity
        return self.relu(out)


class Network(nn.Module):
    """Stem, stages conv2_x.. (each a list of blocks), global average pool, fc.

    CIFAR (Sec. 4.2): 3x3/16 conv, stages conv2_x..conv4_x of n blocks at 16/32/64 filters.
    ImageNet (Table 1): 7x7/64 stride-2 conv, 3x3 max pool stride 2, stages conv2_x..conv5_x.
    Stage names follow Table 1 for both, so layer names read e.g. ``conv3_x.0.conv1``.
    """

    def __init__(self, spec: ModelSpec, num_classes: int):
        super().__init__()
        self.spec = spec
        cifar = spec.dataset == "cifar10"
        stem_channels = CIFAR_WIDTHS[0] if cifar else IMAGENET_WIDTHS[0]
        if cifar:
            self.conv1 = conv3x3(3, stem_channels)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        block = Bottleneck if spec.bottleneck else BasicBlock
        widths = CIFAR_WIDTHS if cifar else IMAGENET_WIDTHS
        channels = stem_channels
        for index, (width, count) in enumerate(zip(widths, spec.blocks_per_stage)):
            blocks = []
            for position in range(count):
                # The first stage keeps the map size (after the max pool on ImageNet); later
                # stages halve it in their first block (Sec. 3.3, Table 1).
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(block(channels, width, stride, spec.shortcut, spec.variant))
                channels = blocks[-1].out_channels
            self.add_module(f"conv{index + 2}_x", nn.Sequential(*blocks))
        self.stage_names = tuple(f"conv{i + 2}_x" for i in range(len(spec.blocks_per_stage)))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._initialize()

    def _initialize(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He et al. 2015 (Sec. 3.4) cite He et al. 2015 [13] ("Delving deep into
                # rectifiers"); we use its normal form with fan-out, as the ImageNet recipes do.
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # fc keeps PyTorch's default nn.Linear init (the paper does not say); the last BN of a
        # block is not zero-initialised (the paper does not do that either).

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def build_model(name: str, num_classes: int | None = None) -> nn.Module:
    """Build a registered model; ``num_classes`` overrides 10 (CIFAR) / 1000 (ImageNet)."""
    spec = parse_model_name(name)
    return Network(spec, spec.num_classes if num_classes is None else num_classes)


# --------------------------------------------------------------------------------------------
# Measurements: parameters, multiply-adds (Table 1), layer responses (Figure 7).
# --------------------------------------------------------------------------------------------


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
