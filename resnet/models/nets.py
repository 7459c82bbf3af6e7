"""Plain and residual networks of He et al. 2015, built from a registry name.

``build_model(name)`` builds the network a name describes; the names, their grammar and their
canonical spelling are in ``resnet.names``.  Parameter counts, multiply-adds (Table 1) and the
layer responses of Figure 7 are measured in ``resnet.measure``.

``bn_group`` sets the batch-norm batch (``resnet.ghost_bn``): 0 normalises over the whole
(per-process) batch; g > 0 over each group of g images, as the paper's two GPUs of 64 did.

Paper counts the tests check (``resnet.paper``): option-A CIFAR nets have 269,722 (20),
464,154 (32), 658,586 (44), 853,018 (56), 1,727,962 (110) and 19,421,274 (1202) parameters;
option-B ImageNet nets have torchvision's 11.7M .. 60.2M; multiply-adds at 224x224 are
1.8 / 3.6 / 3.8 / 7.6 / 11.3 x 1e9 (Table 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resnet.models.ghost_bn import batch_norm
from resnet.paper.names import ModelSpec, parse_model_name

CIFAR_WIDTHS = (16, 32, 64)  # filters on 32x32, 16x16, 8x8 maps, He et al. 2015, Sec. 4.2
IMAGENET_WIDTHS = (64, 128, 256, 512)  # 3x3 filters per stage, He et al. 2015, Table 1
BOTTLENECK_EXPANSION = 4  # 1x1 expands to 4x the width, He et al. 2015, Table 1


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
                  stride: int, bn_group: int = 0) -> nn.Module | None:
    """The shortcut of one block: None for plain nets, else option A, B or C (Sec. 3.3)."""
    if option is None:
        return None
    shape_changes = stride != 1 or in_channels != out_channels
    if option == "C" or (option == "B" and shape_changes):
        return nn.Sequential(conv1x1(in_channels, out_channels, stride),
                             batch_norm(out_channels, bn_group))
    if option == "A" and shape_changes:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs (He et al. 2015, Figure 2 / Figure 5 left); plain when shortcut is None.

    ``variant`` is accepted for a uniform signature; a basic block has one stride placement.
    ``bn_group`` is the BN group size of every BN layer (``resnet.ghost_bn``; 0 = plain BN).
    """

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: str | None,
                 variant: str = "v1", bn_group: int = 0):
        super().__init__()
        self.out_channels = width
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = batch_norm(width, bn_group)
        self.conv2 = conv3x3(width, width)
        self.bn2 = batch_norm(width, bn_group)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(shortcut, in_channels, width, stride, bn_group)

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
                 variant: str = "v1", bn_group: int = 0):
        super().__init__()
        out_channels = width * BOTTLENECK_EXPANSION
        self.out_channels = out_channels
        # The paper's V1 subsamples with the FIRST 1x1 conv of a stage's first block (Table 1:
        # "down-sampling is performed by conv3_1, conv4_1, and conv5_1 with a stride of 2");
        # torchvision's V1.5 puts the stride on the 3x3 instead.  V1 is the default here.
        stride_1x1, stride_3x3 = (1, stride) if variant == "v1.5" else (stride, 1)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn1 = batch_norm(width, bn_group)
        self.conv2 = conv3x3(width, width, stride_3x3)
        self.bn2 = batch_norm(width, bn_group)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = batch_norm(out_channels, bn_group)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, bn_group)

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

    def __init__(self, spec: ModelSpec, num_classes: int, bn_group: int = 0):
        super().__init__()
        self.spec, self.bn_group = spec, bn_group
        cifar = spec.dataset == "cifar10"
        stem_channels = CIFAR_WIDTHS[0] if cifar else IMAGENET_WIDTHS[0]
        if cifar:
            self.conv1 = conv3x3(3, stem_channels)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = batch_norm(stem_channels, bn_group)
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
                blocks.append(block(channels, width, stride, spec.shortcut, spec.variant, bn_group))
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


def build_model(name: str, num_classes: int | None = None, bn_group: int = 0) -> nn.Module:
    """Build a registered model; ``num_classes`` overrides 10 (CIFAR) / 1000 (ImageNet).

    ``bn_group`` (>= 0): every BN layer normalises training batches over groups of that many
    images (``resnet.ghost_bn.GhostBatchNorm2d``); 0 is plain ``nn.BatchNorm2d`` over the whole
    per-process batch.  A training batch larger than the group must be a multiple of it.
    """
    spec = parse_model_name(name)
    return Network(spec, spec.num_classes if num_classes is None else num_classes, bn_group)
