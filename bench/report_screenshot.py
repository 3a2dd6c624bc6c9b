"""Render a release report in a real headless browser and save a screenshot, to check that the
page draws (charts, tables) the way a reader sees it.

    python bench/report_screenshot.py OUT [--png report.png] [--height 6000]

writes ``OUT/reports/release-N.html`` (``medcorpus report``) and a PNG of it. The browser is Debian's
``chromium`` package (``apt-get install -y chromium``), else ``chromium-browser``, ``google-chrome``
or ``firefox`` from PATH; nothing is downloaded. ``tests/test_releases.py`` uses it and skips the
screenshot when no browser is installed.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "firefox")


def browser() -> str | None:
    """The first headless-capable browser on PATH, or None."""
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def screenshot(html: Path, png: Path, width: int = 1000, height: int = 6000, timeout_s: float = 120) -> Path:
    """A PNG of ``html`` as the browser lays it out in a ``width`` x ``height`` window."""
    exe = browser()
    if exe is None:
        raise RuntimeError("no browser found: apt-get install -y chromium")
    url = Path(html).resolve().as_uri()
    if Path(exe).name == "firefox":
        cmd = [exe, "--headless", "--screenshot", str(png), f"--window-size={width},{height}", url]
    else:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--window-size={width},{height}", f"--screenshot={png}", url]
    with tempfile.TemporaryDirectory(prefix="report-browser-") as profile:
        if Path(exe).name != "firefox":
            cmd.insert(1, f"--user-data-dir={profile}")
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout_s)
    if not Path(png).is_file():
        raise RuntimeError(f"{exe} wrote no screenshot")
    return Path(png)


def main() -> None:
    from medcorpus.manifests.completion import require_complete
    from medcorpus.manifests.layout import parse_ref
    from medcorpus.manifests.report import write_report
    from medcorpus.manifests.storage import Output

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="a build's output folder")
    parser.add_argument("--png", default="report.png")
    parser.add_argument("--height", type=int, default=6000)
    args = parser.parse_args()
    page = write_report(require_complete(args.out), root=Output(parse_ref(args.out)[0]))
    print(f"report: {page}")
    print(f"screenshot: {screenshot(Path(page), Path(args.png), height=args.height)}")


if __name__ == "__main__":
    main()
