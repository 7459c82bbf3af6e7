"""The MLflow store: opened (and, for SQLite, created) once per process, every call retried while busy.

resnet.tracking is the only package of the project that imports mlflow; this module is where it
talks to the store. MLflow's SQL stores always hold an experiment named "Default" (id 0, created
with the tables). It is left alone: the project logs nothing there, and removing it would break
MLflow's own tools that fall back to it.

The default store is a SQLite file; many processes may write to it at once. MLflow's SQL store
waits 20 s on a busy database (PRAGMA busy_timeout) but SQLite answers a write that would deadlock
with "database is locked" at once; MLflow reports both as TEMPORARILY_UNAVAILABLE, and those calls
are retried (tenacity). On clusters a tracking server is the better choice (config key
mlflow.tracking_uri).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

# sqlite:/// stores this process has already created or checked
_READY: set[str] = set()


# SQLite's primary result codes (extended codes keep them in the low byte)
SQLITE_BUSY = 5
SQLITE_LOCKED = 6


def _transient(error: BaseException) -> bool:
    """A busy store: worth trying again. MLflow's SQL store reports every database OperationalError
    as TEMPORARILY_UNAVAILABLE; for SQLite only a busy or locked database is (a read-only or
    corrupt file is not), told by the sqlite3 error's result code, not by its text."""
    from mlflow.exceptions import MlflowException

    if not isinstance(error, MlflowException) or error.error_code != "TEMPORARILY_UNAVAILABLE":
        return False
    code = getattr(getattr(error.__cause__, "orig", None), "sqlite_errorcode", None)
    return code is None or code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)


def _call(action: Callable[[], T]) -> T:
    """Run one store call, retried (jittered exponential wait, up to 60 s) while the store is busy."""
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

    for attempt in Retrying(retry=retry_if_exception(_transient), stop=stop_after_delay(60),
                            wait=wait_random_exponential(multiplier=0.05, max=2.0), reraise=True):
        with attempt:
            return action()
    raise AssertionError("unreachable")


def _prepare_store(uri: str) -> str:
    """Create a sqlite:/// store (folder and tables) once; quiet MLflow's start-up chatter."""
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    if uri.startswith("sqlite:///") and uri not in _READY:
        database = Path(uri[len("sqlite:///"):])
        database.parent.mkdir(parents=True, exist_ok=True)
        _create_tables(uri, database)
        _READY.add(uri)
    return uri


def _create_tables(uri: str, database: Path) -> None:
    """Let one process at a time create or upgrade the tables of a SQLite store.

    MLflow builds a new store with a series of schema migrations; two processes doing that at once
    (the first jobs of a workflow start together) break each other's migration. A lock file beside
    the database serialises this step only; logging itself runs concurrently.
    """
    import fcntl

    from mlflow.tracking import MlflowClient

    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _call(lambda: MlflowClient(tracking_uri=uri).search_experiments(max_results=1))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=_prepare_store(uri))


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go beside it (results/mlartifacts), not into ./mlruns."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return None  # a tracking server decides


def _experiment_id(client, uri: str, name: str) -> str:
    found = _call(lambda: client.get_experiment_by_name(name))
    if found is not None:
        return found.experiment_id
    try:
        return _call(lambda: client.create_experiment(name, artifact_location=_artifact_location(uri)))
    except Exception:
        found = client.get_experiment_by_name(name)  # another process created it first
        if found is None:
            raise
        return found.experiment_id
