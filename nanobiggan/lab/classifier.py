"""Class accuracy of generated samples: does G(z, y) look like class y to a classifier of the real data?

The metric (lab/protocol.py's class_accuracy): the fraction of class-balanced samples G(z, y) of the EMA
generator that a small CNN trained on the real training set labels y, overall and per class. Samples follow the
evaluation protocol exactly (EMA weights, standing statistics recomputed at the truncation, labels i mod
n_classes, z from a fixed seed, uint8 quantization), in the same pass as FID when both are computed. It asks
what the Inception Score asks in spirit (is each sample recognisably of a class?) but with a net trained on
THIS dataset, and it also checks the class is the one G was asked for, which IS cannot.

Limits, honestly:
- It measures recognisability, not diversity: a G that draws one perfect image per class scores 1.0 with
  an FID far from 0. Read it next to FID/KID, never alone.
- The classifiers are small (test accuracy 0.849 on CIFAR-10, 0.915 on Fashion-MNIST): real images score
  about that, roughly the ceiling for samples, and sample accuracies are comparable only under the same
  classifier (its sha256 is reported with every number). Classifiers are fooled by off-manifold images; a high
  score is evidence, not proof, of good samples.
- Like FID it needs n: the standard error of an accuracy p is sqrt(p (1 - p) / n), ~0.007 at n = 5000.
- 32x32 inputs and 10 classes only (CIFAR-10, Fashion-MNIST); no classifier is shipped for image folders.
- The shipped CIFAR-10 classifier was trained and measured on a JPEG re-encoding of CIFAR-10 (the files
  record a hash of the data they saw, train_data_sha256 / test_data_sha256); on the official pixels its
  accuracy may differ slightly.

    python -m nanobiggan.classifier --dataset cifar10 --out nanobiggan/classifiers/cifar10.pt
    python -m nanobiggan.classifier --dataset fashion-mnist --data-dir DIR --out fm.pt --epochs 3

The net: an all-conv CNN in the style of fast CIFAR-10 trainers (Page's ResNet-9, Jordan's airbench): a
stem conv, then three blocks [conv, maxpool 2, BN, GELU, conv, BN, GELU], global max pool, a linear layer
with logits scaled by 1/8. Trained with SGD + Nesterov, a linear warm-up then linear decay of the LR
(one cycle), label smoothing 0.2, weight decay 5e-4, random crops (reflect padding) and, for CIFAR-10
only, horizontal flips (Fashion-MNIST garments are nearly symmetric; its flips would add little).
Training runs in bfloat16 autocast (1.3x faster on a CPU with bf16 instructions; --no-bf16 for others),
scoring in float32. Weights are stored in float16 (~0.6 MB); the stored test accuracy is that of the
stored, rounded weights.
"""
from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import repeat
from torch import nn

from nanobiggan.lab.cli import Parser, check_counts, one_line_errors, pick_device
from nanobiggan.lab.datasets import get_dataset, to_signed_float
from nanobiggan.lab.files import atomic_write, check_writable, file_sha256

SHIPPED = Path(__file__).parents[1] / "classifiers"  # nanobiggan/classifiers/{dataset}.pt
KNOWN_SHA256 = {
    "cifar10": "c4322470c90eac33357252b1b3201d65d6f1d094258ffb47e8bc8c7d2dc27710",
    "fashion-mnist": "b391bec2bdb80d9ca77d1e86b5936b9d728568c39db56f9fe2d2b0468bd4499b",
}
WIDTHS = (32, 64, 128)
RECIPES = {  # dataset: (epochs, crop padding, horizontal flips, widths)
    "cifar10": (8, 2, True, WIDTHS),
    "fashion-mnist": (3, 2, False, (16, 32, 64)),  # an easier dataset: a quarter of the compute per image
}
FORMAT = "nanobiggan-classifier-1"

# ----------------------------------------------------------------------------- the network


def conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]


