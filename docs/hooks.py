"""MkDocs hooks of the jomasim documentation (`mkdocs.yml`: `hooks:`).

- **Numbers from runs.** A page writes `{{ RUN:KEY }}` for a number of `docs/results/RUN/summary.json`
  (`{{ RUN/FILE:KEY }}` for `FILE.json` there; `KEY` a dotted path, `discrete.entropy_min`,
  `v0_final.0`), with optional filters after `|`: `mean`, `min`,
  `max` (of a per-seed list), `range` (`min–max`, or `min to max` when min < 0), `count` (how many entries are not null), and a
  format (`.3f`, `.0f`, `.2g`); `{{ table RUN }}` writes the summary's `table` (a list of rows)
  as a Markdown table under the command line's headers (`HEADERS`), `{{ table RUN: COLUMN, COLUMN }}` only those columns. A key that is not
  there fails the build: no page can state a number that no run produced.
- **Equations at build time.** `$…$` and `$$…$$` (pymdownx.arithmatex, generic mode) become
  MathML with `latex2mathml`, which browsers render without any script: the pages need nothing
  from the network.
- **Benchmark figures.** `benchmarks/figures/*.png` are served beside the benchmarks page, which
  includes `benchmarks/README.md`.
"""

import html
import json
import re
from pathlib import Path

from latex2mathml.converter import convert
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

from jomasim.cli._print import HEADERS, cell_text

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"

_NUMBER = re.compile(r"\{\{\s*([\w/-]+):([\w.-]+)((?:\s*\|\s*[\w.%-]+)*)\s*\}\}")
_TABLE = re.compile(r"\{\{\s*table\s+([\w-]+)(?:\.(\w+))?(?::\s*([\w, ]+))?\s*\}\}")
_INLINE_MATH = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_DISPLAY_MATH = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)


def _summary(run: str) -> dict:
    folder, _, name = run.partition("/")
    path = RESULTS / folder / f"{name or 'summary'}.json"
    if not path.exists():
        raise PluginError(f"docs: no {path.relative_to(ROOT)}; run python docs/make_results.py {folder}")
    return json.loads(path.read_text())


def _lookup(run: str, key: str):
    value = _summary(run)
    for part in key.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise PluginError(f"docs: {run}'s summary has no {key!r}")
    return value


def _format(value, spec: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec) if spec else f"{value:.4g}"


def _apply(run: str, key: str, filters: list[str]) -> str:
    value = _lookup(run, key)
    spec = next((name for name in filters if name.startswith(".")), "")
    for name in (name for name in filters if not name.startswith(".")):
        if not isinstance(value, list):
            raise PluginError(f"docs: {run}:{key} is not a list; '{name}' needs one")
        values = [item for item in value if item is not None]
        if name == "mean":
            value = sum(values) / len(values)
        elif name in ("min", "max"):
            value = (min if name == "min" else max)(values)
        elif name == "count":
            value = len(values)
        elif name == "range":
            low, high = _format(min(values), spec), _format(max(values), spec)
            return low if low == high else f"{low} to {high}" if min(values) < 0 else f"{low}–{high}"
        else:
            raise PluginError(f"docs: unknown filter {name!r} in {{{{ {run}:{key} }}}}")
    return _format(value, spec)


def _number(match: re.Match) -> str:
    run, key, filters = match.group(1), match.group(2), match.group(3)
    return _apply(run, key, [part.strip() for part in filters.split("|") if part.strip()])


def _table(match: re.Match) -> str:
    run, key, columns = match.group(1), match.group(2) or "table", match.group(3)
    rows = _lookup(run, key)
    names = [name.strip() for name in columns.split(",")] if columns else list(rows[0])
    missing = [name for name in names if name not in rows[0]]
    if missing:
        raise PluginError(f"docs: {run}'s {key} has no columns {missing}")
    lines = ["| " + " | ".join(HEADERS.get(name, (name,))[0] for name in names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell_text(row[name]) for name in names) + " |" for row in rows]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Fills in the numbers and tables of runs."""
    return _NUMBER.sub(_number, _TABLE.sub(_table, markdown))


def _mathml(latex: str, display: str) -> str:
    return convert(html.unescape(latex.strip()), display=display)


_IMAGE = re.compile(r'(<img [^>]*src="([^"]+)"[^>]*>)')
"""A figure on a page; shown at the page's width, it links to itself at full size."""


def on_page_content(content: str, page, config, files) -> str:
    """Renders the equations as MathML and makes every figure a link to its full size."""
    content = _DISPLAY_MATH.sub(lambda match: f'<div class="math">{_mathml(match.group(1), "block")}</div>', content)
    content = _INLINE_MATH.sub(lambda match: _mathml(match.group(1), "inline"), content)
    return _IMAGE.sub(r'<a href="\2" title="full size">\1</a>', content)


def on_files(files, config):
    """Serves the benchmark figures beside the benchmarks page."""
    for path in sorted((ROOT / "benchmarks" / "figures").glob("*.png")):
        files.append(File(f"benchmarks/figures/{path.name}", str(ROOT), config["site_dir"],
                          config["use_directory_urls"]))
    return files
