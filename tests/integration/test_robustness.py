"""Nothing silent, nothing stuck: what a user or a shared cluster brings, through `python -m resnet`.

Each test drives the command a user types (``python -m resnet train`` / ``plan``) and checks what
lands on disk and on the terminal:

- a checkpoint.pt planted in a run folder is refused unread (it never runs code);
- run files and the decode cache are created with the user's umask (colleagues can read them);
- every file written parses with a strict JSON reader, and curve.csv tells a diverged loss ('nan')
  from a value not measured (empty);
- a CIFAR-10 source that is not the whole data set is refused with its counts;
- an image rewritten inside an unchanged folder is not served from the old decode cache, and the
  arrays carry the hash of their content;
- a closed pipe, a missing GPU and a read-only results folder each give one line, no traceback;
- a curve row whose log interval spans a kill reports the images/s actually trained.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from resnet.runs import files as runfiles
from resnet.runs.records import load_checkpoint
from resnet.data.cifar.source import load_cifar10
from resnet.data.errors import DataError
from resnet.report.cells import _read_curve
from tests.support import CIFAR_TARBALL, REPO_ROOT, require_cifar
from tests.support.processes import PYTHON, run_cli, subprocess_env

pytestmark = pytest.mark.usefixtures("torch_threads")

CELL = "cifar-resnet-20/seed-0"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def train(config: Path, out: Path, env: dict | None = None, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """`python -m resnet train --config CONFIG --cell cifar-resnet-20/seed-0 --out OUT --quiet`."""
    args = ["train", "--config", str(config), "--cell", CELL, "--out", str(out), "--quiet"]
    if not popen:
        return run_cli(*args, env=env, timeout=timeout)
    return subprocess.run([PYTHON, "-m", "resnet", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(**(env or {})), **popen)


def tiny_config(make_config, checkpoint_every: int | None = None, engine: dict | None = None, **recipe) -> dict:
    """make_config with CIFAR recipe overrides and, if given, engine.checkpoint_every."""
    engine = dict(engine or {})
    if checkpoint_every is not None:
        engine["checkpoint_every"] = checkpoint_every
    return copy.deepcopy(make_config(cifar10=recipe, engine=engine))


def set_data(config: dict, **values) -> dict:
    """data.<key> = value, in the data section and in the active scale's preset if it sets data."""
    config["data"].update(values)
    preset = config["scales"][config["scale"]]
    if isinstance(preset.get("data"), dict):
        preset["data"].update(values)
    return config


