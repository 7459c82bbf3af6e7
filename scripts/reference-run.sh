#!/usr/bin/env bash
# Train, or resume, the reference cells of results-reference/ through the workflow, and keep their
# files there (results-reference/README.md says what they are):
#
#   bash scripts/install.sh && bash scripts/reference-run.sh     # CORES=2 by default
#   bash scripts/reference-run.sh [SNAKEMAKE ARGUMENTS]           # e.g. -n
#
# Snakemake's targets are the unfinished cells' metrics.json; arguments are passed on to it.
#
# The cells are the plan of results-reference/config.yaml laid over config.yaml; a cell added there
# gets its folder here. A cell whose checkpoint results-reference/ keeps, and results/ lacks, starts
# from that checkpoint (the engine's own resume: same recipe, same iteration, same data position).
# While the workflow runs, the checkpoint and curve are copied back every COPY_EVERY seconds (600);
# when a cell is done, its metrics.json, curve.csv, weights (weights.pt, the model alone) and curve
# figure replace the checkpoint there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
SNAKEMAKE=${SNAKEMAKE:-.venv/bin/snakemake}
REFERENCE=results-reference
CONFIGS=(--config config.yaml --config "$REFERENCE/config.yaml")  # the plan: the reference config over config.yaml

# One line per cell of the plan not finished yet: its run folder (results/runs/<scale>/<cell>) and
# the folder that keeps its files here (results-reference/<scale>/<cell>). A cell whose metrics.json
# is kept here is done and is not trained again (delete its folder here to train it again).
folders() { "$PYTHON" -m resnet plan "${CONFIGS[@]}" | while IFS=$'\t' read -r _ _ run; do
    keep="$REFERENCE/${run#results/runs/}"
    if [ -f "$keep/metrics.json" ]; then echo "reference-run: $run is done, its files are in $keep" >&2
    else echo "$run $keep"; fi; done; }
FOLDERS=$(folders)
if [ -z "$FOLDERS" ]; then echo "reference-run: every cell of the plan is done"; exit 0; fi
# The targets: the unfinished cells alone (the workflow's own default target would also train again
# a done cell whose run folder this clone lacks).
targets=()
while read -r run _; do targets+=("$run/metrics.json"); done <<<"$FOLDERS"

while read -r run keep; do
    mkdir -p "$keep"
    if [ -f "$keep/checkpoint.pt" ] && [ ! -f "$run/checkpoint.pt" ] && [ ! -f "$run/metrics.json" ]; then
        mkdir -p "$run"
        cp "$keep/checkpoint.pt" "$keep/curve.csv" "$run/"
        echo "reference-run: $run resumes from $keep/checkpoint.pt"
    fi
done <<<"$FOLDERS"

keep_checkpoints() {  # the run folder's files, copied into results-reference/ (each written whole, then renamed)
    while read -r run keep; do
        for name in checkpoint.pt curve.csv; do
            if [ -f "$run/$name" ] && [ ! -f "$run/metrics.json" ]; then
                cp "$run/$name" "$keep/.$name.tmp"
                mv "$keep/.$name.tmp" "$keep/$name"
            fi
        done
    done <<<"$FOLDERS"
}
copy_back() {  # keep_checkpoints every COPY_EVERY seconds until stopped; a copy under way finishes first
    local stop='' pause
    trap 'stop=1; kill "$pause" 2>/dev/null' TERM
    while [ -z "$stop" ]; do
        sleep "${COPY_EVERY:-600}" & pause=$!
        wait "$pause" || true
        [ -n "$stop" ] || keep_checkpoints
    done
}
copy_back &
copier=$!
trap 'kill $copier 2>/dev/null || true' EXIT

# A workflow that failed or was stopped still leaves its latest checkpoint here. The arguments go to
# snakemake before --configfile, which takes every word after it.
status=0
"$SNAKEMAKE" --cores "${CORES:-2}" "${targets[@]}" "$@" --configfile config.yaml "$REFERENCE/config.yaml" || status=$?
kill "$copier"; wait "$copier" || true
keep_checkpoints

while read -r run keep; do  # a finished cell's files replace its checkpoint in results-reference/
    "$PYTHON" -c 'import sys; from resnet.report.reference import keep_finished
run, keep = sys.argv[1:3]
kept = keep_finished(run, keep)
print(f"reference-run: {run} " + (f"done, its files are in {kept}" if kept else "not finished yet"))' "$run" "$keep"
done <<<"$FOLDERS"
exit $status
