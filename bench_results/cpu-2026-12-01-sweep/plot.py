"""results.json -> sweep.png: class accuracy vs process CPU minutes per trial (python plot.py, from this folder)."""
import json
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = Path(__file__).parent
rows = json.loads((here / "results.json").read_text())["rows"]
fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
for ax, ds in zip(axes, ("fashion-mnist", "cifar10")):
    names = dict.fromkeys(r["trial"] for r in rows if r["dataset"] == ds and r["cpu_min"] is not None)
    for name in names:
        pts = sorted((r["cpu_min"], r["class_acc"], r["config"]) for r in rows if r["trial"] == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{name}: {pts[0][2]}")
    ax.set_xlabel("process CPU minutes (1 thread each)")
    ax.set_ylabel("class accuracy of EMA samples (n=1000)")
    ax.set_title(ds)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14))
fig.suptitle("Equal-CPU-time sweep on a 2-core CPU VM, 2026-12-01 (bench_results/cpu-2026-12-01-sweep)", fontsize=9)
fig.tight_layout()
fig.savefig(here / "sweep.png", dpi=110)
