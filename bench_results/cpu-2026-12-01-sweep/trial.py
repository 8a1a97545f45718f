"""One sweep trial: train a preset (+ overrides) for a fixed budget of process CPU time and keep the EMA G at
regular CPU-time marks, so configurations are compared at equal compute even on a shared machine.

    python bench_results/cpu-2026-12-01-sweep/trial.py OUT_DIR --preset fashion-mnist --budget-min 12 \
        --marks 6 --threads 1 [--set g_ch=16 d_ch=32 ...]

Writes OUT_DIR/mark_K.pt (checkpoints train.py's tools read: sample.py, nanobiggan.evaluate) and
OUT_DIR/trial.json (per mark: step, CPU seconds, wall seconds, losses). Budget = CPU seconds of this process
(all its threads), which on an otherwise idle machine with `--threads 2` equals 2 x wall-clock.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from nanobiggan.config import get_config  # noqa: E402
from nanobiggan.lab.checkpoint import save_checkpoint  # noqa: E402
from nanobiggan.lab.datasets import batches_for, get_dataset  # noqa: E402
from nanobiggan.trainer import Trainer  # noqa: E402


def value(s: str):
    for kind in (int, float):
        try:
            return kind(s)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(s.lower(), s)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--preset", required=True)
    p.add_argument("--budget-min", type=float, required=True, help="process CPU minutes")
    p.add_argument("--marks", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default="")
    p.add_argument("--set", nargs="*", default=[], help="field=value overrides")
    p.add_argument("--shared-init", choices=("ortho", "normal"), default="ortho",
                   help="normal: G's shared class embedding N(0, 1) (nn.Embedding's default) instead of orthogonal")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    overrides = dict(kv.split("=", 1) for kv in a.set)
    cfg = get_config(a.preset, **{k: value(v) for k, v in overrides.items()}, out_dir=a.out,
                     **({"data_dir": a.data_dir} if a.data_dir else {}))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = get_dataset(cfg.dataset, cfg.data_dir or None, cfg.resolution, hflip=cfg.hflip)
    trainer = Trainer(cfg, "cpu")
    if a.shared_init == "normal":
        with torch.no_grad():
            torch.nn.init.normal_(trainer.G.shared.weight)
            trainer.ema.model.shared.weight.copy_(trainer.G.shared.weight)
    batches = batches_for(trainer, data)
    budget, marks, records = a.budget_min * 60, [], []
    c0, w0 = time.process_time(), time.perf_counter()
    next_mark, k, losses = budget / a.marks, 1, []
    while True:
        stats = trainer.train_step(batches)
        losses.append({k: v.item() for k, v in stats.items()})  # 0-d tensors on the device
        cpu = time.process_time() - c0
        if cpu >= next_mark:
            rec = {"mark": k, "step": trainer.step, "cpu_s": cpu, "wall_s": time.perf_counter() - w0,
                   **{key: sum(s[key] for s in losses) / len(losses) for key in losses[0]}}
            records.append(rec)
            losses = []
            save_checkpoint({**trainer.state_dict(batches), "classes": data.classes}, out / f"mark_{k}.pt")
            (out / "trial.json").write_text(json.dumps({"preset": a.preset, "overrides": overrides,
                                                        "threads": a.threads, "shared_init": a.shared_init, "budget_min": a.budget_min,
                                                        "marks": records}, indent=1))
            print(json.dumps(rec), flush=True)
            if k == a.marks:
                break
            k, next_mark = k + 1, next_mark + budget / a.marks


if __name__ == "__main__":
    main()
