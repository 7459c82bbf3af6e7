"""The registry's nets give the same logits as independent implementations with the same weights.

* ImageNet: ``resnet-18-b`` / ``resnet-34-b`` against torchvision's resnet18/34 (option B), bit
  for bit; ``resnet-50`` (the paper's V1: stride on the bottleneck's first 1x1) against
  torchvision's resnet50 with each stage's stride moved from the 3x3 to the first 1x1, bit for
  bit; ``resnet-50-v1.5`` against torchvision's resnet50 as it is.
* CIFAR: ``cifar-resnet-{20,56,110}`` (option A) against a net written here in the design of the
  well-known CIFAR-10 reproduction (three stages of 16/32/64 3x3 filters; option-A shortcut =
  take every second pixel and zero-pad the channels, half of the new channels before the old ones
  and half after).  The registry pads after the old channels, so the copy permutes channels.

Weights are random (torchvision with ``weights=None``, then every parameter and BN buffer redrawn,
so BN is not the identity), copied across by a rule (names or parameter order), never by hand.
"""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from resnet.models.nets import build_model


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Redraw every conv/fc weight (He scale) and BN parameter and statistic, deterministically."""
    generator = torch.Generator().manual_seed(seed)

    def draw(tensor, scale=1.0, shift=0.0, uniform=False):
        values = torch.rand if uniform else torch.randn
        tensor.copy_(values(tensor.shape, generator=generator) * scale + shift)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                draw(module.weight, (2 / module.weight[0].numel()) ** 0.5)
                if module.bias is not None:
                    draw(module.bias, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                draw(module.weight, 1.0, 0.5, uniform=True)
                draw(module.bias, 0.1)
                draw(module.running_mean, 0.1)
                draw(module.running_var, 1.0, 0.5, uniform=True)
    return model


def _torchvision_name(ours: str) -> str:
    """A registry state_dict key in torchvision's spelling: conv{k}_x -> layer{k-1}, shortcut -> downsample."""
    return re.sub(r"^conv(\d)_x", lambda m: f"layer{int(m[1]) - 1}", ours).replace(".shortcut.", ".downsample.")


def _copy_by_name(theirs: nn.Module, ours: nn.Module) -> None:
    source = theirs.state_dict()
    target = {name: _torchvision_name(name) for name in ours.state_dict()}
    assert sorted(target.values()) == sorted(source), "the two nets have different layers"
    ours.load_state_dict({name: source[key] for name, key in target.items()}, strict=True)


def _move_stride_to_first_1x1(net: torchvision.models.ResNet) -> torchvision.models.ResNet:
    """torchvision's bottleneck (V1.5) strides its 3x3; the paper's V1 strides the first 1x1."""
    for layer in (net.layer2, net.layer3, net.layer4):
        first = layer[0]
        assert first.conv2.stride == (2, 2) and first.conv1.stride == (1, 1)
        first.conv1.stride, first.conv2.stride = (2, 2), (1, 1)
    return net


def _images(count: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _same_logits_bit_for_bit(ours: nn.Module, theirs: nn.Module, images: torch.Tensor) -> None:
    with torch.no_grad():
        assert torch.equal(ours.eval()(images), theirs.eval()(images))
        # Train mode: batch statistics, and the same running averages afterwards.
        assert torch.equal(ours.train()(images), theirs.train()(images))
    for name, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[_torchvision_name(name)]), name


IMAGENET = [
    ("resnet-18-b", torchvision.models.resnet18, None),
    ("resnet-34-b", torchvision.models.resnet34, None),
    ("resnet-50", torchvision.models.resnet50, _move_stride_to_first_1x1),
    ("resnet-50-v1.5", torchvision.models.resnet50, None),
]


@pytest.mark.parametrize("name, factory, adapt", IMAGENET, ids=[row[0] for row in IMAGENET])
def test_imagenet_nets_equal_torchvision_bit_for_bit(name, factory, adapt):
    theirs = _randomize(factory(weights=None), seed=0)
    if adapt is not None:
        theirs = adapt(theirs)
    ours = build_model(name)
    _copy_by_name(theirs, ours)
    _same_logits_bit_for_bit(ours, theirs, _images(2, 112))


def test_resnet50_v1_is_not_torchvisions_v15():
    """The check above can fail: V1 against torchvision's unmodified (V1.5) resnet50 differs."""
    theirs = _randomize(torchvision.models.resnet50(weights=None), seed=0).eval()
    ours = build_model("resnet-50").eval()
    _copy_by_name(theirs, ours)
    with torch.no_grad():
        images = _images(1, 112)
        assert not torch.allclose(ours(images), theirs(images), atol=1e-3)


