"""The typed config: every key required, every cross-key rule checked at load time, one line naming
the key and exit status 2 for each bad value, from `python -m resnet` and from `snakemake` alike,
before any job starts. And what a cell resolves to: the paper's recipe at paper scale.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from resnet.config.load import load_config, plan_cells
from resnet.config.schema import ConfigError
from resnet.config.job import recipe_from_dict, resolve_cell
from tests.support import REPO_ROOT
from tests.support.processes import run_cli

SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def raw() -> dict:
    with open(REPO_ROOT / "config.yaml") as handle:
        return yaml.safe_load(handle)


def _delete_lr(config):
    del config["recipes"]["cifar10"]["lr"]


def _nan_lr(config):
    config["recipes"]["cifar10"]["lr"] = float("nan")


def _milestone_past_end(config):
    config["recipes"]["cifar10"]["milestones"] = [32000, 70000]


def _val_size_beyond_data(config):
    config["scales"]["smoke"]["cifar10"]["val_size"] = 60000


def _crop_larger_than_image(config):
    config["recipes"]["imagenet"]["crop"] = 300


def _scale_outside_results(config):
    config["scales"]["../../../../tmp/x"] = {}
    config["scale"] = "../../../../tmp/x"


MARKER = "ran-a-command"  # the file a scale name's $(touch ...) would create in the current folder


def _scale_running_a_command(config):
    config["scales"][f"x$(touch {MARKER})"] = {}
    config["scale"] = f"x$(touch {MARKER})"


def _bn_group_not_dividing(config):
    config["recipes"]["cifar10"]["bn_group"] = 48


def _experiment_name(config):
    config["mlflow"]["experiment"] = "a b/c"


def _negative_lr_in_a_preset(config):
    config["scales"]["paper"] = {"cifar10": {"lr": -0.1}}


def _no_core_in_a_preset(config):
    config["scales"]["smoke"]["resources"]["cifar10"]["cpus"] = 0


BAD = {
    "deleted-lr": (_delete_lr, "recipes.cifar10.lr", "missing"),
    "nan-lr": (_nan_lr, "recipes.cifar10.lr", "finite"),
    "milestone-past-end": (_milestone_past_end, "recipes.cifar10.milestones", "70000"),
    "val-size": (_val_size_beyond_data, "scales.smoke.cifar10.val_size", "60000"),
    "crop": (_crop_larger_than_image, "recipes.imagenet.crop", "300"),
    "scale-path": (_scale_outside_results, "scale", "not a valid name"),
    "scale-shell": (_scale_running_a_command, "scale", "not a valid name"),
    "bn-group": (_bn_group_not_dividing, "recipes.cifar10.bn_group", "48"),
    "experiment": (_experiment_name, "mlflow.experiment", "not a valid name"),
    "inactive-preset": (_negative_lr_in_a_preset, "scales.paper.cifar10.lr", "above 0"),
    "preset-resources": (_no_core_in_a_preset, "scales.smoke.resources.cifar10.cpus", "got 0"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_value_is_refused_at_load_time_naming_the_key(name):
    change, key, words = BAD[name]
    config = raw()
    change(config)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    message = str(caught.value)
    assert f"config key '{key}'" in message and words in message and "\n" not in message


def bad_config_file(tmp_path: Path, name: str) -> tuple[Path, str]:
    """config.yaml with BAD[name]'s change, written to tmp_path; and the key the error must name."""
    change, key, _ = BAD[name]
    config = raw()
    change(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, key


@pytest.mark.parametrize("name", ["deleted-lr", "milestone-past-end", "val-size", "scale-path"])
def test_bad_value_exits_2_with_one_line_from_the_command_line(tmp_path, name):
    path, key = bad_config_file(tmp_path, name)
    result = run_cli("train", "--config", str(path), "--cell", "cifar-resnet-20/seed-0", "--out", str(tmp_path / "o"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and f"'{key}'" in lines[0], result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["nan-lr", "crop", "scale-shell", "bn-group"])
def test_bad_value_stops_snakemake_before_any_job(checkout_copy, tmp_path, name):
    path, key = bad_config_file(tmp_path, name)
    proc = subprocess.run([str(SNAKEMAKE), "-n", "--cores", "1", "--configfile", str(path)], cwd=checkout_copy,
                          capture_output=True, text=True, timeout=300)
    # Snakemake's own notes (which profile, which config files) may come first; one error line.
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "error" in line.lower()]
    assert proc.returncode == 2 and len(errors) == 1 and f"'{key}'" in errors[0], proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (checkout_copy / MARKER).exists()


def test_paper_scale_cifar_cells_train_the_papers_recipe():
    config = raw()
    config["scale"] = "paper"
    job = resolve_cell(load_config(config), "cifar-resnet-110/seed-0")
    recipe = job.recipe
    # Sec. 4.2: all 50k training images, batch 128 with BN over the paper's 2 GPUs x 64, lr 0.1 /10 at
    # 32k and 48k, 64k iterations, the 0.01 warm-up of ResNet-110; the original (lossless) data.
    assert (recipe.val_size, recipe.train_subset, recipe.test_subset) == (0, 0, 0)
    assert (recipe.batch_size, recipe.bn_group, recipe.iterations) == (128, 64, 64000)
    assert (recipe.lr, recipe.milestones, recipe.lr_decay) == (0.1, (32000, 48000), 0.1)
    assert (recipe.momentum, recipe.weight_decay) == (0.9, 0.0001)
    assert (recipe.warmup_lr, recipe.warmup_until_train_error) == (0.01, 80.0)
    assert job.data.cifar10 == "data/cifar10" and job.data.cifar10_download
    assert not job.data.cifar10.endswith((".tar.gz", ".tgz", ".tar"))
    shallow = resolve_cell(load_config(config), "cifar-resnet-56/seed-0").recipe
    assert shallow.warmup_lr is None and shallow.bn_group == 64
    # The smoke scale stays on the JPEG copy, as the tests do.
    smoke = resolve_cell(load_config(raw()), "cifar-resnet-20/seed-0")
    assert smoke.data.cifar10.endswith("cifar10-jpeg.tar.gz") and not smoke.data.cifar10_download


def test_recipe_round_trips_and_is_the_identity():
    config = load_config(raw())
    job = resolve_cell(config, "cifar-resnet-20/seed-0")
    again = recipe_from_dict(json.loads(job.recipe.canonical()))
    assert again == job.recipe and again.digest() == job.recipe.digest()
    other = copy.deepcopy(raw())
    other["engine"]["device"] = "cpu"
    other["mlflow"]["tracking_uri"] = "http://elsewhere:5000"
    other["resources"]["cifar10"]["cpus"] = 16
    other["scales"]["smoke"]["resources"]["cifar10"]["cpus"] = 2
    other["scales"]["smoke"]["mlflow"]["live"] = True
    assert resolve_cell(load_config(other), "cifar-resnet-20/seed-0").recipe == job.recipe
    other["scales"]["smoke"]["cifar10"]["lr"] = 0.2
    assert resolve_cell(load_config(other), "cifar-resnet-20/seed-0").recipe != job.recipe
    with pytest.raises(ConfigError, match="learning_rate"):
        recipe_from_dict({**job.recipe.to_dict(), "learning_rate": 0.1})


def test_config_command_prints_what_the_workflow_hands_a_job():
    result = run_cli("config", "--cell", "cifar-resnet-56/seed-0", "--set", "scale=paper",
                     "--set", "recipes.cifar10.lr=0.05")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["recipe"]["lr"] == 0.05 and shown["recipe"]["iterations"] == 64000
    assert shown["settings"]["scale"] == "paper" and set(shown["settings"]) == {
        "scale", "engine", "data", "mlflow", "max_resubmits"}
    config = raw()
    config["scale"] = "paper"
    config["recipes"]["cifar10"]["lr"] = 0.05
    assert shown["recipe"] == resolve_cell(load_config(config), "cifar-resnet-56/seed-0").recipe.to_dict()
    bad = run_cli("config", "--cell", "cifar-resnet-56/seed-0", "--set", "recipes.cifar10.nope=1")
    assert bad.returncode == 2 and "recipes.cifar10.nope" in bad.stderr


def test_a_preset_lays_its_mlflow_and_resources_keys_over_the_base_ones():
    """The smoke preset: one core per job and MLflow from the summary step; every other key of those
    sections (memory, time limit, store) is the base one; the paper scale keeps the base sections."""
    config = raw()
    smoke = load_config(config)
    config["scale"] = "paper"
    paper = load_config(config)
    base = raw()
    assert (smoke.resources.cifar10.cpus, smoke.resources.imagenet.cpus, smoke.mlflow.live) == (1, 1, False)
    assert (paper.resources.cifar10.cpus, paper.resources.imagenet.cpus, paper.mlflow.live) == (
        base["resources"]["cifar10"]["cpus"], base["resources"]["imagenet"]["cpus"], True)
    for dataset in ("cifar10", "imagenet"):
        for key in ("gpus", "mem_mb", "runtime_min"):
            assert getattr(getattr(smoke.resources, dataset), key) == base["resources"][dataset][key]
    assert smoke.mlflow.tracking_uri == paper.mlflow.tracking_uri == base["mlflow"]["tracking_uri"]
    assert smoke.resources.max_resubmits == paper.resources.max_resubmits


def test_every_preset_and_the_default_plan_load():
    config = raw()
    for scale in config["scales"]:
        config["scale"] = scale
        assert len(plan_cells(load_config(config))) == 23


def test_an_empty_data_folder_stops_snakemake_before_any_job(checkout_copy, tmp_path):
    """The pre-flight check (resnet/preflight.py): not 20 resubmissions of a job that exits 2."""
    empty = tmp_path / "cifar"
    empty.mkdir()
    config = raw()
    config["scales"]["smoke"]["data"]["cifar10"] = str(empty)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([str(SNAKEMAKE), "-n", "--cores", "1", "--configfile", str(path)], cwd=checkout_copy,
                          capture_output=True, text=True, timeout=300)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "error" in line.lower()]
    assert proc.returncode == 2 and len(errors) == 1, proc.stdout + proc.stderr
    assert "config key 'data.cifar10'" in errors[0] and str(empty) in errors[0]


