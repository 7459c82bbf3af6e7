"""Checks the workflow makes before any job starts: what would otherwise fail inside every job.

Read-only and quick (no decoding): a data location that is missing, empty or of no known layout,
a GPU asked for where there is none, an input path whose library is not installed, a SQLite MLflow
store that live logging would use on a network file system. Each problem is
one ConfigError line naming the key and the fix. What only a job can see (a corrupt image deep in a
data set) is still caught there, recorded as the cell's failure with the reason, and not retried
until the next workflow run.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from resnet.config.sections import Config
from resnet.config.schema import ConfigError

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# File systems shared over a network (the types /proc/mounts names), where SQLite's file locking is
# unreliable (SQLite's own documentation says not to use it there) and a stalled lock stalls its writer.
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "smbfs", "ceph", "glusterfs",
                       "fuse.glusterfs", "fuse.sshfs", "panfs", "wekafs", "afs", "9p")


def check(config: Config, local: bool = True, mounts: str | None = None) -> None:
    """``local``: jobs run on this machine (so its GPUs are the jobs' GPUs). ``mounts``: the mount
    table to read file system types from (default /proc/self/mounts)."""
    check_mlflow_store(config, mounts)
    if config.plan.cifar10:
        check_cifar10(config.data.cifar10, config.data.cifar10_download)
    if config.plan.imagenet and config.data.imagenet != "synthetic":
        check_imagenet(config.data.imagenet)
    if local and config.engine.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("config key 'engine.device': 'cuda' but no CUDA GPU is visible here: set "
                              "engine.device: auto (or cpu)")
    if local and config.plan.imagenet and config.data.imagenet_loader == "dali":
        if importlib.util.find_spec("nvidia") is None or importlib.util.find_spec("nvidia.dali") is None:
            raise ConfigError("config key 'data.imagenet_loader': 'dali' but NVIDIA DALI is not installed: "
                              "bash scripts/install.sh --dali, or set data.imagenet_loader: auto (or pil)")


def check_cifar10(location: str, download: bool) -> None:
    path = Path(location)
    fix = ("point it at a torchvision CIFAR-10 folder, an ImageFolder tree with train/ and test/ class folders "
           "or a .tar.gz of one")
    if not path.exists():
        if download and not path.name.lower().endswith(TAR_SUFFIXES):
            return  # the first job downloads it (once, under a lock)
        raise ConfigError(f"config key 'data.cifar10': '{path}' does not exist: {fix}, or set "
                          f"data.cifar10_download: true (or plan.cifar10: false to skip the CIFAR part)")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"config key 'data.cifar10': '{path}' is not readable: fix its permissions")
    if path.is_file():
        if path.stat().st_size == 0:
            raise ConfigError(f"config key 'data.cifar10': '{path}' is an empty file: {fix}")
        return
    for folder in (path, path / "cifar-10-batches-py"):
        if (folder / "data_batch_1").is_file() and (folder / "test_batch").is_file():
            return
    splits = [path / split for split in ("train", "test")]
    if all(split.is_dir() and any(child.is_dir() for child in split.iterdir()) for split in splits):
        return
    if download and not any(path.iterdir()):
        return  # an empty folder to download into
    raise ConfigError(f"config key 'data.cifar10': '{path}' holds neither torchvision's cifar-10-batches-py nor "
                      f"train/ and test/ class folders: {fix}")


def check_imagenet(location: str) -> None:
    root = Path(location)
    fix = "point it at an ILSVRC2012 folder, or set it to 'synthetic', or set plan.imagenet: false"
    classes = {}
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise ConfigError(f"config key 'data.imagenet': '{root}' has no {split}/ folder: {fix}")
        classes[split] = {child.name for child in folder.iterdir() if child.is_dir()}
        if not classes[split]:
            raise ConfigError(f"config key 'data.imagenet': '{folder}' holds no class folders: {fix}")
    missing = sorted(classes["train"] ^ classes["val"])
    if missing:
        side = "val" if missing[0] in classes["train"] else "train"
        raise ConfigError(f"config key 'data.imagenet': class folder '{missing[0]}' is missing from "
                          f"'{root / side}' ({len(missing)} class(es) differ between train/ and val/): {fix}")


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """The type of the file system that holds (or would hold) ``path``, from the mount table: the
    entry whose mount point is the longest prefix of the path. None if unknown."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    path = Path(os.path.abspath(path)).resolve()  # links in the existing part followed
    best, kind = -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, kind = len(point), fields[2]
    return kind


def check_mlflow_store(config: Config, mounts: str | None = None) -> None:
    """With live logging, a SQLite store on a network file system is refused (one line, two ways out)."""
    uri = config.mlflow.tracking_uri
    if not config.mlflow.live or not uri.startswith("sqlite:///"):
        return
    kind = filesystem_type(Path(uri[len("sqlite:///"):]).parent, mounts)
    if kind in NETWORK_FILESYSTEMS:
        raise ConfigError(
            f"config key 'mlflow.tracking_uri': the SQLite store {uri} is on a {kind} file system, where SQLite's "
            f"locking is unreliable and a stalled write would hold up training: point mlflow.tracking_uri at an "
            f"MLflow tracking server (e.g. http://head-node:5000), or set mlflow.live: false (the workflow's "
            f"summary step then logs every run from the run folders)")
