"""One PNG per cell: its training and test (CIFAR) or validation (ImageNet) error against iterations.

    write_cell_curves(metrics_paths, out_dir, scale)   -> out_dir/<model>/seed-<n>.png for each cell

The per-cell pages of the Snakemake report (workflow/rules/report.smk, category "Per-cell curves").
Each cell is drawn from its own curve.csv, beside its metrics.json; a cell without a curve (it failed
before its first log interval) gets a panel saying so and why, so every planned cell has its page.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import FuncFormatter, MaxNLocator

from resnet.runs import files as runfiles
from resnet.report.figures import ITERATION_UNIT, _save, _subplots

# column of curve.csv -> legend label and line style (the paper's figures: dashed train, bold test)
STYLES = {"train_error": ("training error", {"linewidth": 1.0, "linestyle": "--"}),
          "val_error": ("validation error", {"linewidth": 1.5}),
          "test_error": ("test error", {"linewidth": 2.2})}


def write_cell_curves(metrics_paths: list[Path], out_dir: Path, scale: str) -> list[Path]:
    """Write out_dir/<model>/seed-<n>.png for each cell (metrics_paths: its metrics.json files)."""
    written = []
    for path in sorted(Path(p) for p in metrics_paths):
        metrics = runfiles.read_json(path) or {}
        model, seed = path.parent.parent.name, path.parent.name  # <runs>/<model>/seed-<n>/metrics.json
        rows = runfiles.read_curve(path.with_name("curve.csv")) or []
        fig, (ax,) = _subplots(1)
        drawn = 0
        for column, (label, style) in STYLES.items():
            points = [(row["iteration"] / ITERATION_UNIT, row[column]) for row in rows
                      if row.get(column) is not None]
            if points:
                x, y = zip(*points)
                ax.plot(x, y, marker="." if len(x) == 1 else None, label=label, **style)
                drawn += 1
        status = metrics.get("status", "no metrics.json")
        ax.set_title(f"{model}/{seed} ({status}, scale: {scale})", fontsize=9)
        ax.set_xlabel("iter. (1e4)")
        ax.set_ylabel("error (%)")
        # few ticks in plain notation: short schedules give iterations like 0.0003 x 1e4
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        if drawn:
            ax.legend(fontsize=7, loc="best")
            ax.set_ylim(bottom=0)
        else:
            reason = str(metrics.get("reason") or "no curve rows")[:80]
            ax.text(0.5, 0.5, f"no curve: {reason}", transform=ax.transAxes, ha="center", va="center",
                    color="0.4", fontsize=8, wrap=True)
        out = Path(out_dir) / model / f"{seed}.png"
        _save(fig, out)
        written.append(out)
    return written
