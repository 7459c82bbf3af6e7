"""Bad input to the workflow stops it before any job runs: one line naming the key, exit status 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def dry_run(*config: str, configfile: Path | None = None) -> subprocess.CompletedProcess:
    extra = ["--configfile", str(configfile)] if configfile else []
    return subprocess.run([str(SNAKEMAKE), "-n", "--cores", "1", *extra, "--config", *config], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("config, expected", [
    (["scale=huge"], "config key 'scale': unknown scale 'huge'"),
    (["scale=paper", 'data={"cifar10": "/no/such/cifar", "cifar10_download": false}'],
     "config key 'data.cifar10': '/no/such/cifar' does not exist"),
    (['engine={"device": "tpu"}'], "config key 'engine.device'"),
])
def test_bad_config_stops_the_workflow_with_the_key_named(config, expected):
    proc = dry_run(*config)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stdout + proc.stderr


def test_a_depth_that_is_not_6n_plus_2_is_refused(tmp_path):
    override = tmp_path / "depth.yaml"
    override.write_text("plan:\n  cifar10: true\n  imagenet: false\n  cifar_resnet_depths: [21]\n")
    proc = dry_run("scale=smoke", configfile=override)
    assert proc.returncode != 0
    assert proc.returncode == 2
    assert "config key 'plan.cifar_resnet_depths'" in proc.stdout + proc.stderr
    assert "6n+2" in proc.stdout + proc.stderr


def _job_stats(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table of a dry run: {rule: count}."""
    lines = output.splitlines()
    start = lines.index("Job stats:")
    stats = {}
    for line in lines[start + 3:]:  # after the header and its rule
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        stats[parts[0]] = int(parts[1])
    return stats


def _train_outputs(output: str) -> list[str]:
    """The metrics.json each `rule train` job of a dry run writes, in the order listed."""
    outputs, rule = [], None
    for line in output.splitlines():
        if line.startswith("rule ") and line.endswith(":"):
            rule = line[len("rule "):-1]
        elif rule == "train" and line.strip().startswith("output:"):
            outputs += [item.strip() for item in line.split(":", 1)[1].split(",") if item.strip().endswith("metrics.json")]
    return outputs


def test_the_paper_scale_plan_dry_runs(tmp_path):
    proc = dry_run("scale=paper")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stats = _job_stats(proc.stdout)
    # One training job per cell of the plan (`python -m resnet plan` lists the same cells), each
    # written to results/runs/paper/<cell>/metrics.json, and one job per table and figure.
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["scale"] = "paper"
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(config))
    plan = subprocess.run([sys.executable, "-m", "resnet", "plan", "--config", str(tmp_path / "paper.yaml")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0, plan.stderr
    cells = [line.split("\t")[0] for line in plan.stdout.splitlines() if line.strip()]
    assert len(cells) == len(set(cells)) == 23  # Tables 2, 3 and 6 and the figures share 23 cells
    assert stats["train"] == len(cells)
    assert sorted(_train_outputs(proc.stdout)) == sorted(f"results/runs/paper/{cell}/metrics.json" for cell in cells)
    assert stats["table"] == 4 and stats["figure"] == 4  # Tables 1, 2, 3, 6; Figures 1, 4, 6, 7
    assert stats["total"] == sum(count for rule, count in stats.items() if rule != "total")


def test_readme_states_the_smoke_scale_that_config_yaml_sets():
    """README's scales table quotes the smoke preset's numbers; config.yaml is where they live."""
    import re

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `smoke`")]
    assert len(rows) == 1, rows
    found = re.search(r"([\d,]+) CIFAR iterations on ([\d,]+) (?:training )?images \(batch (\d+)\); (\d+) ImageNet "
                      r"iterations at (\d+)-pixel crops", rows[0])
    assert found, f"README's smoke row no longer states its numbers in the expected words: {rows[0]}"
    stated = [int(number.replace(",", "")) for number in found.groups()]

    def smoke(dataset: str, key: str):
        return config["scales"]["smoke"].get(dataset, {}).get(key, config["recipes"][dataset].get(key))

    assert stated == [smoke("cifar10", "iterations"), smoke("cifar10", "train_subset"),
                      smoke("cifar10", "batch_size"), smoke("imagenet", "iterations"), smoke("imagenet", "crop")]
