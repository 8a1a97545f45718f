"""Run tutorials the way a reader would: every ```python block of the Markdown file, top to bottom, in one
namespace, from the repository root. tests/test_tutorials.py uses the same functions.

    python tutorials/run.py 03              # tutorials/03_*.md with its normal settings
    python tutorials/run.py 06 --fast       # the test suite's small settings (seconds, not minutes)
    python tutorials/run.py all --fast

A line `<!-- needs: NAME -->` (invisible on GitHub) before a block marks it and every later block as needing
NAME ("cifar10": the dataset, "inception": the FID network); the caller decides what to skip.
"""
import argparse
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
NEEDS = re.compile(r"<!--\s*needs:\s*([\w-]+)\s*-->")


class TutorialError(RuntimeError):
    """A block raised: the message names the tutorial, the block number and its line in the .md file."""


def tutorials() -> list[Path]:
    return sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.md"))


def python_blocks(path: Path) -> list[tuple[int, str, set[str]]]:
    """(first code line in the file, code, requirements declared before it) for every ```python block."""
    text = Path(path).read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1), set(NEEDS.findall(text, 0, m.start())))
            for m in BLOCK.finditer(text)]


def run(path: Path, skip=()) -> str | None:
    """Exec the blocks in a fresh namespace; stop before the first block that needs something in `skip`
    and return why (None: every block ran). Tracebacks point at lines of the .md file itself."""
    namespace = {"__name__": "__main__"}
    for i, (line, code, needs) in enumerate(python_blocks(path), 1):
        if needs & set(skip):
            return f"{Path(path).name}: stopped before block {i}, which needs {', '.join(sorted(needs & set(skip)))}"
        try:
            exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)
        except Exception as e:
            raise TutorialError(f"{Path(path).name}: python block {i} (line {line}) failed: "
                                f"{type(e).__name__}: {e}") from e
    return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", nargs="+", help="tutorial numbers (01 or 1) or 'all'")
    p.add_argument("--fast", action="store_true", help="small settings (NANOBIGGAN_TUTORIAL_FAST=1)")
    args = p.parse_args(argv)
    if args.fast:
        os.environ["NANOBIGGAN_TUTORIAL_FAST"] = "1"
    os.chdir(ROOT)  # tutorials use paths relative to the repository root
    sys.path.insert(0, str(ROOT))  # import nanobiggan without installing it
    chosen = [t for t in tutorials() if "all" in args.which or any(t.name.startswith(f"{int(w):02d}_")
                                                                   for w in args.which if w.isdigit())]
    if not chosen:
        sys.exit(f"no tutorial matches {args.which}: choose from {', '.join(t.stem for t in tutorials())}")
    for path in chosen:
        t0 = time.perf_counter()
        print(f"=== {path.name}", flush=True)
        stopped = run(path)
        print(f"=== {path.name}: {stopped or 'done'} in {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
