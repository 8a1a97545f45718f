"""Learning curve of a finished run: FID and class accuracy of every kept checkpoint, vs step and vs minutes.

    python bench_results/cifar10-cpu-recipe/curve.py runs/cifar10-cpu --n 2000 [--final-n 10000] [--every 2]

Each RUN/step_*.pt is scored by `python -m nanobiggan.evaluate` (the sampling protocol: EMA weights, standing
statistics, no truncation; FID against a fixed 10k CIFAR-10 train subset, class accuracy by the shipped
classifier), one subprocess per checkpoint, its JSON kept beside the curve. The last checkpoint is also scored
at --final-n (the number quoted in the README; FID falls with n, so the curve keeps one n throughout).
--every K scores every K-th checkpoint, --at S1 S2 ... those steps (and always the last): each point costs
~5 CPU-minutes of Inception at n = 2k. The curve holds every step scored at --n so far (its eval_*.json files),
also those whose checkpoints the run has since pruned. Minutes come from the run's log.jsonl (`wall_s`: seconds since the
training loop began, summed over resumed segments). Writes OUT/curve.json and OUT/curve.png (OUT defaults to this folder).
"""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def wall_minutes(run: Path) -> dict[int, float]:
    """Training minutes at each logged step, summed over the run's segments (--resume restarts `wall_s`)."""
    minutes, offset, last = {}, 0.0, 0.0
    for line in (run / "log.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "wall_s" in r:
            if r["wall_s"] < last:  # a resumed segment: its clock restarts at 0, so add the time before it
                offset += last
            last = r["wall_s"]
            minutes[r["step"]] = (offset + r["wall_s"]) / 60
    return minutes


def score(ckpt: Path, n: int, out: Path) -> dict:
    js = out / f"eval_{ckpt.stem}_n{n}.json"
    if not js.exists():  # resumable: a scored checkpoint is not scored again
        cmd = [sys.executable, "-m", "nanobiggan.evaluate", "--checkpoint", str(ckpt), "--n", str(n),
               "--ref-n", "10000", "--min-samples", str(min(n, 2048)), "--json", str(js)]
        subprocess.run(cmd, check=True)
    return json.loads(js.read_text())["results"][0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("run", type=Path)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--final-n", type=int, default=10000)
    p.add_argument("--every", type=int, default=1, help="score every K-th checkpoint (the last always)")
    p.add_argument("--at", type=int, nargs="+", default=None, help="score these steps only (the last always)")
    p.add_argument("--out", type=Path, default=HERE)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    ckpts = sorted(a.run.glob("step_*.pt"), key=lambda c: int(re.findall(r"\d+", c.stem)[0]))
    if not ckpts:
        sys.exit(f"error: no step_*.pt in {a.run}")
    step_of = lambda c: int(re.findall(r"\d+", c.stem)[0])  # noqa: E731
    ckpts = [c for i, c in enumerate(ckpts) if c == ckpts[-1] or
             (step_of(c) in a.at if a.at else (i + 1) % a.every == 0)]
    minutes = wall_minutes(a.run)
    for c in ckpts:
        score(c, a.n, a.out)
    # Every step scored at this n so far, also those whose checkpoints the run has since pruned (keep_last).
    points = []
    for js in sorted(a.out.glob(f"eval_step_*_n{a.n}.json"), key=lambda p: int(re.findall(r"\d+", p.stem)[0])):
        step, r = int(re.findall(r"\d+", js.stem)[0]), json.loads(js.read_text())["results"][0]
        points.append({"step": step, "minutes": minutes.get(step), "n": a.n, "fid": r.get("fid"),
                       "kid": r.get("kid"), "class_acc": r.get("class_acc"),
                       "class_acc_per_class": r.get("class_acc_per_class")})
        print(json.dumps(points[-1]), flush=True)
    final = score(ckpts[-1], a.final_n, a.out) if a.final_n else None
    (a.out / "curve.json").write_text(json.dumps({"run": str(a.run), "points": points, "final": final}, indent=1) + "\n")
    plot(points, a.out / "curve.png")


def plot(points, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, x, label in ((axes[0], "step", "G step"), (axes[1], "minutes", "minutes of training (2 CPU cores)")):
        pts = [q for q in points if q[x] is not None]
        ax.plot([q[x] for q in pts], [q["fid"] for q in pts], "o-", color="C0")
        ax.set_xlabel(label)
        ax.set_ylabel(f"FID (n={points[0]['n']})", color="C0")
        tw = ax.twinx()
        tw.plot([q[x] for q in pts], [q["class_acc"] for q in pts], "s--", color="C1")
        tw.set_ylabel("class accuracy", color="C1")
        tw.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(path)


if __name__ == "__main__":
    main()
