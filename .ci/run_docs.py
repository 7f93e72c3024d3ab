"""Runs the documentation's code, so that it cannot rot: the README's Python blocks in order, in
one namespace (later blocks use the names of earlier ones), then every script in `examples/`.
Any exception fails the run (exit status 1), naming the block or script.

    python .ci/run_docs.py
"""

import re
import runpy
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_blocks() -> list[str]:
    """The README's fenced Python blocks, in order."""
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def main() -> int:
    shared: dict = {}
    runs = [(f"README block {number}", lambda code=code, number=number: exec(
                 compile(code, f"<README block {number}>", "exec"), shared))
            for number, code in enumerate(readme_blocks(), start=1)]
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
