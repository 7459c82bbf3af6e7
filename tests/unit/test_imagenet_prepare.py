"""ILSVRC2012 from its three archives to class folders (resnet.data.imagenet.prepare), on tiny archives
in exactly the official formats (tests/support/ilsvrc.py): the validation labels, torchvision's own
parsers as a second opinion, resuming, and one line for each broken archive with nothing half-built used.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import pytest

from resnet.config.preflight import check_archives, imagenet_kind
from resnet.config.schema import ConfigError
from resnet.config.sections import Data
from resnet.data.errors import DataError
from resnet.data.imagenet import prepare
from resnet.data.imagenet.devkit import read_devkit
from resnet.data.imagenet.folders import find_imagenet
from resnet.data.imagenet.listing import list_imagenet
from resnet.data.imagenet.prepare import prepare_imagenet, tar_members
from tests.support.ilsvrc import IDS, make_archives, write_devkit


def quiet(**options) -> dict:
    return dict(stream=io.StringIO(), **options)


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    return make_archives(tmp_path_factory.mktemp("ilsvrc") / "archives")


@pytest.fixture(scope="module")
def prepared(archives, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "imagenet"
    return out, prepare_imagenet(archives.folder, out, workers=2, partial=True, **quiet())


def copied(archives, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for path in (archives.train, archives.val, archives.devkit):
        shutil.copy(path, folder / path.name)
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def published(out: Path) -> list[str]:
    """What a cell could use in ``out``: the layout and its manifest (a staging area is not)."""
    return sorted(name for name in ("train", "val", "PREPARED.json") if (out / name).exists())


# ---------------------------------------------------------------------------------------------
# The layout: every validation image in its ground-truth class, labels in sorted-WNID order
# ---------------------------------------------------------------------------------------------


def test_validation_images_land_in_their_ground_truth_class(archives, prepared):
    out, manifest = prepared
    listing = list_imagenet(out)
    assert list(listing.classes) == archives.classes  # sorted WNIDs: ImageFolder's (and torchvision's) labels
    placed = {Path(path).name: listing.classes[label] for path, label in listing.samples("val")}
    assert placed == archives.truth
    assert (manifest["classes"], manifest["train_images"], manifest["val_images"]) == (4, 20, 12)
    assert manifest["digest"] == listing.digest
    # The fixture tells the orders apart: the ground truth applied to the files in archive order, or
    # read as "label = ID - 1", would put images in other classes.
    devkit = read_devkit(archives.devkit)
    in_archive_order = [Path(m.name).name for m in tar_members(archives.val)]
    assert dict(zip(in_archive_order, (devkit.wnid_of_id[i] for i in devkit.val_ids))) != archives.truth
    as_label = {name: archives.classes[ilsvrc_id - 1] for name, ilsvrc_id in
                zip(sorted(archives.truth), devkit.val_ids)}
    assert as_label != archives.truth and IDS[:4] != sorted(IDS[:4])


def test_the_same_layout_as_torchvisions_parsers(archives, prepared, tmp_path, monkeypatch):
    """torchvision's parse_devkit/train/val_archive on the same archives give the same folders.

    They check every archive against the official MD5; for these tiny archives the test sets their
    MD5s in torchvision's table, the only thing changed."""
    import torchvision.datasets.imagenet as torchvision_imagenet

    root = copied(archives, tmp_path / "torchvision")
    for key, (name, _) in list(torchvision_imagenet.ARCHIVE_META.items()):
        monkeypatch.setitem(torchvision_imagenet.ARCHIVE_META, key, (name, hashlib.md5((root / name).read_bytes()).hexdigest()))
    torchvision_imagenet.parse_devkit_archive(str(root))
    torchvision_imagenet.parse_train_archive(str(root))
    torchvision_imagenet.parse_val_archive(str(root))
    out, _ = prepared

    def files(folder: Path) -> list[str]:
        return sorted(str(path.relative_to(folder)) for split in ("train", "val") for path in (folder / split).rglob("*.JPEG"))

    assert files(out) == files(root) and len(files(out)) == 32
    assert sorted(torchvision_imagenet.load_meta_file(str(root))[0]) == archives.classes


