"""What `--profile slurm` chooses: the paper's scale, unless the command line says `--config scale=...`.

`snakemake --cores 8 --profile slurm` is the command for reproducing the paper on a cluster, so the
profile (slurm/config.yaml) sets scale `paper`; a smoke run on the cluster is `--config scale=smoke`.
Other `--config` keys or a `--configfile` on the command line keep the profile's scale (Snakemake
replaces a profile entry given again on the command line, which is why the profile sets the scale
both as `config:` and as `configfile:`).

Dry runs (`-n --forceall`) list every job of the plan and need no SLURM controller: the jobs' output
paths say which scale each run would train, results/runs/<scale>/<model>/seed-<n>/metrics.json. They
run in a copy of the checkout (fixture checkout_copy), never beside the checkout's own results/.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
TRAINED = re.compile(r"results/runs/(\w+)/([a-z0-9.\-]+/seed-\d+)/metrics\.json")


def planned(repo: Path, *args: str) -> dict[str, set[str]]:
    """{scale: {cell, ...}} of the training jobs a dry run through the SLURM profile lists in ``repo``."""
    proc = subprocess.run([str(SNAKEMAKE), "-n", "--forceall", "--cores", "8", "--profile", "slurm", *args],
                          cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cells: dict[str, set[str]] = {}
    for scale, cell in TRAINED.findall(proc.stdout):
        cells.setdefault(scale, set()).add(cell)
    return cells


@pytest.fixture(scope="module")
def paper_plan(checkout_copy):
    return planned(checkout_copy)


def test_the_profile_alone_trains_the_paper_scale(paper_plan):
    assert set(paper_plan) == {"paper"}
    # the paper's plan: Table 6's ResNets up to 1202 layers, ResNet-110 over 5 seeds, Table 3's ImageNet nets
    assert {"cifar-resnet-1202/seed-0", "cifar-resnet-110/seed-4", "cifar-plain-56/seed-0",
            "resnet-152/seed-0", "plain-34/seed-0"} <= paper_plan["paper"]


def test_config_scale_smoke_on_the_command_line_gives_the_smoke_scale(checkout_copy, paper_plan):
    smoke = planned(checkout_copy, "--config", "scale=smoke")
    assert set(smoke) == {"smoke"}
    assert smoke["smoke"] == paper_plan["paper"]  # the same plan, only the scale differs


@pytest.mark.parametrize("args", [
    ["--config", "mlflow={tracking_uri: 'sqlite:///results/other.db', experiment: other}"],
    ["--configfile", "slurm/paper-scale.yaml", "config.yaml"],
], ids=["other --config key", "--configfile"])
def test_other_command_line_config_keeps_the_profiles_scale(checkout_copy, args, paper_plan):
    assert planned(checkout_copy, *args) == paper_plan
