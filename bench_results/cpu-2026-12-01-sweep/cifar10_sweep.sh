#!/usr/bin/env bash
# The CIFAR-10 CPU sweep: four configurations trained side by side, one thread each, for the same process CPU
# time, then scored at their last mark (FID n=2000 vs a 10k train subset, class accuracy n=2000).
#   bash bench_results/cpu-2026-12-01-sweep/cifar10_sweep.sh OUT_ROOT BUDGET_MIN
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/sweep-cifar10}; BUDGET=${2:-10}
T=bench_results/cpu-2026-12-01-sweep/trial.py
COMMON="hflip=true shared_init_std=1.0 ema_decay=0.99 ema_start=100"
run() { name=$1; shift; python $T "$OUT/$name" --preset cifar10-tiny --budget-min "$BUDGET" --marks 5 --set $COMMON "$@" > "$OUT/$name.log" 2>&1 & }
mkdir -p "$OUT"
run K0-tiny                                                                     # cifar10-tiny's shape: G 64 / D 32 wide, batch 64, 2 D steps, lr 2e-4
run K1-fm   d_ch=32 batch_size=32 d_steps=1 g_lr=4e-4 d_lr=4e-4                 # the fashion-mnist preset's recipe
run K2-bigG g_ch=32 d_ch=32 batch_size=32 d_steps=1 g_lr=4e-4 d_lr=4e-4         # G 128 wide (4x G FLOPs)
run K3-bigD d_ch=64 batch_size=32 d_steps=1 g_lr=4e-4 d_lr=4e-4                 # D 128 wide (4x D FLOPs)
wait
