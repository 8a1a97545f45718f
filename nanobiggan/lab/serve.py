"""`python sample.py --serve`: a local web page to explore a generator, the way the TF-Hub BigGAN notebook is used.

    python sample.py --serve                                   # newest run (or the shipped generator): port 8000
    python sample.py --checkpoint fashion-mnist --serve --port 8080
    python sample.py --pretrained biggan-deep-128 --serve      # the released weights (class names searchable)

Pick a class (type to search the names), drag the truncation slider, set a seed and how many images, and an
interpolation sheet between two classes or two z (BigGAN Fig. 8/9). Every image is exactly what `sample.py` writes
for the same flags (tests/test_serve.py checks it in headless Chromium): `Sampler` calls the same sampling
protocol (nanobiggan/sampling.py) in the same order. Each image, and the whole sheet, can be downloaded.

Python's standard library serves it (http.server) and the page is one HTML file with plain JavaScript
(lab/sampler.html): nothing to install. It listens on 127.0.0.1 only; it is a tool for your own machine.

Latency: class, n and interpolation changes only run G. A new (truncation, seed) first recomputes the standing
statistics (App. C.1: `--standing-batches` forwards of 64), as sample.py does; the page shows a spinner meanwhile,
and the statistics are kept for the next request (`Sampler.cache`, up to CACHE entries).
"""
from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import torch
from einops import rearrange
from PIL import Image

from nanobiggan.config import MAX_SEED
from nanobiggan.lab.images import grid, to_uint8
from nanobiggan.sampling import class_sheet_inputs, generate, interpolation_inputs, prepare_for_sampling
from nanobiggan.truncation import MIN_THRESHOLD, check_threshold, tfhub_truncated_normal

PAGE = Path(__file__).with_name("sampler.html")
CACHE = 16     # (truncation, seed) standing statistics kept
MAX_N = 64     # images per request


class Sampler:
    """One generator behind the page. `sheet` and `interpolation` return what sample.py draws for the same
    inputs: (n 3 R R) floats in [-1, 1]. Requests are served one at a time (G's statistics are shared state).

    G is a loaded checkpoint's EMA generator (lab/generators.load_generator), or the released BigGAN-deep
    (pretrained=True: lab/pretrained.load's G, its own BN statistics per truncation, TF-Hub's z convention)."""

    def __init__(self, G, cfg, classes, standing_batches: int, standing_batch_size: int, batch_size: int = 64,
                 pretrained: bool = False, about: str = ""):
        self.G, self.cfg, self.classes, self.pretrained, self.about = G, cfg, list(classes), pretrained, about
        self.standing_batches, self.standing_batch_size, self.batch_size = (standing_batches, standing_batch_size,
                                                                            batch_size)
        self.lock = threading.Lock()
        self.pristine = self._buffers()  # as loaded: every preparation starts here, as sample.py's fresh G does
        self.cache: OrderedDict[tuple, dict] = OrderedDict()

    def _buffers(self) -> dict:
        return {k: v.detach().clone() for k, v in self.G.named_buffers()}

    def _load_buffers(self, buffers: dict) -> None:
        with torch.no_grad():
            for k, v in self.G.named_buffers():
                v.copy_(buffers[k])

    def _prepare(self, truncation, seed: int) -> None:
        """G's state for (truncation, seed), from the cache or as sample.py computes it."""
        if self.pretrained:
            from nanobiggan.lab.pretrained import set_truncation
            set_truncation(self.G, 1.0 if truncation is None else truncation)
            return
        key = (truncation, seed)
        if key in self.cache:
            self.cache.move_to_end(key)
            self._load_buffers(self.cache[key])
            return
        self._load_buffers(self.pristine)
        prepare_for_sampling(self.G, truncation, self.standing_batches, seed, self.standing_batch_size)
        self.cache[key] = self._buffers()
        if len(self.cache) > CACHE:
            self.cache.popitem(last=False)

    def sheet(self, class_id: int, truncation=None, seed: int = 0, n: int = 8) -> torch.Tensor:
        """`python sample.py --class ID --n N --seed S [--truncation T]` (with --pretrained for released weights)."""
        with self.lock:
            self._prepare(truncation, seed)
            z, y = class_sheet_inputs(self.cfg.z_dim, self.cfg.n_classes, classes=[class_id], per_class=n,
                                      threshold=None if self.pretrained else truncation, seed=seed)
            if self.pretrained:  # sample.py's sample_pretrained: TF-Hub's z = t · truncnorm(-2, 2)
                t = 1.0 if truncation is None else truncation
                z = tfhub_truncated_normal((n, self.cfg.z_dim), t, generator=torch.Generator().manual_seed(seed))
            return generate(self.G, z, y, batch_size=self.batch_size)

    def interpolation(self, mode: str, classes: list[int], truncation=None, seed: int = 0) -> torch.Tensor:
        """`python sample.py --interp MODE --class A [B] --seed S [--truncation T]`: 4 rows of 8 steps."""
        if self.pretrained:
            raise ValueError("interpolation sheets are drawn for this project's checkpoints only (sample.py "
                             "--interp does not take --pretrained)")
        with self.lock:
            self._prepare(truncation, seed)
            z, e = interpolation_inputs(self.G, mode, threshold=truncation, seed=seed, classes=classes)
            return generate(self.G, z, e, batch_size=self.batch_size)

    def info(self) -> dict:
        return {"name": self.cfg.name, "classes": self.classes, "resolution": self.cfg.resolution,
                "pretrained": self.pretrained, "about": self.about, "max_n": MAX_N,
                "min_truncation": 0.0 if self.pretrained else MIN_THRESHOLD}


