"""The paper's tables from the per-cell files: what each cell's run folder says, beside the paper.

    results/runs/<scale>/<model>/seed-<n>/metrics.json, curve.csv  --collect (cells.py)-->  CellResult per cell
    CellResult + resnet.paper                                      --table*_frame-->  one row per paper row
    frame                                                          --write_table*-->  CSV + Markdown copy

Every table row carries the paper's number, the reproduced number, their difference (reproduced
minus paper, in points) and the row's status: ``done``, ``failed`` (with the reason from
metrics.json), ``not run`` (no metrics.json, or the model is not in the configured plan) or
``quoted`` (the paper quotes another work; nothing is trained for it).

Seeds: a row over several done seeds reports the mean over them in ``reproduced_*`` (with
``reproduced_std``, the sample standard deviation), except ResNet-110 in Table 6, which follows the
paper's "best (mean±std)": ``reproduced_test_error`` is the lowest final test error of the done
seeds, ``reproduced_mean`` / ``reproduced_std`` are over the same seeds.  The final checkpoint is
always the one reported (never a checkpoint selected on the test set).

Outputs hold no timestamps, so the same run folders give byte-identical tables.
"""
from __future__ import annotations

import io
import math
import statistics
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from resnet import paper

from resnet.runs import files as runfiles
from resnet.report.cells import CellResult, cells_of, collect, normalised_config, row_status
from resnet.report.reference import reference_cells, with_reference
from resnet.models.measure import count_parameters, table1_rows
from resnet.models.nets import build_model

QUOTED = "quoted"  # a row the paper quotes from other work



def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1; None for fewer than two values)."""
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else None
    return statistics.fmean(values), std


def best_mean_std(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """The paper's "best (mean±std)" over runs (Table 6, ResNet-110): min, mean, sample std."""
    mean, std = mean_std(values)
    return (min(values) if values else None), mean, std


def _diff(reproduced: float | None, paper_value: float | None) -> float | None:
    if reproduced is None or paper_value is None:
        return None
    return round(reproduced - paper_value, 6)


def _finals(done: list[CellResult], key: str) -> list[float]:
    return [float(c.final[key]) for c in done if c.final.get(key) is not None]



# ----------------------------------------------------------------------------- Table 1

def table1_frame() -> pd.DataFrame:
    """Table 1, computed from the models (option B, 224x224), beside the paper's FLOPs."""
    rows = []
    for row in table1_rows():
        ours, theirs = row["multiply_adds_e9"], row["paper_multiply_adds_e9"]
        rows.append({
            "row": f"{row['layers']}-layer", "model": row["name"], "layers": row["layers"],
            "block": row["block"],
            **{stage: row[stage] for stage in ("conv2_x", "conv3_x", "conv4_x", "conv5_x")},
            "parameters": row["parameters"],
            "multiply_adds_e9": round(ours, 4), "paper_multiply_adds_e9": theirs,
            "diff_multiply_adds_e9": round(ours - theirs, 4),
            "diff_percent": round(100.0 * (ours - theirs) / theirs, 2),
        })
    return pd.DataFrame(rows)


def write_table1(out_csv: Path) -> pd.DataFrame:
    """Table 1 as CSV, and table1.md beside it."""
    frame = table1_frame()
    header = ("# Table 1: ImageNet architectures (computed from the models)\n\n"
              "Multiply-adds (x1e9) of one 224x224 forward pass, counted by torch's FlopCounterMode "
              "(convolutions and the fc layer; BN, ReLU and pooling not counted); option B shortcuts "
              f"(He et al. 2015, Table 1; VGG-19: {paper.VGG19_MULTIPLY_ADDS_E9} x1e9).\n")
    _write(frame, Path(out_csv), header)
    return frame


# ----------------------------------------------------------------------------- Tables 2 and 3

