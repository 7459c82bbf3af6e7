"""benchmarks/imagenet_prepare.py stays runnable: tiny archives, one table of both worker counts."""
from __future__ import annotations

import subprocess
import sys

from tests.support import REPO_ROOT


def test_the_preparation_benchmark_prints_its_table(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/imagenet_prepare.py", "--classes", "3", "--per-class", "2",
                           "--val", "3", "--workers", "1", "2", "--folder", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|") for line in done.stdout.splitlines() if line.startswith("| ") and "workers" not in line]
    assert [row[1].strip() for row in rows] == ["1", "2"]
    assert all(float(row[3].replace(",", "")) > 0 for row in rows)  # images/s measured
    assert list(tmp_path.iterdir()) == []  # its folder cleaned up
