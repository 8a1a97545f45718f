"""What train.py does around the training step: periodic evaluation of the EMA generator.

Tutorial: tutorials/06_training_cifar10.md
"""
from __future__ import annotations

import time

from nanobiggan import metrics
from nanobiggan.lab import inception, protocol
from nanobiggan.lab.classifier import check_classifier, load_classifier


class TrainingEval:
    """train.py --eval-every: FID and class accuracy (lab/classifier.py) of the EMA G under the same
    protocol, from the same n = cfg.eval_n samples, z and labels fixed by cfg.seed (so successive scores
    differ only by the weights). Draws nothing from the global RNG.

    Calling it returns a dict to log: {"fid", "fid_n"} when an Inception network (and the reference data)
    is available, {"class_acc", "class_acc_n", "class_acc_per_class"} when a classifier is shipped for
    cfg.dataset; either missing is said once, on the first call, and training goes on. eval_n below 2048 is
    accepted here (a tracking curve, FID biased upward) and said once.
    """

    def __init__(self, cfg, device, cache_dir=None, inception=None, log=print):
        self.cfg, self.device, self.cache_dir, self.inception, self.log = cfg, device, cache_dir, inception, log
        self.min_samples = min(metrics.MIN_SAMPLES, cfg.eval_n)
        self.net = self.ref = self.classifier = None
        self.started = False

    def _start(self) -> None:
        self.started = True
        try:
            self.net = inception.load_inception(self.inception, self.device)
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
