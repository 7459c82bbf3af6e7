"""One listing, one identity (resnet.data.imagenet.listing): an ImageNet job lists its folder once,
every consumer reads that listing, and its digest (names and sizes) is the data's identity in
metrics.json and MLflow."""
from __future__ import annotations

import os
import pickle
import shutil

import pytest
import torch

from resnet.data.imagenet.listing import list_imagenet
from resnet.data.imagenet.synthetic import make_synthetic_imagenet
from tests.support.configs import config_builder, job_of


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return make_synthetic_imagenet(tmp_path_factory.mktemp("listing") / "set", num_classes=3, train_per_class=4,
                                   val_per_class=2)


def test_the_digest_is_names_and_sizes_wherever_the_folder_is(small_set, tmp_path):
    listing = list_imagenet(small_set)
    copy = tmp_path / "copy"
    shutil.copytree(small_set, copy)
    assert list_imagenet(copy).digest == listing.digest  # relative names: the same data elsewhere
    assert list_imagenet(copy).samples("val")[0][0].startswith(str(copy))
    val = copy / "val"
    first, second = sorted(val.iterdir())[:2]
    moved = sorted(first.iterdir())[0]
    os.rename(moved, second / moved.name)  # a validation image in another class: another data set
    assert list_imagenet(copy).digest != listing.digest
    os.rename(second / moved.name, moved)
    with open(moved, "ab") as handle:
        handle.write(b"\0")  # one byte more
    assert list_imagenet(copy).digest != listing.digest


def test_the_listing_pickles_small_and_whole(small_set):
    listing = list_imagenet(small_set)
    data = pickle.dumps(listing)
    names = sum(len(os.path.basename(path)) + 1 for split in ("train", "val") for path, _ in listing.samples(split))
    assert len(data) < names + 1000  # names once each, relative to the root (~30 MB for ILSVRC2012)
    again = pickle.loads(data)
    assert again == listing and again.samples("train") == listing.samples("train")
    assert (again.count("train"), again.count("val"), again.num_classes) == (12, 6, 3)


def test_an_imagenet_job_lists_its_folder_once_and_records_its_digest(tmp_path, monkeypatch, torch_threads):
    from resnet.engine.distributed import Distributed
    from resnet.engine.tasks import ImageNetTask
    from resnet.models.nets import build_model

    job = job_of(config_builder(tmp_path / "store", tmp_path / "cache")(), "resnet-18/seed-0")
    listed, scandir = [], os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": listed.append(os.path.basename(path)) or scandir(path))
    task = ImageNetTask(job, torch.device("cpu"), Distributed(), loader="pil")
    model = build_model("resnet-18", num_classes=task.num_classes)
    task.train_batch(0)
    task.evaluate(model)
    final = task.final(model)
    # One listing for training, validation and 10-crop testing: each split's class folders read once.
    assert (listed.count("train"), listed.count("val")) == (1, 1)
    assert final["top1_10crop"] >= 0 and task.num_classes == 10
    assert task.data_info["content_hash"] == list_imagenet(tmp_path / "cache" / "synthetic-imagenet").digest
    assert (task.data_info["kind"], task.data_info["train_images"], task.data_info["val_images"]) == ("synthetic", 200, 50)
