"""Runs the documentation's code, so that it cannot rot: the README's Python blocks in order, in
one namespace (later blocks use the names of earlier ones), then each page of `docs/` the same way
(one namespace per page), then every script in `examples/`. Any exception fails the run (exit
status 1), naming the block or script.

    python .ci/run_docs.py
"""

import re
import runpy
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(path: Path) -> list[str]:
    """A Markdown file's fenced Python blocks, in order."""
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def page_runs(path: Path) -> list[tuple[str, object]]:
    """One run per Python block of a page, all in one namespace."""
    shared: dict = {}
    name = str(path.relative_to(ROOT))
    return [(f"{name} block {number}", lambda code=code, label=f"<{name} block {number}>": exec(compile(code, label, "exec"), shared))
            for number, code in enumerate(python_blocks(path), start=1)]


def main() -> int:
    runs = page_runs(ROOT / "README.md")
    for page in sorted((ROOT / "docs").rglob("*.md")):
        runs += page_runs(page)
    runs += [(f"examples/{path.name}", lambda path=path: runpy.run_path(str(path), run_name="__main__"))
             for path in sorted((ROOT / "examples").glob("*.py"))]
    failed = []
    for name, run in runs:
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