def strict_json(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity, as RFC 8259 readers do."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------------------------------------
# Security: a planted checkpoint is refused unread
# ---------------------------------------------------------------------------------------------


class _Planted:
    """Pickles to a call of os.system: what a hostile checkpoint.pt in a shared results/ could hold."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_planted_checkpoint_is_refused_without_running_it(tmp_path, make_config):
    import torch

    config = write_config(tmp_path / "config.yaml", make_config())
    out, marker = tmp_path / "out", tmp_path / "the-checkpoint-ran-code"
    out.mkdir()
    torch.save({"model": _Planted(f"touch {marker}"), "state": {"iteration": 3}}, out / "checkpoint.pt")
    planted = (out / "checkpoint.pt").read_bytes()

    result = train(config, out)
    assert not marker.exists(), "loading the checkpoint ran the command it carried"
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert "checkpoint.pt" in line and "refused" in line and "delete it" in line
    assert (out / "checkpoint.pt").read_bytes() == planted  # refused, not deleted
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


# ---------------------------------------------------------------------------------------------
# Files others can read: the umask decides, not mkstemp's 0600
# ---------------------------------------------------------------------------------------------


def _with_umask(mask: int):
    return lambda: os.umask(mask)


def test_run_files_and_decode_cache_follow_the_umask(tmp_path, make_config):
    require_cifar()
    config = tiny_config(make_config, iterations=2, log_every=2, eval_every=2, milestones=[1], checkpoint_every=2)
    cache = tmp_path / "fresh-cache"  # decoded by the run itself
    set_data(config, cache=str(cache))
    path = write_config(tmp_path / "config.yaml", config)

    shared = train(path, tmp_path / "shared", preexec_fn=_with_umask(0o022))
    assert shared.returncode == 0, shared.stderr
    files = [tmp_path / "shared" / name for name in ("metrics.json", "curve.csv", "checkpoint.pt")]
    files += sorted(cache.glob("cifar10-*.npz"))
    assert len(files) == 4, files
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, (file, oct(file.stat().st_mode))

    private = train(path, tmp_path / "private", preexec_fn=_with_umask(0o077))
    assert private.returncode == 0, private.stderr
    for name in ("metrics.json", "curve.csv", "checkpoint.pt"):
        assert stat.S_IMODE((tmp_path / "private" / name).stat().st_mode) == 0o600, name


def test_synthetic_imagenet_set_follows_the_umask(tmp_path):
    out = tmp_path / "synthetic"
    result = subprocess.run([PYTHON, "-m", "resnet", "synthetic-imagenet", "--out", str(out)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300, env=subprocess_env(),
                            preexec_fn=_with_umask(0o022))
    assert result.returncode == 0, result.stderr
    folders = [out, *sorted(p for p in out.rglob("*") if p.is_dir())]
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(folders) > 3 and len(files) > 10
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {oct(0o755)}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(0o644)}


def test_figures_follow_the_umask(tmp_path):
    import matplotlib.pyplot as plt

    from resnet.report.figures import _save

    figure, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    previous = os.umask(0o022)
    try:
        written = _save(figure, tmp_path / "figure.png")
    finally:
        os.umask(previous)
    for path in (written["png"], written["pdf"]):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.pdf", "figure.png"]


# ---------------------------------------------------------------------------------------------
# Strict formats: JSON without NaN tokens; curve.csv tells 'diverged' from 'not evaluated'
# ---------------------------------------------------------------------------------------------


def test_diverging_run_writes_strict_json_and_a_curve_that_keeps_nan(tmp_path, make_config):
    # lr 1e6 drives the loss to ~1e31 and then to NaN within a few iterations.
    config = tiny_config(make_config, lr=1e6, iterations=8, log_every=1, eval_every=4, milestones=[7],
                         checkpoint_every=4)
    path = write_config(tmp_path / "config.yaml", config)
    out = tmp_path / "out"
    result = train(path, out)  # the cell ends failed ("diverged at iteration N"): what it wrote is checked
    assert (out / "metrics.json").is_file(), result.stderr
    metrics = strict_json((out / "metrics.json").read_text())
    assert result.returncode == 1 and metrics["status"] == "failed", (metrics, result.stderr)
    assert metrics["reason"].startswith(f"diverged at iteration {metrics['iterations']} (loss ")

    lines = (out / "curve.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert rows, "no curve rows"
    for row in rows:
        # train_loss is measured at every row: never empty; a non-finite loss is written as such.
        assert row["train_loss"] != "", row
        evaluated = int(row["iteration"]) % 4 == 0
        assert (row["test_error"] != "") == evaluated, row
    written = [float(row["train_loss"]) for row in rows]
    assert not all(math.isfinite(loss) for loss in written), f"the loss never diverged: {written}"

    # The report's reader keeps the two apart: 'not evaluated' is missing, 'nan' is a diverged row.
    frame = _read_curve(out / "curve.csv")
    assert frame["diverged"].tolist() == [not math.isfinite(loss) for loss in written]
    assert frame["test_error"].isna().tolist() == [int(row["iteration"]) % 4 != 0 for row in rows]


def test_curve_round_trip_keeps_missing_and_non_finite_apart(tmp_path):
    rows = [dict(iteration=1, epoch=0.5, lr=0.1, train_loss=2.5, train_error=90.0, val_error=math.nan,
                 test_error=math.nan, images_per_s=10.0, wall_time_s=1.0),
            dict(iteration=2, epoch=1.0, lr=0.1, train_loss=math.inf, train_error=90.0, val_error=88.0,
                 test_error=89.5, images_per_s=10.0, wall_time_s=2.0),
            dict(iteration=3, epoch=1.5, lr=0.1, train_loss=math.nan, train_error=90.0, val_error=None,
                 test_error=None, images_per_s=10.0, wall_time_s=3.0)]
    runfiles.write_curve(tmp_path / "curve.csv", rows)
    back = runfiles.read_curve(tmp_path / "curve.csv")
    assert [row["val_error"] for row in back] == [None, 88.0, None]
    assert back[1]["train_loss"] == math.inf and math.isnan(back[2]["train_loss"])
    assert (tmp_path / "curve.csv").read_text().splitlines()[3].startswith("3,1.5,0.1,nan,90,,,")
    assert strict_json(runfiles.json_text({"x": float("nan"), "y": [1.0, -math.inf]})) == {"x": None, "y": [1.0, None]}


# ---------------------------------------------------------------------------------------------
# Data that is silently short
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cut_tarball(tmp_path_factory) -> Path:
    """The real CIFAR-10 as an uncompressed .tar cut at a member boundary: 500 test images short."""
    source = require_cifar()
    path = tmp_path_factory.mktemp("cut") / "cifar10-cut.tar"
    cut_at = None
    with tarfile.open(source, "r:gz") as archive, tarfile.open(path, "w") as cut:
        for member in archive:
            if cut_at is None and member.name == "test/truck/0500.jpg":
                cut_at = cut.offset  # where this member's header starts: a clean member boundary
            cut.addfile(member, archive.extractfile(member) if member.isfile() else None)
    assert cut_at is not None
    with open(path, "r+b") as handle:
        handle.truncate(cut_at)
    with tarfile.open(path) as archive:  # it still reads as a valid (shorter) archive
        names = [m.name for m in archive if m.isfile()]
    assert sum(name.startswith("test/") for name in names) == 9_500
    return path


def test_cifar_tar_cut_at_a_member_boundary_is_refused(tmp_path, make_config, cut_tarball):
    config = set_data(copy.deepcopy(make_config()), cifar10=str(cut_tarball), cache=str(tmp_path / "cache"))
    path = write_config(tmp_path / "config.yaml", config)
    out = tmp_path / "out"
    result = train(path, out)
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_error_line(result)
    assert "data.cifar10" in line and "cifar10-cut.tar" in line
    assert "50,000 training and 9,500 test images" in line and "test/truck: 500" in line
    assert not (out / "metrics.json").exists() and not (out / "checkpoint.pt").exists()
    assert not list((tmp_path / "cache").glob("cifar10-*.npz"))  # nothing decoded into the cache


def _small_image_folder(root: Path, per_class: tuple[int, int] = (3, 2)) -> Path:
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "test"), per_class):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for number in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{number:04d}.png")
    return root


def test_a_partial_source_needs_the_explicit_setting(tmp_path):
    root = _small_image_folder(tmp_path / "small")
    with pytest.raises(DataError) as refused:
        load_cifar10(root, tmp_path / "cache")
    message = str(refused.value)
    assert "\n" not in message
    assert "30 training and 20 test images in 10 classes" in message
    assert "data.cifar10_partial" in message and "data.cifar10" in message
    loaded = load_cifar10(root, tmp_path / "cache", partial=True)
    assert len(loaded.train_labels) == 30 and len(loaded.test_labels) == 20
    with pytest.raises(DataError, match="incomplete"):  # the partial decode's cache is refused too
        load_cifar10(root, tmp_path / "cache")


# ---------------------------------------------------------------------------------------------
# The decode cache: fingerprint of every file, content hash of the arrays
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory):
    """The real CIFAR-10 tarball unpacked to an ImageFolder tree, decoded once into a cache."""
    source = require_cifar()
    base = tmp_path_factory.mktemp("folder")
    with tarfile.open(source) as archive:
        archive.extractall(base / "cifar10", filter="data")
    cache = base / "cache"
    return base / "cifar10", cache, load_cifar10(base / "cifar10", cache)


def test_the_arrays_carry_their_source_kind_and_content_hash(cifar_folder, cifar_cache_dir):
    root, cache, from_folder = cifar_folder
    from_tarball = load_cifar10(CIFAR_TARBALL, cifar_cache_dir)
    assert (from_folder.source_kind, from_tarball.source_kind) == ("imagefolder", "tarball")
    # The same JPEG files decode to the same pixels: the same data, whatever the format.
    assert from_folder.content_hash == from_tarball.content_hash
    assert len(from_folder.content_hash) == 64 and int(from_folder.content_hash, 16)
    again = load_cifar10(root, cache)  # from the cache
    assert again.content_hash == from_folder.content_hash and again.source_kind == "imagefolder"


def test_small_sources_hash_by_content(tmp_path):
    root = _small_image_folder(tmp_path / "a")
    first = load_cifar10(root, tmp_path / "cache", partial=True)
    tarball = tmp_path / "a.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(root, arcname="a")
    assert load_cifar10(tarball, tmp_path / "cache", partial=True).content_hash == first.content_hash
    pixels = np.asarray(Image.open(root / "test" / "cat" / "0001.png")).copy()
    pixels[0, 0, 0] ^= 1  # one value of one pixel
    Image.fromarray(pixels).save(root / "test" / "cat" / "0001.png")
    changed = load_cifar10(root, tmp_path / "cache", partial=True)
    assert changed.content_hash != first.content_hash
    assert changed.test_images[np.flatnonzero(changed.test_labels == 3)[1], 0, 0, 0] == pixels[0, 0, 0]


def test_an_image_rewritten_in_an_unchanged_folder_is_not_served_from_the_cache(tmp_path, make_config,
                                                                                cifar_folder):
    root, cache, _ = cifar_folder
    victim = root / "train" / "airplane" / "0000.jpg"
    folder_times = [(p, p.stat()) for p in (victim.parent, victim.parent.parent, root)]
    size = victim.stat().st_size
    victim.write_bytes(b"\xff" * size)  # same size, garbage: a disk error, a bad copy
    later = victim.stat().st_mtime_ns + 2_000_000_000
    os.utime(victim, ns=(later, later))
    for folder, info in folder_times:  # the folders look untouched
        os.utime(folder, ns=(info.st_atime_ns, info.st_mtime_ns))
    config = set_data(copy.deepcopy(make_config()), cifar10=str(root), cache=str(cache))
    path = write_config(tmp_path / "config.yaml", config)
    out = tmp_path / "out"
    result = train(path, out)
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_error_line(result)
    assert "unreadable image" in line and "train/airplane/0000.jpg" in line
    assert not (out / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------
# One line, no traceback: a closed pipe, no GPU, a read-only results folder
# ---------------------------------------------------------------------------------------------


def test_plan_into_a_closed_pipe_ends_quietly():
    process = subprocess.Popen([PYTHON, "-m", "resnet", "plan", "--config", "config.yaml"], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env())
    process.stdout.close()  # the reader is gone before the first line is written
    stderr = process.stderr.read().decode()
    code = process.wait(timeout=120)
    assert stderr == ""
    assert code == 128 + signal.SIGPIPE


def test_plan_piped_into_head_prints_no_traceback():
    result = subprocess.run(f"{PYTHON} -m resnet plan --config config.yaml | head -3", shell=True, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 3


def test_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path, make_config):
    path = write_config(tmp_path / "config.yaml", tiny_config(make_config, engine=dict(device="cuda")))
    out = tmp_path / "out"
    result = train(path, out, env={"CUDA_VISIBLE_DEVICES": ""})  # no GPU visible, on any machine
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert "engine.device" in line and "cuda" in line
    assert not out.exists() or not any(out.iterdir())


def _make_read_only(folder: Path) -> bool:
    """Make ``folder`` refuse new entries, also for root (who ignores modes): chmod, or chattr +i."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return True
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0 if shutil.which(
        "chattr") else False
    return made


def test_read_only_results_folder_is_one_line_and_exit_2(tmp_path, make_config):
    path = write_config(tmp_path / "config.yaml", make_config())
    results = tmp_path / "results"
    results.mkdir()
    if not _make_read_only(results):
        pytest.skip("running as root on a file system without chattr +i: no folder here refuses root's writes")
    try:
        out = results / "runs" / "smoke" / CELL
        result = train(path, out)
        assert result.returncode == 2, result.stderr
        line = one_error_line(result)
        assert str(results) in line and "writable" in line
        assert list(results.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(results)], capture_output=True)
        results.chmod(0o755)


