"""Benchmark a BigGAN training step and sampling: throughput, memory and hardware efficiency.

    python bench.py --preset cifar10 --batch-size 64                      # CPU, fp32
    python bench.py --preset biggan-128 --batch-size 64 --precision bf16 --channels-last --compile
    python bench.py --preset cifar10 --json out.json                      # also write the numbers as JSON
    python bench.py --preset biggan-128 --batch-size max --precision bf16 --compile  # the largest batch that fits
    python bench.py --sampler cifar10 --json out.json                     # the sampler page's latencies instead

Measured, over warmed-up repeats (median and spread):
- training iterations/s (one iteration = `d_steps` D steps + 1 G step + EMA) and real images/s;
- sampling images/s (EMA G in eval mode, no autograd);
- FLOPs per iteration / per sample batch, counted with torch.utils.flop_counter (matmuls and convs);
- achieved GFLOP/s and that as a fraction of a peak measured in the same run: a large fp32 matmul on
  the CPU; bf16, TF32 and fp32 matmuls on a GPU. The fraction is the median over repeats of each repeat's
  ratio to a peak measured right after it, so a VM whose speed drifts during the run moves both together;
- peak memory: max RSS on the CPU, torch.cuda.max_memory_allocated on a GPU.
Real batches are synthetic tensors already on the device: this measures the model, not the data loader.

--sampler CHECKPOINT measures `sample.py --serve` instead (`bench_sampler`): each request over HTTP as the page
makes it, PNG encoding included, from a first start (empty statistics cache) to a second start over the same
weights.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from nanobiggan import get_config
from nanobiggan.trainer import Trainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return times


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, warmup: int = 3, repeats: int = 10) -> float:
    """GFLOP/s of an n x n x n matmul: the ceiling the model's convs and matmuls are compared with."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    times = timed(lambda: a @ b, device, warmup, repeats)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def timed_with_peak(fn, peak, device, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Times of fn, each repeat followed by a fresh peak(): on a machine whose speed drifts (a VM's shared
    cores, clocks) both numbers of a pair see the same machine, so their ratio is steadier than a ratio
    to one peak taken minutes earlier or later."""
    for _ in range(warmup):
        fn()
    times, peaks = [], []
    for _ in range(repeats):
        times += timed(fn, device, warmup=0, repeats=1)
        peaks.append(peak())
    return times, peaks


def largest_batch(fits, step: int = 8, limit: int = 1 << 14) -> int:
    """The largest multiple of `step` (≤ limit) for which fits(batch) is True, assuming fits is monotone:
    doubling until the first failure, then bisection. 0 if even `step` does not fit."""
    lo, hi = 0, step  # fits(lo) is known True (or lo = 0), fits(hi) is unknown
    while hi <= limit and fits(hi):
        lo, hi = hi, 2 * hi
    hi = min(hi, (limit // step + 1) * step)  # the first multiple known (or assumed) not to fit
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def training_fits(preset: str, precision: str, compile: bool, channels_last: bool, device: str, overrides: dict):
    """fits(batch) for largest_batch: one training iteration at that batch, False on out-of-memory."""
    def fits(batch: int) -> bool:
        dev = torch.device(device)
        try:
            cfg = get_config(preset, batch_size=batch, precision=precision, **overrides)
            trainer = Trainer(cfg, dev, compile=compile, channels_last=channels_last)
            trainer.train_step(FixedBatches(cfg, trainer.micro, dev, trainer.memory_format))
            sync(dev)
            print(f"  batch {batch}: fits")
            return True
        except torch.OutOfMemoryError:
            print(f"  batch {batch}: out of memory")
            return False
        finally:
            trainer = None
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return fits


def flops_of(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


class FixedBatches:
    """The same real batch forever, already on the device."""

    def __init__(self, cfg, n, device, memory_format):
        self.x = torch.rand(n, 3, cfg.resolution, cfg.resolution, device=device).mul(2).sub(1)
        self.x = self.x.contiguous(memory_format=memory_format)
        self.y = torch.randint(0, cfg.n_classes, (n,), device=device)

    def __next__(self):
        return self.x, self.y


def summary(times: list[float], work: float, flops: float, peaks: list[float]) -> dict:
    """Median and spread of the times; achieved GFLOP/s at the median time; the fraction of the peak as the
    median (and spread) of each repeat's own ratio to the peak measured right after it."""
    med = statistics.median(times)
    fracs = [flops / t / 1e9 / p for t, p in zip(times, peaks)]
    return {"median_s": med, "min_s": min(times), "max_s": max(times), "per_s": work / med,
            "gflops": flops / med / 1e9, "frac": statistics.median(fracs), "frac_min": min(fracs),
            "frac_max": max(fracs)}


