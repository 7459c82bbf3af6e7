"""ILSVRC2012 from its three official archives to class folders: once, resumable, checked.

    prepare_imagenet(archives, out, workers=8)   -> the manifest; out/train/<wnid>/, out/val/<wnid>/, out/PREPARED.json

ILSVRC2012 ships ILSVRC2012_img_train.tar (one inner tar per class, <wnid>.tar), ILSVRC2012_img_val.tar
(50,000 images in one flat folder) and ILSVRC2012_devkit_t12.tar.gz (resnet.data.imagenet.devkit).

torchvision ships this preparation (torchvision.datasets.imagenet: parse_devkit_archive,
parse_train_archive, parse_val_archive). It was read, and is replaced here, because:

- it checks each archive's MD5 against the official one on every call: an extra read of the whole
  155 GB, and no subset or test archive can pass;
- it writes into the archives' own folder (meta.bin, train/, val/): no scratch folder, and nothing
  at all where the archives sit on read-only storage;
- parse_train_archive first unpacks the 1,000 inner tars next to the images (twice the disk at its
  peak), shows no progress, and a run killed half-way leaves a train/ that ImageNet() then takes as
  finished (it checks only that the folder exists): a half-built set, trained on silently;
- parse_val_archive pairs the ground truth with the sorted file names by zip(): a devkit that does
  not match the archive is cut to the shorter of the two without a word;
- its meta.mat reader takes the synsets' fields by position.

What carries over are the formats and the labels: class folders named by WNID, validation images
sorted into them by the devkit's ground truth, labels in sorted WNID order (ImageFolder's, as
torchvision.datasets.ImageNet's), so a net trained here has torchvision's class indices.

How. The archives are never written to. Before anything is extracted, every archive's structure
is checked: the devkit's classes against the training archive's inner tars, its ground truth
against the validation archive's file names, and each tar for truncation. Then the validation
images (minutes) and the training classes (``workers`` processes, each reading its class's inner
tar straight out of the outer one: nothing is unpacked twice). All of it is built in
out/.partial/, where a class appears only when complete, so a run stopped at any point resumes with
the classes already done (a changed archive starts over). The result is listed and checked
(counts, unless data.imagenet_partial; every validation image in its ground-truth class) before
train/, val/ and last PREPARED.json move into place. The layout is used only where PREPARED.json
is and matches the archives (resnet.data.imagenet.folders).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path, PurePosixPath
from typing import IO

from resnet.config.sections import IMAGENET_ARCHIVES
from resnet.data.errors import DataError
from resnet.data.imagenet.devkit import Devkit, check_val_labels, read_devkit
from resnet.data.imagenet.listing import check_complete, list_imagenet
from resnet.runs.files import atomic_write_text

MANIFEST = "PREPARED.json"
STAGING = ".partial"
FORMAT = 1  # of PREPARED.json and of the layout; another format prepares again
_BLOCK = 512  # tar's block size


def archive_stats(archives: Path) -> dict[str, int]:
    """Each archive's size: what a prepared layout was made from. Not its modification time: a copy
    of the same archives (cp without -p) must not rebuild 155 GB; a new download of a truncated or
    other archive has another size."""
    stats = {}
    for name in IMAGENET_ARCHIVES.values():
        try:
            info = (archives / name).stat()
        except OSError:
            raise DataError(f"ImageNet archive {str(archives / name)!r} not found: put the three ILSVRC2012 archives "
                            f"({', '.join(IMAGENET_ARCHIVES.values())}) in data.imagenet's folder") from None
        stats[name] = info.st_size
    return stats


def read_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_prepared(archives: Path, out: Path) -> dict | None:
    """The manifest of ``out`` if it was prepared from these archives (as they are now), else None."""
    manifest = read_manifest(out)
    if manifest and manifest.get("format") == FORMAT and manifest.get("archives") == archive_stats(archives):
        return manifest
    return None


# ----------------------------------------------------------------------------- the archives, checked


def tar_members(path: Path) -> list[tarfile.TarInfo]:
    """The members of an uncompressed tar, after checking that it is whole (its end-of-archive blocks)."""
    try:
        with tarfile.open(path, "r:") as archive:
            members = archive.getmembers()
    except (tarfile.TarError, EOFError) as error:
        raise DataError(f"{str(path)!r} is truncated or is no tar archive ({error}): download it again") from None
    size = path.stat().st_size
    end = max((m.offset_data + -(-m.size // _BLOCK) * _BLOCK for m in members), default=0)
    with open(path, "rb") as handle:
        handle.seek(end)
        tail = handle.read(2 * _BLOCK)
    if end > size or tail != bytes(2 * _BLOCK):
        last = members[-1].name if members else "its first header"
        raise DataError(f"{str(path)!r} is truncated ({size:,} bytes; it stops in or after {last!r}, "
                        f"{len(members):,} members read): download it again")
    return [m for m in members if not m.isdir()]


def train_classes(path: Path, devkit: Devkit) -> dict[str, tarfile.TarInfo]:
    """WNID -> its inner tar in the training archive: exactly the devkit's classes."""
    inner = {}
    for member in tar_members(path):
        name = PurePosixPath(member.name)
        if not (member.isfile() and name.suffix == ".tar"):
            raise DataError(f"{str(path)!r} holds {member.name!r}, not a <wnid>.tar of one class: it is not "
                            f"ILSVRC2012's training archive")
        inner[name.stem] = member
    missing, extra = sorted(set(devkit.classes) - set(inner)), sorted(set(inner) - set(devkit.classes))
    if missing:
        raise DataError(f"{str(path)!r} lacks {missing[0]}.tar ({len(missing):,} of the devkit's {len(devkit.classes):,} "
                        "classes missing): download it again, or use the devkit that belongs to it")
    if extra:
        raise DataError(f"{str(path)!r} holds {extra[0]}.tar, a class the devkit {devkit.path!r} does not list "
                        f"({len(extra):,} such): the devkit does not match the training archive")
    return inner