def test_every_value_in_the_train_command_is_quoted_for_the_shell(checkout_copy, tmp_path):
    """Paths and JSON reach the trainer as single words, whatever they hold (spaces, $(...), quotes)."""
    import shlex

    odd = tmp_path / "a b$(touch ran-from-a-path)'q"
    config = raw()
    config["scales"]["smoke"]["data"]["cache"] = str(odd)
    config["plan"].update(imagenet=False, cifar_plain_depths=[], cifar_resnet_depths=[20], resnet110_seeds=[])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([str(SNAKEMAKE), "results/runs/smoke/cifar-resnet-20/seed-0/metrics.json", "-n", "-p",
                           "--forcerun", "train", "--cores", "1", "--configfile", str(path)], cwd=checkout_copy,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    command = next(line for line in proc.stdout.splitlines() if " -m resnet train " in line)
    words = shlex.split(command.split(" & trainer=")[0].replace(">>", " >> "))
    settings = json.loads(words[words.index("--settings") + 1])
    assert settings["data"]["cache"] == str(odd)  # one word, unchanged
    recipe = json.loads(words[words.index("--recipe") + 1])
    assert recipe["model"] == "cifar-resnet-20"
    assert words[words.index("--out") + 1] == "results/runs/smoke/cifar-resnet-20/seed-0"
