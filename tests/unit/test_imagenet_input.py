"""The ImageNet input paths: DALI's pipeline (its CPU backend here) against the PIL loader.

Both loaders take their crops from resnet.imagenet.train_crop / centre_crop; these tests check
that DALI executes them as PIL does (the same images in the same order, crops within a grey
level or two), that a trained net predicts the same through either, that TenCrop's 10-crop gives
the hand-written 10 crops' predictions, and the one-line errors. DALI's GPU decoder ("mixed")
cannot run here; benchmarks/gpu.py's `imagenet` section runs the same pipeline on a GPU.
DALI is the optional `dali` extra, part of the test install (`bash scripts/install.sh --test`);
without it the DALI tests skip, and fail under CI=true.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet.data.imagenet.crops import IMAGENET_MEAN, crop_pixels, finish_batch, shorter_side_size, train_crop
from resnet.data.imagenet.folders import open_rgb, resolve_imagenet_root
from resnet.data.imagenet.loaders import pick_loader
from resnet.data.imagenet.pil import ImageNetTrainSet, imagenet_train_loader

from resnet.data.imagenet import dali as imagenet_dali

from resnet.data.imagenet import evaluation as imagenet_eval
from resnet.data.errors import DataError
from resnet.data.imagenet.synthetic import make_synthetic_imagenet
from tests.support import skip_or_fail


def need_dali() -> None:
    if not imagenet_dali.dali_available():
        skip_or_fail("NVIDIA DALI is not installed (bash scripts/install.sh --test installs it)")


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """Smoke-size JPEGs (40-72 px sides): crops of 32 from shorter sides in [36, 48] (upsampling)."""
    return make_synthetic_imagenet(tmp_path_factory.mktemp("small") / "set", num_classes=4, train_per_class=6,
                                   val_per_class=3)


@pytest.fixture(scope="module")
def large_set(tmp_path_factory) -> Path:
    """ImageNet-size JPEGs (300-500 px sides): the paper's 224 crops from shorter sides in [256, 480]."""
    return make_synthetic_imagenet(tmp_path_factory.mktemp("large") / "set", num_classes=2, train_per_class=4,
                                   val_per_class=3, min_side=300, max_side=500, seed=1)


SMALL = dict(short_side=(36, 48), crop=32)


def pixels_of(x: torch.Tensor) -> torch.Tensor:
    """Finished training batches back in grey levels (the offsets cancel between two loaders)."""
    return x * 255


# ---------------------------------------------------------------------------------------------
# The device-side finish and the choice of loader
# ---------------------------------------------------------------------------------------------


def test_finish_batch_is_channels_last_and_exact():
    images = torch.randint(0, 256, (2, 5, 6, 3), dtype=torch.uint8)
    offsets = torch.tensor([[0.01, -0.02, 0.03], [0.0, 0.0, 0.0]])
    x = finish_batch(images, offsets, channels_last=True)
    assert x.shape == (2, 3, 5, 6) and x.is_contiguous(memory_format=torch.channels_last)
    # torchvision's own scaling to [0, 1] and mean subtraction (std 1), then the lighting offsets
    from torchvision.transforms.v2 import functional as tvf

    scaled = tvf.to_dtype(images.permute(0, 3, 1, 2), torch.float32, scale=True)
    expected = tvf.normalize(scaled, list(IMAGENET_MEAN), [1.0, 1.0, 1.0]) + offsets.view(2, 3, 1, 1)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)
    # one pixel by hand: 255 in the red channel with offset 0.01 is 1 + 0.01 - 0.485 = 0.525
    images[0, 0, 0, 0] = 255
    assert float(finish_batch(images, offsets)[0, 0, 0, 0]) == pytest.approx(0.525, abs=1e-6)
    assert finish_batch(images, offsets).is_contiguous()


