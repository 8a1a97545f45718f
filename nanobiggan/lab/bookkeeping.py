"""What train.py does around the training step, on the main process: the JSONL log with σ0 of every layer,
the collapse watch (BigGAN §4) that keeps the checkpoint from before a collapse, sample sheets, evaluation of
the EMA generator (FID, class accuracy) and checkpoints. train.py's loop is `train_step`, then `after_step`,
inside `with Bookkeeping(...)`.

It also stops a run that cannot go on well, with one line (`RunStopped`) and the last good checkpoint kept: losses
or weights that are no longer finite (a NaN run is never saved over last.pt), a checkpoint that cannot be written
(a full disk), and Ctrl-C, which finishes the step, saves it and names the file.

Tutorial: tutorials/06_training_cifar10.md, tutorials/12_instability.md
"""
from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from nanobiggan import metrics
from nanobiggan.collapse import CollapseDetector, sigma0
from nanobiggan.lab import inception, protocol
from nanobiggan.lab.checkpoint import CheckpointManager
from nanobiggan.lab.classifier import check_classifier, load_classifier
from nanobiggan.lab.images import save_grid
from nanobiggan.lab.monitor import RunLog, TensorBoardLog, plot_run
from nanobiggan.sampling import class_sheet_inputs, generate, prepare_for_sampling

SHEET_STANDING_BATCHES = 10  # a sheet is a picture of progress, not a score: 10 of the protocol's batches of 64


