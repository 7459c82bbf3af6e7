"""Evaluation sharded over the processes equals the one-process evaluation, image for image.

Each process evaluates the strided share rank::world_size of the validation images, and the counts
are summed (resnet.engine.tasks); here the shares are evaluated one after another in this process,
and their counts are summed by hand.
"""
from __future__ import annotations

import pytest
import torch

from resnet.data.imagenet.evaluation import imagenet_val_loader, ten_crop_counts
from resnet.data.imagenet.synthetic import make_synthetic_imagenet
from resnet.engine.tasks import error_counts
from resnet.models.nets import build_model
from tests.unit.test_imagenet_input import need_dali


@pytest.fixture(scope="module")
def odd_set(tmp_path_factory):
    """7 validation images per class over 3 classes (21: shares of 11 and 10, of 7 each over 3)."""
    return make_synthetic_imagenet(tmp_path_factory.mktemp("sharded") / "set", num_classes=3, train_per_class=2,
                                   val_per_class=7)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    net = build_model("resnet-18", num_classes=3).eval()
    with torch.no_grad():  # a net whose answers differ from image to image (not one class for all)
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2)
    return net


def centre_counts(model, root, loader: str, rank: int, world: int) -> tuple[int, int]:
    if loader == "dali":
        from resnet.data.imagenet.dali import dali_val_loader as make
    else:
        make = imagenet_val_loader
    batches = make(root, batch_size=4, resize=36, crop=32, workers=0, rank=rank, world_size=world)
    return error_counts(model, batches, "cpu")


@pytest.mark.parametrize("loader", ["pil", "dali"])
@pytest.mark.parametrize("world", [2, 3])
def test_centre_crop_counts_over_shares_equal_one_process(model, odd_set, loader, world):
    if loader == "dali":
        need_dali()
    whole = centre_counts(model, odd_set, loader, 0, 1)
    shares = [centre_counts(model, odd_set, loader, rank, world) for rank in range(world)]
    assert [total for _, total in shares] == [len(range(rank, 21, world)) for rank in range(world)]
    assert tuple(map(sum, zip(*shares))) == whole
    assert 0 < whole[0] < whole[1]  # some right, some wrong: a miscount would show


def test_ten_crop_counts_over_shares_equal_one_process(model, odd_set):
    whole = ten_crop_counts(model, odd_set, short_side=36, crop=32, batch_size=4, workers=0)
    shares = [ten_crop_counts(model, odd_set, short_side=36, crop=32, batch_size=4, workers=0, rank=rank,
                              world_size=2) for rank in (0, 1)]
    assert (sum(s.top1_correct for s in shares), sum(s.topk_correct for s in shares),
            sum(s.images for s in shares)) == (whole.top1_correct, whole.topk_correct, whole.images)
    assert whole.images == 21 and 0 < whole.top1_correct < 21
