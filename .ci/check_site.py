"""The built documentation site read as a reader opens it from disk: search works from file://
and the page asks nothing of the network.

Usage: `python .ci/check_site.py SITE_DIR`. Loads `SITE_DIR/index.html?q=sweep` in headless
Chromium (Debian's `chromium`), lets the page run, and fails unless the search box is there and
lists results, and Chromium's network log holds no http(s) request that the page started (the
browser's own background requests, whose initiator is no origin, are not the page's). Without
Chromium on the machine it says so and passes (CI may lack it; the development machines have it).
"""

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HEADLESS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions")


def page_requests(log: Path) -> list[str]:
    """The http(s) URLs that a page asked for, from Chromium's network log (`--log-net-log`)."""
    record = json.loads(log.read_text())
    start = record["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return sorted({event["params"]["url"] for event in record["events"]
                   if event["type"] == start and event["params"].get("url", "").startswith(("http:", "https:"))
                   and event["params"].get("initiator") != "not an origin"})


def main() -> int:
    site = Path(sys.argv[1]).resolve()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("check_site: no chromium on this machine; the site was not opened")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "net.json"
        page = subprocess.run([browser, *HEADLESS, f"--user-data-dir={scratch}/profile", f"--log-net-log={log}",
                               "--virtual-time-budget=10000", "--dump-dom", f"{site.as_uri()}/index.html?q=sweep"],
                              capture_output=True, text=True, timeout=120).stdout
        requests = page_requests(log)
    box = re.search(r'<input[^>]*class="md-search__input', page) is not None
    found = re.search(r'md-search-result__meta">([^<]*)<', page)
    print(json.dumps({"search box": box, "search result": found.group(1) if found else None,
                      "requests leaving the machine": requests}, indent=2))
    if not box or found is None or not re.match(r"\d+ matching", found.group(1)) or requests:
        print("check_site: failed: search must list results from file:// with nothing fetched", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