class RunStopped(Exception):
    """The run stopped before its last step: `str()` is the one line to print, `status` the exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class Bookkeeping:
    """The bookkeeping of one run (`cfg.out_dir`): `with Bookkeeping(...) as books:` around the loop (it owns
    Ctrl-C there), `after_step(stats, batches)` after every G step, `close()` after the last. On processes other
    than the main one it only watches for NaN and Ctrl-C. `state` is a checkpoint being resumed."""

    def __init__(self, trainer, classes, main_process: bool = True, state: dict | None = None):
        self.trainer, self.classes, self.main, cfg = trainer, classes, main_process, trainer.cfg
        self.out = Path(cfg.out_dir)
        self.manager = CheckpointManager(self.out, keep_last=cfg.keep_last) if main_process else None
        self.log = RunLog(self.out / "log.jsonl") if main_process else None
        self.tb = TensorBoardLog(self.out, state["step"] if state else None) if main_process and cfg.tensorboard \
            else None  # --tensorboard: the same records, and the sheets, as TensorBoard events
        if self.log and state and (dropped := self.log.drop_after(state["step"])):
            tqdm.write(f"log.jsonl: dropped {dropped} record(s) past step {state['step']}, from the run after "
                       f"that checkpoint (this one does those steps again)")
        self.detector = CollapseDetector()
        if state and state.get("collapse"):
            self.detector.load_state_dict(state["collapse"])
        self.evaluator = TrainingEval(cfg, trainer.device, log=tqdm.write) if main_process and cfg.eval_every else None
        self.bar = tqdm(total=cfg.steps, initial=trainer.step, disable=not main_process, dynamic_ncols=True)
        # The newest checkpoint on disk, the one a collapse warning keeps as pre_collapse.pt. A resumed run
        # starts with the checkpoint it resumed from (when it is in this run directory), so a collapse in
        # its first steps (say, after raising the learning rates) still keeps the step before it.
        resumed = state["step"] if state else None
        self.last_saved = resumed if self.manager and resumed in self.manager.steps() else None
        self.t0, self.step0 = time.perf_counter(), trainer.step
        self.last_good = state["step"] if state else None  # the step last.pt holds
        self.t_start = self.t0  # the log's wall_s: seconds since this process's loop began (curves vs minutes)
        self.interrupted, self._sigint = False, None
        self._bad, self._names = None, []  # the first non-finite step and its statistics, on the device (_watch)

    def __enter__(self) -> Bookkeeping:
        if threading.current_thread() is threading.main_thread():  # only there can a signal handler be set
            self._sigint = signal.signal(signal.SIGINT, self._on_ctrl_c)
        return self

    def __exit__(self, *exc) -> None:
        if self._sigint is not None:
            signal.signal(signal.SIGINT, self._sigint)
        self.bar.close()
        if self.tb is not None:
            self.tb.close()

    def _on_ctrl_c(self, signum, frame) -> None:
        if self.interrupted:  # the second Ctrl-C: stop at once; atomic writes leave every file whole
            raise KeyboardInterrupt
        self.interrupted = True
        tqdm.write("Ctrl-C: stopping after this step, with a checkpoint (Ctrl-C again quits at once, unsaved)")

    def after_step(self, stats: dict, batches) -> None:
        """After every G step. `stats` are the step's 0-d tensors on the device (trainer.train_step): they are
        watched there for NaN/inf without a host sync, and read on logging, saving and evaluation steps only."""
        cfg, step = self.trainer.cfg, self.trainer.step
        self._watch(stats)
        evaluate = self.main and self.evaluator is not None and step % cfg.eval_every == 0
        interrupted = self.interrupted  # read once: a Ctrl-C after this line stops the run after the next step
        if self._due(cfg.log_every) or self._due(cfg.ckpt_every) or evaluate or interrupted:
            self._stop_if_diverged()  # every process, at the same steps: under torchrun all of them stop
        if not self.main:
            if interrupted:
                raise RunStopped(f"interrupted (Ctrl-C) at step {step}", status=130)
            return
        self.bar.update(1)
        if self._due(cfg.log_every):
            self._log({k: float(v) for k, v in stats.items()})  # the host sync, once per logging step
        if self._due(cfg.sample_every):
            self._sheet(self.out / "samples" / f"step_{step:08d}.png")
        fid = self._evaluate() if evaluate else None
        if self._due(cfg.ckpt_every) or fid is not None or interrupted:  # evaluated weights are saved too
            self._save(batches, fid)
        if interrupted:
            raise RunStopped(f"interrupted (Ctrl-C) at step {step}: saved {self.out / f'step_{step:08d}.pt'} "
                             f"(= last.pt); continue with: python train.py --resume {self.out}", status=130)

    def _watch(self, stats: dict) -> None:
        """Keep, on the device, the first step whose statistics are not all finite, and those statistics."""
        values = torch.stack([torch.as_tensor(v, dtype=torch.float32).reshape(()) for v in stats.values()])
        if self._bad is None:
            self._bad = (torch.full((), -1, dtype=torch.int64, device=values.device), torch.zeros_like(values))
        first = (self._bad[0] < 0) & ~values.isfinite().all()
        self._bad = (torch.where(first, self.trainer.step, self._bad[0]), torch.where(first, values, self._bad[1]))
        self._names = list(stats)

    def _stop_if_diverged(self) -> None:
        if self._bad is not None and (step := int(self._bad[0])) >= 0:
            values = ", ".join(f"{k}={v}" for k, v in zip(self._names, self._bad[1].tolist()))
            raise self._diverged(values, step)

    def close(self) -> None:
        if self.main:
            if self.log.path.is_file():
                plot_run(self.log.path, self.out / "plots")
            print(f"done: {self.trainer.step} steps; checkpoints, samples and plots in {self.out}")

    def _save(self, batches, fid: float | None) -> None:
        """A checkpoint (best.pt too if `fid` is the best), unless a weight is not finite; a write that fails
        (a full disk) stops the run in one line, the previous checkpoint intact (atomic writes)."""
        tr, step = self.trainer, self.trainer.step
        broken = [name for name, net in (("G", tr.G), ("D", tr.D), ("the EMA of G", tr.ema.model))
                  if not all(t.isfinite().all() for t in net.state_dict().values() if t.is_floating_point())]
        if broken:
            raise self._diverged(f"non-finite weights in {', '.join(broken)}")
        try:
            self.manager.save({**tr.state_dict(batches), "collapse": self.detector.state_dict(),
                               "classes": self.classes}, step, metric=fid)
        except OSError as e:
            raise RunStopped(f"error: cannot save step {step}'s checkpoint in {self.out} ({e.strerror or e}); "
                             f"{self._kept()}. Free some space, then continue with: python train.py --resume "
                             f"{self.out}") from None
        self.last_saved = self.last_good = step

    def _kept(self) -> str:
        return f"last.pt still holds step {self.last_good}" if self.last_good is not None else \
            "no checkpoint was written yet"

    def _diverged(self, what: str, step: int | None = None) -> RunStopped:
        cfg, step = self.trainer.cfg, self.trainer.step if step is None else step
        lower = f"--g-lr {cfg.g_lr / 2:g} --d-lr {cfg.d_lr / 2:g}"
        then = (f"{self._kept()}, the last finite checkpoint; continue from it with smaller learning rates: "
                f"python train.py --resume {self.out} {lower}") if self.last_good is not None else \
            f"no checkpoint was written; start again with smaller learning rates ({lower}) and --overwrite"
        return RunStopped(f"error: the run diverged at step {step} ({what}) and stopped without saving: {then}")

    def _due(self, every: int) -> bool:
        """Every `every` G steps, and at the last one."""
        return self.trainer.step % every == 0 or self.trainer.step == self.trainer.cfg.steps

    def _log(self, stats: dict) -> None:
        """One record: losses, throughput, learning rates, σ0 of every layer (§4), collapse warnings."""
        tr, step = self.trainer, self.trainer.step
        images = (step - self.step0) * tr.cfg.batch_size * tr.cfg.d_steps
        record = {"step": step, **stats, "img_per_s": images / max(time.perf_counter() - self.t0, 1e-9),
                  "wall_s": time.perf_counter() - self.t_start,
                  "g_lr": tr.opt_g.param_groups[0]["lr"], "d_lr": tr.opt_d.param_groups[0]["lr"]}
        sig = {f"G.{k}": v for k, v in sigma0(tr.G).items()} | {f"D.{k}": v for k, v in sigma0(tr.D).items()}
        record.update({f"sigma0/{k}": v for k, v in sig.items()})
        for warning in self.detector.update(step, stats, sig):
            record.setdefault("warnings", []).append(warning)
            tqdm.write("COLLAPSE WARNING: " + warning)
            if self.last_saved is not None and not (self.out / "pre_collapse.pt").exists():
                self.manager.protect(self.last_saved, "pre_collapse")
                tqdm.write(f"kept the last checkpoint before it safe: {self.out / 'pre_collapse.pt'}")
        self.log.write(record)
        if self.tb is not None:
            self.tb.write(record, self.classes)
        self.bar.set_postfix(d=f"{stats['d_loss']:.3f}", g=f"{stats['g_loss']:.3f}",
                             img_s=f"{record['img_per_s']:.0f}")
        self.t0, self.step0 = time.perf_counter(), step

    def _sheet(self, path: Path) -> None:
        """A fixed-z sheet, one row per class, of the EMA generator under the sampling protocol. It draws from its
        own generators: a sheet never changes the training run's random stream (bit-exact resume)."""
        cfg, device = self.trainer.cfg, self.trainer.device
        G = prepare_for_sampling(self.trainer.ema.model, n_batches=SHEET_STANDING_BATCHES)
        z, y = class_sheet_inputs(cfg.z_dim, cfg.n_classes, per_class=10, seed=cfg.seed, device=device)
        try:
            save_grid(generate(G, z, y), path, nrow=10)
            if self.tb is not None:
                self.tb.image("samples", path, self.trainer.step)
        except ValueError as e:  # NaN images from a diverged G: said, and the run (and its log) goes on
            tqdm.write(f"no sample sheet at step {self.trainer.step}: {e}")

    def _evaluate(self) -> float | None:
        """FID (None without it) and class accuracy of the EMA G, logged; its time is not training time."""
        t = time.perf_counter()
        scores = self.evaluator(self.trainer.ema.model)  # fid, class_acc (+ their n); a missing one was said once
        self.t0 += time.perf_counter() - t  # img/s counts training time only
        if scores:
            self.log.write({"step": self.trainer.step, **scores})
            if self.tb is not None:
                self.tb.write({"step": self.trainer.step, **scores}, self.classes)
        return scores.get("fid")


