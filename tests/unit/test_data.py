"""Data sources, caches, the paper's augmentation and sampling (resnet.data); CPU, real CIFAR-10.

The real data is the JPEG CIFAR-10 tarball in ../shared/data next to the repository; it is decoded
once per test session into a session temporary cache. ImageNet is tested on a generated synthetic
set (ILSVRC2012 is never part of the tests).
"""

from __future__ import annotations

import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet.data.cifar.stream import (
    CifarEvalSet,
    CifarTrainStream,
    augment_batch,
    draw_augmentation,
    eval_batches,
    pixel_mean,
    take_subset,
    train_val_split,
)
from resnet.data.cifar.source import load_cifar10
from resnet.data.errors import DataError
from resnet.data.imagenet.crops import IMAGENET_MEAN, PCA_EIGENVALUES, PCA_EIGENVECTORS, finish_batch
from resnet.data.imagenet.folders import resolve_imagenet_root
from resnet.data.imagenet.pil import ImageNetTrainSet, imagenet_train_loader
from resnet.data.imagenet.sampler import ResumableSampler
from resnet.data.imagenet.synthetic import make_synthetic_imagenet
from resnet.data.imagenet.evaluation import imagenet_val_loader, ten_crop_eval
from tests.support import CIFAR_TARBALL, require_cifar

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cifar_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cifar-cache")


@pytest.fixture(scope="session")
def cifar(cifar_cache):
    return load_cifar10(require_cifar(), cifar_cache)


@pytest.fixture(scope="session")
def small(cifar):
    """A few real images per class: 2 train and 1 test each, with their labels."""
    def pick(labels, per_class):
        return np.concatenate([np.flatnonzero(labels == label)[:per_class] for label in range(10)])

    train, test = pick(cifar.train_labels, 2), pick(cifar.test_labels, 1)
    return dict(train_images=cifar.train_images[train], train_labels=cifar.train_labels[train],
                test_images=cifar.test_images[test], test_labels=cifar.test_labels[test])


def write_image_folder(root: Path, small: dict) -> Path:
    """The small set as an ImageFolder tree of lossless PNGs."""
    for split in ("train", "test"):
        for number, (image, label) in enumerate(zip(small[f"{split}_images"], small[f"{split}_labels"])):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{number:04d}.png")
    return root


@pytest.fixture(scope="session")
def synthetic_imagenet(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet") / "synthetic"
    return make_synthetic_imagenet(root, num_classes=4, train_per_class=6, val_per_class=3)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 sources and the cache
# ---------------------------------------------------------------------------------------------


def test_real_tarball_loads_with_paper_split_sizes(cifar):
    assert cifar.train_images.shape == (50000, 32, 32, 3) and cifar.train_images.dtype == np.uint8
    assert cifar.test_images.shape == (10000, 32, 32, 3) and cifar.test_images.dtype == np.uint8
    assert cifar.train_labels.dtype == np.int64 and cifar.test_labels.dtype == np.int64
    assert cifar.classes == CLASSES
    assert np.bincount(cifar.train_labels).tolist() == [5000] * 10
    assert np.bincount(cifar.test_labels).tolist() == [1000] * 10
    assert cifar.source == str(CIFAR_TARBALL.resolve())
    assert 80 < cifar.train_images.mean() < 160  # real photographs, not blank


def test_cache_hit_reads_the_cache_and_decodes_nothing(cifar, cifar_cache, monkeypatch):
    from resnet.data.cifar import source

    decoded = []
    decode = source._decode_source
    monkeypatch.setattr(source, "_decode_source", lambda *args: decoded.append(args) or decode(*args))
    (cached,) = cifar_cache.glob("cifar10-*.npz")
    written = cached.stat().st_mtime_ns
    again = load_cifar10(CIFAR_TARBALL, cifar_cache)
    assert decoded == [] and cached.stat().st_mtime_ns == written  # read back, not decoded or written again
    assert len(list(cifar_cache.glob("cifar10-*.npz"))) == 1
    assert not list(cifar_cache.glob("*.tmp"))
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(again, field), getattr(cifar, field))
    assert again.classes == cifar.classes