class Classifier(nn.Module):
    """(n 3 32 32) in [-1, 1] -> (n 10) logits. Widths (a, b, c): maps of 32, 16, 8 and 4 px."""

    def __init__(self, widths=WIDTHS, n_classes: int = 10, stem: int = 24):
        super().__init__()
        layers = [*conv_bn(3, stem), nn.GELU()]
        for c_in, c_out in zip((stem, *widths), widths):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c_out),
                       nn.GELU(), *conv_bn(c_out, c_out), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], n_classes, bias=False)
        self.widths, self.meta = tuple(widths), {}

    def forward(self, x):
        h = self.body(x).amax(dim=(2, 3))  # global max pool: (n c)
        return self.head(h) / 8  # small logits at init: trains faster (as Page's ResNet-9)

    @torch.no_grad()
    def predict(self, images_uint8: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """uint8 (n 3 32 32), or (n 1 32 32) gray -> (n) predicted classes, in eval mode, float32."""
        if images_uint8.dtype != torch.uint8 or images_uint8.shape[1:] not in ((3, 32, 32), (1, 32, 32)):
            raise ValueError(f"the classifier takes uint8 (n, 3, 32, 32) images, got {images_uint8.dtype} "
                             f"{tuple(images_uint8.shape)}")
        was_training, device = self.training, next(self.parameters()).device
        self.eval()
        out = []
        for chunk in images_uint8.split(batch_size):
            x = to_signed_float(repeat(chunk, "n c h w -> n (c k) h w", k=3 // chunk.shape[1]).to(device))
            out.append(self(x.contiguous(memory_format=torch.channels_last)).argmax(dim=1).cpu())
        self.train(was_training)
        return torch.cat(out)

# ----------------------------------------------------------------------------- training


def load_split(dataset: str, data_dir=None, train: bool = True, download: bool = True):
    """A split as uint8 images (n 3 32 32) and int64 labels (n), all in memory."""
    ds = get_dataset(dataset, data_dir, 32, train=train, download=download)
    images = ds.images
    return repeat(images, "n c h w -> n (c k) h w", k=3 // images.shape[1]).contiguous(), ds.labels, ds.classes


def data_sha256(images: torch.Tensor, labels: torch.Tensor) -> str:
    """Which data a classifier saw: a hash of the pixels and labels (a JPEG re-encoding of CIFAR-10 differs)."""
    return hashlib.sha256(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()


def augment(images: torch.Tensor, pad: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random crops of the reflect-padded images (each its own offset), and random horizontal flips."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad,) * 4, mode="reflect")
    dy, dx = (torch.randint(0, 2 * pad + 1, (n, 1), generator=gen) for _ in range(2))
    rows, cols = dy + torch.arange(h), dx + torch.arange(w)  # (n h), (n w)
    out = padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (n h w c)
    out = out.permute(0, 3, 1, 2)
    if flip:
        out = torch.where(torch.rand(n, 1, 1, 1, generator=gen) < 0.5, out.flip(-1), out)
    return out.contiguous(memory_format=torch.channels_last)


def real_accuracy(net: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of real images (uint8) whose predicted class is their label."""
    return (net.predict(images) == labels).float().mean().item()


def round_to_fp16(net: Classifier) -> None:
    """Round every float weight/statistic to what a float16 file holds, in place."""
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())


def train_classifier(dataset: str, data_dir=None, epochs: int | None = None, batch_size: int = 512,
                     lr: float = 0.4, seed: int = 0, device="cpu", bf16: bool = True, widths=None, log=print):
    """Train on the train split, report test accuracy per epoch; returns (net, metadata)."""
    default_epochs, pad, flip, default_widths = RECIPES[dataset]
    epochs, widths = epochs or default_epochs, widths or default_widths
    wall, cpu = time.perf_counter(), time.process_time()
    x_train, y_train, classes = load_split(dataset, data_dir, train=True)
    x_test, y_test, _ = load_split(dataset, data_dir, train=False)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = Classifier(widths, n_classes=len(classes)).to(device, memory_format=torch.channels_last)
    decay = [p for p in net.parameters() if p.ndim > 1]  # no weight decay on BN's scales and shifts
    rest = [p for p in net.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0}],
                          lr=lr, momentum=0.9, nesterov=True)
    steps = epochs * -(-len(x_train) // batch_size)
    warmup = max(1, steps // 5)

    def one_cycle(step):  # the LR factor: linear up for the first 20% of the steps, then linear down to 0
        return step / warmup if step < warmup else (steps - step) / max(1, steps - warmup)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)
    acc = float("nan")
    for epoch in range(1, epochs + 1):
        net.train()
        for idx in torch.randperm(len(x_train), generator=gen).split(batch_size):
            x = to_signed_float(augment(x_train[idx], pad, flip, gen)).to(device)
            with autocast:
                loss = F.cross_entropy(net(x), y_train[idx].to(device), label_smoothing=0.2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = real_accuracy(net, x_test, y_test)
        log(f"epoch {epoch}/{epochs}: loss {loss.item():.3f}, test accuracy {acc:.4f} "
            f"({time.perf_counter() - wall:.0f} s wall, {time.process_time() - cpu:.0f} s CPU)")
    round_to_fp16(net)
    acc = real_accuracy(net, x_test, y_test)
    meta = {"format": FORMAT, "dataset": dataset, "classes": list(classes), "widths": list(net.widths),
            "test_accuracy": acc, "test_n": len(y_test), "train_n": len(y_train), "epochs": epochs,
            "train_data_sha256": data_sha256(x_train, y_train), "test_data_sha256": data_sha256(x_test, y_test),
            "batch_size": batch_size, "lr": lr, "seed": seed, "crop_pad": pad, "hflip": flip, "bf16": bf16,
            "wall_seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
            "torch_threads": torch.get_num_threads()}
    net.meta = meta
    return net.cpu().eval(), meta

# ----------------------------------------------------------------------------- files


def save_classifier(net: Classifier, meta: dict, path) -> str:
    """Atomically write {"meta", "state_dict" (float16)}; returns the file's sha256."""
    path = Path(path)
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    atomic_write(path, lambda f: torch.save({"meta": meta, "state_dict": state}, f))
    return file_sha256(path)


def load_classifier(dataset_or_path, device="cpu") -> Classifier:
    """The shipped classifier of a dataset ('cifar10', 'fashion-mnist'), checked against KNOWN_SHA256,
    or any file written by this module (its sha256 is then only reported). net.meta holds the metadata
    plus "sha256" and "path"."""
    name = str(dataset_or_path)
    if name in KNOWN_SHA256:
        path, expected = SHIPPED / f"{name}.pt", KNOWN_SHA256[name]
    elif Path(name).is_file():
        path, expected = Path(name), None
    else:
        raise FileNotFoundError(f"no classifier {name!r}: shipped ones are {', '.join(KNOWN_SHA256)}; "
                                f"or pass a file written by python -m nanobiggan.classifier")
    sha = file_sha256(path)
    if expected is not None and sha != expected:
        raise ValueError(f"{path} has sha256 {sha}, but the shipped {name} classifier has {expected}: "
                         f"refusing a changed file (scores would not be comparable). Restore it from the "
                         f"repository, or pass a retrained file by its path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # RuntimeError, UnpicklingError, EOFError... depending on what the file is
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("meta"), dict) or state["meta"].get("format") != FORMAT:
        raise ValueError(f"{path} is not a nanobiggan classifier file (format {FORMAT!r})")
    meta = state["meta"]
    with torch.random.fork_rng(devices=[]):  # the init (overwritten below) must not move train.py's RNG stream
        net = Classifier(meta["widths"], n_classes=len(meta["classes"]))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["state_dict"].items()})
    net.meta = {**meta, "sha256": sha, "path": str(path)}
    return net.to(device, memory_format=torch.channels_last).eval()

# ----------------------------------------------------------------------------- the metric


def accuracy_report(pred: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict:
    """{"class_acc": overall, "class_acc_per_class": [per class], "class_acc_n": n}."""
    right = (pred == labels).double()
    per_class = [right[labels == c].mean().item() if (labels == c).any() else float("nan") for c in range(n_classes)]
    return {"class_acc": right.mean().item(), "class_acc_per_class": per_class, "class_acc_n": len(labels)}


def check_classifier(classifier, cfg) -> None:
    """Refuse a class-accuracy classifier that cannot judge this G (other image size or class count)."""
    n_classes = len(classifier.meta["classes"])
    if cfg.resolution != 32 or cfg.n_classes != n_classes:
        raise ValueError(f"the classifier ({classifier.meta['dataset']}) takes 32x32 images of {n_classes} "
                         f"classes; this G makes {cfg.resolution}x{cfg.resolution} images of {cfg.n_classes}")


# ----------------------------------------------------------------------------- command line


@one_line_errors
def main(argv=None):
    p = Parser(prog="python -m nanobiggan.classifier", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=list(RECIPES))
    p.add_argument("--data-dir", default=None, help="folder holding the dataset (default: ./data or $NANOBIGGAN_DATA)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"default: {', '.join(f'{k} {v[0]}' for k, v in RECIPES.items())}")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--widths", type=int, nargs=3, default=None, metavar=("A", "B", "C"),
                   help="channels of the three blocks (default: the dataset's recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto",
                   help="auto (cuda, then mps, then cpu) | cpu | cuda | mps | tpu (TorchTPU)")
    p.add_argument("--no-bf16", action="store_true", help="train in float32 (slow on CPUs without bf16)")
    p.add_argument("--out", required=True, help="the classifier file to write")
    args = p.parse_args(argv)
    if args.widths and min(args.widths) < 1:
        p.error(f"argument --widths: channel counts must be >= 1, got {' '.join(map(str, args.widths))}")
    check_counts(args, "epochs", "batch_size")
    check_writable(args.out, "--out")  # before the minutes of training
    device = pick_device(args.device)
    net, meta = train_classifier(args.dataset, args.data_dir, args.epochs, args.batch_size, seed=args.seed,
                                 device=device, bf16=not args.no_bf16,
                                 widths=args.widths and tuple(args.widths), log=lambda s: print(s, flush=True))
    sha = save_classifier(net, meta, args.out)
    print(f"test accuracy {meta['test_accuracy']:.4f} (n={meta['test_n']}, float16 weights) after {meta['epochs']} "
          f"epochs in {meta['wall_seconds']:.0f} s wall, {meta['cpu_seconds']:.0f} s CPU "
          f"({meta['torch_threads']} threads)\n{args.out}: sha256 {sha}")


if __name__ == "__main__":
    main()
