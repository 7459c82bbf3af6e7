"""Snakemake adapter: one table, figure or the summary -> resnet.report -> the declared outputs."""
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from resnet.report import figures, tables  # noqa: E402

# The cells come from the rule's inputs (their metrics.json files), not from a plan rebuilt here.
config, cells = snakemake.config, [Path(p) for p in snakemake.input.metrics]  # noqa: F821
name = snakemake.wildcards.get("name", "summary")  # noqa: F821
if name == "summary":
    # results/README.md and .html, then MLflow: the cells' runs (mlflow.live false) and the report run.
    # MLflow trouble is a warning on the console and a section of README.md; the files are complete.
    from resnet.report.publish import publish_summary

    publish_summary(config, cells, [Path(p) for p in snakemake.input.tables],  # noqa: F821
                    [Path(p) for p in snakemake.input.figures], Path(snakemake.output.md),  # noqa: F821
                    Path(snakemake.output.html))  # noqa: F821
elif name == "table1":
    tables.write_table1(Path(snakemake.output.csv))  # noqa: F821
elif name.startswith("table"):
    getattr(tables, f"write_{name}")(config, cells, Path(snakemake.output.csv))  # noqa: F821
else:
    getattr(figures, f"write_{name}")(config, cells, Path(snakemake.output.png))  # noqa: F821