def bench(preset: str, batch_size: int, precision: str, compile: bool, channels_last: bool, device: str,
          repeats: int, warmup: int, sample_batch: int, peak_n: int, overrides: dict, profile: int = 0) -> dict:
    dev = torch.device(device)
    cfg = get_config(preset, batch_size=batch_size, precision=precision, **overrides)
    trainer = Trainer(cfg, dev, compile=compile, channels_last=channels_last)
    batches = FixedBatches(cfg, trainer.micro, dev, trainer.memory_format)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    # The ceiling of the arithmetic the step really runs: bf16 under autocast; on GPUs cuDNN runs "fp32" convs
    # in TF32 by default, so the TF32 matmul; strict fp32 otherwise.
    ref_name = ("bf16" if trainer.precision in ("bf16", "fp16") and dev.type == "cuda" else
                "tf32" if dev.type == "cuda" and torch.backends.cudnn.allow_tf32 else "fp32")

    def peak(name: str = ref_name, warmup: int = 1, repeats: int = 3) -> float:
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        try:
            return matmul_peak(dev, torch.bfloat16 if name == "bf16" else torch.float32, peak_n, warmup, repeats)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32

    # FLOPs are counted on the eager model (the compiled one runs the same arithmetic).
    counter = Trainer(cfg, dev, channels_last=channels_last) if compile else trainer
    train_flops = flops_of(lambda: counter.train_step(FixedBatches(cfg, counter.micro, dev, counter.memory_format)))
    del counter
    train_times, train_peaks = timed_with_peak(lambda: trainer.train_step(batches), peak, dev, warmup, repeats)
    if profile:  # where the time goes: the top ops of two training iterations
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(2):
                trainer.train_step(batches)
            sync(dev)
        key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=profile, max_name_column_width=60))

    G = trainer.ema.model.eval()
    G_fwd = torch.compile(G) if compile else G
    z = torch.randn(sample_batch, cfg.z_dim, device=dev)
    y = torch.randint(0, cfg.n_classes, (sample_batch,), device=dev)

    def sample():
        with torch.no_grad(), trainer.autocast():
            return G_fwd(z, y)

    sample_flops = flops_of(sample)
    sample_times, sample_peaks = timed_with_peak(sample, peak, dev, warmup, repeats)

    peaks = {name: peak(name, warmup=3, repeats=10) for name in (("fp32", "tf32", "bf16") if dev.type == "cuda" else ("fp32",))}
    train = summary(train_times, 1.0, train_flops, train_peaks)
    samp = summary(sample_times, sample_batch, sample_flops, sample_peaks)
    images_per_iter = cfg.batch_size * cfg.d_steps
    result = {
        "preset": preset, "batch_size": batch_size, "precision": trainer.precision, "compile": compile,
        "channels_last": channels_last, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda"
        else f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
        "train_it_per_s": train["per_s"], "train_s_median": train["median_s"],
        "train_s_min": train["min_s"], "train_s_max": train["max_s"],
        "real_img_per_s": images_per_iter * train["per_s"],
        "sample_img_per_s": samp["per_s"], "sample_batch": sample_batch,
        "train_gflop_per_it": train_flops / 1e9, "sample_gflop_per_batch": sample_flops / 1e9,
        "train_gflops": train["gflops"], "sample_gflops": samp["gflops"],
        "train_frac_peak": train["frac"], "train_frac_peak_min": train["frac_min"], "train_frac_peak_max": train["frac_max"],
        "sample_frac_peak": samp["frac"], "sample_frac_peak_min": samp["frac_min"], "sample_frac_peak_max": samp["frac_max"],
        "peak_ref": ref_name, "peak_gflops": peaks,
        "times_s": {"train": train_times, "sample": sample_times},
        "paired_peak_gflops": {"train": train_peaks, "sample": sample_peaks},
    }
    if dev.type == "cuda":
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated(dev) / 2 ** 30
    else:
        result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return result


