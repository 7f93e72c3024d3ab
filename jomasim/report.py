"""One offline HTML page over several reproductions: each figure (embedded) and its headline numbers."""

import base64
import html
from pathlib import Path
from typing import Any, NamedTuple


class ReportEntry(NamedTuple):
    """One reproduction on the page: its name, what it shows, and either its summary and figure or
    the reason it was not run."""

    name: str
    what: str
    summary: dict | None
    figure: Path | None
    skipped: str | None = None


def _scalars(summary: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """The summary's numbers, strings and booleans (nested dicts flattened, lists and tables left out)."""
    found = []
    for key, value in summary.items():
        if isinstance(value, dict):
            found += _scalars(value, f"{prefix}{key}.")
        elif isinstance(value, (bool, int, float, str)) and key != "layout":
            found.append((f"{prefix}{key}", value))
    return found


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _table(rows: list[dict]) -> str:
    header = "".join(f"<th>{html.escape(str(key))}</th>" for key in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_cell(value)}</td>" for value in row.values()) + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def index_html(entries: list[ReportEntry], title: str) -> str:
    """The page: per entry a heading, what it shows, the figure as an embedded PNG, the summary's
    headline numbers, its table and layout if it has them; or why it was not run.

    **Arguments:**

    - `entries`: the reproductions, in order.
    - `title`: the page title.

    **Returns:**

    A self-contained HTML document (no external files, readable offline).
    """
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #bbb;padding:2px 6px}</style>",
             f"</head><body><h1>{html.escape(title)}</h1>"]
    for entry in entries:
        parts.append(f"<h2 id='{html.escape(entry.name)}'>{html.escape(entry.name)}</h2><p>{html.escape(entry.what)}</p>")
        if entry.skipped is not None:
            parts.append(f"<p><b>not run:</b> {html.escape(entry.skipped)}</p>")
            continue
        if entry.figure is not None and entry.figure.is_file():
            encoded = base64.b64encode(entry.figure.read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(entry.name)}' src='data:image/png;base64,{encoded}'>")
        numbers = _scalars(entry.summary or {})
        if numbers:
            parts.append(_table([{"quantity": key, "value": value} for key, value in numbers]))
        if entry.summary and entry.summary.get("table"):
            parts.append(_table(entry.summary["table"]))
        if entry.summary and entry.summary.get("layout"):
            parts.append(f"<pre>{html.escape(entry.summary['layout'])}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
