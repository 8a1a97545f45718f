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

Latency: class, seed, n and interpolation changes only run G (0.05 s for 8 CIFAR-10 images on 2 CPU cores). What
costs is a truncation not seen before: its standing statistics (App. C.1: `--standing-batches` forwards of 64, as
sample.py computes them), about 14 s on a CPU. They depend on G and the truncation only, never on the seed
(sampling.py), so the page needs one set per slider position, 41 in all. A background thread prepares them all
on its own copy of G, nearest the last request first, pausing before each of its forwards while a request is
served; a request for the threshold it is preparing waits for it rather than starting over. Each set is written
to a file keyed by G's weights (`store_path`, under $NANOBIGGAN_CACHE or ~/.cache/nanobiggan): the first page
over a checkpoint takes ~10 min to have every position ready, every later one starts ready. The statistics are the
same whichever path made them (the same function on the same weights; tests/test_serve.py checks it bit for bit).
"""
from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
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
from nanobiggan.lab.files import atomic_write, cache_dir
from nanobiggan.lab.images import grid, to_uint8
from nanobiggan.sampling import class_sheet_inputs, generate, interpolation_inputs, prepare_for_sampling
from nanobiggan.truncation import MIN_THRESHOLD, check_threshold

PAGE = Path(__file__).with_name("sampler.html")
MAX_N = 64         # images per request
STEP, TOP = 0.05, 2.0  # the page's truncation slider, STEP..TOP, plus a "none" box (sent to the page by /info)
PAGE_START = 0.5   # the truncation the page opens with: prepared first


def slider() -> list:
    """Every truncation the page offers: the slider's positions, then None (the "none" box)."""
    first = max(STEP, MIN_THRESHOLD)
    return [round(first + k * STEP, 2) for k in range(round((TOP - first) / STEP) + 1)] + [None]


def store_path(G, standing_batches: int, standing_batch_size: int) -> Path:
    """The file that keeps G's standing statistics: named by a hash of everything they depend on: G's weights and
    buffers as loaded, the recipe's two sizes, the device type and torch version (other kernels round otherwise),
    and the source of the model and sampling code (nanobiggan/*.py: a changed recipe is never served stale)."""
    h = hashlib.sha256(f"{standing_batches} {standing_batch_size} {torch.__version__} "
                       f"{next(G.parameters()).device.type}".encode())
    for source in sorted(Path(__file__).parents[1].glob("*.py")):
        h.update(source.read_bytes())
    for name, t in G.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return cache_dir() / "standing" / f"{h.hexdigest()[:24]}.pt"


