"""One cell's MLflow run: what it says (tags, params, description, curve, final numbers), and the
Tracker that writes it.

Files are the truth (curve.csv, metrics.json in each run folder); MLflow is where the same numbers
are browsed. One MLflow run per cell; a resumed cell continues its run (the run id is kept in the
checkpoint) instead of starting a second one. With ``mlflow.live: false`` (the smoke scale) the
training job does not import this module at all; the workflow's summary step logs each cell's run
from its files (resnet.tracking.sync), once for the whole plan.

The mirror never costs a result: every call to the store is guarded. MLflow trouble (a store that
cannot be opened, a run that is gone, a locked database that stays locked) is printed as one
warning line and the training goes on; rows that did not reach the store are sent again at the next
checkpoint, and ``python -m resnet mlflow-sync`` (resnet.tracking.sync) rebuilds or completes the
store from the run folders at any time.

A run follows MLflow's own conventions, so the UI's columns are filled:

- system tags: ``mlflow.source.name`` (the entry point, ``python -m resnet train``),
  ``mlflow.source.type`` (LOCAL), ``mlflow.source.git.commit`` / ``.dirty``, ``mlflow.user``;
- the data set as a dataset input (name, digest = the data's content hash, source = its path);
- a description (``mlflow.note.content``) naming the paper's tables/figures, rows and numbers;
- the curve as metrics at step = iteration; the final numbers as ``final/<name>``;
- project tags ``kind`` (cell | report), ``cell``, ``model``, ``seed``, ``scale``, ``dataset``,
  ``artefacts``.

Each workflow run also logs one *report* run (resnet.tracking.sync) holding the tables, figures
and the summary as artefacts, its description being the summary itself.

The store itself (opening it, retrying a busy SQLite file) is resnet.tracking.store.
"""
from __future__ import annotations

import dataclasses
import getpass
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from resnet.tracking.store import _call, _client, _experiment_id

# MLflow batches accept at most 1000 metrics per call.
_BATCH = 1000
# The command that trains a cell: the runs list's Source column.
TRAIN_SOURCE = "python -m resnet train"
REPORT_SOURCE = "snakemake (summary rule)"
# Final numbers go under "final/": the UI groups metrics by the prefix before "/" into chart
# sections and sorts columns by name, so the final errors sit together, apart from the curves
# (train_error, test_error ... at every logged iteration). Which final numbers: every error.
FINAL_PREFIX = "final/"
# A tag on a run that stands in for a run the store no longer holds (the run id the files know).
REPLACES_TAG = "replaces_run"




def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat


# ----------------------------------------------------------------------------- what a run says

def run_tags(*, cell: str, model: str, seed: int, scale: str, dataset: str, artefacts: Iterable[str],
             git: dict[str, Any] | None, source: str = TRAIN_SOURCE) -> dict[str, str]:
    """The tags of a cell's run: MLflow's system tags (source, git commit, user) and the project's."""
    return {"kind": "cell", "cell": cell, "model": model, "seed": str(seed), "scale": scale,
            "dataset": dataset, "artefacts": ", ".join(artefacts), **_system_tags(source, git)}


def run_params(recipe: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """A cell's MLflow params: the recipe's keys as they are (lr, batch_size, ...: the columns one
    compares runs by), the settings under their sections (engine.device, data.cifar10, ...)."""
    return {**recipe, **settings}


def params_of(metrics: dict[str, Any]) -> dict[str, Any]:
    """A run's params from its metrics.json, the same as training logged them."""
    return run_params(metrics.get("recipe") or {}, metrics.get("settings") or {})


def _system_tags(source: str, git: dict[str, Any] | None) -> dict[str, str]:
    from mlflow.entities import SourceType
    from mlflow.utils import mlflow_tags

    tags = {mlflow_tags.MLFLOW_SOURCE_NAME: source,
            mlflow_tags.MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.LOCAL)}
    try:
        tags[mlflow_tags.MLFLOW_USER] = getpass.getuser()
    except Exception:  # no user name for this uid (some containers)
        pass
    git = git or {}
    if git.get("commit") and git["commit"] != "unknown":
        tags[mlflow_tags.MLFLOW_GIT_COMMIT] = git["commit"]
    if git.get("dirty") is not None:
        tags[mlflow_tags.MLFLOW_GIT_DIRTY] = str(bool(git["dirty"])).lower()
    return tags