def test_pick_loader(monkeypatch):
    assert pick_loader("pil", "cuda") == "pil"
    assert pick_loader("auto", "cpu") == "pil"  # DALI's CPU backend only when asked for
    with pytest.raises(DataError, match="data.imagenet_loader is 'fast'"):
        pick_loader("fast", "cpu")
    monkeypatch.setattr(imagenet_dali, "dali_available", lambda: False)  # DALI cannot be uninstalled here
    with pytest.raises(DataError) as caught:
        pick_loader("dali", "cuda")
    message = str(caught.value)
    assert "\n" not in message and "data.imagenet_loader is 'dali'" in message and "not installed" in message
    assert "install.sh --dali" in message
    assert pick_loader("auto", "cuda") == "pil"  # auto falls back


def test_auto_picks_dali_on_cuda_when_installed():
    need_dali()
    assert pick_loader("auto", "cuda") == "dali" and pick_loader("dali", "cpu") == "dali"


# ---------------------------------------------------------------------------------------------
# Equivalence: the same samples, the same crops
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["small", "large"])
def test_dali_training_crops_equal_pil(which, small_set, large_set):
    need_dali()
    root, sizes = (small_set, SMALL) if which == "small" else (large_set, dict(short_side=(256, 480), crop=224))
    options = dict(batch_size=4, seed=5, workers=0, **sizes)
    pil, dali = imagenet_train_loader(root, **options), imagenet_dali.dali_train_loader(root, **options)
    for _ in range(3):  # past the first epoch of the large set (8 images)
        (x, y), (dx, dy) = next(pil), next(dali)
        assert torch.equal(y, dy)  # the same images in the same order
        gap = (pixels_of(x) - pixels_of(dx)).abs().round()
        # Measured: at most 1 grey level (mean 0.2), except where a crop touches the image's own
        # border: PIL renormalises the cut-off filter there, DALI repeats the edge pixel (up to 3).
        assert float(gap.max()) <= 3 and float(gap.mean()) < 0.3 and float((gap > 1).float().mean()) < 0.002


def test_dali_crop_window_is_the_whole_image_crop(large_set):
    """Decoding only the crop's region (plus the filter's reach) changes nothing: the crop equals
    the box resampled from the whole decoded image."""
    need_dali()
    dataset = ImageNetTrainSet(large_set)
    for index, seed in [(0, 3), (5, 8)]:
        image = open_rgb(dataset.samples[index][0])
        spec = train_crop(image.size, seed, (256, 480), 224)
        anchor, shape, start, end = imagenet_dali.slice_window(image.size, spec.box, 224)
        region = image.crop((anchor[1], anchor[0], anchor[1] + shape[1], anchor[0] + shape[0]))
        moved = (start[1], start[0], end[1], end[0])
        whole = crop_pixels(image, spec, 224).astype(int)
        assert np.abs(crop_pixels(region, spec._replace(box=moved), 224).astype(int) - whole).max() <= 1


def test_dali_resume_and_ddp_shards_match_pil(small_set):
    need_dali()
    options = dict(batch_size=8, seed=2, workers=0, **SMALL)
    whole = [next_batch for next_batch, _ in zip(imagenet_dali.dali_train_loader(small_set, **options), range(4))]
    resumed = imagenet_dali.dali_train_loader(small_set, start_sample=16, **options)
    assert all(torch.equal(next(resumed)[0], whole[k][0]) for k in (2, 3))
    for rank in (0, 1):
        shard = next(imagenet_dali.dali_train_loader(small_set, rank=rank, world_size=2, **options))
        pil_shard = next(imagenet_train_loader(small_set, rank=rank, world_size=2, **options))
        assert torch.equal(shard[0], whole[0][0][rank::2]) and torch.equal(shard[1], pil_shard[1])


def test_dali_reader_processes_give_the_same_batches(small_set):
    """DALI's parallel external source (reader processes, spawned) = reading in the process."""
    need_dali()
    options = dict(batch_size=8, seed=7, workers=2, **SMALL)
    serial = imagenet_dali.dali_train_loader(small_set, readers=0, **options)
    parallel = imagenet_dali.dali_train_loader(small_set, readers=2, **options)
    for _ in range(3):
        (x, y), (px, py) = next(serial), next(parallel)
        assert torch.equal(x, px) and torch.equal(y, py)


