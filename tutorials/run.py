"""Run tutorials the way a reader would: every ```python block of the Markdown file, top to bottom, in one
namespace, from the repository root. tests/test_tutorials.py uses the same functions.

    python tutorials/run.py 03              # tutorials/03_*.md with its normal settings
    python tutorials/run.py 06 --fast       # the test suite's small settings (seconds, not minutes)
    python tutorials/run.py all --fast
    python tutorials/run.py 07 --figures tutorials/figures --record   # rewrite the committed figures and outputs

A line `<!-- needs: NAME -->` (invisible on GitHub) before a block marks it and every later block as needing
NAME ("cifar10": the dataset, "inception": the FID network, "biggan-deep-128": the released weights); the caller
decides what to skip. This runner skips only what it can check without downloading anything and what a tutorial
must not download on its own: the released BigGAN-deep weights (200 MB and more), see `unavailable`.

With --record, what each block prints is stored in the Markdown right after it, as a ```text block opened by
`<!-- output -->`, the way a notebook keeps its outputs: the reader sees what the code printed without running it.

The Markdown is the one source. `--notebooks` writes the paired Jupyter notebook beside each tutorial
(tutorials/NN_name.ipynb): prose as Markdown cells (GitHub's $`x`$ and ```math written as Jupyter's $x$ and $$),
every ```python block as a code cell holding its recorded output, other code blocks (```bash) as Markdown.
tests/test_tutorials.py checks that the committed notebooks are exactly what this writes.
"""
import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
NEEDS = re.compile(r"<!--\s*needs:\s*([\w-]+)\s*-->")
OUTPUT = re.compile(r"\n\n<!-- output -->\n```text\n.*?^```[ \t]*(?=\n|\Z)", re.S | re.M)  # a recorded output


class TutorialError(RuntimeError):
    """A block raised: the message names the tutorial, the block number and its line in the .md file."""


def tutorials() -> list[Path]:
    return sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.md"))


def python_blocks(path: Path) -> list[tuple[int, str, set[str]]]:
    """(first code line in the file, code, requirements declared before it) for every ```python block."""
    text = Path(path).read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1), set(NEEDS.findall(text, 0, m.start())))
            for m in BLOCK.finditer(text)]


def unavailable(needs) -> dict[str, str]:
    """{requirement: why it is not here} for those of `needs` that are the released BigGAN-deep weights and are
    not on this machine. They are here if $NANOBIGGAN_PRETRAINED names a folder holding pytorch_model.bin and
    config.json (the tutorial then loads that folder), or if the download cache of nanobiggan.lab.pretrained
    already holds them; nothing is downloaded. Other requirements are the caller's to check."""
    from nanobiggan.lab.pretrained import URLS, cached, lacking
    missing = {}
    for name in sorted(set(needs) & set(URLS)):  # the released names are the markers for their weights
        folder = os.environ.get("NANOBIGGAN_PRETRAINED")
        if folder:
            if files := lacking(folder):
                missing[name] = f"NANOBIGGAN_PRETRAINED={folder} lacks {' and '.join(files)}"
        elif cached(name) is None:
            missing[name] = (f"the released weights are not downloaded: python sample.py --pretrained {name} "
                             f"fetches them once, or set NANOBIGGAN_PRETRAINED to a folder holding them")
    return missing


class _Tee(io.TextIOBase):
    """Write to the terminal and keep a copy (a block's output, for --record)."""

    def __init__(self, out):
        self.out, self.kept = out, io.StringIO()

    def write(self, text):
        self.kept.write(text)
        return self.out.write(text)

    def flush(self):
        self.out.flush()


def run(path: Path, skip=(), outputs: list | None = None) -> str | None:
    """Exec the blocks in a fresh namespace; stop before the first block that needs something in `skip`
    and return why (None: every block ran; a dict `skip` adds its reasons). Tracebacks point at lines of the .md
    file itself. If `outputs` is a list, what each block printed is appended to it."""
    namespace = {"__name__": "__main__"}
    for i, (line, code, needs) in enumerate(python_blocks(path), 1):
        if needs & set(skip):
            missing = sorted(needs & set(skip))
            why = "".join(f" ({skip[n]})" for n in missing if isinstance(skip, dict) and skip[n])
            return f"{Path(path).name}: stopped before block {i}, which needs {', '.join(missing)}{why}"
        tee = _Tee(sys.stdout)
        try:
            with contextlib.redirect_stdout(tee):
                exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)
        except Exception as e:
            raise TutorialError(f"{Path(path).name}: python block {i} (line {line}) failed: "
                                f"{type(e).__name__}: {e}") from e
        if outputs is not None:
            outputs.append(tee.kept.getvalue())
    return None


def record(path: Path, outputs: list[str]) -> None:
    """Store outputs[i] after python block i of the Markdown file (replacing what was recorded before; an
    empty output stores nothing). Text outside the output blocks is unchanged."""
    text = OUTPUT.sub("", Path(path).read_text(encoding="utf-8"))
    ends = [m.end() for m in BLOCK.finditer(text)]  # just after each closing ``` (its newline not included)
    if len(outputs) > len(ends):
        raise ValueError(f"{Path(path).name}: {len(outputs)} outputs for {len(ends)} python blocks")
    for end, out in sorted(zip(ends, outputs), reverse=True):
        if out.strip():
            fence = "```"
            text = text[:end] + f"\n\n<!-- output -->\n{fence}text\n{out.rstrip()}\n{fence}" + text[end:]
    Path(path).write_text(text, encoding="utf-8")