# --------------------------------------------------------------------------------------------
# CIFAR: an independent option-A ResNet in the design of the well-known CIFAR-10 reproduction.
# --------------------------------------------------------------------------------------------


class PadBothSides(nn.Module):
    """Option A: every second pixel, and C_out - C_in zero channels, half before and half after."""

    def __init__(self, added: int) -> None:
        super().__init__()
        self.before, self.after = added // 2, added - added // 2

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.before, self.after))


class ReferenceBlock(nn.Module):
    def __init__(self, planes_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(planes_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes = stride != 1 or planes_in != planes
        self.shortcut = PadBothSides(planes - planes_in) if changes else nn.Identity()

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ReferenceCifarResNet(nn.Module):
    def __init__(self, n: int, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes_in, stages = 16, []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for index in range(n):
                blocks.append(ReferenceBlock(planes_in, planes, stride if index == 0 else 1))
                planes_in = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _stream_orders(reference: ReferenceCifarResNet) -> list[torch.Tensor]:
    """For each stage, ``order[j]``: the registry's channel that is the reference's channel j.

    The residual stream's channels keep their place through identity shortcuts; a padding
    shortcut moves the reference's old channels up by ``before`` and the registry's not at all.
    The new (zero) channels are matched in order.
    """
    orders, order = [], torch.arange(16)
    for stage in (reference.layer1, reference.layer2, reference.layer3):
        shortcut = stage[0].shortcut
        if isinstance(shortcut, PadBothSides):
            old = len(order)
            width = old + shortcut.before + shortcut.after
            new = torch.empty(width, dtype=torch.long)
            new[shortcut.before:shortcut.before + old] = order
            zeros = torch.arange(old, width)
            new[:shortcut.before], new[shortcut.before + old:] = zeros[:shortcut.before], zeros[shortcut.before:]
            order = new
        orders.append(order)
    return orders


def _copy_to_reference(ours: nn.Module, reference: ReferenceCifarResNet, permute: bool = True) -> None:
    """Copy by parameter order (shapes must match one to one), then put the stream's channels in
    the reference's order: the layers that write the stream (stem, each block's conv2/bn2) by
    output channel, the layers that read it (each block's conv1, the fc) by input channel."""
    source, target = ours.state_dict(), reference.state_dict()
    assert [v.shape for v in source.values()] == [v.shape for v in target.values()]
    reference.load_state_dict(dict(zip(target, source.values())), strict=True)
    if not permute:
        return
    orders = _stream_orders(reference)
    with torch.no_grad():
        reads = orders[0]
        for stage, order in zip((reference.layer1, reference.layer2, reference.layer3), orders):
            for block in stage:
                block.conv1.weight.copy_(block.conv1.weight[:, reads])
                block.conv2.weight.copy_(block.conv2.weight[order])
                for tensor in (block.bn2.weight, block.bn2.bias, block.bn2.running_mean, block.bn2.running_var):
                    tensor.copy_(tensor[order])
                reads = order
        reference.linear.weight.copy_(reference.linear.weight[:, reads])


def _cifar_pair(depth: int):
    """The registry's net and the reference, in float64: the permuted channels change the order
    of the convolutions' sums, which in float32 moves these random nets' logits by ~1e-5."""
    ours = _randomize(build_model(f"cifar-resnet-{depth}"), seed=depth).double()
    reference = ReferenceCifarResNet((depth - 2) // 6).double()
    return ours, reference


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_cifar_option_a_nets_equal_an_independent_implementation(depth):
    ours, reference = _cifar_pair(depth)
    _copy_to_reference(ours, reference)
    images = _images(8, 32).double()
    with torch.no_grad():
        for train in (False, True):
            expected = reference.train(train)(images)
            # Relative too: with random BN statistics, eval-mode logits of the deepest net grow to ~1e8.
            torch.testing.assert_close(ours.train(train)(images), expected, rtol=1e-6, atol=1e-6)


def test_cifar_equivalence_depends_on_the_channel_order():
    """The check above can fail: without the permutation (the pad order ignored) the logits differ."""
    ours, reference = _cifar_pair(20)
    _copy_to_reference(ours, reference, permute=False)
    with torch.no_grad():
        images = _images(8, 32).double()
        assert (ours.eval()(images) - reference.eval()(images)).abs().max() > 1e-3