def val_members(path: Path, devkit: Devkit) -> list[tuple[tarfile.TarInfo, str]]:
    """(member, WNID of its class) of the validation archive: exactly the devkit's ground-truth images."""
    classes = devkit.val_classes()
    members = tar_members(path)
    names = [PurePosixPath(member.name).name for member in members]
    unknown = sorted(set(names) - set(classes))
    if unknown or len(names) != len(classes) or len(set(names)) != len(names):
        first = f"; it holds {unknown[0]!r}, which the ground truth does not list" if unknown else ""
        raise DataError(f"the devkit {devkit.path!r} labels {len(classes):,} validation images and {str(path)!r} holds "
                        f"{len(names):,}{first}: the devkit does not match the validation archive")
    return [(member, classes[name]) for member, name in zip(members, names)]


# ----------------------------------------------------------------------------- extraction


class Progress:
    """One line of images, GB and their rates with the ETA: redrawn in place on a terminal, else every
    ``every`` seconds (a job's log), and once at the end."""

    def __init__(self, what: str, total_bytes: int, stream: IO[str] | None = None, every: float = 30.0) -> None:
        self.what, self.total, self.stream = what, total_bytes, stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.every = 0.5 if self.tty else every
        self.images = self.bytes = 0
        self.started = self.shown = time.perf_counter()

    def add(self, images: int, nbytes: int) -> None:
        self.images, self.bytes = self.images + images, self.bytes + nbytes
        if time.perf_counter() - self.shown >= self.every:
            self.show()

    def line(self) -> str:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        from resnet.runs.progress import duration  # here, not at the top: extraction workers need no torch

        rate = self.bytes / seconds
        eta = (self.total - self.bytes) / rate if rate > 0 else float("inf")
        return (f"prepare-imagenet {self.what}: {self.images:,} images, {self.bytes / 1e9:.2f} of "
                f"{self.total / 1e9:.2f} GB ({100 * self.bytes / max(self.total, 1):.0f}%) | "
                f"{self.images / seconds:,.0f} images/s | {rate / 1e9:.3f} GB/s | ETA {duration(eta)}")

    def show(self, end: bool = False) -> None:
        self.shown = time.perf_counter()
        self.stream.write(("\r" if self.tty else "") + self.line() + ("\n" if end or not self.tty else ""))
        self.stream.flush()


