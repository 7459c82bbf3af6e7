"""Shared fixtures for the training and command-line tests.

* ``cifar_cache_dir``: a session temporary cache in which the real JPEG CIFAR-10 tarball
  (``../shared/data/cifar10-jpeg.tar.gz`` next to the repository) is decoded once per session;
  the synthetic ImageNet-layout set is generated there once too. Tests that need the tarball skip
  with a reason when it is absent.
* ``make_config``: a valid raw config dict built from the repository's config.yaml with tiny
  iterations, absolute data paths, the session cache, a temporary MLflow SQLite store and the CPU.
"""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from tests.support import REPO_ROOT, CIFAR_TARBALL

PYTHON = sys.executable

# Threads for the training tests, in process (torch.set_num_threads) and in the subprocesses they
# start (OMP_NUM_THREADS). One by default: on a small shared machine, oversubscribed OpenMP threads
# spin and a step of ResNet-20 can take 50x longer than with one thread. A resumed run is compared
# with an uninterrupted one bit for bit, so both must use the same number of threads.
TEST_THREADS = int(os.environ.get("RESNET_TEST_THREADS", "1"))


@pytest.fixture
def torch_threads():
    """Run the test with TEST_THREADS torch threads; restore the previous count afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(TEST_THREADS)
    yield TEST_THREADS
    torch.set_num_threads(previous)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for ``python -m resnet`` subprocesses: unbuffered, TEST_THREADS threads."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(TEST_THREADS), **extra}


def require_cifar() -> Path:
    if not CIFAR_TARBALL.is_file():
        pytest.skip(f"real CIFAR-10 tarball not found at {CIFAR_TARBALL} (../shared/data next to the repo)")
    return CIFAR_TARBALL


@pytest.fixture(scope="session")
def cifar_cache_dir(tmp_path_factory) -> Path:
    """Session cache: the CIFAR tarball decoded once (~8 s) and the synthetic ImageNet built once.

    Skips when the tarball is absent (every training test on CIFAR needs it)."""
    require_cifar()
    from resnet.data.cifar.source import load_cifar10
    from resnet.data.imagenet.synthetic import make_synthetic_imagenet

    cache = tmp_path_factory.mktemp("train-cache")
    load_cifar10(CIFAR_TARBALL, cache)
    # resolve_imagenet_root('synthetic', cache) reuses this set (same default parameters); built now
    # so that two DDP ranks never race to build it.
    make_synthetic_imagenet(cache / "synthetic-imagenet")
    return cache


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store with its tables made, built once per session.

    Creating a store runs MLflow's schema migrations (~10 s on a small machine); each test copies
    this file instead, so every test still gets its own store."""
    from resnet.tracking.store import _prepare_store

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=_prepare_store(f"sqlite:///{path}")).search_experiments()
    return path


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
    """The resnet.job.Job of one cell of a raw config dict."""
    from resnet.config.load import load_config
    from resnet.config.job import resolve_cell

    return resolve_cell(load_config(config), cell)


def job_args(job) -> list[str]:
    """``--recipe JSON --settings JSON``: a job as the workflow hands it to ``python -m resnet train``."""
    import json

    return ["--recipe", json.dumps(job.recipe.to_dict()), "--settings", json.dumps(job.settings())]


@pytest.fixture
def make_config(tmp_path, cifar_cache_dir, mlflow_template_db) -> Callable[..., dict]:
    """config_builder with the MLflow store in this test's tmp_path and the session cache."""
    return config_builder(tmp_path, cifar_cache_dir, mlflow_template_db)


def run_cli(*args: str, cwd: Path = REPO_ROOT, timeout: float = 300, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """``python -m resnet ARGS`` from the repository root; text output captured."""
    return subprocess.run([PYTHON, "-m", "resnet", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(**(env or {})))


TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items):
    """Each test carries its tier's marker (the folder it lives in): `-m unit`, `-m "not e2e"`."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(tier)
