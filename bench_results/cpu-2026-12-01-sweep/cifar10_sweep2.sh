#!/usr/bin/env bash
# The second CIFAR-10 CPU sweep (2026-12-01, session 6): trials of 30 process-CPU-minutes (one thread each, two
# side by side), each scored at its last mark by FID (n=2000 EMA samples vs a fixed 10k train subset) and class
# accuracy, then by class accuracy at every mark.
#   bash bench_results/cpu-2026-12-01-sweep/cifar10_sweep2.sh OUT_ROOT NAME [field=value ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$1; NAME=$2; shift 2
mkdir -p "$OUT"
python bench_results/cpu-2026-12-01-sweep/trial.py "$OUT/$NAME" --preset cifar10-tiny --budget-min "${BUDGET:-30}" \
    --marks 5 --set hflip=true "$@" > "$OUT/$NAME.log" 2>&1
OMP_NUM_THREADS=1 python -m nanobiggan.evaluate --checkpoint "$OUT/$NAME/mark_5.pt" --n 2000 --ref-n 10000 \
    --min-samples 2000 --json "$OUT/$NAME/eval.json" >> "$OUT/$NAME.log" 2>&1