class _Window:
    """The bytes [offset, offset + size) of a file, read forwards (an inner tar inside the outer one)."""

    def __init__(self, handle: IO[bytes], offset: int, size: int) -> None:
        handle.seek(offset)
        self.handle, self.left = handle, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.handle.read(n)
        self.left -= len(data)
        return data


def _write_members(archive: tarfile.TarFile, folder: Path, where: str) -> int:
    """Every plain file of a (streamed) tar into ``folder`` under its base name; how many."""
    files = 0
    for member in archive:
        if member.isdir():
            continue
        name = PurePosixPath(member.name).name
        if not member.isfile() or name in ("", ".", ".."):
            raise DataError(f"{where} holds {member.name!r}, not an image file: download the archive again")
        with open(folder / name, "xb") as out:
            shutil.copyfileobj(archive.extractfile(member), out, 1 << 20)
        files += 1
    return files


def extract_class(train_tar: str, offset: int, size: int, wnid: str, folder: str) -> tuple[int, int]:
    """One class's inner tar, read out of the training archive, into ``folder``/<wnid>/; (images, bytes).

    Written to a temporary folder renamed into place: a class folder in the staging area is whole.
    """
    done, partial = Path(folder) / wnid, Path(folder) / f".{wnid}.tmp"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        with open(train_tar, "rb") as handle, tarfile.open(fileobj=_Window(handle, offset, size), mode="r|") as inner:
            images = _write_members(inner, partial, f"{train_tar!r} ({wnid}.tar)")
    except (tarfile.TarError, EOFError) as error:
        raise DataError(f"{train_tar!r}: {wnid}.tar cannot be read ({error}): download the archive again") from None
    os.rename(partial, done)
    return images, size


