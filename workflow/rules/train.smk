# One training job per cell: results/runs/<scale>/<model>/seed-<n>/metrics.json (+ curve.csv,
# checkpoint.pt). A job that fails (bad input, a crash, divergence) records status "failed" and the
# reason in metrics.json and ends 0, so the tables say why and the other cells go on; the next
# workflow run retries it (param retry_of). A job stopped by a signal (time limit, preemption)
# exits 75 after a checkpoint and is resubmitted (`retries`), resuming where it stopped. A job whose
# run folder another trainer of the cell holds (a trainer started by hand, a requeued SLURM job's
# first instance still draining) waits up to resnet.runs.lock.WORKFLOW_WAIT_S for it, then exits 73
# and is resubmitted the same way: by then the other one may have ended.


wildcard_constraints:
    model=r"[a-z0-9][a-z0-9.\-]{0,63}",
    seed=r"\d{1,9}",


rule train:
    input:
        imagenet=imagenet_ready,  # ImageNet made ready first (data.smk)
    output:
        # `update`: Snakemake keeps the file while the job runs instead of deleting it first, so a
        # run set aside for a new recipe keeps its metrics.json (final numbers, Figure 7's layer
        # statistics, data hash, provenance) in superseded-<time>/. If the job fails, Snakemake puts
        # the file back as it found it; resnet.runs.folder says what the next job makes of that.
        metrics=update(f"{RUNS}/{{model}}/seed-{{seed}}/metrics.json"),
    log:
        f"results/logs/{SCALE}/{{model}}/seed-{{seed}}.log",
    benchmark:
        f"results/benchmarks/{SCALE}/{{model}}/seed-{{seed}}.tsv"
    # Params are what reruns a finished cell when they change: its recipe (the run's identity),
    # and the failure it retries. Device, data locations, store and resources are not params.
    params:
        recipe=recipe_param,
        retry_of=retry_of,
        out=lambda w: f"{RUNS}/{w.model}/seed-{w.seed}",
    # Deeper nets first: the longest cell (ResNet-1202) starts at once instead of last, when it would
    # run alone at the end of the plan.
    priority: lambda w: parse_model_name(w.model).depth
    # SLURM: k CIFAR cells share one job (config resources.cifar_cells_per_job; workflow/rules/cluster.smk).
    group: train_group
    threads: lambda w: packed_threads(w, min(job_resources(dataset_of(w)).cpus, workflow.cores))
    resources:
        # Local runs: `--resources gpus=N` caps the GPUs in use at once.
        gpus=lambda w: unless_packed(w, job_resources(dataset_of(w)).gpus),
        # Local runs: `--resources gpu_slots=K` lets CIFAR cells share GPUs (resources.cifar_cells_per_gpu).
        gpu_slots=lambda w: gpu_slots(dataset_of(w)),
        # SLURM (slurm/ profile): gpu -> sbatch/srun --gpus; cpus_per_task -> --cpus-per-task (the
        # configured count even where --cores is smaller); mem_mb -> --mem; runtime -> --time
        # (minutes); one node, so that torchrun's processes share the allocation's GPUs.
        gpu=lambda w: unless_packed(w, job_resources(dataset_of(w)).gpus),
        gres=packed_gres,  # a packed job's one GPU (cluster.smk)
        cpus_per_task=lambda w: job_resources(dataset_of(w)).cpus,
        mem_mb=lambda w: job_resources(dataset_of(w)).mem_mb,
        runtime=lambda w: job_resources(dataset_of(w)).runtime_min,
        nodes=lambda w: unless_packed(w, 1),
    conda:
        "../../environment.yml"
    # Resubmissions come from the Snakemake that submits the jobs; the Snakemake inside a SLURM job
    # does not retry, so that a job stopped before its time limit ends and one interruption is one
    # resubmission.
    retries: CONFIG.resources.max_resubmits if workflow.is_main_process else 0
    # The trainer runs in the background so that this shell can pass SIGTERM / SIGUSR1 / SIGINT on to
    # it and wait for its checkpoint: in the foreground, a signal would end the shell at once and
    # leave the trainer to be killed with the job step before it has saved. The exit status is the
    # trainer's (75 after a checkpoint on a signal). Every value is quoted for the shell (:q).
    shell:
        "{PYTHON} -m resnet train --launch --record-failure --out {params.out:q} "
        "--recipe {params.recipe:q} --settings {SETTINGS} --retry-of={params.retry_of:q} "
        "--wait-for-folder {WORKFLOW_WAIT_S} "
        ">> {log:q} 2>&1 & trainer=$!; "
        "{FORWARD_STOP_SIGNALS}; "
        "wait $trainer && status=0 || status=$?; "
        "while kill -0 $trainer 2>/dev/null; do wait $trainer && status=0 || status=$?; done; "
        "exit $status"
