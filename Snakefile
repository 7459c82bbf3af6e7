# Reproduces He et al. 2015, "Deep Residual Learning for Image Recognition": one training job per
# paper table cell, then Tables 1, 2, 3, 6 and Figures 1, 4, 6, 7 rebuilt in results/.
#
#   snakemake --cores 2                       # the configured plan (config.yaml; default: smoke scale)
#   snakemake --cores 8 --profile slurm       # the plan as SLURM jobs, at the paper's scale (slurm/)
#   snakemake --cores 2 --config scale=paper  # override any config key on the command line

configfile: "config.yaml"
# `snakemake --report report.html`: this description (scale, summary, failed cells) on the front
# page; tables, figures and per-cell curves as results (report(...) in workflow/rules/report.smk).
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        ARTEFACTS,
        # Every planned cell's record, named here too: a metrics.json deleted (or a run folder moved
        # aside) after the tables were built reruns its cell, and then the tables, instead of leaving
        # the tables' older rows standing (Snakemake reruns a missing file only for a job that needs it).
        run_metrics(CELLS),
