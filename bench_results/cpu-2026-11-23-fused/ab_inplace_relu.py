# In-place vs out-of-place ReLU in G and D (identical values), alternating in one trainer. python ab_inplace_relu.py N_PAIRS
# 2026-11-23, 2-core AVX2 VM, 5 pairs (s/it): in-place 41.3 43.6 43.9 39.5 42.9, out-of-place 46.1 43.7 41.7 43.4 42.0;
# sys time per iteration 6.4 vs 7.7 s (fewer fresh allocations). Median 42.9 vs 43.4 s: within this VM's noise.
import sys, time, statistics, types, torch, torch.nn.functional as F
from pathlib import Path; ROOT = Path(__file__).resolve().parents[2]; sys.path.insert(0, str(ROOT))
import nanobiggan.generator as gen, nanobiggan.discriminator as dis
from nanobiggan import get_config
from nanobiggan.trainer import Trainer
import importlib.util, resource
spec=importlib.util.spec_from_file_location("bench",ROOT / "bench.py"); bench=importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
class NoInplace(types.ModuleType):
    def __getattr__(self, k): return getattr(F, k)
    @staticmethod
    def relu(x, inplace=False): return F.relu(x)
off=NoInplace("F")
def use(mod): gen.F = dis.F = mod
cfg=get_config("cifar10",batch_size=64); dev=torch.device("cpu")
tr=Trainer(cfg,dev); bt=bench.FixedBatches(cfg,tr.micro,dev,tr.memory_format)
res={"inplace":[], "outofplace":[]}; sysr={"inplace":[], "outofplace":[]}
for name,m in (("inplace",F),("outofplace",off)): use(m); tr.train_step(bt)
for r in range(int(sys.argv[1])):
    for name,m in ((("inplace",F),("outofplace",off)) if r%2==0 else (("outofplace",off),("inplace",F))):
        use(m); r0=resource.getrusage(resource.RUSAGE_SELF); t=time.perf_counter(); tr.train_step(bt)
        res[name].append(time.perf_counter()-t); sysr[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_stime-r0.ru_stime)
    print(r, {k:[round(x,1) for x in v] for k,v in res.items()}, {k:round(sum(v)/len(v),1) for k,v in sysr.items()}, flush=True)
print("median inplace", statistics.median(res["inplace"]), "outofplace", statistics.median(res["outofplace"]),
      "paired", [round(o/i,3) for i,o in zip(res["inplace"],res["outofplace"])])
