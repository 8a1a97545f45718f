"""The released BigGAN-deep 128/256/512 generators (Brock et al. 2018, App. B) loaded into our Generator.

DeepMind released the BigGAN-deep generators (EMA weights) on TF-Hub; `pytorch-pretrained-biggan`
(PyPI) converted them to a PyTorch state dict + config.json. `load` maps every one of those tensors onto
our `Generator(get_config("biggan-deep-R"))` and fails, listing names, if any is left over or missing:

    reference (pytorch-pretrained-biggan)           ours
    embeddings.weight (z n_classes), one-hot input  shared.weight (n_classes z), class ids: the same product
    generator.gen_z, output viewed (n h w c)        linear, output viewed (n (c h w)): rows permuted
    layers.i.bn_k.scale/offset (1 + scale, no bias) blocks.i.bn{k+1}.gain/bias (1 + gain, no bias)
    layers.i.conv_k                                 blocks.i.conv{k+1}
    layers.8.snconv1x1_{theta,phi,g,o_conv}, gamma  blocks.8.{theta,phi,g,o}, gamma
    generator.bn (affine), conv_to_rgb (ch -> ch)   out_bn, out_conv (ch -> 3): see _rgb_rows
    SN weight_orig, weight_u, weight_v              weight, u[0], v[0] (eval σ = u0ᵀ W v0 in both)
    running_means/vars (51 truncations, C)          BN running_mean/var of ONE truncation (set_truncation)

Truncation: the weights are meant to be sampled with the TF-Hub convention z = t · truncnorm(-2, 2)
(`nanobiggan.truncation.tfhub_truncated_normal`) AND BatchNorm statistics measured at that t, stored for
t = 0, 0.02, ..., 1. That is not the paper's trick (§3.1, `truncation.truncated_normal`): resampling
gives z ~ truncnorm(-t, t), bounded by t rather than 2t and not rescaled. Between stored values we
reproduce the reference's interpolation EXACTLY, quirks included, so outputs match every published sample
of these weights: with c, i = modf(t / 0.02) it takes m[i]·c + m[i+1]·(1 - c), weights swapped relative
to linear interpolation, and the float division can land just off a stored index (0.14 / 0.02 =
7.000000000000001, so t = 0.14 gets the statistics of 0.16; likewise 0.28 and 0.56 get the next set,
0.58 and 0.94 the previous one).

    G, cfg = load("biggan-deep-256", truncation=0.4)                 # or a directory with the two files
    z = tfhub_truncated_normal((4, cfg.z_dim), 0.4)                  # 0.4 · truncnorm(-2, 2)
    x = G(z, torch.full((4,), imagenet_class("golden retriever")))   # (n 3 256 256) in [-1, 1]
    set_truncation(G, 0.8)                                           # the same G at another truncation

The inverse, `to_reference(G, stats)` / `save_reference(G, folder, stats)`, writes one of our BigGAN-deep
Generators in the reference's format (convert(*to_reference(G, stats)) computes what G computes), so the
loader can be exercised offline with random weights, without the reference package.

Tutorial: tutorials/13_released_weights.md
"""
from __future__ import annotations

import difflib
import json
import math
import numbers
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

from nanobiggan.attention import SelfAttention
from nanobiggan.config import Config, get_config
from nanobiggan.generator import Generator
from nanobiggan.lab.files import atomic_write, cache_dir, check_writable, undo_new_dirs
from nanobiggan.spectral_norm import SpectralNorm

WEIGHTS_NAME, CONFIG_NAME = "pytorch_model.bin", "config.json"  # the reference's file names
_S3 = "https://s3.amazonaws.com/models.huggingface.co/biggan"  # the reference package's URLs
URLS = {f"biggan-deep-{r}": {WEIGHTS_NAME: f"{_S3}/biggan-deep-{r}-pytorch_model.bin",
                             CONFIG_NAME: f"{_S3}/biggan-deep-{r}-config.json"} for r in (128, 256, 512)}


