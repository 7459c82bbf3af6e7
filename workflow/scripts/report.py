"""Snakemake adapter: one table, figure or the summary -> resnet.report -> the declared outputs."""
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from resnet.report import figures, tables  # noqa: E402

# The cells come from the rule's inputs (their metrics.json files), not from a plan rebuilt here.
config, cells = snakemake.config, [Path(p) for p in snakemake.input.metrics]  # noqa: F821
name = snakemake.wildcards.get("name", "summary")  # noqa: F821
if name == "summary":
    import markdown

    from resnet.report.cells import normalised_config
    from resnet.report.summary import write_summary
    from resnet.runs.files import atomic_write_text
    from resnet.runs.provenance import git_commit
    from resnet.tracking.sync import log_report_run, sync_run_folders

    summary = Path(snakemake.output.md)  # noqa: F821
    text = write_summary(config, cells, summary)
    atomic_write_text(Path(snakemake.output.html), markdown.markdown(text, extensions=["tables"]))  # noqa: F821
    settings = normalised_config(config)
    uri, experiment = settings.mlflow.tracking_uri, settings.mlflow.experiment
    if not settings.mlflow.live:  # the jobs left MLflow alone: each cell's run from its files, here at once
        sync_run_folders(uri, experiment, [path.parent for path in cells], settings.scale)
    # The same tables, figures and summary as artefacts of one MLflow "report" run, its description
    # the summary; a store that fails is a warning, the files above are complete.
    written_tables = [Path(p) for p in snakemake.input.tables]  # noqa: F821
    written_figures = [Path(p) for p in snakemake.input.figures]  # noqa: F821
    log_report_run(uri, experiment, run_name=f"{settings.scale}/report",
                   files={"tables": [f for t in written_tables for f in (t, t.with_suffix(".md"))],
                          "figures": [f for g in written_figures for f in (g, g.with_suffix(".pdf"))],
                          "": [summary]},
                   tags={"scale": settings.scale}, description=text, git=git_commit())
elif name == "table1":
    tables.write_table1(Path(snakemake.output.csv))  # noqa: F821
elif name.startswith("table"):
    getattr(tables, f"write_{name}")(config, cells, Path(snakemake.output.csv))  # noqa: F821
else:
    getattr(figures, f"write_{name}")(config, cells, Path(snakemake.output.png))  # noqa: F821
