#!/usr/bin/env bash
# Create .venv in the repository and install the project with its pinned packages.
#   bash scripts/install.sh          # the workflow
#   bash scripts/install.sh --test   # the workflow and the test tools (with NVIDIA DALI, which tests use)
#   bash scripts/install.sh --dali   # the workflow with NVIDIA DALI (GPU JPEG decoding for ImageNet)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "install: Python >= 3.11 is needed (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch and torchvision first, pinned exactly (the versions every number here was made with)
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
extras=()
for option in "$@"; do
    case "$option" in
        --test) extras+=(test dali) ;;  # the tests run DALI's CPU pipeline (tests/test_imagenet_input.py)
        --dali) extras+=(dali) ;;
        *) echo "install: unknown option $option (use --test and/or --dali)" >&2; exit 2 ;;
    esac
done
extra=""
[ ${#extras[@]} -gt 0 ] && extra="[$(IFS=,; echo "${extras[*]}")]"
.venv/bin/python -m pip install -q -e ".${extra}"
echo "install: ready ($(.venv/bin/python -c 'import torch, snakemake; print("torch", torch.__version__, "snakemake", snakemake.__version__)'))"