# ----------------------------------------------------------------------------- layout mapping
def _preset(ref_config: dict) -> tuple[Config, Generator]:
    """Our preset for a reference config.json, and its Generator on the meta device: no memory, and no
    orthogonal init of ~50M weights that are overwritten anyway (the CPU build takes ~10x longer)."""
    name = f"biggan-deep-{ref_config.get('output_dim')}"
    if name not in URLS:
        raise ValueError(f"config.json has output_dim={ref_config.get('output_dim')!r}: BigGAN-deep was "
                         f"released at 128, 256 and 512 only")
    ch, z = ref_config["channel_width"], ref_config["z_dim"]  # the reference's class embedding is z_dim wide
    cfg = get_config(name, g_ch=ch, z_dim=z, shared_dim=z, n_classes=ref_config["num_classes"],
                     bn_eps=ref_config["eps"], sn_eps=ref_config["eps"])
    with torch.device("meta"):
        G = Generator(cfg)
    layers, attn = _layout(cfg, G)
    if [list(x) for x in ref_config["layers"]] != layers or [ref_config["attention_layer_position"]] != attn:
        raise ValueError(f"config.json's layers {ref_config['layers']} with attention before layer "
                         f"{ref_config['attention_layer_position']} are not preset {name}'s {layers} with "
                         f"attention before layer {attn}: nanobiggan holds only the released layouts")
    return cfg, G