def test_prepared_once_then_taken_as_it_is(archives, prepared):
    out, manifest = prepared
    file = next((out / "train" / archives.classes[0]).iterdir())
    before = file.stat().st_mtime_ns
    stream = io.StringIO()
    assert prepare_imagenet(archives.folder, out, workers=2, partial=True, stream=stream) == manifest
    assert stream.getvalue() == "" and file.stat().st_mtime_ns == before
    assert sorted(os.listdir(archives.folder)) == sorted(p.name for p in (archives.train, archives.val, archives.devkit))


def test_a_stopped_preparation_resumes_and_is_never_used_half_built(archives, prepared, tmp_path, monkeypatch):
    out = tmp_path / "out"
    extract, calls = prepare.extract_class, []

    def stopped_after_two(*job):
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C or a job's end would, between two classes
        calls.append(job[3])
        return extract(*job)

    monkeypatch.setattr(prepare, "extract_class", stopped_after_two)
    with pytest.raises(KeyboardInterrupt):
        prepare_imagenet(archives.folder, out, workers=1, partial=True, **quiet())
    assert published(out) == [] and imagenet_kind(str(out)) == "missing"
    done = {wnid: (out / ".partial" / "train" / wnid / f"{wnid}_1.JPEG").stat().st_mtime_ns for wnid in calls}
    (out / ".partial" / "train" / f".{archives.classes[3]}.tmp").mkdir()  # a class killed half-way
    monkeypatch.setattr(prepare, "extract_class", extract)

    stream = io.StringIO()
    manifest = prepare_imagenet(archives.folder, out, workers=1, partial=True, stream=stream)
    assert "2 of 4 classes already done" in stream.getvalue()
    assert {wnid: (out / "train" / wnid / f"{wnid}_1.JPEG").stat().st_mtime_ns for wnid in calls} == done
    assert manifest["digest"] == prepared[1]["digest"] and not (out / ".partial").exists()

    # Stopped while moving the result into place (train/ moved, val/ and the manifest not yet).
    (out / ".partial").mkdir()
    shutil.copy(tmp_path / "out" / "PREPARED.json", out / ".partial" / "PREPARED.json")
    (out / "PREPARED.json").unlink()
    os.rename(out / "val", out / ".partial" / "val")
    prepare.atomic_write_text(out / ".partial" / "SOURCE.json",
                              prepare.json.dumps({"format": prepare.FORMAT, "archives": manifest["archives"]}))
    assert prepare_imagenet(archives.folder, out, workers=1, partial=True, **quiet())["digest"] == manifest["digest"]
    assert {wnid: (out / "train" / wnid / f"{wnid}_1.JPEG").stat().st_mtime_ns for wnid in calls} == done


def test_other_archives_are_prepared_anew(archives, tmp_path):
    out = tmp_path / "out"
    first = prepare_imagenet(archives.folder, out, partial=True, **quiet())
    other = make_archives(tmp_path / "other", train_per_class=3, seed=1)
    second = prepare_imagenet(other.folder, out, partial=True, **quiet())
    assert second["train_images"] == 12 and second["digest"] != first["digest"]
    assert list_imagenet(out).digest == second["digest"]


# ---------------------------------------------------------------------------------------------
# Broken archives: one line each, nothing half-built where a cell would look
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which, cut", [("train", "middle"), ("train", "member"), ("val", "middle"), ("val", "member"),
                                        ("devkit", "middle")])
def test_a_truncated_archive_is_one_line(archives, tmp_path, which, cut):
    folder = copied(archives, tmp_path / "archives")
    path = folder / getattr(archives, which).name
    data = path.read_bytes()
    end = tar_members(path)[-1].offset if cut == "member" else len(data) * 3 // 5  # "member": at a header
    path.write_bytes(data[:end])
    out = tmp_path / "out"
    with pytest.raises(DataError) as caught:
        prepare_imagenet(folder, out, partial=True, **quiet())
    message = one_line(caught)
    words = message.replace(str(path), path.name)  # the test's folder name holds "truncated" too
    assert f"'{path.name}' is truncated" in words or f"'{path.name}' cannot be read as a .tar.gz" in words, message
    assert published(out) == []


