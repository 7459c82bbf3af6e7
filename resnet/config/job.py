"""One cell's training job: its recipe (the run's identity) and the settings around it.

    job = resolve_cell(load_config("config.yaml"), "cifar-resnet-56/seed-0")
    job.recipe      what is trained: model, seed, schedule, data subset, augmentation, BN group
    job.engine      how: device, precision, graphs, compile, checkpoints, workers
    job.data        where the data lives;  job.mlflow: the MLflow store;  job.max_resubmits

The recipe's canonical JSON is the train rule's Snakemake param and what a checkpoint is matched
against: changing a recipe value reruns exactly the cells it touches, and changing the engine, a
data location, the store or the resources retrains nothing. The other settings reach the job
as one JSON document shared by every cell (``settings_json``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from resnet.config.sections import Config, Data, Engine, REFERENCE_BATCH, MLflowSettings
from resnet.config.schema import ConfigError, check_name, parse, to_plain

CELL_PATTERN = re.compile(r"^(?P<model>[a-z0-9][a-z0-9.\-]{0,63})/seed-(?P<seed>\d{1,9})$")


@dataclass(frozen=True)
class Recipe:
    """What makes an experiment, resolved for one cell (lr already scaled to the batch)."""

    model: str
    dataset: str
    seed: int
    batch_size: int
    lr: float  # effective lr for batch_size (linear scaling from the recipe's reference batch)
    momentum: float
    weight_decay: float
    iterations: int
    milestones: tuple[int, ...]
    lr_decay: float
    bn_group: int
    eval_every: int
    log_every: int

    @property
    def cell(self) -> str:
        return f"{self.model}/seed-{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def canonical(self) -> str:
        """The identity as text: the same recipe always gives the same string."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CifarRecipe(Recipe):
    warmup_lr: float | None  # Sec. 4.2: ResNet-110 and deeper; None: no warm-up
    warmup_until_train_error: float | None
    val_size: int
    train_subset: int
    test_subset: int


@dataclass(frozen=True)
class ImageNetRecipe(Recipe):
    train_short_side: tuple[int, int]
    crop: int
    test_short_side: int


RECIPE_TYPES = {"cifar10": CifarRecipe, "imagenet": ImageNetRecipe}


def recipe_from_dict(values: dict[str, Any]) -> CifarRecipe | ImageNetRecipe:
    """The inverse of ``Recipe.to_dict``; an unknown or missing key is a ConfigError naming it."""
    if not isinstance(values, dict) or values.get("dataset") not in RECIPE_TYPES:
        raise ConfigError(f"recipe: expected a mapping with dataset cifar10 or imagenet, got {values!r}"[:300])
    cls = RECIPE_TYPES[values["dataset"]]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown, missing = sorted(set(values) - names), sorted(names - set(values))
    if unknown or missing:
        raise ConfigError(f"recipe: unknown key(s) {unknown} / missing key(s) {missing}; "
                          f"print a cell's recipe with `python -m resnet config --cell MODEL/seed-N`")
    converted = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    return cls(**converted)


@dataclass(frozen=True)
class Job:
    recipe: CifarRecipe | ImageNetRecipe
    scale: str
    engine: Engine
    data: Data
    mlflow: MLflowSettings
    max_resubmits: int

    @property
    def cell(self) -> str:
        return self.recipe.cell

    @property
    def dataset(self) -> str:
        return self.recipe.dataset

    @property
    def data_source(self) -> str:
        return getattr(self.data, self.recipe.dataset)

    def settings(self) -> dict[str, Any]:
        return _settings(self.scale, self.engine, self.data, self.mlflow, self.max_resubmits)

    def to_dict(self) -> dict[str, Any]:
        """Everything this job runs with (metrics.json and MLflow params record it)."""
        return {"recipe": self.recipe.to_dict(), **self.settings()}


def _settings(scale: str, engine: Engine, data: Data, mlflow: MLflowSettings, max_resubmits: int) -> dict[str, Any]:
    return {"scale": scale, "engine": to_plain(engine), "data": to_plain(data), "mlflow": to_plain(mlflow),
            "max_resubmits": max_resubmits}


def settings_of(config: Config) -> dict[str, Any]:
    """The settings every cell of this config shares, as plain values (the job's --settings)."""
    return _settings(config.scale, config.engine, config.data, config.mlflow, config.resources.max_resubmits)


def settings_json(config: Config) -> str:
    return json.dumps(settings_of(config), sort_keys=True, separators=(",", ":"))


def job_from_parts(recipe: dict[str, Any], settings: dict[str, Any]) -> Job:
    """A Job from the two JSON documents the workflow hands a train job."""
    expected = {"scale", "engine", "data", "mlflow", "max_resubmits"}
    if not isinstance(settings, dict) or set(settings) != expected:
        raise ConfigError(f"settings: expected the keys {sorted(expected)}; print them with "
                          f"`python -m resnet config --cell MODEL/seed-N`")
    max_resubmits = settings["max_resubmits"]
    if isinstance(max_resubmits, bool) or not isinstance(max_resubmits, int) or max_resubmits < 0:
        raise ConfigError(f"settings: max_resubmits must be a non-negative integer, got {max_resubmits!r}")
    return Job(recipe=recipe_from_dict(recipe), scale=check_name(settings["scale"], "scale"),
               engine=parse(Engine, settings["engine"], "engine"), data=parse(Data, settings["data"], "data"),
               mlflow=parse(MLflowSettings, settings["mlflow"], "mlflow"), max_resubmits=max_resubmits)


def parse_cell(cell_id: str) -> tuple[str, int]:
    match = CELL_PATTERN.match(cell_id)
    if not match:
        raise ConfigError(f"cell '{cell_id}' is not of the form MODEL/seed-N, e.g. cifar-resnet-56/seed-0")
    return match["model"], int(match["seed"])


def resolve_cell(config: Config, cell_id: str) -> Job:
    """One cell's Job: its dataset's recipe (active scale laid over) resolved for its model and seed."""
    from resnet.paper.names import ModelNameError, canonical_name, parse_model_name

    model, seed = parse_cell(cell_id)
    try:
        spec = parse_model_name(model)
    except ModelNameError as error:
        raise ConfigError(f"cell '{cell_id}': {error}") from None
    dataset = spec.dataset
    settings = config.recipe(dataset)
    scaling = settings.batch_size / REFERENCE_BATCH[dataset]
    cls = RECIPE_TYPES[dataset]
    # A recipe field of the same name as a recipe setting takes that setting as it is (one list of
    # fields: the Recipe classes); lr is scaled to the batch, and the warm-up resolved per depth.
    copied = {f.name: getattr(settings, f.name) for f in dataclasses.fields(cls) if hasattr(settings, f.name)}
    resolved = dict(model=canonical_name(model), dataset=dataset, seed=seed, lr=settings.lr * scaling)
    if dataset == "cifar10":
        warmup = settings.warmup
        warms = warmup is not None and spec.family == "resnet" and spec.depth >= warmup.min_depth
        # Sec. 4.2: ResNet-110 starts at lr 0.01 until training error < 80%, then goes back to 0.1.
        resolved.update(warmup_lr=warmup.lr * scaling if warms else None,
                        warmup_until_train_error=warmup.until_train_error if warms else None)
    recipe = cls(**{**copied, **resolved})
    return Job(recipe=recipe, scale=config.scale, engine=config.engine, data=config.data, mlflow=config.mlflow,
               max_resubmits=config.resources.max_resubmits)