class Sampler:
    """One generator behind the page. `sheet` and `interpolation` return what sample.py draws for the same
    inputs: (n 3 R R) floats in [-1, 1]. Requests are served one at a time (G's statistics are shared state).

    G is a loaded checkpoint's EMA generator (lab/generators.load_generator), or the released BigGAN-deep
    (pretrained=True: lab/pretrained.load's G, its own BN statistics per truncation, TF-Hub's z convention).
    `store`: the file that keeps the standing statistics between runs (default `store_path`; None: memory only)."""

    def __init__(self, G, cfg, classes, standing_batches: int, standing_batch_size: int, batch_size: int = 64,
                 pretrained: bool = False, about: str = "", warm: bool = True, store="default"):
        self.G, self.cfg, self.classes, self.pretrained, self.about = G, cfg, list(classes), pretrained, about
        self.standing_batches, self.standing_batch_size, self.batch_size = (standing_batches, standing_batch_size,
                                                                            batch_size)
        self.lock = threading.Lock()  # one request at a time
        self.pristine = self._buffers(G)  # as loaded: every preparation starts here, as sample.py's fresh G does
        self.cache: dict = {}  # truncation -> G's buffers under it
        self.store = None if pretrained or store is None else (
            store_path(G, standing_batches, standing_batch_size) if store == "default" else Path(store))
        self._read_store()
        self.computed = 0  # standing statistics computed for a request (not by the warm-up): the slow path
        # The warm-up: `wanted` truncations, nearest first; `warming` the one in progress; `idle` cleared while a
        # request is served (the warm-up waits before its next forward); `changed` guards these and the cache.
        self.changed = threading.Condition()
        self.wanted: list = []
        self.warming = ()  # () when idle: None is a truncation (none)
        self.idle = threading.Event()
        self.idle.set()
        self.closed, self.warm_thread = False, None
        if warm and not pretrained:
            self.start_warm_up(first=self.missing(PAGE_START))

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

    def _read_store(self) -> None:
        """The statistics an earlier page kept for these very weights; an unreadable file is only a lost cache."""
        if self.store is None or not self.store.exists():
            return
        try:
            kept = torch.load(self.store, map_location=next(self.G.parameters()).device, weights_only=True)
            self.cache = {None if t == "none" else float(t): buffers for t, buffers in kept.items()
                          if set(buffers) == set(self.pristine)}
        except Exception as e:  # noqa: BLE001  recomputed as if it were not there
            print(f"sampler: ignoring the unreadable statistics file {self.store} ({e}); they will be recomputed",
                  file=sys.stderr)

    def _write_store(self) -> None:  # with self.changed held: one writer at a time, the whole cache each time
        if self.store is None:
            return
        kept = {"none" if t is None else repr(t): buffers for t, buffers in self.cache.items()}
        try:
            atomic_write(self.store, lambda f: torch.save(kept, f))
        except OSError as e:  # a read-only cache folder costs speed on the next run, nothing else
            print(f"sampler: could not keep the statistics in {self.store} ({e})", file=sys.stderr)
            self.store = None

    def _compute(self, G, truncation) -> dict:
        """sample.py's standing statistics at `truncation`, computed on G from the pristine state."""
        self._load_buffers(G, self.pristine)
        prepare_for_sampling(G, truncation, self.standing_batches, batch_size=self.standing_batch_size)
        return self._buffers(G)

    def _store(self, truncation, buffers: dict) -> None:  # with self.changed held
        self.cache[truncation] = buffers
        self._write_store()
        self.changed.notify_all()

    def _prepare(self, truncation) -> None:
        """G's state at `truncation`: from the cache, from the warm-up if it is preparing exactly this, else
        computed here, as sample.py computes it."""
        if self.pretrained:
            from nanobiggan.lab.pretrained import set_truncation
            set_truncation(self.G, 1.0 if truncation is None else truncation)
            return
        with self.changed:
            if self.warming == (truncation,):  # let the warm-up finish it: waiting costs less than starting over
                self.idle.set()
                self.changed.wait_for(lambda: truncation in self.cache or self.warming != (truncation,))
                self.idle.clear()
            buffers = self.cache.get(truncation)
        if buffers is None:
            buffers = self._compute(self.G, truncation)
            self.computed += 1
            with self.changed:
                self._store(truncation, buffers)
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

    @staticmethod
    def nearest(truncation) -> list:
        """The page's truncations ordered by their distance on the slider from `truncation` (none sits one step
        past the top), itself first if it is one of them."""
        where = {t: TOP + STEP if t is None else t for t in slider()}
        at = where[None] if truncation is None else truncation
        return sorted(where, key=lambda t: (round(abs(where[t] - at), 6), where[t]))

    def missing(self, truncation) -> list:
        """What the warm-up still has to prepare, nearest `truncation` first (with self.changed held or not)."""
        return [t for t in self.nearest(truncation) if t not in self.cache]

    def ready(self) -> int:
        """How many of the page's truncations have their statistics ready."""
        return sum(t in self.cache for t in slider())

    def _want(self, truncation) -> None:
        if self.pretrained:
            return
        with self.changed:
            self.wanted = self.missing(truncation)
            self.changed.notify_all()

    def settle(self, timeout: float = 600) -> bool:
        """Wait until the warm-up has nothing left to do (tests; a script that wants every truncation ready)."""
        with self.changed:
            return self.changed.wait_for(lambda: not self.wanted and self.warming == (), timeout)

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
                truncation = self.wanted.pop(0)
                if truncation in self.cache:
                    continue
                self.warming = (truncation,)
            buffers = None
            try:
                buffers = self._compute(G, truncation)
            except Closed:
                pass
            except Exception as e:  # noqa: BLE001  the page still works; a request then computes it itself
                print(f"sampler: preparing truncation {truncation} ahead failed: {e}", file=sys.stderr)
            finally:
                with self.changed:  # stored and released together: a waiting request finds it in the cache
                    if buffers is not None:
                        self._store(truncation, buffers)
                    self.warming = ()
                    self.changed.notify_all()

    def sheet(self, class_id: int, truncation=None, seed: int = 0, n: int = 8) -> torch.Tensor:
        """`python sample.py --class ID --n N --seed S [--truncation T]` (with --pretrained for released weights)."""
        with self._serving():
            self._prepare(truncation)
            z, y = class_sheet_inputs(self.cfg.z_dim, self.cfg.n_classes, classes=[class_id], per_class=n,
                                      threshold=truncation, seed=seed, tfhub=self.pretrained)
            images = generate(self.G, z, y, batch_size=self.batch_size)
        self._want(truncation)
        return images

    def interpolation(self, mode: str, classes: list[int], truncation=None, seed: int = 0) -> torch.Tensor:
        """`python sample.py --interp MODE --class A [B] --seed S [--truncation T]`: 4 rows of 8 steps."""
        if self.pretrained:
            raise ValueError("interpolation sheets are drawn for this project's checkpoints only (sample.py "
                             "--interp does not take --pretrained)")
        with self._serving():
            self._prepare(truncation)
            z, e = interpolation_inputs(self.G, mode, threshold=truncation, seed=seed, classes=classes)
            images = generate(self.G, z, e, batch_size=self.batch_size)
        self._want(truncation)
        return images

    def info(self) -> dict:
        return {"name": self.cfg.name, "classes": self.classes, "resolution": self.cfg.resolution,
                "pretrained": self.pretrained, "about": self.about, "max_n": MAX_N,
                "slider": {"min": slider()[0], "max": TOP, "step": STEP, "start": PAGE_START}, **self.progress()}

    def progress(self) -> dict:
        """{"ready": truncations whose statistics are ready, "of": how many the page has}; the released weights
        carry theirs for every truncation."""
        n = len(slider())
        return {"ready": n if self.pretrained else self.ready(), "of": n}


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
                                            "seconds": time.perf_counter() - t0, **sampler.progress()})
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
