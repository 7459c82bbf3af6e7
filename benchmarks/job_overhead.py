"""Per-job overhead of a workflow run: each train job's wall time minus its training time.

    .venv/bin/python benchmarks/job_overhead.py results                      # one run
    .venv/bin/python benchmarks/job_overhead.py BEFORE/results AFTER/results  # two runs, side by side

A train job's wall time is Snakemake's benchmark file, results/benchmarks/<scale>/<model>/seed-<n>.tsv
(column s: the whole job, from the shell's start to its end, interpreter start-up and imports
included). Its training time is metrics.json's wall_time_s (the training steps only: evaluation,
checkpoints, the MLflow mirror and start-up are left out). The difference is what a job costs
besides training. cpu_time is the job's CPU seconds from the same benchmark file (less sensitive
to other work on a shared machine than wall time).

Two folders: the cells both runs finished, with the overhead's ratio after/before per job and in
total. Quote ratios where the machine was loaded: every absolute time stretches with the load.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def read_jobs(results: Path, scale: str) -> dict[str, dict]:
    """cell -> {job_s, cpu_s, train_s, overhead_s, status} for every train job with both files."""
    jobs = {}
    for tsv in sorted((results / "benchmarks" / scale).glob("*/seed-*.tsv")):
        cell = f"{tsv.parent.name}/{tsv.stem}"
        metrics_file = results / "runs" / scale / cell / "metrics.json"
        if not metrics_file.exists():
            continue
        with open(tsv, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows:
            continue
        metrics = json.loads(metrics_file.read_text())
        job_s = float(rows[-1]["s"])
        cpu_s = float(rows[-1].get("cpu_time") or "nan")
        train_s = metrics.get("wall_time_s")
        jobs[cell] = {"job_s": job_s, "cpu_s": cpu_s, "train_s": train_s, "status": metrics.get("status"),
                      "overhead_s": job_s - train_s if train_s is not None else None}
    return jobs


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(jobs: dict[str, dict]) -> str:
    lines = ["| cell | job s | training s | overhead s | overhead share | cpu s |", "|---|---|---|---|---|---|"]
    for cell, job in jobs.items():
        share = f"{job['overhead_s'] / job['job_s']:.0%}" if job["overhead_s"] is not None and job["job_s"] else "-"
        note = "" if job["status"] == "done" else f" ({job['status']})"
        lines.append(f"| {cell}{note} | {_seconds(job['job_s'])} | {_seconds(job['train_s'])} | "
                     f"{_seconds(job['overhead_s'])} | {share} | {_seconds(job['cpu_s'])} |")
    done = [job for job in jobs.values() if job["overhead_s"] is not None]
    total = {key: sum(job[key] for job in done) for key in ("job_s", "train_s", "overhead_s", "cpu_s")}
    lines.append(f"| **{len(done)} jobs** | {_seconds(total['job_s'])} | {_seconds(total['train_s'])} | "
                 f"{_seconds(total['overhead_s'])} | "
                 f"{total['overhead_s'] / total['job_s']:.0%} | {_seconds(total['cpu_s'])} |" if done else "")
    if done:
        lines.append(f"\nmean overhead per job: {total['overhead_s'] / len(done):.1f} s; "
                     f"overhead / training: {total['overhead_s'] / total['train_s']:.2f}")
    return "\n".join(lines)


def compare(before: dict[str, dict], after: dict[str, dict]) -> str:
    cells = [cell for cell in before if cell in after
             and before[cell]["overhead_s"] is not None and after[cell]["overhead_s"] is not None]
    lines = ["| cell | overhead before s | overhead after s | after/before | overhead/training before | "
             "overhead/training after |", "|---|---|---|---|---|---|"]
    for cell in cells:
        b, a = before[cell], after[cell]
        lines.append(f"| {cell} | {b['overhead_s']:.1f} | {a['overhead_s']:.1f} | "
                     f"{a['overhead_s'] / b['overhead_s']:.2f} | {b['overhead_s'] / b['train_s']:.2f} | "
                     f"{a['overhead_s'] / a['train_s']:.2f} |")
    if cells:
        sums = {side: {key: sum(run[cell][key] for cell in cells) for key in ("overhead_s", "train_s", "job_s")}
                for side, run in (("before", before), ("after", after))}
        b, a = sums["before"], sums["after"]
        lines.append(f"| **{len(cells)} cells** | {b['overhead_s']:.1f} | {a['overhead_s']:.1f} | "
                     f"{a['overhead_s'] / b['overhead_s']:.2f} | {b['overhead_s'] / b['train_s']:.2f} | "
                     f"{a['overhead_s'] / a['train_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="a workflow's results/ folder (two: before, after)")
    parser.add_argument("--scale", default="smoke")
    args = parser.parse_args(argv)
    if len(args.results) > 2:
        parser.error("give one results folder, or two (before, after)")
    runs = []
    for results in args.results:
        jobs = read_jobs(results, args.scale)
        if not jobs:
            print(f"error: no train job with both a benchmark file and metrics.json under {results} "
                  f"(scale {args.scale!r}): give a workflow's results/ folder, or --scale", file=sys.stderr)
            return 2
        print(f"## {results}\n\n{table(jobs)}\n")
        runs.append(jobs)
    if len(runs) == 2:
        print(f"## after / before (the cells both runs finished)\n\n{compare(*runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