def _layout(cfg: Config, G: Generator) -> tuple[list[list], list[int]]:
    """The reference's config.json `layers` ([up, in, out] per block in units of ch) and the positions of the
    attention blocks (the reference inserts one before layers[attention_layer_position])."""
    w = [c // cfg.g_ch for c in cfg.g_widths]
    layers = [[up, w[i], w[i + 1] if up else w[i]] for i in range(cfg.n_g_stages) for up in (False, True)]
    return layers, [i for i, b in enumerate(G.blocks) if isinstance(b, SelfAttention)]


def _names(G: Generator) -> dict[str, str]:
    """{reference tensor name: our name} for every tensor; '*.running_means/vars' name our BN's stats."""
    names = {"embeddings.weight": "shared.weight", "generator.bn.weight": "out_bn.weight",
             "generator.bn.bias": "out_bn.bias", "generator.bn.running_means": "out_bn.running_means",
             "generator.bn.running_vars": "out_bn.running_vars"}

    def sn(src, dst, bias=True):
        names.update({f"{src}.weight_orig": f"{dst}.weight", f"{src}.weight_u": f"{dst}.u",
                      f"{src}.weight_v": f"{dst}.v"} | ({f"{src}.bias": f"{dst}.bias"} if bias else {}))

    sn("generator.gen_z", "linear")
    sn("generator.conv_to_rgb", "out_conv")
    for i, block in enumerate(G.blocks):  # the reference's ModuleList has the same order as ours
        src, dst = f"generator.layers.{i}", f"blocks.{i}"
        if isinstance(block, SelfAttention):
            names[f"{src}.gamma"] = f"{dst}.gamma"
            for a, b in (("theta", "theta"), ("phi", "phi"), ("g", "g"), ("o_conv", "o")):
                sn(f"{src}.snconv1x1_{a}", f"{dst}.{b}", bias=False)
            continue
        for k in range(4):
            bn, cbn = f"{src}.bn_{k}", f"{dst}.bn{k + 1}"
            names |= {f"{bn}.running_{s}": f"{cbn}.bn.running_{s}" for s in ("means", "vars")}
            sn(f"{bn}.scale", f"{cbn}.gain", bias=False)  # both compute BN(x)·(1 + scale(c)) + offset(c)
            sn(f"{bn}.offset", f"{cbn}.bias", bias=False)
            sn(f"{src}.conv_{k}", f"{dst}.conv{k + 1}")
    return names


def _rgb_rows(W, u, v):
    """conv_to_rgb has ch outputs of which the reference keeps [:3], so it divides by σ of the FULL
    (ch, ch·9) matrix. Our out_conv holds the 3 used rows: to keep its eval output W3/σ_full we store
    W' = W3/σ_full and vectors with u0ᵀW'v0 = 1: u0 = unit(W'v), v0 = W'ᵀu0 / ‖W'ᵀu0‖² (so v0 is not
    unit-norm, on purpose). Training-mode power iteration would re-normalize by σ(W') instead: fine-tune
    knowing that."""
    W, u, v = W.double(), u.double(), v.double()
    Wp = W[:3] / (u @ W.flatten(1) @ v)  # (3 ch kh kw)
    M = Wp.flatten(1)
    u0 = F.normalize(M @ v, dim=0)
    return Wp.float(), u0.float(), (M.T @ u0 / (M.T @ u0).square().sum()).float()


def convert(ref: dict, ref_config: dict) -> tuple[Generator, Config]:
    """(G on the CPU in eval mode, cfg) from the reference's state dict and config.json contents.

    Strict both ways: ValueError listing every reference tensor no rule consumes or lacks, and every one
    of ours left unfilled. The 51 stored statistics ride along as `G.truncation_stats` ({BN module name:
    (means, vars), each (n_stats C)}); G's BatchNorms hold those of truncation 1 until set_truncation."""
    cfg, G = _preset(ref_config)
    names = _names(G)
    missing, extra = sorted(set(names) - set(ref)), sorted(set(ref) - set(names))
    if missing or extra:
        raise ValueError(f"not a pytorch-pretrained-biggan {cfg.name} checkpoint: missing {missing}, "
                         f"left over (no tensor of ours to hold it) {extra}")
    t = {names[k]: v.detach().float().clone() for k, v in ref.items()}  # never alias the caller's tensors
    t["shared.weight"] = t["shared.weight"].T  # (z n_classes) -> (n_classes z)
    for k in ("linear.weight", "linear.bias", "linear.u"):  # reference views gen_z's output (h w c), we (c h w)
        t[k] = rearrange(t[k], "(h w c) ... -> (c h w) ...", h=4, w=4)
    t["out_conv.weight"], t["out_conv.u"], t["out_conv.v"] = _rgb_rows(t["out_conv.weight"], t["out_conv.u"],
                                                                       t["out_conv.v"])
    t["out_conv.bias"] = t["out_conv.bias"][:3]
    stats = {k.removesuffix(".running_means"): (t.pop(k), t.pop(k.replace("_means", "_vars")))
             for k in [k for k in t if k.endswith(".running_means")]}
    for name, m in G.named_modules():
        if isinstance(m, SpectralNorm):  # SN layer: vectors (out,), (in_flat,) -> (1 out), (1 in_flat)
            u, v = t[f"{name}.u"], t[f"{name}.v"]
            t[f"{name}.u"], t[f"{name}.v"] = u[None], v[None]
            t[f"{name}.sv"] = (u @ t[f"{name}.weight"].flatten(1) @ v)[None]  # σ0 that eval mode divides by
        if isinstance(m, SelfAttention):
            t[f"{name}.gamma"] = t[f"{name}.gamma"].reshape(())  # (1,) -> ()
    for name, (means, var) in stats.items():
        t |= {f"{name}.running_mean": means[-1].clone(), f"{name}.running_var": var[-1].clone(),
              f"{name}.num_batches_tracked": torch.tensor(0)}
    expected = G.state_dict()
    unfilled, unknown = sorted(set(expected) - set(t)), sorted(set(t) - set(expected))
    shapes = sorted(f"{k}: {tuple(t[k].shape)} vs {tuple(expected[k].shape)}"
                    for k in set(t) & set(expected) if t[k].shape != expected[k].shape)
    if unfilled or unknown or shapes:
        raise ValueError(f"cannot map the checkpoint onto {cfg.name}: unfilled {unfilled}, unknown {unknown}, "
                         f"shape mismatches {shapes}")
    G.load_state_dict({k: v.contiguous() for k, v in t.items()}, assign=True)  # meta -> these tensors
    G.truncation_stats = stats  # a plain attribute: G.state_dict() keeps our usual layout
    return G.eval(), cfg


N_STATS = 51  # the released statistics: truncation 0, 0.02, ..., 1


def _bn_names(G: Generator) -> list[str]:
    """Our BatchNorms that hold per-truncation statistics in the reference (every CBN's and out_bn)."""
    return [ours.removesuffix(".running_means") for ours in _names(G).values() if ours.endswith(".running_means")]


def _check_stats(G: Generator, stats: dict) -> int:
    """The number of stored truncations in `stats` ({BN name: (means, vars)}, each (n_stats C)), or a
    ValueError naming what is wrong."""
    wanted = _bn_names(G)
    if not isinstance(stats, dict):
        raise ValueError(f"stats must be a dict {{BatchNorm name: (means, vars)}}, got {type(stats).__name__}")
    if set(stats) != set(wanted):
        raise ValueError(f"stats must map every BatchNorm of G to (means, vars): missing "
                         f"{sorted(set(wanted) - set(stats))}, unknown {sorted(set(stats) - set(wanted))}")
    counts = set()
    for name in wanted:
        channels = G.get_submodule(name).num_features
        pair = stats[name]
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(torch.is_tensor(s) for s in pair)):
            raise ValueError(f"stats[{name!r}] must be a pair of tensors (means, vars), each (n_stats {channels})")
        for what, s in zip(("means", "vars"), pair):
            if s.ndim != 2 or s.shape[0] < 2 or s.shape[1] != channels:
                raise ValueError(f"stats[{name!r}] {what} has shape {tuple(s.shape)}: need (n_stats {channels}), "
                                 f"one row per stored truncation 0..1 (the release has {N_STATS})")
            if not torch.isfinite(s).all() or (what == "vars" and not (s > 0).all()):
                raise ValueError(f"stats[{name!r}] {what} must be finite{' and > 0' if what == 'vars' else ''}")
            counts.add(s.shape[0])
    if len(counts) != 1:
        raise ValueError(f"every BatchNorm needs the same number of stored truncations, got {sorted(counts)}")
    return counts.pop()