def bench_sampler(checkpoint: str, standing_batches: int | None, device: str) -> dict:
    """The sampler page's latencies (seconds), as a user meets them: a page started on an empty statistics cache
    (its warm-up running), then after the warm-up, then a second start over the same weights. 8 images a request."""
    import os
    import tempfile
    import threading
    import urllib.request

    from nanobiggan.lab import serve
    from nanobiggan.lab.generators import find_checkpoint, load_generator
    from nanobiggan.sampling import STANDING_BATCH_SIZE

    ckpt = find_checkpoint(checkpoint)
    result = {"checkpoint": str(ckpt), "device": f"{platform.processor() or platform.machine()} x"
              f"{torch.get_num_threads()} threads", "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}

    def start():
        G, cfg, classes = load_generator(ckpt, device=device)
        sampler = serve.Sampler(G, cfg, classes, standing_batches or cfg.standing_batches, STANDING_BATCH_SIZE)
        up = threading.Event()
        holder = {}
        threading.Thread(target=serve.serve, args=(sampler, 0), kwargs={"ready": lambda srv: (holder.update(
            srv=srv), up.set())}, daemon=True).start()
        up.wait()
        return sampler, holder["srv"], f"http://127.0.0.1:{holder['srv'].server_address[1]}/sheet?n=8&"

    def get(base, **q) -> float:
        t = time.perf_counter()
        with urllib.request.urlopen(base + "&".join(f"{k}={v}" for k, v in q.items()), timeout=3600) as r:
            r.read()
        return time.perf_counter() - t

    before = os.environ.get("NANOBIGGAN_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["NANOBIGGAN_CACHE"] = cache  # an empty statistics cache: the first start a new user sees
        t0 = time.perf_counter()
        sampler, srv, base = start()
        result["first_view_s"] = get(base, **{"class": 0, "truncation": 0.5, "seed": 0})  # the page's opening view
        result["while_warming"] = {
            "class_change_s": [get(base, **{"class": c, "truncation": 0.5, "seed": 0}) for c in range(1, 6)],
            "seed_change_s": [get(base, **{"class": 0, "truncation": 0.5, "seed": s}) for s in range(1, 6)],
            "unprepared_truncation_s": get(base, **{"class": 0, "truncation": 1.5, "seed": 0})}
        sampler.settle(timeout=7200)
        result["warm_up_s"] = time.perf_counter() - t0
        result["after_warm_up"] = {"every_truncation_new_seed_s": [
            get(base, **{"class": i % len(sampler.classes), "truncation": "none" if t is None else t, "seed": 100 + i})
            for i, t in enumerate(serve.slider())]}
        result["computed_on_request"] = sampler.computed
        srv.shutdown()
        sampler.close()
        t0 = time.perf_counter()
        sampler, srv, base = start()
        result["second_start"] = {"s": time.perf_counter() - t0, "ready": sampler.ready(), "of": len(serve.slider()),
                                  "first_view_s": get(base, **{"class": 0, "truncation": 0.5, "seed": 0})}
        srv.shutdown()
        sampler.close()
    if before is None:
        os.environ.pop("NANOBIGGAN_CACHE")
    else:
        os.environ["NANOBIGGAN_CACHE"] = before
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cifar10")
    p.add_argument("--batch-size", default="64", help="an integer, or max: the largest multiple of 8 that trains "
                   "without running out of memory (found by doubling and bisection)")
    p.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--compile", action="store_true")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="NHWC memory format, the trainer's default (--no-channels-last: NCHW)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--peak-n", type=int, default=None, help="matmul size for the peak (default 4096 CPU, 8192 GPU)")
    p.add_argument("--d-steps", type=int, default=None, help="override the preset's D steps per G step")
    p.add_argument("--no-tf32", action="store_true", help="strict fp32 convs/matmuls on GPUs (torch's default "
                   "lets cuDNN run fp32 convs in TF32)")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="print torch.profiler's top N ops of 2 steps")
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument("--sampler", default=None, metavar="CHECKPOINT", help="measure the sampler page (sample.py "
                   "--serve) over this checkpoint or shipped generator instead of training")
    p.add_argument("--standing-batches", type=int, default=None, help="--sampler: the checkpoint's own by default")
    args = p.parse_args(argv)
    if args.sampler:
        r = bench_sampler(args.sampler, args.standing_batches, args.device)
        print(json.dumps(r, indent=1))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(r, fh, indent=2)
        return r
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    peak_n = args.peak_n or (8192 if args.device.startswith("cuda") else 4096)
    overrides = {"d_steps": args.d_steps} if args.d_steps else {}
    if args.batch_size == "max" and not args.device.startswith("cuda"):
        sys.exit("error: --batch-size max needs a CUDA device (on a CPU the OS kills the process instead of "
                 "raising out-of-memory); pass an integer")
    if args.batch_size == "max":
        args.batch_size = largest_batch(training_fits(args.preset, args.precision, args.compile, args.channels_last,
                                                      args.device, overrides))
        print(f"largest batch that fits: {args.batch_size}")
        if args.batch_size == 0:
            sys.exit("error: not even a batch of 8 fits in memory on this device")
    else:
        try:
            args.batch_size = int(args.batch_size)
        except ValueError:
            sys.exit(f"error: --batch-size must be an integer or max, got {args.batch_size!r}")
    r = bench(args.preset, args.batch_size, args.precision, args.compile, args.channels_last, args.device,
              args.repeats, args.warmup, args.sample_batch, peak_n, overrides, args.profile)
    mem = f"{r['peak_mem_gib']:.1f} GiB GPU" if "peak_mem_gib" in r else f"{r['peak_rss_gib']:.1f} GiB RSS"
    print(f"{r['preset']} batch {r['batch_size']} {r['precision']} compile={r['compile']} "
          f"channels_last={r['channels_last']} on {r['device']} (torch {r['torch']}, {r['date']})")
    print(f"  train   {r['train_it_per_s']:8.3f} it/s  (median {r['train_s_median'] * 1e3:.0f} ms, "
          f"min {r['train_s_min'] * 1e3:.0f}, max {r['train_s_max'] * 1e3:.0f})  {r['real_img_per_s']:8.1f} real img/s")
    frac = "{:5.1f}% of peak ({:.1f}-{:.1f})".format
    print(f"  train   {r['train_gflop_per_it']:8.1f} GFLOP/it  {r['train_gflops']:8.1f} GFLOP/s  " + frac(
          *(100 * r[f"train_frac_peak{k}"] for k in ("", "_min", "_max"))))
    print(f"  sample  {r['sample_img_per_s']:8.1f} img/s  {r['sample_gflops']:8.1f} GFLOP/s  " + frac(
          *(100 * r[f"sample_frac_peak{k}"] for k in ("", "_min", "_max"))))
    print(f"  peak    " + ", ".join(f"{k} matmul {v:.0f} GFLOP/s" for k, v in r["peak_gflops"].items())
          + f" (each repeat's % is against the {r['peak_ref']} peak measured right after it);  memory {mem}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=2)
    return r


if __name__ == "__main__":
    main()
