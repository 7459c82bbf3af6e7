#!/usr/bin/env bash
# Train, or resume, the reference cells of results-reference/ through the workflow, and keep their
# files there (results-reference/README.md says what they are):
#
#   bash scripts/install.sh && bash scripts/reference-run.sh     # CORES=2 by default
#
# A cell whose checkpoint results-reference/ keeps, and results/ lacks, starts from that checkpoint
# (the engine's own resume: same recipe, same iteration, same data position). While the workflow
# runs, the checkpoint and curve are copied back every COPY_EVERY seconds (600); when a cell is
# done, its metrics.json, curve.csv, weights (weights.pt, the model alone) and curve figure replace
# the checkpoint there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
SNAKEMAKE=${SNAKEMAKE:-.venv/bin/snakemake}
REFERENCE=results-reference
RUNS=results/runs/paper

cells() { for folder in "$REFERENCE"/paper/*/seed-*; do [ -d "$folder" ] && echo "${folder#"$REFERENCE"/paper/}"; done; }

for cell in $(cells); do
    if [ -f "$REFERENCE/paper/$cell/checkpoint.pt" ] && [ ! -f "$RUNS/$cell/checkpoint.pt" ] \
            && [ ! -f "$RUNS/$cell/metrics.json" ]; then
        mkdir -p "$RUNS/$cell"
        cp "$REFERENCE/paper/$cell/checkpoint.pt" "$REFERENCE/paper/$cell/curve.csv" "$RUNS/$cell/"
        echo "reference-run: $cell resumes from $REFERENCE/paper/$cell/checkpoint.pt"
    fi
done

keep() {  # the run folder's files, copied into results-reference/ (each written whole, then renamed)
    for cell in $(cells); do
        for name in checkpoint.pt curve.csv; do
            if [ -f "$RUNS/$cell/$name" ] && [ ! -f "$RUNS/$cell/metrics.json" ]; then
                cp "$RUNS/$cell/$name" "$REFERENCE/paper/$cell/.$name.tmp"
                mv "$REFERENCE/paper/$cell/.$name.tmp" "$REFERENCE/paper/$cell/$name"
            fi
        done
    done
}
( while sleep "${COPY_EVERY:-600}"; do keep; done ) &
copier=$!
trap 'kill $copier 2>/dev/null || true' EXIT

"$SNAKEMAKE" --cores "${CORES:-2}" --configfile config.yaml "$REFERENCE/config.yaml" "$@"
keep

for cell in $(cells); do  # a finished cell's files replace its checkpoint in results-reference/
    "$PYTHON" -c 'import sys; from resnet.report.reference import keep_finished
kept = keep_finished(sys.argv[1], sys.argv[2], "paper")
print(f"reference-run: {sys.argv[1]} " + (f"done, its files are in {kept}" if kept else "not finished yet"))' \
        "$RUNS/$cell" "$REFERENCE/paper/$cell"
done