def _png(pixels) -> str:
    """(H W 3) uint8 -> a PNG data: URL (the page shows and downloads it as it is)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def png_data_urls(images: torch.Tensor, nrow: int) -> tuple[list[str], str]:
    """(n 3 R R) images -> (one PNG data: URL per image, the whole sheet as sample.py's PNG lays it out)."""
    each = [_png(img) for img in rearrange(to_uint8(images), "n c h w -> n h w c").numpy()]
    return each, _png(grid(images, nrow).numpy())


def _query(sampler: Sampler, url: str) -> dict:
    """A request's parameters, checked: ValueError (said to the page, HTTP 400) for anything out of range."""
    q = {k: v[-1] for k, v in parse_qs(urlparse(url).query).items()}
    t = q.get("truncation", "none")
    truncation = None if t in ("", "none") else check_threshold(
        float(t), "truncation", smallest=0 if sampler.pretrained else MIN_THRESHOLD)
    seed, n = int(q.get("seed", 0)), int(q.get("n", 8))
    if not 1 <= n <= MAX_N:
        raise ValueError(f"n must be 1..{MAX_N}, got {n}")
    if not 0 <= seed <= MAX_SEED:  # the command lines' range (lab/cli.check_counts)
        raise ValueError(f"seed must be 0..{MAX_SEED}, got {seed}")
    ids = [int(c) for c in q.get("class", "0").split(",") if c != ""]
    if not ids or any(not 0 <= i < len(sampler.classes) for i in ids):
        raise ValueError(f"class ids must be 0..{len(sampler.classes) - 1}, got {q.get('class')!r}")
    return {"truncation": truncation, "seed": seed, "n": n, "classes": ids, "mode": q.get("mode", "z")}


def make_handler(sampler: Sampler):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            path = urlparse(self.path).path
            try:
                if path == "/":
                    return self._send(200, "text/html; charset=utf-8", PAGE.read_bytes())
                if path == "/info":
                    return self._json(200, sampler.info())
                if path in ("/sheet", "/interp"):
                    q = _query(sampler, self.path)
                    t0 = time.perf_counter()
                    if path == "/sheet":
                        images, nrow = sampler.sheet(q["classes"][0], q["truncation"], q["seed"], q["n"]), q["n"]
                    else:
                        images = sampler.interpolation(q["mode"], q["classes"], q["truncation"], q["seed"])
                        nrow = len(images) // 4
                    each, sheet = png_data_urls(images, nrow)
                    return self._json(200, {"images": each, "sheet": sheet, "nrow": nrow,
                                            "seconds": time.perf_counter() - t0})
                return self._json(404, {"error": f"no page {path}"})
            except ValueError as e:
                return self._json(400, {"error": str(e)})

        def _json(self, status: int, obj) -> None:
            self._send(status, "application/json", json.dumps(obj).encode())

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: the page asks often
            pass
    return Handler


def serve(sampler: Sampler, port: int = 8000, host: str = "127.0.0.1", ready=None) -> None:
    """Serve the page until Ctrl-C. `ready(server)` is called once it listens (tests read the port from it)."""
    server = ThreadingHTTPServer((host, port), make_handler(sampler))
    print(f"sampler: http://{host}:{server.server_address[1]}/  ({sampler.cfg.name}; Ctrl-C stops)", flush=True)
    if ready is not None:
        ready(server)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
