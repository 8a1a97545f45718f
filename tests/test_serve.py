"""nanobiggan/lab/serve.py: `sample.py --serve`. Its answers are sample.py's images for the same flags (over HTTP,
with the standing-statistics cache in between), its bad requests get a message, and the page works in a real
browser: headless Chromium, driven by Playwright, changes class and truncation and gets sample.py's pixels.
The browser test skips where Playwright or Chromium is not installed (.ci/run installs both)."""
import base64
import io
import json
import shutil
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import sample  # noqa: E402
from test_evaluate import env  # noqa: E402,F401  (a tiny checkpoint after one training step)

STANDING = ["--standing-batches", "2"]


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    """`python sample.py --checkpoint CKPT --serve --port 0 --standing-batches 2`, in a thread: (base URL, ckpt).
    Its statistics file goes to a cache folder of its own."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NANOBIGGAN_CACHE", str(tmp_path_factory.mktemp("serve_cache")))
    args = sample.parse_args(["--checkpoint", str(env["ckpt"]), "--serve", "--port", "0", *STANDING])
    started = threading.Event()
    holder = {}

    def ready(srv):
        holder["server"] = srv
        started.set()
    thread = threading.Thread(target=sample.sample_serve, args=(args, "cpu", ready), daemon=True)
    thread.start()
    assert started.wait(60), "the sampler did not start"
    yield f"http://127.0.0.1:{holder['server'].server_address[1]}", env["ckpt"]
    holder["server"].shutdown()
    thread.join(120)  # serve() closes the sampler: its warm-up stops before the next forward
    mp.undo()
    assert not thread.is_alive()


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def pixels(data_url_or_path) -> np.ndarray:
    if str(data_url_or_path).startswith("data:image/png;base64,"):
        data = base64.b64decode(str(data_url_or_path).split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return np.asarray(Image.open(data_url_or_path).convert("RGB"))


def sample_png(ckpt, tmp_path, *flags) -> np.ndarray:
    out = tmp_path / f"s{len(list(tmp_path.glob('s*.png')))}.png"
    sample.main(["--checkpoint", str(ckpt), *STANDING, "--out", str(out), *flags])
    return pixels(out)


def test_answers_are_sample_py_images(server, tmp_path):
    """Each answer equals sample.py's PNG for the same flags, also when its standing statistics come from the
    cache after other (truncation, seed) pairs were drawn in between."""
    base, ckpt = server
    want = sample_png(ckpt, tmp_path, "--class", "3", "--n", "4", "--seed", "2", "--truncation", "0.5")
    for query in ("class=3&n=4&seed=2&truncation=0.5", "class=1&n=4&seed=5&truncation=none",
                  "class=3&n=4&seed=2&truncation=0.5"):  # the third: from the cache
        status, body = get(f"{base}/sheet?{query}")
        assert status == 200 and len(body["images"]) == 4 and body["nrow"] == 4
        if query.startswith("class=3"):
            np.testing.assert_array_equal(pixels(body["sheet"]), want)
            np.testing.assert_array_equal(pixels(body["images"][1]), want[2:34, 36:68])  # image 1, 2 px padding
    other = sample_png(ckpt, tmp_path, "--class", "1", "--n", "4", "--seed", "5")
    np.testing.assert_array_equal(pixels(get(f"{base}/sheet?class=1&n=4&seed=5")[1]["sheet"]), other)
    assert not np.array_equal(want, other)  # the comparison can fail
    interp = sample_png(ckpt, tmp_path, "--interp", "class", "--class", "3", "7", "--seed", "1", "--truncation", "0.7")
    status, body = get(f"{base}/interp?mode=class&class=3,7&seed=1&truncation=0.7")
    assert status == 200 and len(body["images"]) == 32
    np.testing.assert_array_equal(pixels(body["sheet"]), interp)


def tiny_sampler(ckpt, warm: bool, store=None):
    from nanobiggan.lab import serve
    from nanobiggan.lab.generators import load_generator
    G, cfg, classes = load_generator(ckpt)
    return serve.Sampler(G, cfg, classes, standing_batches=2, standing_batch_size=8, warm=warm, store=store)


def test_the_page_truncations_nearest_first():
    from nanobiggan.lab.serve import STEP, TOP, Sampler, slider
    ts = slider()
    assert ts[0] == STEP and ts[-2] == TOP and ts[-1] is None and len(ts) == round(TOP / STEP) + 1
    assert sorted(Sampler.nearest(0.8), key=str) == sorted(ts, key=str)  # each once
    assert Sampler.nearest(0.8)[:5] == [0.8, 0.75, 0.85, 0.7, 0.9]
    assert Sampler.nearest(None)[:3] == [None, 2.0, 1.95] and Sampler.nearest(0.05)[:2] == [0.05, 0.1]
    assert Sampler.nearest(0.37)[:2] == [0.35, 0.4]  # off the slider (a typed URL): its neighbours


def test_warm_up_prepares_every_truncation_exactly_as_a_request_would(env, request):
    """The warm-up prepares the statistics of every truncation the page offers, on its own copy of G; asking for
    any of them, at any seed, then computes nothing, and the images equal those of a sampler without warm-up."""
    from nanobiggan.lab.serve import slider
    warm, cold = tiny_sampler(env["ckpt"], warm=True), tiny_sampler(env["ckpt"], warm=False)
    request.addfinalizer(warm.close)
    assert warm.settle(300) and set(warm.cache) == set(slider()) and warm.ready() == len(slider())
    torch = pytest.importorskip("torch")
    cases = [(0.5, 0), (0.8, 4), (0.8, 9), (2.0, 1), (None, 4), (0.05, 3)]
    for t, seed in cases:
        assert torch.equal(warm.sheet(3, t, seed, n=4), cold.sheet(3, t, seed, n=4)), (t, seed)
    assert warm.computed == 0 and cold.computed == len({t for t, _ in cases})  # one per truncation, not per seed
    assert not torch.equal(warm.sheet(3, 0.8, 4, n=4), warm.sheet(3, 0.8, 9, n=4))  # the seed still matters


def test_a_request_for_the_threshold_being_warmed_waits_for_it(env, request):
    """Deterministic: the warm-up is held before its first forward of 0.6; the request for 0.6 lets it finish
    and uses its statistics instead of computing them again."""
    sampler, cold = tiny_sampler(env["ckpt"], warm=False), tiny_sampler(env["ckpt"], warm=False)
    sampler.idle.clear()  # as if a request were being served: the warm-up waits before each forward
    sampler.start_warm_up(first=[0.6])
    request.addfinalizer(sampler.close)
    with sampler.changed:
        assert sampler.changed.wait_for(lambda: sampler.warming == (0.6,), 60)
    sampler.idle.set()
    images = sampler.sheet(2, 0.6, seed=1, n=4)
    torch = pytest.importorskip("torch")
    assert sampler.computed == 0 and torch.equal(images, cold.sheet(2, 0.6, 1, n=4))
    sampler.close()
    assert not sampler.warm_thread.is_alive() and sampler.warming == ()


def test_close_stops_the_warm_up_mid_preparation(env):
    sampler = tiny_sampler(env["ckpt"], warm=False)
    sampler.idle.clear()  # hold it before its first forward
    sampler.start_warm_up(first=[0.3, 0.4])
    with sampler.changed:
        assert sampler.changed.wait_for(lambda: sampler.warming == (0.3,), 60)
    sampler.close()
    assert not sampler.warm_thread.is_alive() and 0.3 not in sampler.cache and sampler.warming == ()


def test_statistics_are_kept_on_disk_for_these_weights_only(env, tmp_path, capsys):
    """A second page over the same weights starts with the first one's statistics (bit for bit: its images equal
    freshly computed ones); other weights get another file; a damaged file is ignored with a message."""
    import torch
    from nanobiggan.lab.serve import store_path
    store = tmp_path / "standing.pt"
    first = tiny_sampler(env["ckpt"], warm=False, store=store)
    first.sheet(1, 0.6, seed=0, n=4)
    first.sheet(1, None, seed=0, n=4)
    assert first.computed == 2 and store.exists()
    second, cold = tiny_sampler(env["ckpt"], warm=False, store=store), tiny_sampler(env["ckpt"], warm=False)
    assert set(second.cache) == {0.6, None}
    for t in (0.6, None):
        assert torch.equal(second.sheet(5, t, seed=3, n=4), cold.sheet(5, t, seed=3, n=4))
    assert second.computed == 0
    G = first.G
    path = store_path(G, 2, 8)
    assert path == store_path(G, 2, 8) and path != store_path(G, 3, 8) and path != store_path(G, 2, 16)
    with torch.no_grad():
        next(G.parameters()).add_(1e-3)
    assert store_path(G, 2, 8) != path  # other weights, other statistics
    store.write_bytes(b"not a checkpoint")
    damaged = tiny_sampler(env["ckpt"], warm=False, store=store)
    assert damaged.cache == {} and "ignoring the unreadable statistics file" in capsys.readouterr().err
    damaged.sheet(1, 0.6, seed=0, n=4)
    assert set(tiny_sampler(env["ckpt"], warm=False, store=store).cache) == {0.6}  # rewritten whole


def test_page_info_and_bad_requests(server):
    base, ckpt = server
    with urllib.request.urlopen(base + "/", timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/html") and b'id="trunc"' in r.read()
    status, info = get(base + "/info")
    assert status == 200 and info["classes"][3] == "cat" and info["resolution"] == 32 and str(ckpt) in info["about"]
    assert info["of"] == 41 and 0 <= info["ready"] <= 41  # the slider's 40 positions and none
    for query, needle in (("class=10", "class ids must be 0..9"), ("class=0&truncation=0", "positive"),
                          ("class=0&truncation=0.001", "smallest allowed is 0.01"), ("class=0&n=0", "n must be"),
                          ("class=0&n=65", "n must be 1..64"), ("class=0&seed=-1", "seed must be")):
        status, body = get(f"{base}/sheet?{query}")
        assert status == 400 and needle in body["error"], (query, body)
    status, body = get(f"{base}/interp?mode=class&class=3")
    assert status == 400 and "at least 2 class ids" in body["error"]
    assert get(base + "/nothing")[0] == 404


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_the_page_in_headless_chromium(server, tmp_path):
    """Open the page, change the class by searching its name and the truncation with the slider: the images
    change, and the sheet the page offers for download is sample.py's for the page's own inputs."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if chromium() is None:
        pytest.skip("no Chromium: apt-get install chromium")
    base, ckpt = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(base + "/")

        def settled(previous=None) -> tuple[dict, str]:
            """Wait until no request is pending and the first image differs from `previous`."""
            page.wait_for_function("""prev => document.body.dataset.pending === "0" &&
                document.querySelector('#images img') !== null &&
                document.querySelector('#images img').src !== prev""", arg=previous, timeout=120_000)
            params = json.loads(page.get_attribute("#images", "data-params"))
            return params, page.get_attribute("#images img", "src")

        params, first = settled()
        assert params == {"class": "0", "truncation": "0.5", "seed": "0", "n": "8"}
        page.fill("#search", "cat")  # search by name: the only match is selected and drawn
        params, by_class = settled(first)
        assert params["class"] == "3" and page.input_value("#cls") == "3"
        page.eval_on_selector("#trunc", "e => { e.value = '1'; e.dispatchEvent(new Event('input')); }")
        params, by_trunc = settled(by_class)
        assert params == {"class": "3", "truncation": "1", "seed": "0", "n": "8"}
        assert len({first, by_class, by_trunc}) == 3
        sheet = pixels(page.get_attribute("#sheetlink", "href"))
        want = sample_png(ckpt, tmp_path, "--class", "3", "--n", "8", "--seed", "0", "--truncation", "1")
        np.testing.assert_array_equal(sheet, want)
        assert page.get_attribute("#images a", "download").endswith(".png")
        page.click("#interp")  # class interpolation from cat to the second list's default (automobile)
        page.wait_for_function("document.querySelectorAll('#interp-images img').length === 32 && "
                               "document.body.dataset.pending === '0'", timeout=120_000)
        assert page.text_content("#status").startswith("interpolation (class)")
        browser.close()
