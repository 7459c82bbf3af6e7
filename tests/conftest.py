"""Shared fixtures; the helpers they use live in tests/support.

* ``torch_threads``: the test runs with TEST_THREADS torch threads (tests/support/processes.py).
* ``cifar_cache_dir``: a session temporary cache in which the real JPEG CIFAR-10 tarball
  (``../shared/data/cifar10-jpeg.tar.gz`` next to the repository) is decoded once per session;
  the synthetic ImageNet-layout set is generated there once too. Without the tarball the tests
  that need it skip with the reason, and fail under CI=true (tests.support.require_cifar).
* ``mlflow_template_db``: an empty MLflow store made once; each test copies it.
* ``make_config``: a valid raw config dict built from the repository's config.yaml with tiny
  iterations, absolute data paths, the session cache, a temporary MLflow SQLite store and the CPU
  (tests/support/configs.py).
* ``checkout_copy``: a copy of the checkout (tests/support/workflow.py) for Snakemake dry runs, so
  that no test sees the checkout's own results/, .snakemake/ or MLflow store.

Each test also carries its tier's marker, from the folder it lives in: unit, integration, e2e.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.support import require_cifar
from tests.support.configs import config_builder
from tests.support.processes import TEST_THREADS


@pytest.fixture
def torch_threads():
    """Run the test with TEST_THREADS torch threads; restore the previous count afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(TEST_THREADS)
    yield TEST_THREADS
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def cifar_cache_dir(tmp_path_factory) -> Path:
    """Session cache: the CIFAR tarball decoded once (~8 s) and the synthetic ImageNet built once."""
    tarball = require_cifar()
    from resnet.data.cifar.source import load_cifar10
    from resnet.data.imagenet.synthetic import make_synthetic_imagenet

    cache = tmp_path_factory.mktemp("train-cache")
    load_cifar10(tarball, cache)
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


@pytest.fixture
def make_config(tmp_path, cifar_cache_dir, mlflow_template_db) -> Callable[..., dict]:
    """config_builder with the MLflow store in this test's tmp_path and the session cache."""
    return config_builder(tmp_path, cifar_cache_dir, mlflow_template_db)


@pytest.fixture(scope="session")
def checkout_copy(tmp_path_factory) -> Path:
    """The checkout copied once per session without results/, .snakemake/ or .venv; its root.

    Snakemake's dry runs run here: in the checkout they would see whatever an earlier `snakemake`
    left in results/ (a finished cell is not listed again). The tests only dry-run in it."""
    from tests.support.workflow import copy_repo

    return copy_repo(tmp_path_factory.mktemp("checkout"))


TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items):
    """Each test carries its tier's marker (the folder it lives in): `-m unit`, `-m "not e2e"`."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(tier)