@torch.no_grad()
def to_reference(G: Generator, stats: dict | None = None) -> tuple[dict, dict]:
    """The inverse of `convert`: (state dict, config.json contents) in pytorch-pretrained-biggan's layout for
    a BigGAN-deep Generator of ours (App. B), so that convert(*to_reference(G, stats)) computes what G
    computes, at every truncation t, with set_truncation(G, t, stats) on our side.

    `stats` ({BN name: (means, vars)}, each (n_stats C)) become the per-truncation BN statistics; default:
    the ones `load` kept on G (G.truncation_stats), else G's current running statistics repeated for all 51
    stored truncations. G must have a released layout (any channel width): biggan-deep-128/256/512 with the
    class embedding as wide as z (ValueError otherwise). The reference has one eps for BN and SN: bn_eps
    is written (SN's eps only guards a division by ~0). Used to make reference-format files offline
    (tutorial 13, tests); it never changes G."""
    cfg = getattr(G, "cfg", None)
    if not isinstance(G, Generator) or cfg is None or not cfg.deep or f"biggan-deep-{cfg.resolution}" not in URLS:
        raise ValueError(f"to_reference needs a BigGAN-deep Generator at 128, 256 or 512 (the released "
                         f"layouts), got {type(G).__name__} {getattr(cfg, 'name', '')!r}")
    if cfg.shared_dim != cfg.z_dim or not (cfg.shared and cfg.hier):
        raise ValueError(f"the reference's class embedding is as wide as z and concatenated to all of it: need "
                         f"shared=hier=True and shared_dim == z_dim, got {cfg.shared}, {cfg.hier}, "
                         f"{cfg.shared_dim} vs {cfg.z_dim}")
    if stats is None:
        stats = getattr(G, "truncation_stats", None) or {
            name: tuple(getattr(G.get_submodule(name), f"running_{s}").expand(N_STATS, -1) for s in ("mean", "var"))
            for name in _bn_names(G)}
    n_stats = _check_stats(G, stats)
    layers, attn = _layout(cfg, G)
    ref_config = {"output_dim": cfg.resolution, "z_dim": cfg.z_dim, "class_embed_dim": cfg.shared_dim,
                  "channel_width": cfg.g_ch, "num_classes": cfg.n_classes, "layers": layers,
                  "attention_layer_position": attn[0], "eps": cfg.bn_eps, "n_stats": n_stats}
    _, expected = _preset(ref_config)  # the layout convert will build: G must have its tensors and shapes
    ours = {k: v for k, v in G.state_dict().items() if not k.endswith(".u") and not k.endswith(".v")}
    shapes = {k: v.shape for k, v in expected.state_dict().items() if not k.endswith(".u") and not k.endswith(".v")}
    if {k: v.shape for k, v in ours.items()} != shapes:
        raise ValueError(f"G's tensors are not those of the released {cfg.name} layout at width {cfg.g_ch}: "
                         f"{sorted(set(ours) ^ set(shapes)) or 'shapes differ'}")

    t = {k: v.detach().float().cpu().clone() for k, v in G.state_dict().items()
         if not k.endswith((".sv", ".num_batches_tracked", ".running_mean", ".running_var"))}
    for name, m in G.named_modules():
        if isinstance(m, SpectralNorm):  # (k out), (k in_flat) -> the first pair, the one eval σ uses
            t[f"{name}.u"], t[f"{name}.v"] = t[f"{name}.u"][0], t[f"{name}.v"][0]
        if isinstance(m, SelfAttention):
            t[f"{name}.gamma"] = t[f"{name}.gamma"].reshape(1)
    t["shared.weight"] = t["shared.weight"].T.contiguous()  # (n_classes z) -> (z n_classes), a Linear's weight
    for k in ("linear.weight", "linear.bias", "linear.u"):  # our rows (c h w) -> the reference's (h w c)
        t[k] = rearrange(t[k], "(c h w) ... -> (h w c) ...", h=4, w=4).contiguous()
    # conv_to_rgb is ch -> ch with rows [:3] used: pad our 3 rows (and u) with zeros, so that its
    # σ = uᵀWv is ours and its first 3 output channels are ours.
    pad = cfg.g_ch - 3
    t["out_conv.weight"] = torch.cat([t["out_conv.weight"], t["out_conv.weight"].new_zeros(pad, *t["out_conv.weight"].shape[1:])])
    t["out_conv.u"] = torch.cat([t["out_conv.u"], t["out_conv.u"].new_zeros(pad)])
    t["out_conv.bias"] = torch.cat([t["out_conv.bias"], t["out_conv.bias"].new_zeros(pad)])
    for name, (means, var) in stats.items():
        t[f"{name}.running_means"] = means.detach().float().cpu().clone()
        t[f"{name}.running_vars"] = var.detach().float().cpu().clone()
    names = _names(G)
    assert set(names.values()) == set(t), sorted(set(names.values()) ^ set(t))  # every tensor named once
    return {ref: t[ours] for ref, ours in names.items()}, ref_config


