# Reproduces He et al. 2015, "Deep Residual Learning for Image Recognition": one training job per
# paper table cell, then Tables 1, 2, 3, 6 and Figures 1, 4, 6, 7 rebuilt in results/.
#
#   snakemake --cores 2                       # the configured plan (config.yaml; default: smoke scale)
#   snakemake --cores 8 --profile slurm       # the same plan as SLURM jobs
#   snakemake --cores 2 --config scale=paper  # override any config key on the command line

configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        ARTEFACTS,
