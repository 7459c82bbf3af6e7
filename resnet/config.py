"""The one path from config.yaml to a training run.

    config.yaml --(JSON schema)--> validated dict --(plan_cells)--> the cells of the paper's tables
                                                 --(resolve_cell)--> TrainConfig for one cell

The Snakefile and the command line both go through these functions, so a cell trained from the
workflow and a cell trained by hand get the same recipe.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"

# The batch each recipe's learning rate is stated for (He et al. 2015, Sec. 4.2 and Sec. 3.4).
# When a scale preset changes the batch, the learning rate follows the linear scaling rule.
REFERENCE_BATCH = {"cifar10": 128, "imagenet": 256}

CELL_PATTERN = re.compile(r"^(?P<model>[a-z0-9.\-]+)/seed-(?P<seed>\d+)$")


class ConfigError(ValueError):
    """A configuration problem, stated in one line that names the key and the fix."""


@dataclass(frozen=True)
class Cell:
    """One training job: a model at a seed. Its id is also its folder under results/runs/<scale>/."""

    model: str
    seed: int
    dataset: str

    @property
    def id(self) -> str:
        return f"{self.model}/seed-{self.seed}"


@dataclass
class TrainConfig:
    """Everything one training run needs, resolved from config.yaml for one cell."""

    model: str
    dataset: str  # cifar10 | imagenet
    seed: int
    scale: str
    iterations: int
    batch_size: int
    lr: float  # effective lr for batch_size (linear scaling from the recipe's reference batch)
    momentum: float
    weight_decay: float
    milestones: list[int]
    lr_decay: float
    eval_every: int
    log_every: int
    checkpoint_every: int
    data_source: str
    cache_dir: str
    data_download: bool = False
    warmup_lr: float | None = None  # None: no warm-up
    warmup_until_train_error: float = 80.0  # percent
    val_size: int = 5000
    train_subset: int = 0
    test_subset: int = 0
    train_short_side: list[int] = field(default_factory=lambda: [256, 480])
    crop: int = 224
    test_short_side: int = 256
    workers: int = 8
    device: str = "auto"
    bf16: bool = True
    channels_last: bool = True
    cuda_graphs: bool = True
    compile: bool = False
    deterministic: bool = False
    tracking_uri: str = "sqlite:///results/mlflow.db"
    experiment: str = "resnet-he2015"
    max_resubmits: int = 20

    @property
    def cell(self) -> str:
        return f"{self.model}/seed-{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; known: {sorted(names)}")
        return cls(**values)


# ----------------------------------------------------------------------------- loading

def _schema() -> dict:
    with open(SCHEMA_PATH) as handle:
        return yaml.safe_load(handle)


def _key_path(error) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


def validate(config: dict) -> dict:
    """Validate against the JSON schema and the checks a schema cannot express; fill defaults."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        hint = error.schema.get("description", "")
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            hint = f"accepted keys: {', '.join(allowed)}" if allowed else hint
        elif error.validator == "enum":
            hint = f"accepted: {error.validator_value}"
        raise ConfigError(
            f"config key '{_key_path(error)}': {error.message}" + (f" ({hint})" if hint else "")
        )
    config = copy.deepcopy(config)
    _fill_defaults(config, _schema())
    _check_semantics(config)
    return config


def _fill_defaults(config: dict, schema: dict) -> None:
    for section in ("data", "plan", "engine", "resources"):
        props = schema["properties"][section].get("properties", {})
        target = config.setdefault(section, {})
        for key, spec in props.items():
            if "default" in spec and key not in target:
                target[key] = copy.deepcopy(spec["default"])


def _check_semantics(config: dict) -> None:
    from resnet.models import ModelNameError, parse_model_name

    scales = config["scales"]
    if config["scale"] not in scales:
        raise ConfigError(
            f"config key 'scale': unknown scale '{config['scale']}'; "
            f"accepted: {', '.join(sorted(scales))} (or add a preset under 'scales')"
        )
    plan = config["plan"]
    names = [f"cifar-plain-{d}" for d in plan["cifar_plain_depths"]]
    names += [f"cifar-resnet-{d}" for d in plan["cifar_resnet_depths"]]
    for key, name in [("plan.cifar_plain_depths / plan.cifar_resnet_depths", n) for n in names] + [
        ("plan.imagenet_models", n) for n in plan["imagenet_models"]
    ]:
        try:
            spec = parse_model_name(name)
        except ModelNameError as error:
            raise ConfigError(f"config key '{key}': {error}") from None
        expected = "imagenet" if key == "plan.imagenet_models" else "cifar10"
        if spec.dataset != expected:
            raise ConfigError(
                f"config key '{key}': '{name}' is a {spec.dataset} model; "
                f"list CIFAR depths under plan.cifar_*_depths and ImageNet models under plan.imagenet_models"
            )
    for dataset in ("cifar10", "imagenet"):
        recipe = recipe_for(config, dataset)
        if sorted(recipe["milestones"]) != list(recipe["milestones"]):
            raise ConfigError(f"config key 'recipes.{dataset}.milestones' (scale {config['scale']}): must be increasing")