def _extract_train(path: Path, inner: dict, staging: Path, workers: int, stream) -> None:
    folder = staging / "train"
    folder.mkdir(exist_ok=True)
    todo = sorted(wnid for wnid in inner if not (folder / wnid).is_dir())
    progress = Progress(f"train ({len(inner) - len(todo):,} of {len(inner):,} classes already done)" if len(todo) < len(inner)
                        else "train", sum(inner[wnid].size for wnid in todo), stream)
    jobs = [(str(path), inner[wnid].offset_data, inner[wnid].size, wnid, str(folder)) for wnid in todo]
    if workers <= 1:
        for job in jobs:
            progress.add(*extract_class(*job))
    else:
        # Processes, not threads: tar parsing is Python. Spawned: the caller may be a training process
        # with threads (a fork of those can deadlock).
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(extract_class, *job) for job in jobs]
            try:
                for future in as_completed(futures):
                    progress.add(*future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    progress.show(end=True)


def _extract_val(path: Path, members: list, staging: Path, stream) -> None:
    if (staging / "val").is_dir():
        return
    partial = staging / ".val.tmp"
    shutil.rmtree(partial, ignore_errors=True)
    for wnid in sorted({wnid for _, wnid in members}):
        (partial / wnid).mkdir(parents=True)
    progress = Progress("val", sum(member.size for member, _ in members), stream)
    try:
        with tarfile.open(path, "r:") as archive:
            for member, wnid in members:
                with open(partial / wnid / PurePosixPath(member.name).name, "xb") as out:
                    shutil.copyfileobj(archive.extractfile(member), out, 1 << 20)
                progress.add(1, member.size)
    except (tarfile.TarError, EOFError) as error:
        raise DataError(f"{str(path)!r} cannot be read ({error}): download it again") from None
    os.rename(partial, staging / "val")
    progress.show(end=True)


# ----------------------------------------------------------------------------- the whole preparation


@contextmanager
def _locked(out: Path, stream):
    """One preparation of ``out`` at a time (the workflow's rule, a job on a node, a second user)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.write(f"prepare-imagenet: another process is preparing {str(out)!r}; waiting for it\n")
            stream.flush()
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _staging(out: Path, source: dict) -> Path:
    """out/.partial/ for these archives: kept when a run from the same archives stopped half-way (a
    layout stopped while moving into place is taken back), else started afresh."""
    staging = out / STAGING
    if read_manifest(out) is not None:  # prepared from other archives, or in another format: replaced
        (out / MANIFEST).unlink()
        for folder in (out / "train", out / "val", staging):
            shutil.rmtree(folder, ignore_errors=True)
    elif not staging.is_dir():
        strangers = sorted(entry.name for entry in os.scandir(out) if entry.name != ".lock")
        if strangers:
            raise DataError(f"{str(out)!r} already holds {strangers[0]!r} and is not an ImageNet prepared here: set "
                            "data.imagenet_prepared to an empty or new folder")
    for split in ("train", "val"):  # stopped while moving the result into place: take it back
        if staging.is_dir() and (out / split).exists() and not (staging / split).exists():
            os.rename(out / split, staging / split)
    try:
        started_from = json.loads((staging / "SOURCE.json").read_text())
    except (OSError, ValueError):
        started_from = None
    if started_from != {"format": FORMAT, "archives": source}:
        shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(exist_ok=True)
    atomic_write_text(staging / "SOURCE.json", json.dumps({"format": FORMAT, "archives": source}))
    return staging


def prepare_imagenet(archives: str | Path, out: str | Path, workers: int = 1, partial: bool = False,
                     stream: IO[str] | None = None) -> dict:
    """The class-folder layout of the three archives in ``archives``, built in ``out`` (once); its manifest.

    Returns at once when ``out`` was prepared from these archives. ``partial`` (data.imagenet_partial)
    accepts counts other than ILSVRC2012's; the validation labels are checked either way.
    """
    archives, out, stream = Path(archives).absolute(), Path(out).absolute(), stream or sys.stderr
    source = archive_stats(archives)
    with _locked(out, stream):
        manifest = is_prepared(archives, out)
        if manifest is not None:
            return manifest
        started = time.perf_counter()
        paths = {split: archives / name for split, name in IMAGENET_ARCHIVES.items()}
        devkit = read_devkit(paths["devkit"])
        inner = train_classes(paths["train"], devkit)
        val = val_members(paths["val"], devkit)
        staging = _staging(out, source)
        stream.write(f"prepare-imagenet: {len(inner):,} classes and {len(val):,} validation images from {str(archives)!r} "
                     f"into {str(out)!r} ({workers} worker{'s' if workers != 1 else ''})\n")
        _extract_val(paths["val"], val, staging, stream)
        _extract_train(paths["train"], inner, staging, workers, stream)
        listing = list_imagenet(staging)
        check_complete(listing, partial)
        check_val_labels(listing, devkit)
        manifest = {"format": FORMAT, "archives": source, "classes": listing.num_classes,
                    "train_images": listing.count("train"), "val_images": listing.count("val"),
                    "digest": listing.digest, "partial": partial,
                    "seconds": round(time.perf_counter() - started, 1)}
        os.sync()  # the images on disk before the manifest says they are there (a crash, not only a kill)
        atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2))
        for split in ("train", "val"):
            os.rename(staging / split, out / split)
        os.rename(staging / MANIFEST, out / MANIFEST)  # last: from here on the layout is used
        shutil.rmtree(staging)
        stream.write(f"prepare-imagenet: {listing.describe()} in {str(out)!r} ({manifest['seconds']:,.1f} s)\n")
        return manifest