def test_dali_validation_equals_pil_and_repeats(small_set):
    need_dali()
    pil = list(imagenet_eval.imagenet_val_loader(small_set, batch_size=5, resize=36, crop=32, workers=0))
    dali = imagenet_dali.dali_val_loader(small_set, batch_size=5, resize=36, crop=32, workers=0)
    for _ in range(2):  # the pipeline is kept between passes; each pass is the whole set once
        batches = list(dali)
        assert [tuple(x.shape) for x, _ in batches] == [(5, 3, 32, 32), (5, 3, 32, 32), (2, 3, 32, 32)]
        assert torch.cat([y for _, y in batches]).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
        gap = max(float((x - dx).abs().max()) for (x, _), (dx, _) in zip(pil, batches))
        assert gap * 255 <= 2.01


# ---------------------------------------------------------------------------------------------
# Predictions of a trained net: DALI's centre crop = PIL's; TenCrop = the hand-written 10 crops
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(small_set):
    """ResNet-18 (the smoke cells' net) trained briefly on the small set through the PIL loader."""
    from resnet.models.nets import build_model

    torch.manual_seed(0)
    model = build_model("resnet-18", num_classes=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    stream = imagenet_train_loader(small_set, batch_size=16, seed=0, workers=0, **SMALL)
    for _ in range(15):
        x, y = next(stream)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def predictions(model, batches) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x).argmax(1) for x, _ in batches])


def test_centre_crop_predictions_equal_through_dali(trained, small_set):
    need_dali()
    pil = predictions(trained, imagenet_eval.imagenet_val_loader(small_set, 4, resize=36, crop=32, workers=0))
    dali = predictions(trained, imagenet_dali.dali_val_loader(small_set, 4, resize=36, crop=32, workers=0))
    labels = torch.tensor([label for _, label in imagenet_eval.ImageNetEvalSet(small_set, 36, 32).samples])
    # it learned something (chance is 1 in 4; measured 6 of 12), so the comparison means something
    assert (pil == labels).float().mean() > 0.3 and len(set(pil.tolist())) > 1
    assert torch.equal(pil, dali)


