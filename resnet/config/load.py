"""config.yaml to a validated Config: the one path from the file to the plan.

    config.yaml --load_config--> Config (sections.py; the active scale preset laid over the paper's recipes)
                --plan_cells---> the cells of the paper's tables
                --resolve_cell (job.py)--> one cell's Job: its Recipe (the run's identity) and
                                           the settings that may change without retraining

config.yaml holds every default: each key below is required, so a key deleted by mistake is named
at load time instead of failing inside a job. Every rule that spans keys (milestones inside the
schedule, subsets inside the data set, crops inside the image) is checked here too.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from resnet.config.schema import ConfigError, check_name, parse
from resnet.config.sections import (CIFAR10_SIZES, Cell, CifarRecipeSettings, Config, Data, Engine,
                                    ImageNetRecipeSettings, Resources, MLflowSettings)

REPO_ROOT = Path(__file__).resolve().parents[2]  # resnet/config/load.py -> the repository

# What a scale preset may override: preset key -> where it lands in the config.
PRESET_SECTIONS = {"cifar10": ("recipes", "cifar10"), "imagenet": ("recipes", "imagenet"),
                   "engine": ("engine",), "data": ("data",), "mlflow": ("mlflow",), "resources": ("resources",)}


TOP_LEVEL = ("scale", "data", "mlflow", "plan", "recipes", "scales", "engine", "resources")


def load_config(source: str | Path | dict) -> Config:
    """Read config.yaml (or take an already-read dict), lay the active scale over it, validate it all."""
    raw = read_config_file(source) if not isinstance(source, dict) else copy.deepcopy(source)
    unknown = sorted(set(raw) - set(TOP_LEVEL), key=str)
    if unknown:
        raise ConfigError(f"config key '{unknown[0]}': unknown key (accepted keys: {', '.join(TOP_LEVEL)})")
    for key in TOP_LEVEL:
        if key not in raw:
            raise ConfigError(f"config key '{key}': missing (config.yaml in the repository has it)")
    scales = raw["scales"]
    if not isinstance(scales, dict) or not scales:
        raise ConfigError("config key 'scales': expected a mapping of scale presets (smoke, paper, ...)")
    scale = check_name(raw["scale"], "scale")
    if scale not in scales:
        raise ConfigError(f"config key 'scale': unknown scale '{scale}'; accepted: {', '.join(sorted(scales))} "
                          f"(or add a preset under 'scales')")
    configs = {name: _with_preset(raw, name) for name in scales}  # every preset must be valid, not only this one
    return configs[scale]


def read_config_file(source: str | Path) -> dict:
    """config.yaml as the raw mapping it holds (before validation)."""
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' not found: pass --config with the path to config.yaml")
    try:
        with open(path) as handle:
            config = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file '{path}' is not valid YAML: {error}".replace("\n", " ")) from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of keys (see config.yaml in the repository)")
    return config


def _with_preset(raw: dict, name: str) -> Config:
    """The config as scale ``name`` sees it: its preset's keys laid over the base sections."""
    preset = raw["scales"][name]
    if preset is None:
        preset = {}
    if not isinstance(preset, dict):
        raise ConfigError(f"config key 'scales.{name}': expected a mapping of {', '.join(PRESET_SECTIONS)}")
    check_name(name, f"scales.{name}")  # the name becomes a folder: results/runs/<scale>/
    merged = copy.deepcopy({key: raw[key] for key in TOP_LEVEL if key != "scales"})
    merged["scale"] = name
    for section, overrides in preset.items():
        if section not in PRESET_SECTIONS:
            raise ConfigError(f"config key 'scales.{name}.{section}': unknown key "
                              f"(a preset overrides: {', '.join(PRESET_SECTIONS)})")
        path = PRESET_SECTIONS[section]
        target = merged
        for part in path:
            if not isinstance(target.get(part), dict):
                raise ConfigError(f"config key '{'.'.join(path)}': expected a mapping")
            target = target[part]
        cls = {"cifar10": CifarRecipeSettings, "imagenet": ImageNetRecipeSettings, "engine": Engine,
               "data": Data, "mlflow": MLflowSettings, "resources": Resources}[section]
        parse(cls, overrides, f"scales.{name}.{section}", partial=True)  # bad preset values named where they are
        lay_over(target, overrides)
    config = parse(Config, merged, "")
    _check_rules(config, preset)
    return config


def lay_over(target: dict, overrides: dict) -> dict:
    """overrides laid over target (in place, and returned) key by key, nested mappings too:
    resources.cifar10.cpus keeps the other keys of resources.cifar10, as Snakemake merges a
    --configfile over config.yaml."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            lay_over(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _where(preset: dict, scale: str, section: str, key: str) -> str:
    """The key to name in an error: the preset's, where the preset sets it, else the base one."""
    if key in (preset.get(section) or {}):
        return f"scales.{scale}.{section}.{key}"
    return ".".join((*PRESET_SECTIONS.get(section, (section,)), key))


def _check_rules(config: Config, preset: dict) -> None:
    """The rules that span keys: what would otherwise fail (or do nothing) inside a job."""

    def fail(section: str, key: str, problem: str) -> ConfigError:
        return ConfigError(f"config key '{_where(preset, config.scale, section, key)}' (scale {config.scale}): "
                           f"{problem}")

    _check_schedules(config, fail)
    _check_data_sizes(config, fail)
    _check_plan(config)


