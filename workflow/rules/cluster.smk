# Several CIFAR cells in one SLURM job (config resources.cifar_cells_per_job = k; docs/cluster.md).
#
# On a cluster executor the train jobs of CIFAR cells belong to the job group "cifar", and Snakemake
# packs k of them into one group job, one sbatch submission: the cells train side by side in one
# allocation, on one GPU, each with its own log, checkpoint, resubmission and MLflow run. k = 1 (the
# default) submits one job per cell, as without groups. Local runs ignore groups (Snakemake forms
# them only for cluster executors); there, resources.cifar_cells_per_gpu and gpu_slots share a GPU.
#
# How a group job asks for resources (Snakemake 9.27, snakemake-executor-plugin-slurm 2.8.0):
# Snakemake adds up the integer resources of the jobs that run side by side in a group (so
# cpus_per_task and mem_mb become k x the cell's: right, every cell gets its own), keeps the largest
# runtime, and takes a string resource as it is when all jobs agree. A packed cell therefore asks
# for its GPU as the string `gres="gpu:1"` (sbatch --gres=gpu:1 for the whole job; the job step, not
# asked for GPUs, gets the job's GPU) and leaves out the integer `gpu`/`gpus`, which would add up to
# k GPUs, and `nodes`, which would add up to k nodes (one task on one node is SLURM's default).
#
# The group components are set here, from the config, rather than with --group-components on the
# command line or in the profile: the plugin does not pass that option on to the Snakemake inside
# the SLURM job, which would then see k groups of one and run the cells one after another (it runs
# one job at a time). This Snakefile is read there too, so both sides agree on the group of k.

CIFAR_GROUP = "cifar"
CIFAR_CELLS_PER_JOB = CONFIG.resources.cifar_cells_per_job


def _pack_cifar_groups():
    """What `--group-components cifar=k` sets (Snakemake 9.27 has no Snakefile directive for it).

    Called when the jobs' groups are evaluated, because Snakemake installs the command line's group
    settings after reading the Snakefile. The config value wins over the command line's."""
    settings = workflow.group_settings
    if settings.group_components.get(CIFAR_GROUP) != CIFAR_CELLS_PER_JOB:
        settings.group_components = {**settings.group_components, CIFAR_GROUP: CIFAR_CELLS_PER_JOB}


def packed(wildcards):
    """Whether this train job shares a SLURM job with other CIFAR cells (a cluster executor, k > 1)."""
    return CIFAR_CELLS_PER_JOB > 1 and workflow.non_local_exec and dataset_of(wildcards) == "cifar10"


def train_group(wildcards):
    """The job group of a train job: "cifar" for CIFAR cells when k > 1, else none."""
    if CIFAR_CELLS_PER_JOB > 1 and dataset_of(wildcards) == "cifar10":
        _pack_cifar_groups()
        return CIFAR_GROUP
    return None


def unless_packed(wildcards, value):
    """An integer resource that must not be added up over a group (GPUs, nodes): left out when packed."""
    return None if packed(wildcards) else value


def packed_gres(wildcards):
    """The one GPU of a packed job, as a string resource (taken once for the group, not added up)."""
    return "gpu:1" if packed(wildcards) else None


def packed_threads(wildcards, threads):
    """Threads of a train job. Packed: at most --cores / k each, so that Snakemake places the k cells
    of a group side by side (it splits a group whose threads exceed --cores into rows that run one
    after another, and adds up their runtimes). The allocation's CPUs come from cpus_per_task."""
    if packed(wildcards):
        return max(1, min(threads, workflow.cores // CIFAR_CELLS_PER_JOB))
    return threads