def run_description(*, model: str, cell: str, scale: str) -> str:
    """The run's description (Markdown): where the paper shows this model, and the paper's numbers."""
    from resnet import paper
    from resnet.paper import paper_label

    found = paper.appearances(model)
    text = f"**{paper_label(model)}** (`{cell}`), scale `{scale}`.\n\n"
    if found:
        text += f"In the paper ({paper.PAPER}):\n\n"
        for item in found:
            table = item.key.replace("-", "") if item.key.startswith("table") else ""
            row = f", row {paper_label(model, table)}" if table else ""
            text += f"- {item.artefact}{row}: {item.paper}\n"
    else:
        text += "This model is not in the paper's tables or figures.\n"
    text += "\nThe curve is logged against the iteration; the final numbers as `final/...`."
    if scale != "paper":
        text += (f"\n\n**Scale `{scale}`: shortened schedule and data; the numbers are not comparable to "
                 f"the paper's.**")
    return text


def final_metrics(final: dict[str, Any]) -> dict[str, float]:
    """metrics.json's final numbers that are errors (%), named ``final/<name>``."""
    return {f"{FINAL_PREFIX}{key}": float(value) for key, value in final.items()
            if (key.endswith("_error") or key.endswith("_10crop")) and _number(value)}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------- one cell's run