def _check_schedules(config: Config, fail) -> None:
    for dataset in ("cifar10", "imagenet"):
        recipe = config.recipe(dataset)
        milestones = list(recipe.milestones)
        if milestones != sorted(set(milestones)):
            raise fail(dataset, "milestones", f"must be increasing, got {milestones}")
        if milestones and milestones[-1] >= recipe.iterations:
            raise fail(dataset, "milestones", f"milestone {milestones[-1]} is not before the end of training "
                       f"(iterations {recipe.iterations}): lower it or raise iterations")
        per_process = recipe.batch_size
        # ImageNet's processes: engine.processes when set, else one per GPU of the job
        processes, key = ((config.engine.processes, "engine.processes") if config.engine.processes
                          else (config.resources.imagenet.gpus, "resources.imagenet.gpus"))
        if dataset == "imagenet" and processes > 1:
            if recipe.batch_size % processes:
                raise fail(dataset, "batch_size", f"{recipe.batch_size} does not split over {key}={processes}: use a "
                           f"multiple of {processes}")
            per_process = recipe.batch_size // processes
        if recipe.bn_group and (per_process % recipe.bn_group):
            raise fail(dataset, "bn_group", f"{recipe.bn_group} does not divide the per-process batch of "
                       f"{per_process}: use a divisor of it, or 0 for the whole batch")


def _check_data_sizes(config: Config, fail) -> None:
    cifar = config.recipes.cifar10
    if cifar.val_size >= CIFAR10_SIZES["train"]:
        raise fail("cifar10", "val_size", f"{cifar.val_size} leaves no training images out of "
                   f"{CIFAR10_SIZES['train']:,}: use 5000 (the paper's 45k/5k split) or 0")
    if cifar.train_subset > CIFAR10_SIZES["train"] - cifar.val_size:
        raise fail("cifar10", "train_subset", f"{cifar.train_subset} is more than the "
                   f"{CIFAR10_SIZES['train'] - cifar.val_size:,} training images left after val_size "
                   f"{cifar.val_size}: lower it, or 0 for all")
    if cifar.train_subset and cifar.train_subset < cifar.batch_size:
        raise fail("cifar10", "train_subset", f"{cifar.train_subset} is smaller than one batch "
                   f"({cifar.batch_size}): raise it, or 0 for all")
    if cifar.test_subset > CIFAR10_SIZES["test"]:
        raise fail("cifar10", "test_subset", f"{cifar.test_subset} is more than the "
                   f"{CIFAR10_SIZES['test']:,} test images: lower it, or 0 for all")
    imagenet = config.recipes.imagenet
    low, high = imagenet.train_short_side
    if low > high:
        raise fail("imagenet", "train_short_side", f"[{low}, {high}] is not a range: put the smaller side first")
    if imagenet.crop > low:
        raise fail("imagenet", "crop", f"{imagenet.crop} is larger than the smallest training shorter side "
                   f"{low} (train_short_side): lower crop or raise train_short_side")
    if imagenet.crop > imagenet.test_short_side:
        raise fail("imagenet", "crop", f"{imagenet.crop} is larger than test_short_side {imagenet.test_short_side}:"
                   f" lower crop or raise test_short_side")


def _check_plan(config: Config) -> None:
    from resnet.paper.names import ModelNameError, parse_model_name

    plan = config.plan
    names = [("plan.cifar_plain_depths", f"cifar-plain-{d}", "cifar10") for d in plan.cifar_plain_depths]
    names += [("plan.cifar_resnet_depths", f"cifar-resnet-{d}", "cifar10") for d in plan.cifar_resnet_depths]
    names += [("plan.imagenet_models", name, "imagenet") for name in plan.imagenet_models]
    for key, name, expected in names:
        try:
            spec = parse_model_name(name)
        except ModelNameError as error:
            raise ConfigError(f"config key '{key}': {error}") from None
        if spec.dataset != expected:
            raise ConfigError(f"config key '{key}': '{name}' is a {spec.dataset} model; list CIFAR depths under "
                              f"plan.cifar_*_depths and ImageNet models under plan.imagenet_models")


# ----------------------------------------------------------------------------- overrides and the plan

def with_overrides(raw: dict, assignments: list[str]) -> dict:
    """``KEY=VALUE`` assignments (dotted keys, YAML values) laid over a raw config dict."""
    raw = copy.deepcopy(raw)
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set '{assignment}': expected KEY=VALUE, e.g. recipes.cifar10.lr=0.05")
        target = raw
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                raise ConfigError(f"--set '{assignment}': config key '{key}' does not exist (no section '{part}')")
            target = target[part]
        try:
            target[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set '{assignment}': '{text}' is not a YAML value") from None
    return raw


def plan_cells(config: Config) -> list[Cell]:
    """Every cell the configured plan trains, each once (artefacts share cells)."""
    from resnet.paper.names import canonical_name

    plan = config.plan
    cells: dict[str, Cell] = {}

    def add(model: str, seeds, dataset: str) -> None:
        for seed in seeds:
            cell = Cell(canonical_name(model), int(seed), dataset)
            cells.setdefault(cell.id, cell)

    if plan.cifar10:
        for depth in plan.cifar_plain_depths:
            add(f"cifar-plain-{depth}", plan.cifar_seeds, "cifar10")
        for depth in plan.cifar_resnet_depths:
            add(f"cifar-resnet-{depth}", plan.cifar_seeds, "cifar10")
        if 110 in plan.cifar_resnet_depths:
            add("cifar-resnet-110", plan.resnet110_seeds, "cifar10")
    if plan.imagenet:
        for model in plan.imagenet_models:
            add(model, plan.imagenet_seeds, "imagenet")
    return list(cells.values())
