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
import shutil
from pathlib import Path

from resnet.config.sections import IMAGENET_ARCHIVES, Config, Data
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
        check_imagenet(config.data, local)
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


def imagenet_kind(location: str) -> str:
    """What data.imagenet names: 'synthetic'; 'folder' (train/ and val/ class folders, used as they
    are); 'archives' (a folder holding ILSVRC2012's archives and no train/ and val/, prepared into
    data.imagenet_prepared); 'missing' (none of these)."""
    if location == "synthetic":
        return "synthetic"
    root = Path(location).expanduser()
    if (root / "train").is_dir() and (root / "val").is_dir():
        return "folder"
    if any((root / name).exists() for name in IMAGENET_ARCHIVES.values()):
        return "archives"
    return "missing"


def prepared_root(data: Data) -> Path:
    """Where the class folders built from the archives go (data.imagenet_prepared; 'auto': beside them)."""
    if data.imagenet_prepared == "auto":
        return Path(data.imagenet).expanduser() / "prepared"
    return Path(data.imagenet_prepared).expanduser()


def check_imagenet(data: Data, local: bool = True) -> None:
    root = Path(data.imagenet).expanduser()
    fix = ("point it at the folder holding ILSVRC2012's three archives or at train/ and val/ class folders, or set "
           "it to 'synthetic', or set plan.imagenet: false")
    kind = imagenet_kind(data.imagenet)
    if kind == "archives":
        return check_archives(data, local)
    if kind == "missing":
        what = "does not exist" if not root.exists() else "holds neither train/ and val/ folders nor the ILSVRC2012 archives"
        raise ConfigError(f"config key 'data.imagenet': '{root}' {what}: {fix}")
    classes = {}
    for split in ("train", "val"):
        folder = root / split
        classes[split] = {child.name for child in folder.iterdir() if child.is_dir() and not child.name.startswith(".")}
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


def check_archives(data: Data, local: bool) -> None:
    """The three archives, readable; where ``local``, a folder for the layout with room for it."""
    check_archive_folder(Path(data.imagenet).expanduser(), prepared_root(data), local)


def check_archive_folder(root: Path, out: Path, local: bool = True) -> None:
    """check_archives for the archives in ``root`` prepared into ``out`` (also run where they are prepared)."""
    sizes = {}
    for name in IMAGENET_ARCHIVES.values():
        path = root / name
        if not path.is_file() or not os.access(path, os.R_OK) or path.stat().st_size == 0:
            what = "lacks" if not path.exists() else "has an unreadable or empty"
            raise ConfigError(f"config key 'data.imagenet': '{root}' {what} {name}: put ILSVRC2012's three archives "
                              f"({', '.join(IMAGENET_ARCHIVES.values())}) there, or point data.imagenet at another folder")
        sizes[name] = path.stat().st_size
    if not local or (out / "PREPARED.json").is_file():
        return  # the jobs' own machines (node-local scratch) are not visible from here; or it is done
    existing = next(folder for folder in (out, *out.parents) if folder.exists())
    key = "data.imagenet_prepared"
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"config key '{key}': '{existing}' cannot be written to for the prepared ImageNet ('{out}'): "
                          "set data.imagenet_prepared to a writable folder")
    if existing == out and not (out / ".partial").is_dir() and any(e.name != ".lock" for e in os.scandir(out)):
        raise ConfigError(f"config key '{key}': '{out}' is not empty and holds no ImageNet prepared here: set "
                          "data.imagenet_prepared to an empty or new folder")
    # The images take about what the two image archives take (tar adds 1 KB per file, the file
    # system about as much); a run that resumes needs less, and is not refused here.
    need = sizes[IMAGENET_ARCHIVES["train"]] + sizes[IMAGENET_ARCHIVES["val"]]
    free = shutil.disk_usage(existing).free
    if not (out / ".partial").is_dir() and free < need:
        raise ConfigError(f"config key '{key}': preparing ImageNet in '{out}' needs about {need / 1e9:,.1f} GB and "
                          f"'{existing}' has {free / 1e9:,.1f} GB free: free space there, or set data.imagenet_prepared "
                          "to a larger folder")
