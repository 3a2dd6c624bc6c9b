"""CLI: ``medcorpus diff OUT`` (what changed between two releases, and what derived copies must
drop) and ``medcorpus report OUT`` (an HTML report of the release)."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

err = Console(stderr=True)
REMOVAL_COLUMNS = ("key", "change", "reason", "article_id", "image_sha256", "image_exact_hash", "image_phash",
                   "family", "shard")


def _fail(message: str) -> None:
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _latest_release(out: str) -> tuple[Any, int]:
    """The output (refusing an unfinished one) and the release it holds."""
    from medcorpus.manifests.completion import IncompleteOutput, NotAnOutput, read_record, require_complete

    try:
        output = require_complete(out)
        record = read_record(output) or {}
    except (IncompleteOutput, NotAnOutput, ValueError) as exc:
        _fail(str(exc))
    if not record.get("release"):
        _fail(f"{out} was built before releases were numbered: rebuild it once to start its release history")
    return output, int(record["release"])


def diff(out: str, start: Optional[int], end: Optional[int], removals: Optional[Path]) -> None:
    from medcorpus.manifests import changes

    output, latest = _latest_release(out)
    end = latest if end is None else end
    start = end - 1 if start is None else start
    if not 0 <= start < end <= latest:
        _fail(f"need 0 <= --from < --to <= {latest} (the latest release); got --from {start} --to {end}")
    try:
        rows = changes.compose(output, start, end)
    except ValueError as exc:
        _fail(f"diff: {exc}")
    by_change = {c: sum(1 for r in rows if r["change"] == c) for c in ("added", "removed", "updated")}
    print(f"release {start} -> {end}: " + ", ".join(f"{c} {n}" for c, n in by_change.items()))
    table = Table("change", "reason", "samples")
    for (change, reason), n in sorted(changes.counts(rows).items()):
        table.add_row(change, reason, str(n))
    Console().print(table)
    gone = changes.removal_list(rows)
    path = _write_removals(out, gone, f"removals-{start:06d}-{end:06d}.csv", removals)
    print(f"removal list: {path} ({len(gone)} samples: keys and image hashes, for purging derived copies)")


def _write_removals(out: str, rows: list[dict[str, Any]], name: str, path: Optional[Path]) -> str:
    """The removal list goes to ``path``, else beside the reports (``OUT/reports/NAME``): a read
    command never leaves files in whatever folder it was started from, nor inside a release."""
    from medcorpus.manifests.layout import parse_ref
    from medcorpus.manifests.report import REPORTS
    from medcorpus.manifests.storage import Output

    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, REMOVAL_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    if path is not None:
        path.write_text(text.getvalue(), encoding="utf-8", newline="")
        return str(path)
    root = Output(parse_ref(out)[0])
    root.write_bytes(f"{REPORTS}/{name}", text.getvalue().encode("utf-8"))
    return root.path(f"{REPORTS}/{name}") if root.is_local else f"{root.url.rstrip('/')}/{REPORTS}/{name}"


def report(out: str, path: Optional[str]) -> None:
    from medcorpus.manifests.report import write_report

    from medcorpus.manifests.layout import parse_ref
    from medcorpus.manifests.storage import Output

    output, _ = _latest_release(out)
    print(f"report: {write_report(output, path, Output(parse_ref(out)[0]))}")


def register(app: typer.Typer) -> None:
    @app.command("diff")
    def diff_cmd(
        out: str = typer.Argument(..., help="a build's output directory or URL; OUT@N reads release N"),
        start: Optional[int] = typer.Option(None, "--from", help="the earlier release (default: the one before --to)"),
        end: Optional[int] = typer.Option(None, "--to", help="the later release (default: the latest)"),
        removals: Optional[Path] = typer.Option(None, "--removals",
                                                help="where to write the removal list CSV (default OUT/reports/removals-FROM-TO.csv)"),
    ) -> None:
        """What changed between two releases (counts by change and reason), and the list of samples
        derived copies must drop, by key and image hashes."""
        diff(out, start, end, removals)

    @app.command("report")
    def report_cmd(
        out: str = typer.Argument(..., help="a build's output directory or URL; OUT@N reads release N"),
        path: Optional[str] = typer.Option(None, "--out", help="where to write the HTML (default OUT/reports/release-N.html)"),
    ) -> None:
        """Write a self-contained HTML report of the release: composition over releases, sizes, captions,
        drops, duplicates, concepts, panels, errors and this release's changes."""
        report(out, path)