def hand_ten_crop(image: Image.Image, resize: int, crop: int) -> torch.Tensor:
    """The 10 crops written out: 4 corners and the centre ((side - crop) // 2), then their mirrors."""
    image = imagenet_eval._resize_shorter(image, resize)
    width, height = image.size
    corners = [(0, 0), (width - crop, 0), (0, height - crop), (width - crop, height - crop),
               ((width - crop) // 2, (height - crop) // 2)]
    views = [np.array(image.crop((x, y, x + crop, y + crop))) for x, y in corners]
    views += [view[:, ::-1] for view in views]
    return torch.from_numpy(np.stack(views).copy())


def test_tencrop_gives_the_hand_written_ten_crop_predictions(trained, small_set):
    dataset = imagenet_eval.ImageNetEvalSet(small_set, 36, 32, ten_crop=True)
    with torch.no_grad():
        for index, (file, _) in enumerate(dataset.samples):
            ours, _ = dataset[index]
            theirs = hand_ten_crop(open_rgb(file), 36, 32)
            scores = [trained(finish_batch(views, None)).softmax(1).mean(0) for views in (ours, theirs)]
            assert int(scores[0].argmax()) == int(scores[1].argmax())
            assert float((scores[0] - scores[1]).abs().max()) < 0.02


def test_tencrop_views_are_the_hand_written_ten_crops(tmp_path):
    """An image of 62x45 resized to shorter side 36 is 50x36: both margins around the 32 crop are
    even, where TenCrop's centre (rounded) and the hand-written (side - crop) // 2 agree. The 10
    views are then the same pixels, up to order (TenCrop mirrors the image before cropping)."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 62, 3), dtype=np.uint8))
    assert shorter_side_size(image.size, 36) == (50, 36)
    for split in ("train", "val"):
        (tmp_path / split / "only").mkdir(parents=True)
        image.save(tmp_path / split / "only" / "0.JPEG", quality=95)
    dataset = imagenet_eval.ImageNetEvalSet(tmp_path, 36, 32, ten_crop=True)
    ours, theirs = dataset[0][0], hand_ten_crop(open_rgb(dataset.samples[0][0]), 36, 32)
    assert ours.shape == theirs.shape == (10, 32, 32, 3)
    assert sorted(map(bytes, ours.numpy())) == sorted(map(bytes, theirs.numpy()))


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the file or the folder
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def corrupt_set(small_set, tmp_path) -> tuple[Path, Path]:
    import shutil

    root = tmp_path / "corrupt"
    shutil.copytree(small_set, root)
    victim = sorted((root / "train" / "synthetic_n0001").iterdir())[2]
    data = victim.read_bytes()
    victim.write_bytes(data[:200] + bytes(len(data) - 200))  # a valid header, then zeros
    return root, victim


@pytest.mark.parametrize("loader", ["pil", "dali"])
def test_corrupt_training_jpeg_is_one_line_naming_it(corrupt_set, loader):
    root, victim = corrupt_set
    options = dict(batch_size=24, seed=0, **SMALL)  # one batch holds the whole set
    if loader == "dali":
        need_dali()
        make, extra = imagenet_dali.dali_train_loader, dict(workers=0)
    else:
        # PIL's workers: in a process that has run DALI pipelines they are spawned, not forked (a
        # fork of DALI's threads can deadlock); this test runs after DALI tests and hung before that.
        make, extra = imagenet_train_loader, dict(workers=2)
    with pytest.raises(DataError) as caught:
        next(make(root, **options, **extra))
    message = str(caught.value)
    assert "\n" not in message and victim.name in message, message


def test_missing_class_folder_in_val_is_one_line(small_set, tmp_path):
    import shutil

    root = tmp_path / "missing"
    shutil.copytree(small_set, root)
    shutil.rmtree(root / "val" / "synthetic_n0002")
    for attempt in (lambda: resolve_imagenet_root(root, tmp_path),
                    lambda: imagenet_eval.imagenet_val_loader(root, 4, 36, 32, workers=0)):
        with pytest.raises(DataError) as caught:
            attempt()
        message = str(caught.value)
        assert "\n" not in message and "lacks the class folder 'synthetic_n0002'" in message


# ---------------------------------------------------------------------------------------------
# `python -m resnet cost`: the input ceiling of each ImageNet cell
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", ["pil", "dali"])
def test_input_ceiling_is_measured_per_loader(loader):
    from resnet.cost import input_ceiling

    if loader == "dali":
        need_dali()
    per_s, ms = input_ceiling(loader, (256, 480), 224, cores=8, device=torch.device("cpu"), images=8)
    assert 0.05 < ms < 100 and per_s > 0


def test_input_ceiling_flags_an_input_bound_cell():
    from resnet.config.load import load_config
    from resnet.cost import CellCost, format_cost

    cpu = torch.device("cpu")
    config = load_config("config.yaml")
    fast = CellCost("resnet-18/seed-0", "resnet-18", 600_000, 256, 224, 11_900.0, "rates.csv", 2_100.0,
                    "pil, 3.80 ms/image x 8 cores")
    slow = CellCost("resnet-50/seed-0", "resnet-50", 600_000, 256, 224, 1_000.0, "rates.csv", 2_100.0,
                    "pil, 3.80 ms/image x 8 cores")
    text = format_cost(config, [fast, slow], cpu)
    rows = {line.split()[0]: line for line in text.splitlines() if "/seed-" in line}
    assert rows["resnet-18/seed-0"].rstrip().endswith("INPUT-BOUND") and "2,100" in rows["resnet-18/seed-0"]
    assert rows["resnet-50/seed-0"].rstrip().endswith("keeps up")
    assert "Input-bound (the input is slower than the step; the hours above are too low): resnet-18/seed-0" in text