def load_config(source: str | Path | dict) -> dict:
    """Read config.yaml (or take an already-read dict) and validate it."""
    if isinstance(source, dict):
        return validate(source)
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
    return validate(config)


# ----------------------------------------------------------------------------- the plan

def recipe_for(config: dict, dataset: str) -> dict:
    """The paper's recipe for a dataset with the active scale preset laid over it."""
    recipe = copy.deepcopy(config["recipes"][dataset])
    recipe.update(copy.deepcopy(config["scales"][config["scale"]].get(dataset, {})))
    return recipe


def plan_cells(config: dict) -> list[Cell]:
    """Every cell the configured plan trains, each once (artefacts share cells)."""
    from resnet.models import canonical_name

    plan = config["plan"]
    cells: dict[str, Cell] = {}

    def add(model: str, seeds, dataset: str) -> None:
        for seed in seeds:
            cell = Cell(canonical_name(model), int(seed), dataset)
            cells.setdefault(cell.id, cell)

    if plan["cifar10"]:
        for depth in plan["cifar_plain_depths"]:
            add(f"cifar-plain-{depth}", plan["cifar_seeds"], "cifar10")
        for depth in plan["cifar_resnet_depths"]:
            add(f"cifar-resnet-{depth}", plan["cifar_seeds"], "cifar10")
        if 110 in plan["cifar_resnet_depths"]:
            add("cifar-resnet-110", plan["resnet110_seeds"], "cifar10")
    if plan["imagenet"]:
        for model in plan["imagenet_models"]:
            add(model, plan["imagenet_seeds"], "imagenet")
    return list(cells.values())


def parse_cell(cell_id: str) -> tuple[str, int]:
    match = CELL_PATTERN.match(cell_id)
    if not match:
        raise ConfigError(f"cell '{cell_id}' is not of the form MODEL/seed-N, e.g. cifar-resnet-56/seed-0")
    return match["model"], int(match["seed"])


def resolve_cell(config: dict, cell_id: str) -> TrainConfig:
    """The TrainConfig of one cell: recipe + scale preset + engine + data + tracking settings."""
    from resnet.models import ModelNameError, canonical_name, parse_model_name

    model, seed = parse_cell(cell_id)
    try:
        spec = parse_model_name(model)
    except ModelNameError as error:
        raise ConfigError(f"cell '{cell_id}': {error}") from None
    dataset = spec.dataset
    recipe = recipe_for(config, dataset)
    lr = recipe["lr"] * recipe["batch_size"] / REFERENCE_BATCH[dataset]
    values: dict[str, Any] = dict(
        model=canonical_name(model),
        dataset=dataset,
        seed=seed,
        scale=config["scale"],
        iterations=recipe["iterations"],
        batch_size=recipe["batch_size"],
        lr=lr,
        momentum=recipe["momentum"],
        weight_decay=recipe["weight_decay"],
        milestones=list(recipe["milestones"]),
        lr_decay=recipe["lr_decay"],
        eval_every=recipe["eval_every"],
        log_every=recipe["log_every"],
        checkpoint_every=recipe["checkpoint_every"],
        data_source=config["data"][dataset],
        data_download=bool(config["data"].get("cifar10_download", False)) if dataset == "cifar10" else False,
        cache_dir=config["data"]["cache"],
        tracking_uri=config["mlflow"]["tracking_uri"],
        experiment=config["mlflow"]["experiment"],
        max_resubmits=config["resources"].get("max_resubmits", 20),
        **{key: config["engine"][key] for key in ("device", "bf16", "channels_last", "cuda_graphs", "compile", "deterministic")},
    )
    if dataset == "cifar10":
        warmup = recipe.get("warmup")
        if warmup and spec.family == "resnet" and spec.depth >= warmup["min_depth"]:
            # Sec. 4.2: ResNet-110 starts at lr 0.01 until training error < 80%, then goes back to 0.1.
            values["warmup_lr"] = warmup["lr"] * recipe["batch_size"] / REFERENCE_BATCH[dataset]
            values["warmup_until_train_error"] = warmup["until_train_error"]
        for key in ("val_size", "train_subset", "test_subset"):
            values[key] = recipe[key]
    else:
        for key in ("train_short_side", "crop", "test_short_side", "workers"):
            values[key] = recipe[key]
    return TrainConfig(**values)
