"""Snakemake adapter: every planned cell's curve.csv -> results/curves/<scale>/<model>/seed-<n>.png."""
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 (snakemake is injected)

from resnet.report.curves import write_cell_curves  # noqa: E402

out = Path(snakemake.output[0])  # noqa: F821
written = write_cell_curves([Path(p) for p in snakemake.input.metrics], out, snakemake.config["scale"])  # noqa: F821
print(f"{len(written)} curves in {out}")
