# The same trainer, alternating fused (nanobiggan.resample) and unfused (upsample->conv, conv->avgpool) ops
# per training iteration, so both see the same machine. Run from anywhere: python ab_fused_vs_unfused.py
import sys, time, statistics, torch, torch.nn.functional as F
from pathlib import Path; ROOT = Path(__file__).resolve().parents[2]; sys.path.insert(0, str(ROOT))
import nanobiggan.resample as rs  # the blocks call rs.upsample_conv / rs.conv_downsample through upsample_then_conv, conv_then_downsample
from nanobiggan import get_config
from nanobiggan.trainer import Trainer
import importlib.util
spec=importlib.util.spec_from_file_location("bench",ROOT / "bench.py"); bench=importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
fused=(rs.upsample_conv, rs.conv_downsample)
unf=(lambda x,w,b: F.conv2d(F.interpolate(x,scale_factor=2,mode="nearest"),w,b,padding=1),
     lambda x,w,b: F.avg_pool2d(F.conv2d(x,w,b,padding=1),2))
def use(p): rs.upsample_conv, rs.conv_downsample = p
cfg=get_config("cifar10",batch_size=64)
dev=torch.device("cpu")
tr=Trainer(cfg,dev); bt=bench.FixedBatches(cfg,tr.micro,dev,tr.memory_format)
res={"fused":[], "unfused":[], "peak":[]}
for name,p in (("fused",fused),("unfused",unf)):
    use(p); tr.train_step(bt)
for r in range(4):
    for name,p in (("fused",fused),("unfused",unf)):
        use(p); t=time.perf_counter(); tr.train_step(bt); res[name].append(time.perf_counter()-t)
    res["peak"].append(bench.matmul_peak(dev,torch.float32,4096,1,3))
    print(r, {k:[round(x,1) for x in v] for k,v in res.items()}, flush=True)
print("median fused", statistics.median(res["fused"]), "unfused", statistics.median(res["unfused"]),
      "ratio of medians", statistics.median(res["unfused"])/statistics.median(res["fused"]),
      "paired ratios", [round(u/f,3) for u,f in zip(res["unfused"],res["fused"])])
