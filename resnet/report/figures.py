"""The paper's figures from the per-cell files (curve.csv, metrics.json), in the paper's layout.

    Figure 1  CIFAR-10 plain-20/56: training error (left), test error (right) vs iterations
    Figure 4  ImageNet: left plain-18/34, right ResNet-18/34; thin = training error,
              bold = centre-crop validation error
    Figure 6  CIFAR-10: left plain nets, middle ResNets, right ResNet-110 and 1202;
              dashed = training error, bold = test error
    Figure 7  CIFAR-10: std of each 3x3 layer's response; top in layer order, bottom sorted
              descending

Panel membership comes from ``resnet.paper.FIGURES``.  Curves are the lowest done seed of each
model.  A model that is not run (or failed) is left out of the plot and named in the panel's
legend as "(not run)" / "(failed)"; a panel with nothing to draw says so, so a figure always
renders.  Each figure is written as PNG and PDF (same stem), atomically and without timestamps.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from resnet import paper  # noqa: E402

from resnet.runs import files as runfiles
from resnet.paper import paper_label  # noqa: E402
from resnet.report.cells import DONE, CellResult, cells_of, collect, normalised_config  # noqa: E402

ITERATION_UNIT = 1e4  # the paper's x axes are in units of 1e4 iterations
PANEL_SIZE = (4.6, 3.4)  # inches per panel


def _palette(models) -> dict[str, tuple]:
    """One colour per model, fixed across the panels of a figure."""
    models = list(dict.fromkeys(models))
    return dict(zip(models, sns.color_palette("tab10", max(len(models), 1))))


def _representative(cells: dict[str, CellResult], model: str) -> CellResult | None:
    """The lowest done seed of a model (the paper's curves are single runs)."""
    done = [c for c in cells_of(cells, model) if c.status == DONE]
    return done[0] if done else None


def _absent_label(cells: dict[str, CellResult], model: str) -> str:
    statuses = {c.status for c in cells_of(cells, model)}
    word = "failed" if statuses == {"failed"} else "not run"
    return f"{paper_label(model)} ({word})"


def _series(cell: CellResult, column: str):
    """(iterations in units of 1e4, values) of one curve column, empty rows dropped."""
    if cell.curve is None or column not in cell.curve:
        return [], []
    rows = cell.curve.dropna(subset=[column])
    return (rows["iteration"] / ITERATION_UNIT).tolist(), rows[column].astype(float).tolist()


def _finish_panel(ax, handles: list, drawn: int, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if not drawn:
        ax.text(0.5, 0.5, "nothing run yet", transform=ax.transAxes, ha="center", va="center",
                color="0.5")
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best")


def _absent_handle(label: str) -> Line2D:
    return Line2D([], [], color="0.7", linestyle=":", label=label)


def _curve_panel(ax, cells, models, colours, styles: dict[str, dict], title: str) -> None:
    """Curves of ``models``: one line per (model, column) in ``styles`` (column -> line style)."""
    handles, drawn = [], 0
    for model in models:
        cell = _representative(cells, model)
        if cell is None:
            handles.append(_absent_handle(_absent_label(cells, model)))
            continue
        for column, style in styles.items():
            x, y = _series(cell, column)
            if x:
                # A marker keeps a curve with a single evaluation visible.
                ax.plot(x, y, color=colours[model], marker="." if len(x) == 1 else None, **style)
                drawn += 1
        handles.append(Line2D([], [], color=colours[model], linewidth=2, label=paper_label(model)))
    handles += [Line2D([], [], color="0.2", label=_column_label(column), **style)
                for column, style in styles.items()] if len(styles) > 1 else []
    _finish_panel(ax, handles, drawn, title, "iter. (1e4)", "error (%)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    # Few ticks in plain notation: short schedules give iterations like 0.0003 x 1e4.
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def _column_label(column: str) -> str:
    return {"train_error": "training error", "test_error": "test error",
            "val_error": "validation error (centre crop)"}[column]


# ----------------------------------------------------------------------------- saving

def _scale_note(fig, config: dict) -> None:
    if config.scale != "paper":
        fig.suptitle(f"scale: {config.scale} (not comparable to the paper)", fontsize=9, color="0.3")


def _save(fig, out_png: Path) -> dict:
    """PNG and PDF beside each other, each written to a temporary name and renamed into place."""
    out_png = Path(out_png)
    out_pdf = out_png.with_suffix(".pdf")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # Fixed metadata: no creation dates, so the same inputs give the same files.
    metadata = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None, "Creator": None}}
    for path, kind in ((out_png, "png"), (out_pdf, "pdf")):
        with runfiles.atomic_open(path) as handle:  # the project's one atomic writer (mode from the umask)
            fig.savefig(handle, format=kind, dpi=150, metadata=metadata[kind])
    panels = len(fig.axes)
    plt.close(fig)
    return {"png": out_png, "pdf": out_pdf, "panels": panels}


def _subplots(columns: int, rows: int = 1, panel_width: float = PANEL_SIZE[0], sharex: bool = False):
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(rows, columns, figsize=(panel_width * columns, PANEL_SIZE[1] * rows),
                                 squeeze=False, sharex=sharex)
    return fig, list(axes.flat)


def _load(config: dict, metrics_files: list[Path]):
    config = normalised_config(config)
    return config, collect(config, metrics_files)


# ----------------------------------------------------------------------------- the figures

def write_figure1(config: dict, metrics_files: list[Path], out_png: Path) -> dict:
    """Figure 1: CIFAR-10 plain-20/56, training error (left) and test error (right)."""
    config, cells = _load(config, metrics_files)
    panels = paper.FIGURES["figure-1"]
    fig, axes = _subplots(2, sharex=True)
    colours = _palette(panels["left"] + panels["right"])
    _curve_panel(axes[0], cells, panels["left"], colours, {"train_error": {"linewidth": 1.5}},
                 "training error (CIFAR-10)")
    _curve_panel(axes[1], cells, panels["right"], colours, {"test_error": {"linewidth": 1.5}},
                 "test error (CIFAR-10)")
    _scale_note(fig, config)
    return _save(fig, out_png)


def write_figure4(config: dict, metrics_files: list[Path], out_png: Path) -> dict:
    """Figure 4: ImageNet, left plain-18/34, right ResNet-18/34; thin train, bold centre-crop val."""
    config, cells = _load(config, metrics_files)
    panels = paper.FIGURES["figure-4"]
    fig, axes = _subplots(2, sharex=True)
    styles = {"train_error": {"linewidth": 0.8}, "val_error": {"linewidth": 2.2}}
    for ax, (name, models) in zip(axes, panels.items()):
        colours = _palette(models)
        _curve_panel(ax, cells, models, colours, styles, "plain networks" if name == "left" else "ResNets")
    _scale_note(fig, config)
    return _save(fig, out_png)


def write_figure6(config: dict, metrics_files: list[Path], out_png: Path) -> dict:
    """Figure 6: CIFAR-10 plain (left), ResNets (middle), 110/1202 (right); dashed train, bold test."""
    config, cells = _load(config, metrics_files)
    panels = paper.FIGURES["figure-6"]
    fig, axes = _subplots(3)
    styles = {"train_error": {"linewidth": 0.9, "linestyle": "--"}, "test_error": {"linewidth": 2.0}}
    titles = {"left": "plain networks", "middle": "ResNets", "right": "ResNet-110 and ResNet-1202"}
    for ax, (name, models) in zip(axes, panels.items()):
        _curve_panel(ax, cells, models, _palette(models), styles, titles[name])
    _scale_note(fig, config)
    return _save(fig, out_png)


def write_figure7(config: dict, metrics_files: list[Path], out_png: Path) -> dict:
    """Figure 7: std of each 3x3 layer's response; top in layer order, bottom sorted descending."""
    config, cells = _load(config, metrics_files)
    panels = paper.FIGURES["figure-7"]
    fig, axes = _subplots(1, rows=2, panel_width=7.0)
    colours = _palette(panels["top"] + panels["bottom"])
    for ax, (name, models) in zip(axes, panels.items()):
        handles, drawn = [], 0
        for model in models:
            cell = _representative(cells, model)
            stds = list(cell.final.get("layer_response_std") or []) if cell else []
            if not stds:
                handles.append(_absent_handle(_absent_label(cells, model) if cell is None
                                              else f"{paper_label(model)} (no layer responses)"))
                continue
            values = sorted(stds, reverse=True) if name == "bottom" else stds
            ax.plot(range(1, len(values) + 1), values, color=colours[model], linewidth=1.2, marker=".",
                    markersize=3)
            handles.append(Line2D([], [], color=colours[model], linewidth=2, label=paper_label(model)))
            drawn += 1
        xlabel = "layer index (original)" if name == "top" else "layer index (sorted by magnitude)"
        _finish_panel(ax, handles, drawn, "", xlabel, "std")
    _scale_note(fig, config)
    return _save(fig, out_png)
