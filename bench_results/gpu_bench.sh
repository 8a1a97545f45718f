#!/usr/bin/env bash
# Issue 7's GPU measurements with bench.py, one group per call so each fits in ~10 minutes of GPU time:
#   bash bench_results/gpu_bench.sh cifar10|b128|b128max [OUTDIR]     (OUTDIR: bench_results/gpu-DATE)
# cifar10: batch 64, fp32 eager vs bf16 + channels_last + compile.  b128: biggan-128 at batch 64, same pair
# (the memory target: batch 64 in bf16 on one 80 GB GPU).  b128max: biggan-128 at the largest batch that fits
# in bf16 + channels_last + compile, then fp32 eager at that batch (the >= 3x target), strict fp32 too.
# "fp32" keeps torch's default TF32 convolutions; --no-tf32 is strict fp32.
set -euo pipefail
group=${1:?usage: gpu_bench.sh cifar10|b128|b128max [OUTDIR]}
out=${2:-bench_results/gpu-$(date +%F)}
mkdir -p "$out"
run() { local name=$1; shift; python bench.py "$@" --json "$out/$name.json" 2>&1 | tee "$out/$name.txt"; }
case $group in
  cifar10)
    run cifar10_64_fp32 --preset cifar10 --batch-size 64 --precision fp32 --no-channels-last
    run cifar10_64_bf16_cl_compile --preset cifar10 --batch-size 64 --precision bf16 --channels-last --compile ;;
  b128)
    run b128_64_fp32 --preset biggan-128 --batch-size 64 --precision fp32 --no-channels-last
    run b128_64_bf16_cl_compile --preset biggan-128 --batch-size 64 --precision bf16 --channels-last --compile ;;
  b128max)
    run b128_max_bf16_cl_compile --preset biggan-128 --batch-size max --precision bf16 --channels-last --compile
    bs=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['batch_size'])" "$out/b128_max_bf16_cl_compile.json")
    run "b128_${bs}_fp32" --preset biggan-128 --batch-size "$bs" --precision fp32 --no-channels-last --repeats 3
    run "b128_${bs}_strict_fp32" --preset biggan-128 --batch-size "$bs" --precision fp32 --no-channels-last --no-tf32 --repeats 2 ;;
  *) echo "unknown group $group: use cifar10, b128 or b128max" >&2; exit 2 ;;
esac