# ---------------------------------------------------------------------------------------------
# A curve row spanning a kill reports the real images/s; wall time keeps growing
# ---------------------------------------------------------------------------------------------


def test_row_spanning_a_kill_reports_the_real_images_per_second(tmp_path, make_config):
    # Log interval 12, checkpoint after 10: a kill after that checkpoint leaves 10 of the row's 12
    # iterations trained before the stop and 2 after it.
    config = tiny_config(make_config, iterations=24, log_every=12, eval_every=24, milestones=[20],
                         checkpoint_every=10)
    path = write_config(tmp_path / "config.yaml", config)
    out = tmp_path / "out"
    args = [PYTHON, "-m", "resnet", "train", "--config", str(path), "--cell", CELL, "--out", str(out), "--quiet"]
    process = subprocess.Popen(args, cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not (out / "checkpoint.pt").exists():
            assert process.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    saved = load_checkpoint(out / "checkpoint.pt")["state"]
    assert saved["iteration"] == 10 and saved["carried"][0]["images"] == 10 * 16
    trained_before = saved["carried"][0]["seconds"]
    assert trained_before > 0

    resumed = train(path, out)
    assert resumed.returncode == 0, resumed.stderr
    rows = runfiles.read_curve(out / "curve.csv")
    assert [row["iteration"] for row in rows] == [12, 24]
    spanning, after = rows
    # The spanning row's 192 images took the 10 iterations before the kill (their seconds travel in
    # the checkpoint) and the 2 after: its rate is all 192 images over all those seconds, which are
    # also its wall time (the first row). Counting only the 2 iterations after would give a shorter
    # time than the one trained before the kill; counting only their images, another rate.
    assert spanning["wall_time_s"] >= trained_before - 1e-3
    assert spanning["images_per_s"] == pytest.approx(192 / spanning["wall_time_s"], rel=1e-3), rows
    assert 0 < spanning["wall_time_s"] < after["wall_time_s"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["wall_time_s"] == pytest.approx(after["wall_time_s"], abs=1e-3)
