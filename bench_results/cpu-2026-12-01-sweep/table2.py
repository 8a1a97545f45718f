"""The second CIFAR-10 sweep's table: per trial, its overrides, CPU-s per step, steps in the budget, and FID /
class accuracy of the last mark (eval.json written by cifar10_sweep2.sh). Writes results2.json and prints a
Markdown table.

    python bench_results/cpu-2026-12-01-sweep/table2.py runs/sweep2
"""
import json
import sys
from pathlib import Path

from nanobiggan.config import get_config
from nanobiggan.lab.presets import count_params

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from trial import value  # noqa: E402  (the same parsing of field=value as the trials)


def main(root: Path):
    rows = []
    for trial in sorted(p for p in root.iterdir() if (p / "trial.json").is_file()):
        t = json.loads((trial / "trial.json").read_text())
        last = t["marks"][-1]
        ev = json.loads((trial / "eval.json").read_text())["results"][0] if (trial / "eval.json").is_file() else {}
        over = t["overrides"]
        g, d = count_params(get_config(t["preset"], **{k: value(v) for k, v in over.items()}))
        rows.append({"trial": trial.name, "overrides": over, "G_params": g, "D_params": d,
                     "cpu_min": last["cpu_s"] / 60, "steps": last["step"], "cpu_s_per_step": last["cpu_s"] / last["step"],
                     "fid_n": ev.get("n"), "fid": ev.get("fid"), "kid": ev.get("kid"), "class_acc": ev.get("class_acc"),
                     "d_loss_last_mark": last["d_loss"]})
    (HERE / "results2.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("| trial | overrides (on cifar10-tiny + flips) | G / D params | CPU-s/step | steps in 30 CPU-min | "
          "FID (n) | class acc | D loss |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        fid = f"{r['fid']:.1f} ({r['fid_n']})" if r["fid"] is not None else "-"
        acc = f"{r['class_acc']:.3f}" if r["class_acc"] is not None else "-"
        over = " ".join(f"{k}={v}" for k, v in r["overrides"].items() if k != "hflip") or "-"
        print(f"| {r['trial']} | {over} | {r['G_params'] / 1e6:.2f}M / {r['D_params'] / 1e6:.2f}M | "
              f"{r['cpu_s_per_step']:.2f} | {r['steps']} | {fid} | {acc} | {r['d_loss_last_mark']:.2f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
