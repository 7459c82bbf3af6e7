# Tables and figures from the per-cell files; nothing in results/ is edited by hand.
from resnet import paper

ARTEFACT_MODELS = {
    "table2": [m for m, row in paper.TABLE2.items() if not row.quoted],
    "table3": [m for m, row in paper.TABLE3.items() if not row.quoted],
    "table6": [m for m, row in paper.TABLE6.items() if not row.quoted],
    "figure1": paper.figure_models("figure-1"),
    "figure4": paper.figure_models("figure-4"),
    "figure6": paper.figure_models("figure-6"),
    "figure7": paper.figure_models("figure-7"),
}
TABLES = ["table1", "table2", "table3", "table6"]
FIGURES = ["figure1", "figure4", "figure6", "figure7"]
ARTEFACTS = (
    [f"results/{name}.csv" for name in TABLES]
    + [f"results/{name}.png" for name in FIGURES]
    + ["results/README.md"]
    # for `snakemake --report report.html`: each cell's curve, the summary as HTML (workflow/report/)
    + [f"results/curves/{SCALE}", "results/README.html"]
)


rule table:
    input:
        metrics=artefact_inputs,
    output:
        csv=report("results/{name}.csv", category="Paper tables", caption="../report/table.rst",
                   labels=lambda w: {"table": w.name.replace("table", "Table ")}),
        md="results/{name}.md",
    log:
        "results/logs/report/{name}.log",
    conda:
        "../../environment.yml"
    wildcard_constraints:
        name="table[1236]",
    script:
        "../scripts/report.py"


rule figure:
    input:
        metrics=artefact_inputs,
    output:
        png=report("results/{name}.png", category="Paper figures", caption="../report/figure.rst",
                   labels=lambda w: {"figure": w.name.replace("figure", "Figure ")}),
        pdf="results/{name}.pdf",
    log:
        "results/logs/report/{name}.log",
    conda:
        "../../environment.yml"
    wildcard_constraints:
        name="figure[1467]",
    script:
        "../scripts/report.py"


rule summary:
    input:
        metrics=run_metrics(CELLS),
        tables=[f"results/{name}.csv" for name in TABLES],
        figures=[f"results/{name}.png" for name in FIGURES],
    output:
        md="results/README.md",
        # the same as HTML, for the Snakemake report's front page (workflow/report/workflow.rst)
        html="results/README.html",
    log:
        "results/logs/report/summary.log",
    conda:
        "../../environment.yml"
    # Also MLflow: every cell's run from its files when the jobs did not log them (mlflow.live:
    # false), then one report run holding the tables, figures and this summary.
    script:
        "../scripts/report.py"


# The Snakemake report (`snakemake --report report.html`): one page per cell's curve; the summary's
# HTML (rule summary) is the report's front page (the `report:` description in the Snakefile).
rule curves:
    input:
        metrics=run_metrics(CELLS),
    output:
        report(directory(f"results/curves/{SCALE}"), patterns=["{model}/seed-{seed}.png"],
               category="Per-cell curves", subcategory="{model}", caption="../report/curve.rst",
               labels={"model": "{model}", "seed": "{seed}"}),
    log:
        "results/logs/report/curves.log",
    conda:
        "../../environment.yml"
    script:
        "../scripts/curves.py"

