"""Bad input to the workflow stops it before any job runs: one message naming the key, exit != 0."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def dry_run(*config: str, configfile: Path | None = None) -> subprocess.CompletedProcess:
    extra = ["--configfile", str(configfile)] if configfile else []
    return subprocess.run([str(SNAKEMAKE), "-n", "--cores", "1", *extra, "--config", *config], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("config, expected", [
    (["scale=huge"], "config key 'scale': unknown scale 'huge'"),
    (['data={"cifar10": "/no/such/cifar", "imagenet": "synthetic", "cache": "results/cache"}'],
     "config key 'data.cifar10'"),
    (['engine={"device": "tpu"}'], "config key 'engine.device'"),
])
def test_bad_config_stops_the_workflow_with_the_key_named(config, expected):
    proc = dry_run(*config)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr


def test_a_depth_that_is_not_6n_plus_2_is_refused(tmp_path):
    override = tmp_path / "depth.yaml"
    override.write_text("plan:\n  cifar10: true\n  imagenet: false\n  cifar_resnet_depths: [21]\n")
    proc = dry_run("scale=smoke", configfile=override)
    assert proc.returncode != 0
    assert "plan.cifar_plain_depths / plan.cifar_resnet_depths" in proc.stdout + proc.stderr
    assert "6n+2" in proc.stdout + proc.stderr


def test_the_paper_scale_plan_dry_runs(tmp_path):
    proc = dry_run("scale=paper")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "train" in proc.stdout and "23" in proc.stdout  # 23 training jobs
