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

Latency: class, n and interpolation changes only run G. A new (truncation, seed) first needs the standing
statistics (App. C.1: `--standing-batches` forwards of 64), as sample.py computes them: tens of seconds on a CPU,
behind a spinner. So they are kept (`Sampler.cache`) and computed ahead: after each request, a background thread
prepares the slider's neighbouring thresholds (WARM_RADIUS steps of WARM_STEP each way, nearest first) for the same
seed, on its own copy of G, pausing before each of its forwards while a request is being served. A request for
the threshold it is preparing waits for it rather than starting over. The statistics are the same either way
(the same function on the same weights and seed; tests/test_serve.py checks it bit for bit).
"""
from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import sys
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
CACHE = 64         # (truncation, seed) standing statistics kept (a few KB each at CIFAR-10 scale)
MAX_N = 64         # images per request
WARM_STEP = 0.05   # the page's truncation slider step (sampler.html)
WARM_RADIUS = 3    # slider steps prepared ahead on each side of the last request
PAGE_START = (0.5, 0)  # (truncation, seed) the page opens with (sampler.html): prepared first


class Sampler:
    """One generator behind the page. `sheet` and `interpolation` return what sample.py draws for the same
    inputs: (n 3 R R) floats in [-1, 1]. Requests are served one at a time (G's statistics are shared state).

    G is a loaded checkpoint's EMA generator (lab/generators.load_generator), or the released BigGAN-deep
    (pretrained=True: lab/pretrained.load's G, its own BN statistics per truncation, TF-Hub's z convention)."""

    def __init__(self, G, cfg, classes, standing_batches: int, standing_batch_size: int, batch_size: int = 64,
                 pretrained: bool = False, about: str = "", warm: bool = True):
        self.G, self.cfg, self.classes, self.pretrained, self.about = G, cfg, list(classes), pretrained, about
        self.standing_batches, self.standing_batch_size, self.batch_size = (standing_batches, standing_batch_size,
                                                                            batch_size)
        self.lock = threading.Lock()  # one request at a time
        self.pristine = self._buffers(G)  # as loaded: every preparation starts here, as sample.py's fresh G does
        self.cache: OrderedDict[tuple, dict] = OrderedDict()
        self.computed = 0  # standing statistics computed for a request (not by the warm-up): the slow path
        # The warm-up: `wanted` keys, nearest first; `warming` the one in progress; `idle` cleared while a request
        # is served (the warm-up waits before its next forward); `changed` guards all of these and the cache.
        self.changed = threading.Condition()
        self.wanted: list[tuple] = []
        self.warming = None
        self.idle = threading.Event()
        self.idle.set()
        self.closed, self.warm_thread = False, None
        if warm and not pretrained:
            self.start_warm_up(first=[PAGE_START, *self.neighbours(*PAGE_START)])

    def start_warm_up(self, first=()) -> None:
        """Start the warm-up thread, on a copy of G made now (G as loaded), with `first` as its first wishes."""
        with self.changed:
            self.wanted = list(first)
        self.warm_thread = threading.Thread(target=self._warm_loop, args=(copy.deepcopy(self.G),), daemon=True)
        self.warm_thread.start()

    def close(self) -> None:
        """Stop the warm-up (before its next forward) and wait for it: nothing runs on after the page is closed."""
        with self.changed:
            self.closed = True
            self.wanted = []
            self.changed.notify_all()
        self.idle.set()
        if self.warm_thread is not None:
            self.warm_thread.join()

    @staticmethod
    def _buffers(G) -> dict:
        return {k: v.detach().clone() for k, v in G.named_buffers()}

    @staticmethod
    def _load_buffers(G, buffers: dict) -> None:
        with torch.no_grad():
            for k, v in G.named_buffers():
                v.copy_(buffers[k])

    def _compute(self, G, key) -> dict:
        """sample.py's standing statistics for key = (truncation, seed), computed on G from the pristine state."""
        self._load_buffers(G, self.pristine)
        prepare_for_sampling(G, key[0], self.standing_batches, key[1], self.standing_batch_size)
        return self._buffers(G)

    def _store(self, key, buffers: dict) -> None:  # with self.changed held
        self.cache[key] = buffers
        self.cache.move_to_end(key)
        while len(self.cache) > CACHE:
            self.cache.popitem(last=False)
        self.changed.notify_all()

    def _prepare(self, truncation, seed: int) -> None:
        """G's state for (truncation, seed): from the cache, from the warm-up if it is preparing exactly this,
        else computed here, as sample.py computes it."""
        if self.pretrained:
            from nanobiggan.lab.pretrained import set_truncation
            set_truncation(self.G, 1.0 if truncation is None else truncation)
            return
        key = (truncation, seed)
        with self.changed:
            if self.warming == key:  # let the warm-up finish it: waiting costs less than starting over
                self.idle.set()
                self.changed.wait_for(lambda: key in self.cache or self.warming != key)
                self.idle.clear()
            buffers = self.cache.get(key)
            if buffers is not None:
                self.cache.move_to_end(key)
        if buffers is None:
            buffers = self._compute(self.G, key)
            self.computed += 1
            with self.changed:
                self._store(key, buffers)
        self._load_buffers(self.G, buffers)

    @contextlib.contextmanager
    def _serving(self):
        """One request at a time, with the warm-up paused (it waits before its next forward) while it runs."""
        with self.lock:
            self.idle.clear()
            try:
                yield
            finally:
                self.idle.set()

    def neighbours(self, truncation, seed: int) -> list[tuple]:
        """The keys the warm-up prepares after a request at (truncation, seed): the slider's thresholds within
        WARM_RADIUS steps, nearest first (none: the top of the slider), then no truncation."""
        low, top = max(WARM_STEP, MIN_THRESHOLD), 2.0
        at = top + WARM_STEP if truncation is None else truncation
        ts = [round(at + sign * k * WARM_STEP, 2) for k in range(1, WARM_RADIUS + 1) for sign in (-1, 1)]
        return [(t, seed) for t in ts if low - 1e-9 <= t <= top + 1e-9] + ([(None, seed)] if truncation else [])

    def _want(self, truncation, seed: int) -> None:
        if self.pretrained:
            return
        with self.changed:
            self.wanted = [k for k in self.neighbours(truncation, seed) if k not in self.cache]
            self.changed.notify_all()

    def settle(self, timeout: float = 600) -> bool:
        """Wait until the warm-up has nothing left to do (tests; a script that wants every neighbour ready)."""
        with self.changed:
            return self.changed.wait_for(lambda: not self.wanted and self.warming is None, timeout)

    def _warm_loop(self, G) -> None:
        class Closed(Exception):
            pass

        def pause(*_):  # before each forward: wait while a request is served (returns None: inputs unchanged)
            self.idle.wait()
            if self.closed:
                raise Closed
        G.register_forward_pre_hook(pause)
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.wanted or self.closed)
                if self.closed:
                    return
                key = self.wanted.pop(0)
                if key in self.cache:
                    continue
                self.warming = key
            buffers = None
            try:
                buffers = self._compute(G, key)
            except Closed:
                pass
            except Exception as e:  # noqa: BLE001  the page still works; a request then computes it itself
                print(f"sampler: preparing truncation {key[0]}, seed {key[1]} ahead failed: {e}", file=sys.stderr)
            finally:
                with self.changed:  # stored and released together: a waiting request finds it in the cache
                    if buffers is not None:
                        self._store(key, buffers)
                    self.warming = None
                    self.changed.notify_all()

    def sheet(self, class_id: int, truncation=None, seed: int = 0, n: int = 8) -> torch.Tensor:
        """`python sample.py --class ID --n N --seed S [--truncation T]` (with --pretrained for released weights)."""
        with self._serving():
            self._prepare(truncation, seed)
            z, y = class_sheet_inputs(self.cfg.z_dim, self.cfg.n_classes, classes=[class_id], per_class=n,
                                      threshold=None if self.pretrained else truncation, seed=seed)
            if self.pretrained:  # sample.py's sample_pretrained: TF-Hub's z = t · truncnorm(-2, 2)
                t = 1.0 if truncation is None else truncation
                z = tfhub_truncated_normal((n, self.cfg.z_dim), t, generator=torch.Generator().manual_seed(seed))
            images = generate(self.G, z, y, batch_size=self.batch_size)
        self._want(truncation, seed)
        return images

    def interpolation(self, mode: str, classes: list[int], truncation=None, seed: int = 0) -> torch.Tensor:
        """`python sample.py --interp MODE --class A [B] --seed S [--truncation T]`: 4 rows of 8 steps."""
        if self.pretrained:
            raise ValueError("interpolation sheets are drawn for this project's checkpoints only (sample.py "
                             "--interp does not take --pretrained)")
        with self._serving():
            self._prepare(truncation, seed)
            z, e = interpolation_inputs(self.G, mode, threshold=truncation, seed=seed, classes=classes)
            images = generate(self.G, z, e, batch_size=self.batch_size)
        self._want(truncation, seed)
        return images

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
        sampler.close()