def test_a_devkit_that_does_not_match_the_validation_archive_is_one_line(archives, tmp_path):
    folder = copied(archives, tmp_path / "archives")
    devkit = read_devkit(archives.devkit)
    counts = {wnid: 5 for wnid in [*archives.classes, "n09999999"]}
    wnids = [devkit.wnid_of_id[i] for i in sorted(devkit.wnid_of_id)]
    write_devkit(folder / archives.devkit.name, wnids, sorted(devkit.wnid_of_id), list(devkit.val_ids[:-1]), counts)
    with pytest.raises(DataError) as caught:
        prepare_imagenet(folder, tmp_path / "out", partial=True, **quiet())
    assert "labels 11 validation images" in one_line(caught) and "holds 12" in str(caught.value)
    assert "does not match the validation archive" in str(caught.value)
    # A devkit of other classes than the training archive's.
    write_devkit(folder / archives.devkit.name, ["n09999999", *wnids[1:]], sorted(devkit.wnid_of_id),
                 list(devkit.val_ids), counts)
    with pytest.raises(DataError) as caught:
        prepare_imagenet(folder, tmp_path / "out", partial=True, **quiet())
    assert "lacks n09999999.tar" in one_line(caught)
    assert published(tmp_path / "out") == []


def test_a_missing_archive_is_one_line_here_and_before_the_workflow_starts(archives, tmp_path):
    folder = copied(archives, tmp_path / "archives")
    (folder / archives.val.name).unlink()
    with pytest.raises(DataError) as caught:
        prepare_imagenet(folder, tmp_path / "out", **quiet())
    assert "ILSVRC2012_img_val.tar" in one_line(caught) and "not found" in caught.value.args[0]
    data = Data(cifar10="-", cifar10_download=False, cifar10_partial=False, imagenet=str(folder),
                imagenet_prepared=str(tmp_path / "out"), imagenet_partial=True, imagenet_loader="auto", cache="-")
    with pytest.raises(ConfigError) as caught:
        check_archives(data, local=True)
    assert "'data.imagenet'" in one_line(caught) and "lacks ILSVRC2012_img_val.tar" in str(caught.value)


def test_counts_other_than_ilsvrc2012s_stop_with_the_counts_unless_partial(archives, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DataError) as caught:
        prepare_imagenet(archives.folder, out, partial=False, **quiet())
    message = one_line(caught)
    assert "has 4 classes, 20 training and 12 validation images; ILSVRC2012 has 1,000, 1,281,167 and 50,000" in message
    assert "data.imagenet_partial" in message and published(out) == []
    with pytest.raises(DataError):  # what a job does with the same settings
        find_imagenet(str(archives.folder), tmp_path / "cache", out, partial=False)
    assert find_imagenet(str(archives.folder), tmp_path / "cache", out, partial=True).count("val") == 12


def test_preflight_refuses_a_folder_that_is_not_ours_or_too_small(archives, tmp_path, monkeypatch):
    out = tmp_path / "scratch"
    out.mkdir()
    (out / "notes.txt").write_text("someone's")
    data = Data(cifar10="-", cifar10_download=False, cifar10_partial=False, imagenet=str(archives.folder),
                imagenet_prepared=str(out), imagenet_partial=True, imagenet_loader="auto", cache="-")
    with pytest.raises(ConfigError) as caught:
        check_archives(data, local=True)
    assert "'data.imagenet_prepared'" in one_line(caught) and "not empty" in str(caught.value)
    check_archives(data, local=False)  # the jobs' machines decide there (node-local scratch)
    (out / "notes.txt").unlink()
    check_archives(data, local=True)
    # A full disk cannot be made here: the free space is what shutil.disk_usage reports.
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(ConfigError) as caught:
        check_archives(data, local=True)
    assert "needs about 0.0 GB" in one_line(caught) and "0.0 GB free" in str(caught.value)


def test_a_prepared_folder_changed_afterwards_is_refused_until_prepared_afresh(archives, tmp_path):
    out = tmp_path / "out"
    listing = find_imagenet(str(archives.folder), tmp_path / "cache", out, partial=True)
    victim = sorted((out / "train" / archives.classes[1]).iterdir())[0]
    victim.unlink()  # e.g. a clean-up script, or a disk quota cutting a copy short
    with pytest.raises(DataError) as caught:
        find_imagenet(str(archives.folder), tmp_path / "cache", out, partial=True)
    assert "changed after it was prepared" in one_line(caught) and "19 training" in str(caught.value)
    shutil.rmtree(out)  # what the line says to do
    assert find_imagenet(str(archives.folder), tmp_path / "cache", out, partial=True).digest == listing.digest