def test_image_folder_source(small, tmp_path):
    root = write_image_folder(tmp_path / "folder", small)
    loaded = load_cifar10(root, tmp_path / "cache", partial=True)
    assert loaded.classes == CLASSES
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(loaded, field), small[field])


def test_tarball_with_top_folder_source(small, tmp_path):
    root = write_image_folder(tmp_path / "folder", small)
    tarball = tmp_path / "small.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(root, arcname="cifar-small")
    loaded = load_cifar10(tarball, tmp_path / "cache", partial=True)
    np.testing.assert_array_equal(loaded.train_images, small["train_images"])
    np.testing.assert_array_equal(loaded.test_labels, small["test_labels"])


def test_torchvision_pickle_source(small, tmp_path):
    folder = tmp_path / "tv" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_flat = small["train_images"].transpose(0, 3, 1, 2).reshape(-1, 3072)
    names = [f"data_batch_{i}" for i in range(1, 6)]
    for number, chunk in zip(names, np.array_split(np.arange(len(train_flat)), 5)):
        batch = {"data": train_flat[chunk], "labels": small["train_labels"][chunk].tolist()}
        (folder / number).write_bytes(pickle.dumps(batch))
    test_flat = small["test_images"].transpose(0, 3, 1, 2).reshape(-1, 3072)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": test_flat, "labels": small["test_labels"].tolist()}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CLASSES}))
    for source in (tmp_path / "tv", folder):  # the torchvision root or the batches folder itself
        loaded = load_cifar10(source, tmp_path / "cache", partial=True)
        assert loaded.classes == CLASSES
        for field in ("train_images", "train_labels", "test_images", "test_labels"):
            np.testing.assert_array_equal(getattr(loaded, field), small[field])


def test_missing_source_names_the_config_key(tmp_path):
    with pytest.raises(DataError, match=r"data\.cifar10") as raised:
        load_cifar10(tmp_path / "nowhere", tmp_path / "cache")
    assert isinstance(raised.value, ValueError)
    assert "\n" not in str(raised.value) and "nowhere" in str(raised.value)


def test_malformed_sources_raise_data_error(small, tmp_path):
    no_test = write_image_folder(tmp_path / "no-test", small)
    for file in (no_test / "test").rglob("*.png"):
        file.unlink()
    for folder in sorted((no_test / "test").iterdir()):
        folder.rmdir()
    (no_test / "test").rmdir()
    with pytest.raises(DataError, match="test/"):
        load_cifar10(no_test, tmp_path / "cache", partial=True)

    wrong_size = write_image_folder(tmp_path / "wrong-size", small)
    Image.new("RGB", (28, 28)).save(wrong_size / "train" / "cat" / "9999.png")
    with pytest.raises(DataError, match="32x32"):
        load_cifar10(wrong_size, tmp_path / "cache", partial=True)

    empty_class = write_image_folder(tmp_path / "empty-class", small)
    (empty_class / "train" / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra"):
        load_cifar10(empty_class, tmp_path / "cache", partial=True)

    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not a tarball at all" * 10)
    with pytest.raises(DataError, match="garbage.tar.gz"):
        load_cifar10(garbage, tmp_path / "cache")


# ---------------------------------------------------------------------------------------------
# Split, subset, mean
# ---------------------------------------------------------------------------------------------


def test_train_val_split_is_45k_5k_disjoint_and_seeded():
    train, val = train_val_split(50000, 5000, seed=0)
    assert len(train) == 45000 and len(val) == 5000
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.union1d(train, val), np.arange(50000))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    again_train, again_val = train_val_split(50000, 5000, seed=0)
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(train, again_train)
    assert not np.array_equal(val, train_val_split(50000, 5000, seed=1)[1])