def save_reference(G: Generator, folder, stats: dict | None = None) -> Path:
    """Write `to_reference(G, stats)` as the reference's two files, folder/pytorch_model.bin and
    folder/config.json (atomically), which `load(folder, t)` and pytorch-pretrained-biggan's
    `BigGAN.from_pretrained(folder)` read. Returns the folder."""
    folder = check_writable(folder, "folder", directory=True)
    ref, ref_config = to_reference(G, stats)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / WEIGHTS_NAME, lambda fh: torch.save(ref, fh))
    atomic_write(folder / CONFIG_NAME, lambda fh: fh.write((json.dumps(ref_config, indent=2, sort_keys=True)
                                                            + "\n").encode()))
    return folder


# ----------------------------------------------------------------------------- truncation statistics
def _check_truncation(truncation) -> float:
    if isinstance(truncation, bool) or not isinstance(truncation, numbers.Real) or not 0 < truncation <= 1:
        raise ValueError(f"truncation must be a number in (0, 1] (the released BN statistics cover 0..1), "
                         f"such as 0.4; got {truncation!r}")
    return float(truncation)


def interpolate_stats(stored: torch.Tensor, truncation: float) -> torch.Tensor:
    """The reference's statistics for `truncation` from `stored` (n_stats C), bit for bit (see module doc)."""
    coef, start = math.modf(_check_truncation(truncation) / (1.0 / (stored.shape[0] - 1)))
    start = int(start)
    return stored[start] * coef + stored[start + 1] * (1 - coef) if coef != 0.0 else stored[start]


