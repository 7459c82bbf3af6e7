# One training job per cell: results/runs/<scale>/<model>/seed-<n>/metrics.json (+ curve.csv,
# checkpoint.pt). A job that fails records status "failed" in metrics.json instead of stopping the
# workflow; a job stopped by a signal (time limit, preemption) exits 75 after a checkpoint and is
# resubmitted (`retries`), resuming where it stopped.


wildcard_constraints:
    model=r"[a-z0-9.\-]+",
    seed=r"\d+",


rule train:
    output:
        metrics=f"{RUNS}/{{model}}/seed-{{seed}}/metrics.json",
    log:
        f"results/logs/{SCALE}/{{model}}/seed-{{seed}}.log",
    benchmark:
        f"results/benchmarks/{SCALE}/{{model}}/seed-{{seed}}.tsv"
    params:
        train_config=lambda w: shlex.quote(json.dumps(train_config_json(w), sort_keys=True)),
        out=lambda w: f"{RUNS}/{w.model}/seed-{w.seed}",
    threads: lambda w: min(job_resources(dataset_of(w))["cpus"], workflow.cores)
    resources:
        gpus=lambda w: job_resources(dataset_of(w))["gpus"],
        mem_mb=lambda w: job_resources(dataset_of(w))["mem_mb"],
        runtime=lambda w: job_resources(dataset_of(w))["runtime_min"],
    retries: config["resources"]["max_resubmits"]
    shell:
        "{PYTHON} -m resnet train --launch --record-failure --out {params.out} "
        "--train-config {params.train_config} >> {log} 2>&1"
