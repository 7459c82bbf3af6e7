# ImageNet made ready once, before any ImageNet cell: the ILSVRC2012 archives prepared into class
# folders (resnet.data.imagenet.prepare: resumable, with a progress line in the log), or the folder
# listed and checked (counts, the validation labels against the devkit). Bad data stops here with
# one line in the log, before a cell starts. The receipt records what the cells will read.
#
# Each ImageNet cell takes the receipt as ancient(): its time never reruns a finished cell. A new
# data location reruns this job (params), and no cell: a location is not a cell's identity.
from resnet.config.preflight import imagenet_kind, prepared_root

IMAGENET_READY = f"results/data/{SCALE}/imagenet.json"


def imagenet_layout():
    """The class-folder root the cells will read, as configured (a param: a new one reruns this job)."""
    data = CONFIG.data
    kind = imagenet_kind(data.imagenet)
    if kind == "synthetic":
        return str(Path(data.cache) / "synthetic-imagenet")
    return str(prepared_root(data) if kind == "archives" else Path(data.imagenet))


def imagenet_ready(wildcards):
    """A train job's input: ImageNet's receipt for an ImageNet cell, nothing for a CIFAR cell."""
    return [ancient(IMAGENET_READY)] if dataset_of(wildcards) == "imagenet" else []


rule imagenet_data:
    output:
        receipt=IMAGENET_READY,
    log:
        f"results/logs/{SCALE}/imagenet-data.log",
    benchmark:
        f"results/benchmarks/{SCALE}/imagenet-data.tsv"
    params:
        source=CONFIG.data.imagenet,
        layout=imagenet_layout(),
        partial=CONFIG.data.imagenet_partial,
    # Processes extracting the training archive at once (resources.imagenet_prepare.cpus).
    threads: lambda w: min(CONFIG.resources.imagenet_prepare.cpus, workflow.cores)  # at job time: --report sets no cores
    resources:
        # SLURM (slurm/ profile): no GPU; the cores, memory and time limit of resources.imagenet_prepare.
        cpus_per_task=CONFIG.resources.imagenet_prepare.cpus,
        mem_mb=CONFIG.resources.imagenet_prepare.mem_mb,
        runtime=CONFIG.resources.imagenet_prepare.runtime_min,
    conda:
        "../../environment.yml"
    shell:
        "{PYTHON} -m resnet prepare-imagenet --settings {SETTINGS} --workers {threads} "
        "--receipt {output.receipt:q} > {log:q} 2>&1"