INLINE_MATH = re.compile(r"\$`(.+?)`\$")  # GitHub's inline maths, $`x`$
DISPLAY_MATH = re.compile(r"^([ \t]*)```math[ \t]*\n(.*?)^[ \t]*```[ \t]*$", re.S | re.M)  # GitHub's display maths
NOTEBOOK_SETUP = ("# The tutorials run from the repository root; Jupyter starts in tutorials/.\n"
                  "import os, sys\n"
                  "if os.path.basename(os.getcwd()) == \"tutorials\":\n"
                  "    os.chdir(\"..\")\n"
                  "sys.path.insert(0, os.getcwd())")


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def notebook(path: Path) -> dict:
    """The Jupyter notebook (nbformat 4) of a tutorial: its prose as Markdown cells, its python blocks as code
    cells with the outputs recorded after them (--record), a first cell that moves to the repository root."""
    text = Path(path).read_text(encoding="utf-8")

    def markdown(chunk: str) -> dict | None:
        chunk = DISPLAY_MATH.sub(lambda m: f"{m.group(1)}$$\n{m.group(2)}{m.group(1)}$$",  # keeps a list's indent
                                 INLINE_MATH.sub(r"$\1$", chunk)).strip("\n")
        return {"cell_type": "markdown", "metadata": {}, "source": _lines(chunk)} if chunk.strip() else None

    def code(source: str, out: str | None) -> dict:
        outs = [{"output_type": "stream", "name": "stdout", "text": _lines(out)}] if out else []
        return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": outs,
                "source": _lines(source.rstrip("\n"))}

    cells, at = [code(NOTEBOOK_SETUP, None)], 0
    for m in BLOCK.finditer(text):
        cells += [c for c in [markdown(OUTPUT.sub("", text[at:m.start()]))] if c]
        out = OUTPUT.match(text, m.end())  # the output recorded right after this block, if any
        cells.append(code(m.group(1), re.search(r"```text\n(.*)\n```", out.group(0), re.S).group(1) + "\n"
                          if out else None))
        at = out.end() if out else m.end()
    cells += [c for c in [markdown(OUTPUT.sub("", text[at:]))] if c]
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i}"  # nbformat 4.5 wants ids; stable ones keep the file's diff to what changed
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}}}


def notebook_text(path: Path) -> str:
    """notebook(path) as the .ipynb file's text (stable: sorted keys, one-space indent, as Jupyter writes)."""
    return json.dumps(notebook(path), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", nargs="+", help="tutorial numbers (01 or 1) or 'all'")
    p.add_argument("--fast", action="store_true", help="small settings (NANOBIGGAN_TUTORIAL_FAST=1)")
    p.add_argument("--record", action="store_true", help="store what each block prints in the .md file, after "
                                                         "the block (a ```text block marked <!-- output -->)")
    p.add_argument("--notebooks", action="store_true", help="write the paired notebooks tutorials/NN_*.ipynb "
                                                            "from the Markdown (no code runs)")
    p.add_argument("--figures", help="where the pictures go (NANOBIGGAN_FIGURES; default runs/figures, so a run "
                                     "never overwrites the committed tutorials/figures unless you name it here)")
    args = p.parse_args(argv)
    if args.fast:
        os.environ["NANOBIGGAN_TUTORIAL_FAST"] = "1"
    if args.figures:
        os.environ["NANOBIGGAN_FIGURES"] = str(Path(args.figures).resolve())
    if args.record and args.fast:
        sys.exit("--record stores the outputs of the normal settings: drop --fast")
    os.chdir(ROOT)  # tutorials use paths relative to the repository root
    sys.path.insert(0, str(ROOT))  # import nanobiggan without installing it
    chosen = [t for t in tutorials() if "all" in args.which or any(t.name.startswith(f"{int(w):02d}_")
                                                                   for w in args.which if w.isdigit())]
    if not chosen:
        sys.exit(f"no tutorial matches {args.which}: choose from {', '.join(t.stem for t in tutorials())}")
    if args.notebooks:
        for path in chosen:
            path.with_suffix(".ipynb").write_text(notebook_text(path), encoding="utf-8")
            print(f"wrote {path.with_suffix('.ipynb').relative_to(ROOT)}")
        return
    for path in chosen:
        t0 = time.perf_counter()
        print(f"=== {path.name}", flush=True)
        outputs = [] if args.record else None
        stopped = run(path, skip=unavailable(set().union(*(n for _, _, n in python_blocks(path)))), outputs=outputs)
        if args.record:
            record(path, outputs)
        print(f"=== {stopped or path.name + ': done'} in {time.perf_counter() - t0:.1f} s; pictures in "
              f"{os.environ.get('NANOBIGGAN_FIGURES', 'runs/figures')}/", flush=True)


if __name__ == "__main__":
    main()
