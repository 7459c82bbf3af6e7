# Config loading and validation, the cell plan, pre-flight checks and input/param helpers. No rules
# here, and nothing is written at parse time: a dry run, --unlock or a refused second run change
# nothing on disk.
import json
import shlex
import sys
from pathlib import Path

from resnet.config.load import load_config, plan_cells
from resnet.config.schema import ConfigError
from resnet.config.job import resolve_cell, settings_json
from resnet.engine.stops import STOP_SIGNALS
from resnet.paper.names import parse_model_name
from resnet.runs.folder import rerun_token, runs_root
from resnet.runs.lock import WORKFLOW_WAIT_S


def _refuse(error):
    """Bad input: one line naming the key and the fix, exit status 2, before any job starts."""
    print(f"error: config.yaml: {error}", file=sys.stderr)
    sys.exit(2)


try:
    CONFIG = load_config(dict(config))
except ConfigError as error:
    _refuse(error)
# CONFIG is typed and frozen; `config` stays Snakemake's raw mapping.
SCALE = CONFIG.scale  # a checked name: it becomes a folder
PYTHON = shlex.quote(sys.executable)  # jobs run in the environment Snakemake runs in (not a param)
RUNS = str(runs_root(SCALE))  # results/runs/<scale>
CELLS = plan_cells(CONFIG)
# The engine, data locations and store every job runs with. Not a param: changing them (another
# device, a moved data set, a tracking server) reruns no finished cell and retrains nothing.
SETTINGS = shlex.quote(settings_json(CONFIG))
# The train job's shell passes each stop signal on to the trainer (train.smk), the same signals the
# trainer turns into a checkpoint (resnet.engine.stops.STOP_SIGNALS): "trap '...' TERM; ...".
FORWARD_STOP_SIGNALS = "; ".join(
    f"trap 'kill -{sig.name[3:]} $trainer 2>/dev/null' {sig.name[3:]}" for sig in STOP_SIGNALS)


def _preflight():
    """What would only fail inside a job stops the run before any job starts, naming the key."""
    from resnet.config.preflight import check

    try:
        check(CONFIG, local=workflow.local_exec)
    except ConfigError as error:
        _refuse(error)


_preflight()


def run_metrics(cells):
    return [f"{RUNS}/{cell.id}/metrics.json" for cell in cells]


def cells_of(models):
    """The planned cells of these models (every seed), for an artefact's inputs."""
    from resnet.paper.names import canonical_name

    wanted = {canonical_name(model) for model in models}
    return [cell for cell in CELLS if cell.model in wanted]


def cell_id(wildcards):
    return f"{wildcards.model}/seed-{wildcards.seed}"


def recipe_param(wildcards):
    """A cell's recipe, canonical: its identity. Changing it reruns exactly this cell."""
    return resolve_cell(CONFIG, cell_id(wildcards)).recipe.canonical()


def retry_of(wildcards):
    """Retries a failed cell through Snakemake's own params trigger, with nothing written here.

    A failed run's metrics.json carries a new failure id; this param then differs from the one
    recorded when the job last ran, so the next `snakemake` reruns the cell (a dry run lists it as
    "params changed"). The rerun records the token it started from (metrics.json retry_of), so once
    done the param is stable again and the cell stays done. A record Snakemake put back after a
    failed job (the output is `update`, train.smk) has a new modification time in the token, so that
    cell is rerun too rather than taken as done (resnet.runs.folder.rerun_token).
    """
    recipe = resolve_cell(CONFIG, cell_id(wildcards)).recipe.to_dict()
    return rerun_token(Path(RUNS, cell_id(wildcards)), recipe)


def job_resources(dataset):
    return getattr(CONFIG.resources, dataset)


def gpu_slots(dataset):
    """A CIFAR cell takes one slot; an ImageNet cell every slot of each of its GPUs."""
    if dataset == "cifar10":
        return 1
    return job_resources(dataset).gpus * CONFIG.resources.cifar_cells_per_gpu


def dataset_of(wildcards):
    return parse_model_name(wildcards.model).dataset


def artefact_inputs(wildcards):
    """The metrics of the planned cells a table or figure reads (ARTEFACT_MODELS, report.smk)."""
    return run_metrics(cells_of(ARTEFACT_MODELS.get(wildcards.name, [])))