def table2_frame(config: dict, cells: dict[str, CellResult]) -> pd.DataFrame:
    """Table 2: ImageNet top-1 error (%), 10-crop, per model."""
    rows = []
    for model, paper_row in paper.TABLE2.items():
        status, reason, done = with_reference(config.scale, model, row_status(cells_of(cells, model)))
        top1, top1_std = mean_std(_finals(done, "top1_10crop"))
        centre, _ = mean_std(_finals(done, "val_error"))
        rows.append({
            "row": paper.paper_label(model), "model": model, "seeds": len(done),
            "paper_top1": paper_row.top1, "reproduced_top1": top1, "reproduced_top1_std": top1_std,
            "diff_top1": _diff(top1, paper_row.top1), "reproduced_centre_crop_top1": centre,
            "test_short_side": _short_side(done), "status": status, "reason": reason,
        })
    return _frame(rows)


def table3_frame(config: dict, cells: dict[str, CellResult]) -> pd.DataFrame:
    """Table 3: ImageNet top-1 / top-5 error (%), 10-crop; quoted rows included."""
    rows = []
    for key, paper_row in paper.TABLE3.items():
        if paper_row.quoted:
            status, reason, done = QUOTED, "quoted by the paper, not trained", []
            label, model = key, ""
        else:
            status, reason, done = with_reference(config.scale, key, row_status(cells_of(cells, key)))
            label, model = paper.paper_label(key, "table3"), key
        top1, _ = mean_std(_finals(done, "top1_10crop"))
        top5, _ = mean_std(_finals(done, "top5_10crop"))
        rows.append({
            "row": label, "model": model, "seeds": None if paper_row.quoted else len(done),
            "paper_top1": paper_row.top1, "reproduced_top1": top1, "diff_top1": _diff(top1, paper_row.top1),
            "paper_top5": paper_row.top5, "reproduced_top5": top5, "diff_top5": _diff(top5, paper_row.top5),
            "test_short_side": _short_side(done), "status": status, "reason": reason,
        })
    return _frame(rows)


def _short_side(done: list[CellResult]) -> int | None:
    sides = {c.final.get("test_short_side") for c in done} - {None}
    return int(min(sides)) if sides else None


# ----------------------------------------------------------------------------- Table 6

@lru_cache(maxsize=None)
def parameter_count(model: str) -> int:
    """The exact parameter count of a registered model (built once per process)."""
    return count_parameters(build_model(model))


def table6_frame(config: dict, cells: dict[str, CellResult]) -> pd.DataFrame:
    """Table 6: CIFAR-10 test error (%) of the final checkpoint, parameters; quoted rows included."""
    rows = []
    for key, paper_row in paper.TABLE6.items():
        row = {"row": key, "model": "", "layers": paper_row.layers,
               "paper_params_millions": paper_row.params_millions, "params": None, "seeds": None,
               "paper_test_error": paper_row.error, "paper_mean": paper_row.mean, "paper_std": paper_row.std,
               "reproduced_test_error": None, "reproduced_mean": None, "reproduced_std": None,
               "diff_test_error": None, "diff_mean": None, "status": QUOTED,
               "reason": "quoted by the paper, not trained"}
        if not paper_row.quoted:
            status, reason, done = with_reference(config.scale, key, row_status(cells_of(cells, key)))
            errors = _finals(done, "test_error")
            if paper_row.runs > 1:  # He et al. 2015, Table 6: "best (mean±std)" over the runs
                value, mean, std = best_mean_std(errors)
            else:
                mean, std = mean_std(errors)
                value = mean
            params = {c.metrics.get("parameters") for c in done} - {None}
            row.update(row=paper.paper_label(key), model=key, params=min(params) if params else parameter_count(key),
                       seeds=len(errors), reproduced_test_error=value, reproduced_mean=mean, reproduced_std=std,
                       diff_test_error=_diff(value, paper_row.error),
                       diff_mean=_diff(mean, paper_row.mean) if paper_row.mean is not None else None,
                       status=status, reason=reason)
        rows.append(row)
    return _frame(rows)