@torch.no_grad()
def set_truncation(G: Generator, truncation: float, stats: dict | None = None) -> Generator:
    """Write the BN statistics of `truncation` into G's BatchNorms (default stats: those `load` kept on G)."""
    stats = getattr(G, "truncation_stats", None) if stats is None else stats
    if stats is None:
        raise ValueError("this Generator holds no truncation statistics: build it with "
                         "nanobiggan.lab.pretrained.load(...) or convert(...), or pass stats={name: (means, vars)}")
    for name, (means, var) in stats.items():
        bn = G.get_submodule(name)
        bn.running_mean.copy_(interpolate_stats(means, truncation))
        bn.running_var.copy_(interpolate_stats(var, truncation))
    return G


# ----------------------------------------------------------------------------- ImageNet class names
@lru_cache(maxsize=None)
def _classes() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """((wnid, short name, synonyms), ...) in ILSVRC-2012 index order, from imagenet_classes.txt."""
    text = resources.files("nanobiggan.lab").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return tuple((wnid, name, tuple(s.strip() for s in syn.split(","))) for wnid, name, syn in rows)


def imagenet_classes() -> list[str]:
    """The 1000 short class names, index = class id of the released weights (0 tench ... 999 toilet tissue)."""
    return [name for _, name, _ in _classes()]


def imagenet_class(name_or_id) -> int:
    """Class id from an id, an exact short name or WordNet id, or a case-insensitive synonym / unique prefix.

    "golden retriever", "Golden_Retriever", "n02099601", "207" and 207 all give 207; an ambiguous name
    ("cardigan": the dog or the sweater?) or an unknown one is a ValueError listing the candidates."""
    classes = _classes()
    if isinstance(name_or_id, str) and name_or_id.strip().isdigit():
        name_or_id = int(name_or_id)
    if isinstance(name_or_id, numbers.Integral) and not isinstance(name_or_id, bool):
        if not 0 <= name_or_id < len(classes):
            raise ValueError(f"ImageNet class id {name_or_id} is out of range 0..{len(classes) - 1}")
        return int(name_or_id)
    if not isinstance(name_or_id, str) or not name_or_id.strip():
        raise TypeError(f"give a class id (0..999) or a non-empty class name, got {name_or_id!r}")
    key = " ".join(name_or_id.replace("_", " ").split())
    short = [name for _, name, _ in classes]
    if key in short:  # short names are unique as written ("Cardigan" the dog, "cardigan" the sweater)
        return short.index(key)
    terms = [(i, term.lower()) for i, (wnid, name, syn) in enumerate(classes) for term in (wnid, name, *syn)]
    low = key.lower()
    found = sorted({i for i, term in terms if term == low}) or sorted({i for i, t in terms if t.startswith(low)})
    if len(found) == 1:
        return found[0]
    if found:
        listed = ", ".join(f"{i} ({short[i]})" for i in found[:12]) + (" ..." if len(found) > 12 else "")
        raise ValueError(f"{name_or_id!r} matches {len(found)} ImageNet classes: {listed}; give more of the "
                         f"name or the id")
    close = difflib.get_close_matches(low, sorted({t for _, t in terms}), n=5, cutoff=0.6)
    owners = lambda c: "/".join(str(i) for i in sorted({i for i, t in terms if t == c}))
    hint = ", ".join(f"{c} ({owners(c)})" for c in close) or "none"
    raise ValueError(f"unknown ImageNet class {name_or_id!r} (close matches: {hint}); use an id 0..999 or a name "
                     f"listed in nanobiggan/lab/imagenet_classes.txt")


