"""A CIFAR source holding an oversized image is refused from the image's header, in one line naming it.

A partial tarball (data.cifar10_partial) of a small ImageFolder tree with one PNG far larger than
32x32 in it, loaded in a fresh process:

- 20000x20000, beyond PIL's decompression-bomb limit (PIL refuses to open it): one DataError naming
  the member and its size, where PIL's own error named neither;
- 10000x10000, within that limit (PIL would decode it, 100 MB as greyscale and 300 MB as RGB):
  refused the same way before decoding, so the process's peak memory stays far below that.

Then `python -m resnet train` on such a source: one line, exit status 2.
"""
from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.support import REPO_ROOT
from tests.support.processes import PYTHON, run_cli, subprocess_env

# The peak is the process's own (VmHWM: of its address space since exec; ru_maxrss would include
# the test process's size inherited at the fork).
LOAD = """
import sys
from resnet.data.cifar.source import load_cifar10
from resnet.data.errors import DataError
try:
    load_cifar10(sys.argv[1], sys.argv[2], partial=True)
    print("loaded")
except DataError as error:
    print(f"refused: {error}")
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1]
print(f"peak MiB {int(peak) / 1024:.0f}")
"""
MEMBER = "cifar/train/cat/big.png"


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def tarball(tmp_path: Path, big: int) -> Path:
    """Two classes of one 32x32 image per split, and a big x big black PNG (1 bit per pixel) in train/cat."""
    path = tmp_path / f"cifar-{big}.tar.gz"
    members = {f"cifar/{split}/{name}/0.png": png((32, 32)) for split in ("train", "test") for name in ("cat", "dog")}
    members[MEMBER] = png((big, big), mode="1")
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def load(source: Path, cache: Path) -> tuple[str, float]:
    done = subprocess.run([PYTHON, "-c", LOAD, str(source), str(cache)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    outcome, peak = done.stdout.strip().splitlines()
    return outcome, float(peak.split()[-1])


@pytest.mark.parametrize("big", [20000, 10000])
def test_an_oversized_image_is_refused_from_its_header_naming_the_member(tmp_path, big):
    outcome, peak_mib = load(tarball(tmp_path, big), tmp_path / "cache")
    assert outcome.startswith(f"refused: image '{tmp_path / f'cifar-{big}.tar.gz'}/train/cat/big.png' is "
                              f"{big}x{big}, CIFAR-10 images are 32x32"), outcome
    assert peak_mib < 250, f"peak {peak_mib:.0f} MiB: the image was decoded before it was refused"


def test_training_on_such_a_source_is_one_line_and_exit_2(tmp_path, make_config):
    config = make_config()
    for section in (config["data"], config["scales"]["smoke"]["data"]):
        section.update(cifar10=str(tarball(tmp_path, 20000)), cifar10_partial=True, cache=str(tmp_path / "cache"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = run_cli("train", "--config", str(tmp_path / "config.yaml"), "--cell", "cifar-resnet-20/seed-0",
                     "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: image ") and "big.png' is 20000x20000" in line
