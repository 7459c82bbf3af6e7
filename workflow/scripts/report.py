"""Snakemake adapter: one table, figure or the summary -> resnet.report -> the declared outputs."""
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from resnet import report  # noqa: E402

config, results = snakemake.config, Path("results")  # noqa: F821
name = snakemake.wildcards.get("name", "summary")  # noqa: F821
if name == "summary":
    report.write_summary(config, results, Path(snakemake.output[0]))  # noqa: F821
elif name == "table1":
    report.write_table1(Path(snakemake.output.csv))  # noqa: F821
elif name.startswith("table"):
    getattr(report, f"write_{name}")(config, results, Path(snakemake.output.csv))  # noqa: F821
else:
    getattr(report, f"write_{name}")(config, results, Path(snakemake.output.png))  # noqa: F821
