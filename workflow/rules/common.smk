# Config loading and validation, the cell plan, and input/param helpers. No rules here.
import json
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from resnet.config import ConfigError, load_config, plan_cells, resolve_cell


def _validated(raw):
    try:
        return load_config(raw)
    except ConfigError as error:
        # One line naming the key and the fix; Snakemake then stops with a non-zero exit.
        raise WorkflowError(f"config.yaml: {error}") from None


config.update(_validated(dict(config)))
SCALE = config["scale"]
PYTHON = shlex.quote(sys.executable)  # jobs run in the environment Snakemake runs in
RUNS = f"results/runs/{SCALE}"
CELLS = plan_cells(config)


def _check_data():
    """A missing data location stops the run before any job starts, naming the key to set."""
    if config["plan"]["cifar10"]:
        source = Path(config["data"]["cifar10"])
        if not source.exists() and not config["data"].get("cifar10_download"):
            raise WorkflowError(
                f"config key 'data.cifar10': '{source}' does not exist: point it at a torchvision CIFAR-10 "
                "folder, an ImageFolder tree or a .tar.gz of one, or set data.cifar10_download: true "
                "(or plan.cifar10: false to skip the CIFAR part)"
            )
    if config["plan"]["imagenet"] and config["data"]["imagenet"] != "synthetic":
        root = Path(config["data"]["imagenet"])
        if not (root / "train").is_dir() or not (root / "val").is_dir():
            raise WorkflowError(
                f"config key 'data.imagenet': '{root}' has no train/ and val/ class folders: point it at "
                "an ILSVRC2012 folder, or set it to 'synthetic', or set plan.imagenet: false"
            )


def _release_failed_cells():
    """A cell marked failed (metrics.json status 'failed') is tried again by this run.

    Its record is kept as metrics.failed.json and its checkpoint stays, so training resumes.
    """
    for cell in CELLS:
        metrics = Path(RUNS, cell.id, "metrics.json")
        try:
            status = json.loads(metrics.read_text()).get("status")
        except (OSError, ValueError):
            continue
        if status == "failed":
            metrics.replace(metrics.with_name("metrics.failed.json"))
            print(f"{cell.id}: failed before; trying again", file=sys.stderr)


_check_data()
if workflow.is_main_process and not workflow.dryrun:  # not inside a job's own Snakemake process
    _release_failed_cells()


def run_metrics(cells):
    return [f"{RUNS}/{cell.id}/metrics.json" for cell in cells]


def cells_of(models):
    """The planned cells of these models (every seed), for an artefact's inputs."""
    from resnet.names import canonical_name

    wanted = {canonical_name(model) for model in models}
    return [cell for cell in CELLS if cell.model in wanted]


def cell_id(wildcards):
    return f"{wildcards.model}/seed-{wildcards.seed}"


def train_config_json(wildcards):
    """The resolved training config of one cell; a change to it makes Snakemake rerun the cell."""
    return resolve_cell(config, cell_id(wildcards)).to_dict()


def job_resources(dataset):
    return config["resources"][dataset]


def gpu_slots(dataset):
    """A CIFAR cell takes one slot; an ImageNet cell every slot of each of its GPUs."""
    if dataset == "cifar10":
        return 1
    return job_resources(dataset)["gpus"] * config["resources"]["cifar_cells_per_gpu"]


def dataset_of(wildcards):
    from resnet.names import parse_model_name

    return parse_model_name(wildcards.model).dataset


def artefact_inputs(wildcards):
    """The metrics of the planned cells a table or figure reads (ARTEFACT_MODELS, report.smk)."""
    return run_metrics(cells_of(ARTEFACT_MODELS.get(wildcards.name, [])))
