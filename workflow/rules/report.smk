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
)


rule table:
    input:
        metrics=artefact_inputs,
    output:
        csv="results/{name}.csv",
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
        png="results/{name}.png",
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
        "results/README.md",
    log:
        "results/logs/report/summary.log",
    conda:
        "../../environment.yml"
    script:
        "../scripts/report.py"