# ----------------------------------------------------------------------------- files and downloads
def _download(url: str, dst: Path) -> None:
    torch.hub.download_url_to_file(url, str(dst), progress=True)


def lacking(folder) -> list[str]:
    """Which of the reference's two files (pytorch_model.bin, config.json) `folder` does not hold."""
    return [f for f in (WEIGHTS_NAME, CONFIG_NAME) if not (Path(folder) / f).is_file()]


def cached(name: str) -> Path | None:
    """The cache folder of a released name ("biggan-deep-128", -256, -512) if both of its files are already
    there, else None. Downloads nothing: what tutorials/run.py asks before a block that needs the weights."""
    if name not in URLS:
        raise ValueError(f"{name!r} is not one of {', '.join(URLS)}")
    folder = cache_dir() / name
    return None if lacking(folder) else folder


def _folder(path_or_name) -> Path:
    """The directory holding pytorch_model.bin + config.json; a released name is downloaded once."""
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        if missing := lacking(path):
            raise FileNotFoundError(f"{path} lacks {', '.join(missing)}: it must hold the two files of a "
                                    f"pytorch-pretrained-biggan model ({WEIGHTS_NAME}, {CONFIG_NAME})")
        return path
    name = str(path_or_name)
    if name not in URLS:
        raise ValueError(f"{name!r} is neither a directory holding {WEIGHTS_NAME} + {CONFIG_NAME} nor one of "
                         f"{', '.join(URLS)}")
    folder = cache_dir() / name
    todo = lacking(folder)
    try:
        with undo_new_dirs(folder):  # a failed download leaves no empty folder in the cache
            folder.mkdir(parents=True, exist_ok=True)
            for f in todo:
                _download(URLS[name][f], folder / f)
    except OSError as e:  # urllib's URLError / HTTPError included
        by_hand = "; ".join(f"{URLS[name][f]} -> {folder / f}" for f in (WEIGHTS_NAME, CONFIG_NAME))
        raise ConnectionError(f"could not download {name} ({e}). Offline, or moved? Fetch the two files "
                              f"({by_hand}), then load({name!r}) again, or load() the folder you put them "
                              f"in ($NANOBIGGAN_CACHE moves the cache).") from e
    return folder


def load(path_or_name, truncation: float, device="cpu") -> tuple[Generator, Config]:
    """(G in eval mode with the BN statistics of `truncation`, its Config) from a pytorch-pretrained-biggan
    directory (pytorch_model.bin + config.json) or a released name ("biggan-deep-128", -256, -512),
    downloaded once into cache_dir(). Sample it with z = tfhub_truncated_normal(shape, truncation)."""
    truncation = _check_truncation(truncation)
    folder = _folder(path_or_name)
    ref_config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    ref = torch.load(folder / WEIGHTS_NAME, map_location="cpu", weights_only=True)
    G, cfg = convert(ref, ref_config)
    return set_truncation(G.to(device), truncation), cfg