class Tracker:
    """One MLflow run for one cell. Never raises: a failed call is a warning, the files stay the truth.

    ``run_id`` given: continue that run (resume). If the configured store does not hold it (a new
    tracking_uri, a deleted or replaced mlflow.db), the run that replaced it earlier is continued,
    or a new run is started there, tagged ``replaces_run=<run_id>``; ``started_new`` then tells the
    caller to send its whole curve. ``find``: with ``run_id`` None, continue a run an earlier
    ``mlflow-sync`` made for the same cell instead of starting another (tag ``replaces_run=none``).
    ``run_id`` stays None if the store cannot be reached; every method is then a no-op.
    """

    PAUSE_S = 600.0  # after a failed call, seconds without trying the store again

    def __init__(self, tracking_uri: str, experiment: str, run_name: str, run_id: str | None = None,
                 tags: dict[str, str] | None = None, params: dict[str, Any] | None = None,
                 description: str | None = None, find: bool = False, consequence: str | None = None,
                 start_time_ms: int | None = None) -> None:
        self.uri, self.experiment = tracking_uri, experiment
        self.run_id: str | None = None
        self.started_new = False
        # A new run's start (ms since the epoch): the training's, for a run mirrored from its files;
        # None: now. A run found in the store keeps the start it has.
        self.start_time_ms = start_time_ms
        self.warnings: list[str] = []  # the warning lines printed, for a caller that reports them
        self.sent = 0  # metric values this object sent to the store
        # step of the last value logged per metric: a resumed run skips what its earlier attempts logged
        self._logged_through: dict[str, int] = {}
        self._warned: set[str] = set()
        self._paused_until = 0.0
        self.failed = False  # some call did not reach the store
        self.consequence = consequence or ("Nothing else is affected: the run folder's files hold every number, "
                                           "and `python -m resnet mlflow-sync` mirrors them to the store later")
        try:
            self._open(run_name, run_id, tags or {}, params or {}, description, find)
        except Exception as error:
            self.run_id, self.failed = None, True
            self._warn("cannot open a run", error)

    def _open(self, run_name, run_id, tags, params, description, find) -> None:
        from mlflow.utils import mlflow_tags

        if description:  # a tag holds at most 8000 characters
            note = description if len(description) <= 7900 else description[:7900] + "\n\n(cut here)"
            tags = {**tags, mlflow_tags.MLFLOW_RUN_NOTE: note}
        self.client = _client(self.uri)
        experiment_id = _experiment_id(self.client, self.uri, self.experiment)
        found = self._find(experiment_id, run_id, tags, find)
        if found is not None:
            self.run_id = found
            _call(lambda: self.client.update_run(found, status="RUNNING"))
            self._logged_through = _call(self._last_steps)
            run = _call(lambda: self.client.get_run(found))
            self.start_time_ms, existing = run.info.start_time, run.data.params
            self.log_params({k: v for k, v in _flatten(params).items() if k not in existing})
            self.set_tags(tags)
            return
        if run_id is not None or find:
            tags = {**tags, REPLACES_TAG: run_id or "none"}
        run = _call(lambda: self.client.create_run(experiment_id, run_name=run_name, tags=tags,
                                                   start_time=self.start_time_ms))
        self.run_id, self.started_new = run.info.run_id, True
        if run_id is not None:
            print(f"warning: MLflow run {run_id} is not in the store {self.uri} (experiment {self.experiment!r}): "
                  f"started run {self.run_id} there; the whole curve is logged from the run folder",
                  file=sys.stderr, flush=True)
        self.log_params(params)

    def _find(self, experiment_id: str, run_id: str | None, tags: dict[str, str], find: bool) -> str | None:
        """The run of this experiment that holds (or replaced) run_id; None: start a new one."""
        from mlflow.exceptions import MlflowException

        if run_id is None and not find:
            return None
        if run_id is not None:
            try:
                run = _call(lambda: self.client.get_run(run_id))
                if run.info.experiment_id == experiment_id and run.info.lifecycle_stage == "active":
                    return run_id
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
        conditions = [f"tags.{REPLACES_TAG} = '{run_id or 'none'}'"]
        conditions += [f"tags.{key} = '{tags[key]}'" for key in ("cell", "scale") if key in tags]
        found = _call(lambda: self.client.search_runs([experiment_id], " and ".join(conditions),
                                                      order_by=["attributes.start_time DESC"], max_results=1))
        return found[0].info.run_id if found else None

    def _last_steps(self) -> dict[str, int]:
        """{metric: last step} of this run as the store has it.

        A job stopped between writing its checkpoint and recording that the checkpoint's rows went to
        MLflow (or killed without warning) resumes with rows MLflow already holds; they are not sent
        twice, so every metric keeps one value per step."""
        keys = self.client.get_run(self.run_id).data.metrics.keys()
        return {key: max(m.step for m in self.client.get_metric_history(self.run_id, key)) for key in keys}

    def _warn(self, what: str, error: BaseException) -> None:
        if what in self._warned:  # once per kind of trouble and run
            return
        self._warned.add(what)
        reason = (str(error).strip().splitlines() or [""])[0][:300]
        line = f"warning: MLflow ({self.uri}): {what}: {type(error).__name__}: {reason}. {self.consequence}"
        self.warnings.append(line)
        print(line, file=sys.stderr, flush=True)

    def _guard(self, what: str, action: Callable[[], Any]) -> bool:
        """Run action against the store: True if it went through, False (one warning) if not.

        After a failure the mirror pauses for PAUSE_S: a store that is down (a tracking server that
        times out) costs one timeout, not one at every checkpoint. What was not sent stays counted
        as unsent and goes with the first call after the pause (or with mlflow-sync)."""
        if self.run_id is None or time.monotonic() < self._paused_until:
            return False
        try:
            action()
            return True
        except Exception as error:
            self._warn(what, error)
            self.failed = True
            self._paused_until = time.monotonic() + self.PAUSE_S
            return False

    def log_params(self, params: dict[str, Any]) -> bool:
        from mlflow.entities import Param

        items = [Param(key, value[:6000]) for key, value in _flatten(params).items()]

        def send() -> None:
            for start in range(0, len(items), 100):
                chunk = items[start : start + 100]
                _call(lambda: self.client.log_batch(self.run_id, params=chunk))

        return self._guard("logging the config as params", send)

    def set_tags(self, tags: dict[str, str]) -> bool:
        from mlflow.entities import RunTag

        items = [RunTag(key, str(value)) for key, value in tags.items()]
        return self._guard("setting tags", lambda: _call(lambda: self.client.log_batch(self.run_id, tags=items)))

    def log_rows(self, rows: list[dict[str, Any]], step_key: str = "iteration") -> bool:
        """Log curve rows: every numeric column except the step, at step = row[step_key].

        True when every row is in the store (the caller may then count them as sent)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, int(row[step_key]))
            for row in rows
            for key, value in row.items()
            if key != step_key and value is not None and value == value  # skip NaN / empty (not evaluated)
            and int(row[step_key]) > self._logged_through.get(key, -1)  # logged before a resume
        ]

        def send() -> None:
            for start in range(0, len(metrics), _BATCH):
                chunk = metrics[start : start + _BATCH]
                _call(lambda: self.client.log_batch(self.run_id, metrics=chunk))
                self.sent += len(chunk)
                for metric in chunk:
                    self._logged_through[metric.key] = max(metric.step, self._logged_through.get(metric.key, -1))

        return self._guard("logging the curve", send)

    def log_dataset(self, name: str, digest: str | None, source: str, context: str = "training") -> bool:
        """The data set as an MLflow dataset input (the Dataset column): name, digest, where it was read.

        Without a digest nothing is logged: a dataset input without one would claim an identity it
        does not have. The store keeps digests of at most 36 characters; a longer hash is cut there."""
        if not digest:
            return False
        from mlflow.data.dataset_source_registry import get_dataset_source_from_json
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils import mlflow_tags

        if str(source).startswith(("http://", "https://")):
            where = HTTPDatasetSource(str(source))
        else:  # MLflow's source for a local path ("local"), registered under that type name
            where = get_dataset_source_from_json(json.dumps({"uri": str(source)}), "local")
        entity = MetaDataset(where, name=name, digest=str(digest)[:36])._to_mlflow_entity()
        item = DatasetInput(entity, tags=[InputTag(mlflow_tags.MLFLOW_DATASET_CONTEXT, context)])
        return self._guard("logging the dataset", lambda: _call(lambda: self.client.log_inputs(self.run_id, [item])))

    def log_artifact(self, path: str | Path) -> bool:
        return self._guard(f"logging {Path(path).name}",
                           lambda: _call(lambda: self.client.log_artifact(self.run_id, str(path))))

    def log_result(self, metrics: Any, folder: Path, end_time_ms: int | None = None) -> bool:
        """A finished (or failed) cell: final numbers, metrics.json and curve.csv, and the run's status.

        ``metrics``: metrics.json's record (resnet.records.Metrics) or the same as a dict;
        ``end_time_ms``: when the training ended (a run mirrored from its files), None: now."""
        if dataclasses.is_dataclass(metrics):
            metrics = dataclasses.asdict(metrics)
        final = final_metrics(metrics.get("final") or {})
        ok = self.log_rows([{"iteration": metrics.get("iterations") or 0, **final}]) if final else True
        git = (metrics.get("provenance") or {}).get("git")
        if git:  # the commit metrics.json records (the code may have changed since the run opened)
            ok &= self.set_tags({k: v for k, v in _system_tags(TRAIN_SOURCE, git).items() if ".git." in k})
        for name in ("metrics.json", "curve.csv"):
            if (Path(folder) / name).is_file():
                ok &= self.log_artifact(Path(folder) / name)
        if metrics.get("status") == "done":
            return self.finish("FINISHED", end_time_ms) and ok
        if metrics.get("reason"):
            ok &= self.set_tags({"failure": str(metrics["reason"])[:5000]})
        return self.finish("FAILED", end_time_ms) and ok

    def finish(self, status: str = "FINISHED", end_time_ms: int | None = None) -> bool:
        """status: FINISHED, FAILED or KILLED (interrupted; a resumed run sets it RUNNING again).

        ``end_time_ms``: the run's end (None: now); not before the run's start, which stays."""
        if end_time_ms is not None and self.start_time_ms is not None and end_time_ms < self.start_time_ms:
            end_time_ms = None
        return self._guard(f"marking the run {status}", lambda: _call(
            lambda: self.client.set_terminated(self.run_id, status=status, end_time=end_time_ms)))