INTEGER_COLUMNS = ("layers", "params", "parameters", "seeds", "test_short_side")


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Rows to a frame; count columns stay integers where some rows leave them empty."""
    frame = pd.DataFrame(rows)
    for column in INTEGER_COLUMNS:
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


# ----------------------------------------------------------------------------- writers

TITLES = {
    "table2": "Table 2: ImageNet validation top-1 error (%), 10-crop",
    "table3": "Table 3: ImageNet validation top-1 / top-5 error (%), 10-crop",
    "table6": "Table 6: CIFAR-10 test error (%), final checkpoint",
}
NOTES = {
    "table2": "ResNets use option A shortcuts, as in the paper's Table 2. Several seeds: mean (std).",
    "table3": "Rows marked quoted are the paper's quotes of other work; nothing is trained for them.",
    "table6": ("ResNet-110: best (mean±std) over the done seeds, like the paper's 5 runs; other rows: "
               "the mean over done seeds. Params: ours is the exact count, the paper's is rounded "
               "(millions)."),
}
FRAMES = {"table2": table2_frame, "table3": table3_frame, "table6": table6_frame}


def scale_header(config: dict, title: str) -> str:
    """The Markdown heading of a table, with the scale and, off paper scale, a loud warning."""
    scale = config.scale
    text = f"# {title}\n\nScale: `{scale}`.\n"
    if scale != "paper":
        text += (f"\n> **Not comparable to the paper:** these numbers were made at scale `{scale}` "
                 f"(shortened schedules and subsets); only `scale: paper` reproduces the paper's "
                 f"setting.\n")
    return text


def data_label(cells: list[CellResult]) -> str:
    """Which data these cells saw (metrics.json ``data``): its kind, source and content hash."""
    labels = []
    for cell in cells:
        seen = cell.metrics.get("data") or {}
        if seen:
            digest = seen.get("content_hash")
            label = f"{seen.get('kind', '?')} {seen.get('source', '?')}" + (f" sha256 {digest[:12]}" if digest else "")
            if label not in labels:
                labels.append(label)
    return "; ".join(labels)


def _write_table(name: str, config: dict, metrics_files: list[Path], out_csv: Path) -> pd.DataFrame:
    config = normalised_config(config)
    cells = collect(config, metrics_files)
    frame = FRAMES[name](config, cells)
    # Which data each row's cells saw (the original CIFAR-10 or the JPEG copy, ImageNet or the synthetic set).
    frame["data"] = [data_label(cells_of(cells, model) or reference_cells(config.scale, model)) if model else ""
                     for model in frame["model"]]
    seen = data_label(list(cells.values()))
    header = scale_header(config, TITLES[name]) + (f"\nData: {seen}.\n" if seen else "")
    _write(frame, Path(out_csv), header + "\n" + NOTES[name] + "\n")
    return frame


def write_table2(config: dict, metrics_files: list[Path], out_csv: Path) -> pd.DataFrame:
    """Table 2 as CSV, and table2.md beside it."""
    return _write_table("table2", config, metrics_files, out_csv)


def write_table3(config: dict, metrics_files: list[Path], out_csv: Path) -> pd.DataFrame:
    """Table 3 as CSV, and table3.md beside it."""
    return _write_table("table3", config, metrics_files, out_csv)


def write_table6(config: dict, metrics_files: list[Path], out_csv: Path) -> pd.DataFrame:
    """Table 6 as CSV, and table6.md beside it."""
    return _write_table("table6", config, metrics_files, out_csv)


def _write(frame: pd.DataFrame, out_csv: Path, header: str) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    runfiles.atomic_write_text(out_csv, buffer.getvalue())
    runfiles.atomic_write_text(out_csv.with_suffix(".md"), header + "\n" + markdown(frame) + "\n")


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' to_markdown, i.e. tabulate); numbers right-aligned, to 2
    decimals (4 for small ones), empty cells blank."""
    align = tuple("right" if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
                  else "left" for c in frame.columns)
    text = frame.astype(object).map(_cell_text)
    return text.to_markdown(index=False, tablefmt="pipe", disable_numparse=True, colalign=align)


def _cell_text(value: Any) -> str:
    # Kept by hand on purpose: this is the paper's number style (errors to 2 decimals, like its
    # tables; small values to 4; counts with thousands separators), not table layout, which
    # tabulate does above. tabulate's own number formats apply one format per column.
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:.4f}" if abs(value) < 0.1 and value != 0 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")
