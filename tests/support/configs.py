"""Valid raw configs for the training tests, and a cell of one as the workflow hands it to a job."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import yaml

from tests.support import CIFAR_TARBALL, REPO_ROOT

TINY_CIFAR = dict(batch_size=16, bn_group=0, iterations=6, milestones=[4], train_subset=512, test_subset=200,
                  val_size=100, eval_every=3, log_every=2)
TINY_IMAGENET = dict(batch_size=8, iterations=4, milestones=[3], train_short_side=[36, 48], crop=32,
                     test_short_side=36, eval_every=2, log_every=2)
TINY_ENGINE = dict(device="cpu", channels_last=False, deterministic=True, checkpoint_every=3, workers=0)


def config_builder(store_dir: Path, cache_dir: Path, template_db: Path | None = None) -> Callable[..., dict]:
    """build(cifar10={...}, imagenet={...}, engine={...}, **top_level_overrides) -> a valid raw config dict.

    The active scale is ``smoke``, with tiny CIFAR and ImageNet presets (TINY_CIFAR, TINY_IMAGENET,
    TINY_ENGINE) that the keyword dicts update; data paths are absolute, the cache is ``cache_dir``,
    the MLflow store is ``sqlite:///<store_dir>/mlflow.db`` (a copy of ``template_db`` if given),
    the device is the CPU, kernels deterministic. ``load_config`` has checked it; ``job_of`` resolves
    a cell of it.
    """
    from resnet.config.load import lay_over, load_config

    store_dir.mkdir(parents=True, exist_ok=True)
    if template_db is not None and not (store_dir / "mlflow.db").exists():
        shutil.copyfile(template_db, store_dir / "mlflow.db")

    with open(REPO_ROOT / "config.yaml") as handle:
        base = yaml.safe_load(handle)

    def build(cifar10: dict | None = None, imagenet: dict | None = None, engine: dict | None = None,
              **overrides: Any) -> dict:
        config = copy.deepcopy(base)
        config["scale"] = "smoke"
        smoke = config["scales"]["smoke"]
        smoke["data"] = dict(cifar10=str(CIFAR_TARBALL), cifar10_download=False, imagenet="synthetic",
                             cache=str(cache_dir))
        # The jobs log their own runs (mlflow.live), as at the paper's scale: the tests see the live mirror.
        config["mlflow"] = {"tracking_uri": f"sqlite:///{store_dir}/mlflow.db", "experiment": "resnet-test",
                            "live": True}
        smoke.pop("mlflow", None)
        smoke["engine"] = {**TINY_ENGINE, **(engine or {})}
        smoke["cifar10"].update(TINY_CIFAR)
        smoke["imagenet"].update(TINY_IMAGENET)
        smoke["cifar10"].update(cifar10 or {})
        smoke["imagenet"].update(imagenet or {})
        lay_over(config, overrides)
        load_config(config)  # a valid config, or the test fails here naming the key
        return config

    return build


def job_of(config: dict, cell: str):
    """The resnet.config.job.Job of one cell of a raw config dict."""
    from resnet.config.job import resolve_cell
    from resnet.config.load import load_config

    return resolve_cell(load_config(config), cell)


def job_args(job) -> list[str]:
    """``--recipe JSON --settings JSON``: a job as the workflow hands it to ``python -m resnet train``."""
    return ["--recipe", json.dumps(job.recipe.to_dict()), "--settings", json.dumps(job.settings())]
