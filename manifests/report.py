"""``medcorpus report OUT``: one self-contained HTML page about a release.

Everything comes from the manifest through the read-only DuckDB views (``manifests/query.py``):
the composition over releases from ``runs`` (each build records its samples per family, image type
and modality), the sample columns for sizes, captions and panels, ``dropped`` for filters and
duplicates, the ``concepts`` view, ``errors``, and ``changes`` for this release. Charts are PNGs
embedded as ``data:`` URIs and the style is inline, so the file needs nothing beside it.
"""
from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any, Callable, Sequence

import duckdb

from medcorpus.manifests import report_plots as plots
from medcorpus.manifests.completion import read_record
from medcorpus.manifests.query import connect
from medcorpus.manifests.storage import Output

REPORTS = "reports"
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}
th{background:#f3f3f3}.facts td:first-child{font-weight:600}img{max-width:100%}.none{color:#777}"""
Section = Callable[[duckdb.DuckDBPyConnection], str]


def write_report(output: Output, path: str | None = None, root: Output | None = None) -> str:
    """Write the report of the release ``output`` holds and return where it went: ``path``, else
    ``reports/release-N.html`` under ``root`` (the output folder the releases live in). A published
    release folder is never written to again, so the report lives beside the releases, not in one."""
    page = render(output)
    if path is None:
        dest = root or output
        name = f"{REPORTS}/release-{int((read_record(output) or {}).get('release') or 0):06d}.html"
        dest.write_bytes(name, page.encode("utf-8"))
        return dest.path(name) if dest.is_local else f"{dest.url.rstrip('/')}/{name}"
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def render(output: Output) -> str:
    record = read_record(output) or {}
    con = connect(output.url)
    try:
        body = [_facts(record, con)] + [_section(title, fn, con) for title, fn in SECTIONS]
    finally:
        con.close()
    title = f"medcorpus release {record.get('release', '?')}"
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>")


def _section(title: str, fn: Section, con: duckdb.DuckDBPyConnection) -> str:
    try:
        content = fn(con)
    except duckdb.CatalogException:  # a table this output does not have (older outputs)
        content = ""
    return f"<h2>{html.escape(title)}</h2>" + (content or "<p class=none>nothing to show</p>")


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _facts(record: dict[str, Any], con: duckdb.DuckDBPyConnection) -> str:
    n_articles = _rows(con, "SELECT count(*) FROM articles")[0][0]
    n_shards = _rows(con, "SELECT count(DISTINCT shard) FROM samples")[0][0]
    facts = [("release", record.get("release")), ("finished", record.get("finished_at")),
             ("samples", record.get("samples")), ("articles", n_articles), ("shards", n_shards),
             ("medcorpus", record.get("medcorpus_version")), ("schema", record.get("schema_version")),
             ("report written", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    return f"<table class=facts>{rows}</table>"


def _over_releases(column: str, title: str) -> Section:
    def section(con: duckdb.DuckDBPyConnection) -> str:
        rows = _rows(con, f"SELECT release, {column} FROM runs WHERE release IS NOT NULL AND {column} IS NOT NULL "
                          f"QUALIFY row_number() OVER (PARTITION BY release ORDER BY finished_at DESC) = 1 ORDER BY release")
        counts = [(r, json.loads(doc)) for r, doc in rows if doc and doc != "{}"]
        if not counts:
            return ""
        names = sorted({name for _, c in counts for name in c})
        series = {name: [c.get(name, 0) for _, c in counts] for name in names}
        chart = plots.stacked_by_release([r for r, _ in counts], series, title)
        latest = counts[-1][1]
        return _img(chart, title) + _table(("", "samples in the latest release"), sorted(latest.items()))
    return section


def _sizes(con: duckdb.DuckDBPyConnection) -> str:
    rows = _rows(con, "SELECT greatest(orig_width, orig_height), greatest(width, height) FROM samples")
    if not rows:
        return ""
    return (_img(plots.histogram([r[0] for r in rows], "Longest side of the source image", "pixels", log_x=True),
                 "source sizes")
            + _img(plots.histogram([r[1] for r in rows], "Longest side as stored in the shards", "pixels"), "stored sizes"))


def _captions(con: duckdb.DuckDBPyConnection) -> str:
    rows = _rows(con, "SELECT len(string_split(trim(coalesce(caption, '')), ' ')) FROM samples")
    if not rows:
        return ""
    words = [r[0] for r in rows]
    median = sorted(words)[len(words) // 2]
    return (_img(plots.histogram(words, "Caption length", "words", log_x=True), "caption lengths")
            + f"<p>median {median} words; {sum(w < 5 for w in words)} captions under 5 words</p>")


def _drops(con: duckdb.DuckDBPyConnection) -> str:
    rows = _rows(con, "SELECT stage || ': ' || coalesce(dropped_by, '?'), count(*) n FROM dropped "
                      "WHERE stage <> 'dedup' GROUP BY 1 ORDER BY n DESC, 1")
    if not rows:
        return ""
    reasons = _rows(con, "SELECT stage, dropped_by, reason, count(*) n FROM dropped WHERE stage <> 'dedup' "
                         "GROUP BY ALL ORDER BY n DESC LIMIT 15")
    return (_img(plots.bars([r[0] for r in rows], [r[1] for r in rows], "Samples dropped, by stage and filter"), "drops")
            + _table(("stage", "filter", "reason", "samples"), reasons))


def _duplicates(con: duckdb.DuckDBPyConnection) -> str:
    kinds = _rows(con, "SELECT coalesce(dropped_by, '?'), count(*) n FROM dropped WHERE stage = 'dedup' "
                       "GROUP BY 1 ORDER BY n DESC, 1")
    clusters = _rows(con, "SELECT count(DISTINCT dedup_cluster) FROM samples WHERE dedup_cluster IS NOT NULL")[0][0]
    text = f"<p>{sum(n for _, n in kinds)} samples dropped as duplicates; {clusters} duplicate clusters keep a canonical sample</p>"
    if not kinds:
        return text
    return _img(plots.bars([k for k, _ in kinds], [n for _, n in kinds], "Duplicates dropped, by matching kinds"),
                "duplicates") + text


def _concepts(con: duckdb.DuckDBPyConnection) -> str:
    rows = _rows(con, "SELECT name || ' (' || cui || ')', count(DISTINCT key) n FROM concepts WHERE field = 'caption' "
                      "AND NOT coalesce(negated, false) GROUP BY 1 ORDER BY n DESC, 1 LIMIT 20")
    if not rows:
        return "<p class=none>no linked concepts (the concepts stage did not run, or found none)</p>"
    return _img(plots.bars([r[0] for r in rows], [r[1] for r in rows], "Top caption concepts", "samples"), "concepts")


def _panels(con: duckdb.DuckDBPyConnection) -> str:
    rows = _rows(con, "SELECT n_panels, count(*) FROM samples WHERE parent_key IS NULL AND n_panels IS NOT NULL "
                      "GROUP BY 1 ORDER BY 1")
    if not rows:
        return ""
    chart = plots.bars([f"{p} panels" for p, _ in rows], [n for _, n in rows], "Whole figures by panels cut from them",
                       "figures")
    status = _rows(con, "SELECT coalesce(split_status, '?'), count(*) n FROM samples WHERE parent_key IS NULL "
                        "GROUP BY 1 ORDER BY n DESC LIMIT 10")
    return _img(chart, "panels per figure") + _table(("split status", "figures"), status)


def _errors(con: duckdb.DuckDBPyConnection) -> str:
    rows = _rows(con, "SELECT stage || ': ' || reason, count(*) n FROM errors GROUP BY 1 ORDER BY n DESC, 1")
    if not rows:
        return "<p>no errors</p>"
    return (_img(plots.bars([r[0] for r in rows], [r[1] for r in rows], "Skipped inputs, by stage and reason", "inputs"),
                 "errors") + _table(("stage: reason", "inputs"), rows))


def _changes(con: duckdb.DuckDBPyConnection) -> str:
    counts = _rows(con, "SELECT change, reason, count(*) n FROM changes GROUP BY ALL ORDER BY change, n DESC")
    if not counts:
        return "<p>no sample was added, removed or updated since the previous release</p>"
    sample = _rows(con, "SELECT key, change, reason, detail, old_family, new_family FROM changes "
                        "ORDER BY change, reason, key LIMIT 50")
    return (_img(plots.bars([f"{c}: {r}" for c, r, _ in counts], [n for *_, n in counts], "Changes since the previous release"),
                 "changes")
            + _table(("change", "reason", "samples"), counts)
            + "<p>first 50 (all in manifest/changes.parquet; <code>medcorpus diff</code> writes the removal list)</p>"
            + _table(("key", "change", "reason", "detail", "old family", "new family"), sample))


SECTIONS: list[tuple[str, Section]] = [
    ("Samples per license family, by release", _over_releases("samples_by_family", "Samples per license family")),
    ("Samples per image type, by release", _over_releases("samples_by_image_type", "Samples per image type")),
    ("Samples per imaging modality, by release", _over_releases("samples_by_modality", "Samples per imaging modality")),
    ("Image sizes", _sizes),
    ("Caption length", _captions),
    ("Drops by filter and reason", _drops),
    ("Duplicates", _duplicates),
    ("Top concepts", _concepts),
    ("Panels per figure", _panels),
    ("Errors by reason", _errors),
    ("This release's changes", _changes),
]
