"""Bad input to the workflow stops it before any job runs: one line naming the key, exit status 2.
And what the plans hold, from Snakemake's dry runs in a copy of the checkout (fixture checkout_copy:
the checkout's own results/ would hide every job that an earlier run finished)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.support import REPO_ROOT

REPO = REPO_ROOT
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def dry_run(repo: Path, *config: str, configfile: Path | None = None) -> subprocess.CompletedProcess:
    extra = ["--configfile", str(configfile)] if configfile else []
    return subprocess.run([str(SNAKEMAKE), "-n", "--cores", "1", *extra, "--config", *config], cwd=repo,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("config, expected", [
    (["scale=huge"], "config key 'scale': unknown scale 'huge'"),
    (["scale=paper", 'data={"cifar10": "/no/such/cifar", "cifar10_download": false}'],
     "config key 'data.cifar10': '/no/such/cifar' does not exist"),
    (['engine={"device": "tpu"}'], "config key 'engine.device'"),
])
def test_bad_config_stops_the_workflow_with_the_key_named(checkout_copy, config, expected):
    proc = dry_run(checkout_copy, *config)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stdout + proc.stderr


def test_a_depth_that_is_not_6n_plus_2_is_refused(checkout_copy, tmp_path):
    override = tmp_path / "depth.yaml"
    override.write_text("plan:\n  cifar10: true\n  imagenet: false\n  cifar_resnet_depths: [21]\n")
    proc = dry_run(checkout_copy, "scale=smoke", configfile=override)
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
    """The metrics.json each `rule train` job of a dry run writes, in the order listed (Snakemake
    marks it "(update)": the record is not deleted before the job, resnet.runs.folder keeps it)."""
    outputs, rule = [], None
    for line in output.splitlines():
        if line.startswith("rule ") and line.endswith(":"):
            rule = line[len("rule "):-1]
        elif rule == "train" and line.strip().startswith("output:"):
            items = [item.strip().removesuffix("(update)").strip() for item in line.split(":", 1)[1].split(",")]
            outputs += [item for item in items if item.endswith("metrics.json")]
    return outputs


def test_the_paper_scale_plan_dry_runs(checkout_copy, tmp_path):
    proc = dry_run(checkout_copy, "scale=paper")
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


def _train_jobs(output: str) -> dict[str, dict[str, int]]:
    """{cell: {"priority": p, "threads": t}} for each train job of a dry run's job list."""
    jobs, rule, cell = {}, None, None
    for line in output.splitlines():
        text = line.strip()
        if line.startswith(("rule ", "localrule ")):
            rule, cell = line.split()[-1].rstrip(":"), None
        elif rule == "train" and text.startswith("wildcards:"):
            found = dict(item.strip().split("=") for item in text.split(":", 1)[1].split(","))
            cell = f"{found['model']}/seed-{found['seed']}"
            jobs[cell] = {"priority": 0, "threads": 1}  # Snakemake prints neither at its default
        elif rule == "train" and cell and text.startswith(("priority:", "threads:")):
            key, value = text.split(":")
            jobs[cell][key] = int(value)
    return jobs


def test_smoke_jobs_take_one_core_each_and_every_plan_trains_deepest_first(checkout_copy):
    """The smoke preset's resources: one core per train job, so --cores 4 runs four side by side; the
    paper scale keeps resources.cifar10.cpus. Each train job's priority is its depth (ResNet-1202 first)."""
    from resnet.paper.names import parse_model_name

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for scale in ("smoke", "paper"):
        proc = subprocess.run([str(SNAKEMAKE), "-n", "--cores", "4", "--config", f"scale={scale}"], cwd=checkout_copy,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        jobs = _train_jobs(proc.stdout)
        assert len(jobs) == 23 and max(jobs, key=lambda cell: jobs[cell]["priority"]) == "cifar-resnet-1202/seed-0"
        for cell, job in jobs.items():
            spec = parse_model_name(cell.split("/")[0])
            assert job["priority"] == spec.depth, cell
            cores = 1 if scale == "smoke" else config["resources"][spec.dataset]["cpus"]
            assert job["threads"] == min(cores, 4), cell  # threads: the job's cores, at most --cores