def test_take_subset_is_fixed_and_balanced(cifar):
    images, labels = take_subset(cifar.train_images, cifar.train_labels, 1005, seed=3)
    assert images.shape == (1005, 32, 32, 3) and len(labels) == 1005
    assert np.bincount(labels, minlength=10).min() >= 100
    again_images, _ = take_subset(cifar.train_images, cifar.train_labels, 1005, seed=3)
    np.testing.assert_array_equal(images, again_images)


def test_pixel_mean_is_the_per_pixel_mean_image(cifar):
    mean = pixel_mean(cifar.train_images[:1000])
    assert mean.shape == (3, 32, 32) and mean.dtype == torch.float32
    expected = cifar.train_images[:1000].astype(np.float64).mean(axis=0).transpose(2, 0, 1) / 255
    np.testing.assert_allclose(mean.numpy(), expected, atol=1e-6)
    assert 0.0 < float(mean.min()) and float(mean.max()) < 1.0


# ---------------------------------------------------------------------------------------------
# CIFAR-10 augmentation and the training stream
# ---------------------------------------------------------------------------------------------


def mean_subtracted(images_nhwc: np.ndarray, mean: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(images_nhwc).permute(0, 3, 1, 2).float() / 255 - mean


def test_augmentation_draws_cover_paper_ranges():
    offsets, flips = zip(*(draw_augmentation(seed=0, iteration=i, batch_size=128) for i in range(100)))
    offsets, flips = torch.cat(offsets), torch.cat(flips)
    assert int(offsets.min()) == 0 and int(offsets.max()) == 8  # 4-pixel pad: offsets 0..8
    assert set(torch.unique(offsets).tolist()) == set(range(9))
    assert 0.47 < flips.float().mean().item() < 0.53


def test_center_view_and_flip_and_zero_border(cifar):
    images, mean = cifar.train_images[:16], pixel_mean(cifar.train_images[:1000])
    uint8_nchw = torch.from_numpy(images).permute(0, 3, 1, 2)
    expected = mean_subtracted(images, mean)
    centre = augment_batch(uint8_nchw, mean, torch.full((16, 2), 4), torch.zeros(16, dtype=torch.bool))
    torch.testing.assert_close(centre, expected, rtol=0, atol=1e-6)
    flipped = augment_batch(uint8_nchw, mean, torch.full((16, 2), 4), torch.ones(16, dtype=torch.bool))
    torch.testing.assert_close(flipped, expected.flip(-1), rtol=0, atol=1e-6)
    corner = augment_batch(uint8_nchw, mean, torch.zeros(16, 2, dtype=torch.int64), torch.zeros(16, dtype=torch.bool))
    assert torch.all(corner[:, :, :4, :] == 0) and torch.all(corner[:, :, :, :4] == 0)
    torch.testing.assert_close(corner[:, :, 4:, 4:], expected[:, :, :28, :28], rtol=0, atol=1e-6)


def test_augment_batch_matches_a_per_image_reference(cifar):
    images, mean = cifar.train_images[:64], pixel_mean(cifar.train_images[:1000])
    offsets, flips = draw_augmentation(seed=5, iteration=11, batch_size=64)
    got = augment_batch(torch.from_numpy(images).permute(0, 3, 1, 2), mean, offsets, flips)
    padded = torch.nn.functional.pad(mean_subtracted(images, mean), (4, 4, 4, 4))
    for i in range(64):
        dy, dx = offsets[i].tolist()
        crop = padded[i, :, dy:dy + 32, dx:dx + 32]
        torch.testing.assert_close(got[i], crop.flip(-1) if flips[i] else crop, rtol=0, atol=0)


def make_stream(cifar, seed=0, batch_size=128, **options) -> CifarTrainStream:
    images, labels = cifar.train_images[:5000], cifar.train_labels[:5000]
    return CifarTrainStream(images, labels, pixel_mean(images), batch_size, seed, "cpu", **options)


def test_stream_batches_are_pure_functions_of_seed_and_iteration(cifar):
    stream = make_stream(cifar)
    x, y = stream.batch(7)
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    again_x, again_y = stream.batch(7)
    torch.testing.assert_close(x, again_x, rtol=0, atol=0)
    assert torch.equal(y, again_y)
    resumed_x, resumed_y = make_stream(cifar).batch(7)  # a fresh stream: resuming needs no state
    torch.testing.assert_close(x, resumed_x, rtol=0, atol=0)
    assert torch.equal(y, resumed_y)
    assert not torch.equal(make_stream(cifar, seed=1).batch(7)[0], x)
    assert not torch.equal(stream.batch(8)[0], x)
    # later iterations, far past an epoch boundary, also resume exactly
    torch.testing.assert_close(make_stream(cifar).batch(1234)[0], stream.batch(1234)[0], rtol=0, atol=0)


def test_stream_samples_each_image_once_per_epoch(cifar):
    stream = make_stream(cifar, batch_size=100)  # 5000 images: 50 batches per epoch
    first = np.concatenate([stream.indices(i) for i in range(50)])
    second = np.concatenate([stream.indices(i) for i in range(50, 100)])
    np.testing.assert_array_equal(np.sort(first), np.arange(5000))
    np.testing.assert_array_equal(np.sort(second), np.arange(5000))
    assert not np.array_equal(first, second)
    assert stream.epoch_of(75) == 1.5
    straddling = make_stream(cifar, batch_size=128)  # 5000 = 39 * 128 + 8: batch 39 straddles
    stream_positions = np.concatenate([straddling.indices(i) for i in range(79)])
    np.testing.assert_array_equal(np.sort(stream_positions[:5000]), np.arange(5000))


def test_stream_options_and_unaugmented_view(cifar):
    x, _ = make_stream(cifar, channels_last=True, dtype=torch.bfloat16).batch(0)
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    plain = make_stream(cifar, augment=False)
    x, y = plain.batch(3)
    index = plain.indices(3)
    torch.testing.assert_close(x, mean_subtracted(cifar.train_images[:5000][index], plain.mean), rtol=0, atol=1e-6)
    assert torch.equal(y, torch.from_numpy(cifar.train_labels[:5000][index]))


def test_eval_set_is_the_single_original_view(cifar):
    images, labels, mean = cifar.test_images[:300], cifar.test_labels[:300], pixel_mean(cifar.train_images[:1000])
    evaluation = CifarEvalSet(images, labels, mean, "cpu")
    batches = list(evaluation.batches(128))
    assert [len(y) for _, y in batches] == [128, 128, 44]
    x = torch.cat([x for x, _ in batches])
    torch.testing.assert_close(x, mean_subtracted(images, mean), rtol=0, atol=1e-6)
    assert torch.equal(torch.cat([y for _, y in batches]), torch.from_numpy(labels))
    again = torch.cat([x for x, _ in eval_batches(images, labels, mean, 100, "cpu")])
    torch.testing.assert_close(again, x, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# ImageNet (synthetic)
# ---------------------------------------------------------------------------------------------


def test_synthetic_imagenet_layout_and_idempotence(synthetic_imagenet):
    root = synthetic_imagenet
    assert "NOT ILSVRC2012" in (root / "SYNTHETIC.txt").read_text()
    classes = sorted(p.name for p in (root / "train").iterdir())
    assert classes == [f"synthetic_n{i:04d}" for i in range(4)]
    assert len(list((root / "train").rglob("*.JPEG"))) == 24 and len(list((root / "val").rglob("*.JPEG"))) == 12
    sizes = {Image.open(file).size for file in (root / "train").rglob("*.JPEG")}
    assert len(sizes) > 5 and all(40 <= side <= 72 for size in sizes for side in size)
    written = {path: path.stat().st_mtime_ns for path in root.rglob("*")}
    assert make_synthetic_imagenet(root, num_classes=4, train_per_class=6, val_per_class=3) == root
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*")} == written  # nothing made again
    assert not list(root.parent.glob(".synthetic.tmp-*"))


def test_train_set_transform_is_seeded(synthetic_imagenet):
    dataset = ImageNetTrainSet(synthetic_imagenet, short_side=(36, 48), crop=32)
    pixels, offset, label = dataset[(5, 123)]
    assert pixels.shape == (32, 32, 3) and pixels.dtype == torch.uint8 and label == 0  # uint8 from workers
    assert offset.shape == (3,) and offset.dtype == torch.float32 and 0 < float(offset.abs().max()) < 0.2
    again = dataset[(5, 123)]
    assert torch.equal(again[0], pixels) and torch.equal(again[1], offset)
    assert not torch.equal(dataset[(5, 124)][0], pixels)
    x = finish_batch(pixels[None], offset[None])
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32 and -1.0 < float(x.mean()) < 1.0


def test_train_crop_is_the_crop_of_the_resized_image(synthetic_imagenet):
    """Sec. 3.4: shorter side resized to S in [256, 480] (here [36, 48]), random crop, flip, colour.

    The set resamples only the crop's box; the reference resizes the whole image, then crops,
    with the same draws. They agree up to PIL's 8-bit rounding between its two passes. The
    device-side finish is x / 255 + eigvec @ (alpha * eigval) - mean, with alpha the draws'.
    """
    from PIL import Image as PILImage

    from resnet.data.imagenet.crops import shorter_side_size
    from resnet.data.imagenet.folders import open_rgb

    dataset = ImageNetTrainSet(synthetic_imagenet, short_side=(36, 48), crop=32)
    for index, seed in [(0, 1), (3, 7), (11, 42), (20, 5)]:
        pixels, offset, _ = dataset[(index, seed)]
        rng = np.random.default_rng(seed)
        image = open_rgb(dataset.samples[index][0])
        resized = image.resize(shorter_side_size(image.size, int(rng.integers(36, 49))),
                               PILImage.Resampling.BILINEAR)
        top, left = int(rng.integers(0, resized.size[1] - 32 + 1)), int(rng.integers(0, resized.size[0] - 32 + 1))
        crop = resized.crop((left, top, left + 32, top + 32))
        if rng.random() < 0.5:
            crop = crop.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
        reference = torch.from_numpy(np.array(crop, dtype=np.uint8))
        assert int((pixels.int() - reference.int()).abs().max()) <= 2
        alpha = torch.from_numpy(rng.normal(0.0, 0.1, 3).astype(np.float32))
        lighting = torch.tensor(PCA_EIGENVECTORS) @ (alpha * torch.tensor(PCA_EIGENVALUES))
        torch.testing.assert_close(offset, lighting)
        expected = reference.permute(2, 0, 1).float() / 255 + lighting.view(3, 1, 1) - torch.tensor(
            IMAGENET_MEAN).view(3, 1, 1)
        assert float((finish_batch(pixels[None], offset[None])[0] - expected).abs().max()) <= 2.5 / 255


def test_train_loader_shapes_and_worker_independence(synthetic_imagenet):
    options = dict(batch_size=8, seed=0, short_side=(36, 48), crop=32)
    serial = imagenet_train_loader(synthetic_imagenet, workers=0, **options)
    batches = [next(serial) for _ in range(4)]  # 32 samples: past the first epoch of 24
    for x, y in batches:
        assert x.shape == (8, 3, 32, 32) and y.shape == (8,) and y.dtype == torch.int64
    parallel = imagenet_train_loader(synthetic_imagenet, workers=2, **options)
    for (x, y), (again_x, again_y) in zip(batches, (next(parallel) for _ in range(4))):
        torch.testing.assert_close(again_x, x, rtol=0, atol=0)
        assert torch.equal(again_y, y)
    resumed = imagenet_train_loader(synthetic_imagenet, workers=0, start_sample=16, **options)
    torch.testing.assert_close(next(resumed)[0], batches[2][0], rtol=0, atol=0)


def test_val_loader_centre_crops(synthetic_imagenet):
    loader = imagenet_val_loader(synthetic_imagenet, batch_size=5, resize=36, crop=32, workers=0)
    shapes = [tuple(x.shape) for x, _ in loader]
    assert shapes == [(5, 3, 32, 32), (5, 3, 32, 32), (2, 3, 32, 32)]
    labels = torch.cat([y for _, y in loader])
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


class ConstantModel(torch.nn.Module):
    """Always ranks class 0 first, then 1, 2, ...; has one parameter so dtype can be read."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.scores = torch.nn.Parameter(-torch.arange(num_classes, dtype=torch.float32))

    def forward(self, x):
        return self.scores.expand(x.shape[0], -1) + 0 * x.mean(dim=(1, 2, 3))[:, None]


def test_ten_crop_eval_on_tiny_models(synthetic_imagenet):
    options = dict(short_side=36, crop=32, batch_size=4, device="cpu", workers=0)
    model = ConstantModel(4).train()
    result = ten_crop_eval(model, synthetic_imagenet, **options)
    assert result["top1_error"] == pytest.approx(75.0)  # balanced: 1 class in 4 right
    assert result["top5_error"] == 0.0 and result["top5_k"] == 4 and result["num_images"] == 12
    assert model.training  # restored
    learned = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(8, 4))
    result = ten_crop_eval(learned, synthetic_imagenet, **options)
    assert 0.0 <= result["top5_error"] <= result["top1_error"] <= 100.0


def test_resumable_sampler_position_and_ddp_sharding():
    def global_batches(sampler, count, per_rank):
        stream = iter(sampler)
        return [[next(stream) for _ in range(per_rank)] for _ in range(count)]

    single = global_batches(ResumableSampler(100, 16, seed=4), 12, 16)
    epoch = [index for batch in single for index, _ in batch][:100]
    assert sorted(epoch) == list(range(100))  # one permutation per epoch
    resumed = ResumableSampler(100, 16, seed=4)
    resumed.set_position(5 * 16)
    assert global_batches(resumed, 7, 16) == single[5:]
    for world_size in (2, 4):
        ranks = [global_batches(ResumableSampler(100, 16, 4, rank, world_size, start_sample=32), 4, 16 // world_size)
                 for rank in range(world_size)]
        for k in range(4):
            union = [ranks[position % world_size][k][position // world_size] for position in range(16)]
            assert union == single[2 + k]  # the same global batch, in the same order
    with pytest.raises(ValueError):
        ResumableSampler(100, 10, seed=0, world_size=4)


def test_bad_imagenet_folders_raise_data_error(synthetic_imagenet, tmp_path):
    with pytest.raises(DataError, match=r"data\.imagenet"):
        imagenet_train_loader(tmp_path / "nowhere", batch_size=4, seed=0, short_side=(36, 48), crop=32, workers=0)
    (tmp_path / "no-val" / "train" / "n01").mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(tmp_path / "no-val" / "train" / "n01" / "a.JPEG")
    with pytest.raises(DataError, match="val/"):
        resolve_imagenet_root(tmp_path / "no-val", tmp_path / "cache")
    (tmp_path / "no-val" / "train" / "n02").mkdir()
    with pytest.raises(DataError, match="n02"):
        ImageNetTrainSet(tmp_path / "no-val", (36, 48), 32)
    (tmp_path / "no-val" / "train" / "n02" / "broken.JPEG").write_bytes(b"not a jpeg")
    shutil.copytree(tmp_path / "no-val" / "train", tmp_path / "no-val" / "val")  # a job lists both splits
    dataset = ImageNetTrainSet(tmp_path / "no-val", (36, 48), 32)
    with pytest.raises(DataError, match="broken.JPEG"):
        dataset[(1, 0)]
    assert resolve_imagenet_root("synthetic", tmp_path / "cache").joinpath("SYNTHETIC.txt").is_file()
