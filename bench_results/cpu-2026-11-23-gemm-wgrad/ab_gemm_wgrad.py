# The GEMM weight gradient (gemm_wgrad.py, beside this file) vs oneDNN's own, alternating in one trainer
# (identical values). python bench_results/cpu-2026-11-23-gemm-wgrad/ab_gemm_wgrad.py N_PAIRS [out.json]
# Result, 2026-11-23, 2-core AVX2 VM, 6 pairs: median 37.0 (GEMM) vs 37.2 s (oneDNN) per iteration: no gain.
# Wall time and process CPU time (user + sys) per iteration: on this shared VM, CPU time is less exposed to
# the host's steal time than wall time.
import sys, time, statistics, json, resource, torch
from pathlib import Path; ROOT = Path(__file__).resolve().parents[2]; sys.path.insert(0, str(ROOT))
import importlib.util
sys.path.insert(0, str(Path(__file__).resolve().parent))
import gemm_wgrad
from nanobiggan import get_config
from nanobiggan.spectral_norm import SNConv2d
from nanobiggan.trainer import Trainer
spec = importlib.util.spec_from_file_location("bench", ROOT / "bench.py"); bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
native_forward = SNConv2d.forward
def gemm_forward(self, x):
    return gemm_wgrad.conv2d(x, self.sn_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)
def use(gemm): SNConv2d.forward = gemm_forward if gemm else native_forward
def cpu(): r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
cfg = get_config("cifar10", batch_size=64); dev = torch.device("cpu")
tr = Trainer(cfg, dev); bt = bench.FixedBatches(cfg, tr.micro, dev, tr.memory_format)
wall, cput = {"gemm": [], "onednn": []}, {"gemm": [], "onednn": []}
for name in wall: use(name == "gemm"); tr.train_step(bt)  # warm both
for r in range(int(sys.argv[1])):
    for name in (("gemm", "onednn") if r % 2 == 0 else ("onednn", "gemm")):
        use(name == "gemm"); c, t = cpu(), time.perf_counter(); tr.train_step(bt)
        wall[name].append(time.perf_counter() - t); cput[name].append(cpu() - c)
    print(r, "wall", {k: [round(x, 1) for x in v] for k, v in wall.items()},
          "cpu", {k: [round(x, 1) for x in v] for k, v in cput.items()}, flush=True)
out = {"wall_s": wall, "cpu_s": cput,
       "median_wall": {k: statistics.median(v) for k, v in wall.items()},
       "median_cpu": {k: statistics.median(v) for k, v in cput.items()},
       "paired_wall_speedup": [o / g for g, o in zip(wall["gemm"], wall["onednn"])],
       "paired_cpu_speedup": [o / g for g, o in zip(cput["gemm"], cput["onednn"])]}
print(json.dumps(out, indent=1))
if len(sys.argv) > 2: Path(sys.argv[2]).write_text(json.dumps(out, indent=1))
