"""The workflow's summary step: results/README.md (and .html), then the MLflow mirror of the run.

    publish_summary(config, metrics_files, tables, figures, out_md, out_html)

With ``mlflow.live: false`` the cells' runs are logged here, from their files; then one report run
holds the tables, figures and the summary. MLflow trouble (a store locked, read-only or corrupt)
never costs a file: every file is written either way, and what the store lacks is said three times,
each saying how to fill it in: a section of results/README.md, one warning line on the console
(outside the step's log), and each call's warning in the log (results/logs/report/summary.log).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from resnet.report.cells import normalised_config
from resnet.report.summary import write_summary
from resnet.runs.files import atomic_write_text
from resnet.runs.provenance import git_commit
from resnet.tracking.sync import log_report_run, report_files, summary_digest, sync_run_folders

SYNC_HINT = "`python -m resnet mlflow-sync` mirrors them from the files once the store works again"


def publish_summary(config, metrics_files: list[Path], tables: list[Path], figures: list[Path], out_md: Path,
                    out_html: Path, console: TextIO | None = None) -> str:
    """Write the summary, mirror the cells (mlflow.live false) and the report to MLflow; return the text."""
    settings = normalised_config(config)
    uri, experiment, scale = settings.mlflow.tracking_uri, settings.mlflow.experiment, settings.scale
    warnings: list[str] = []
    missing = []
    if not settings.mlflow.live:  # the jobs left MLflow alone: each cell's run from its files, here at once
        folders = [Path(path).parent for path in metrics_files]
        outcomes = sync_run_folders(uri, experiment, folders, scale, warnings=warnings)
        unsynced = [cell for cell, folder in ((f"{f.parent.name}/{f.name}", f) for f in folders)
                    if outcomes.get(cell) is None and (folder / "metrics.json").is_file()]
        if unsynced:
            missing.append(f"the runs of {len(unsynced)} cells ({', '.join(unsynced[:3])}"
                           f"{', ...' if len(unsynced) > 3 else ''})")
    text = _write(settings, metrics_files, out_md, out_html, _trouble(uri, missing, warnings))
    run_id = log_report_run(uri, experiment, report_files(tables, figures, out_md),
                            tags={"scale": scale, "summary_digest": summary_digest(out_md)}, description=text,
                            git=git_commit(), run_name=f"{scale}/report", warnings=warnings)
    if run_id is None:
        missing.append("this report's run (the tables, figures and this summary)")
        text = _write(settings, metrics_files, out_md, out_html, _trouble(uri, missing, warnings))
    if missing:
        print(f"warning: MLflow ({uri}): {' and '.join(missing)} are not in the store ({_first(warnings)}); "
              f"the tables, figures and results/README.md are complete; {SYNC_HINT}",
              file=console or sys.__stderr__, flush=True)
    return text


def _first(warnings: list[str]) -> str:
    if not warnings:
        return "see the step's log"
    return warnings[0].removeprefix("warning: ").split(". ")[0][:300]


def _trouble(uri: str, missing: list[str], warnings: list[str]) -> str | None:
    if not missing:
        return None
    return (f"{' and '.join(missing)} could not be written to the MLflow store `{uri}` ({_first(warnings)}). "
            f"The tables, figures and this summary are complete; {SYNC_HINT}.")


def _write(settings, metrics_files: list[Path], out_md: Path, out_html: Path, trouble: str | None) -> str:
    import markdown

    text = write_summary(settings, metrics_files, out_md, mlflow_trouble=trouble)
    atomic_write_text(out_html, markdown.markdown(text, extensions=["tables"]))
    return text