class TrainingEval:
    """train.py --eval-every: FID and class accuracy (lab/classifier.py) of the EMA G under the same
    protocol, from the same n = cfg.eval_n samples, z and labels fixed by cfg.seed (so successive scores
    differ only by the weights). Draws nothing from the global RNG.

    Calling it returns a dict to log: {"fid", "fid_n"} when an Inception network (and the reference data)
    is available, {"class_acc", "class_acc_n", "class_acc_per_class"} when a classifier is shipped for
    cfg.dataset; either missing is said once, on the first call, and training goes on. eval_n below 2048 is
    accepted here (a tracking curve, FID biased upward) and said once.
    """

    def __init__(self, cfg, device, cache_dir=None, inception_file=None, log=print):
        self.cfg, self.device, self.cache_dir, self.log = cfg, device, cache_dir, log
        self.inception_file = inception_file
        self.min_samples = min(metrics.MIN_SAMPLES, cfg.eval_n)
        self.net = self.ref = self.classifier = None
        self.started = False

    def _start(self) -> None:
        self.started = True
        try:
            self.net = inception.load_inception(self.inception_file, self.device)
            self.ref = protocol.reference(self.cfg, self.net, self.cache_dir, min_samples=self.min_samples)
        except (FileNotFoundError, ValueError) as e:
            self.net = None
            self.log(f"WARNING: --eval-every {self.cfg.eval_every}: training continues WITHOUT FID: {e}")
        if self.net is not None and self.cfg.eval_n < metrics.MIN_SAMPLES:
            self.log(f"note: eval_n={self.cfg.eval_n} < {metrics.MIN_SAMPLES}: the logged FID is biased "
                     f"upward; use it to track this run, not to compare with other numbers")
        try:
            self.classifier = load_classifier(self.cfg.dataset, self.device)
            check_classifier(self.classifier, self.cfg)
        except (FileNotFoundError, ValueError) as e:
            self.classifier = None
            self.log(f"note: --eval-every {self.cfg.eval_every}: no class accuracy: {e}")

    def __call__(self, G) -> dict:
        if not self.started:
            self._start()
        if self.net is None and self.classifier is None:
            return {}
        t = time.perf_counter()
        try:
            r = protocol.evaluate(G, self.net, self.ref, self.cfg.eval_n, seed=self.cfg.seed,
                         standing_batches=self.cfg.standing_batches, min_samples=self.min_samples, kid=False,
                         classifier=self.classifier)
        except ValueError as e:  # e.g. NaN images from a diverged G: a NaN FID is never the best checkpoint
            self.log(f"evaluation failed: {e}")
            return {"fid": float("nan"), "fid_n": self.cfg.eval_n} if self.net is not None else {}
        out, said = {}, []
        if self.net is not None:
            out.update(fid=r["fid"], fid_n=r["n"])
            said.append(f"FID {r['fid']:.2f} (n={r['n']} vs {self.ref.name} n={self.ref.n})")
        if self.classifier is not None:
            out.update({k: r[k] for k in ("class_acc", "class_acc_n", "class_acc_per_class")})
            said.append(f"class accuracy {r['class_acc']:.3f} (n={r['class_acc_n']})")
        self.log(f"{', '.join(said)} in {time.perf_counter() - t:.0f} s")
        return out
