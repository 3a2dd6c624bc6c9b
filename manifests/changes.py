"""What changed between releases: ``manifest/changes.parquet`` and ``medcorpus diff``.

A build compares the samples of the previous release (its folder: ``manifests/releases.py``) with
the ones it publishes: a key only in the old one is *removed*, only in the new one *added*, in both with
a different fingerprint *updated*; unchanged samples are not listed, and neither is a sample that
only moved to another shard. The fingerprint is ``json_sha256``, the hash of the sample's JSON
member, which holds every manifest column but the shard placement, so any change a consumer can
see in a sample (image, caption, family, concepts, duplicate cluster, config ...) counts; it is
read from the manifest, never recomputed. The two releases' samples are walked side by side in
key order, a part at a time (``key_runs``), so neither index is ever held or sorted whole; only
the changed rows are joined with their evidence in DuckDB, a key range at a time, and reach
Python. Reasons come from ``change_reasons``.

Every release's list is kept (``manifest/history/changes-NNNNNN.parquet``, the latest also as
``manifest/changes.parquet``; each release's folder carries the lists of those before it) rather than the whole key index of every release: a list holds only
what changed (a few rows a week against tens of millions per index), and composing the lists of
releases N+1..M gives the changes from N to M exactly, because each row carries both sides
(family, shard, image hashes, fingerprint).
"""
from __future__ import annotations

import dataclasses
import posixpath
import tempfile
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medcorpus import __version__
from medcorpus.manifests import change_reasons, key_runs
from medcorpus.manifests.parquet import read_table
from medcorpus.manifests.query import open_dataset, part_paths
from medcorpus.manifests.releases import Baseline
from medcorpus.manifests.storage import Output
from medcorpus.schemas import manifest as schema

CHANGES = "manifest/changes.parquet"
HISTORY = "manifest/history"
SIDES = ("family", "shard", "image_sha256", "image_exact_hash", "image_phash", "fingerprint")
INDEX_COLUMNS = ("key", "article_id", "pmcid", "version", "figure_id", "license_code", "license_family", "shard",
                 "image_sha256", "image_exact_hash", "image_phash", "caption_md5", "dedup_cluster", "duplicate_of",
                 "source_md5", "source_url", "config_hash", "medcorpus_version", "fingerprint")
INDEX = pa.schema([schema.SAMPLES.field(c) if c in schema.SAMPLES.names else pa.field(c, pa.string())
                   for c in INDEX_COLUMNS])
SAMPLES = "manifest/samples"
DERIVED = {"caption_md5": ("caption", 'md5("caption")'), "fingerprint": ("json_sha256", '"json_sha256"')}
SOURCE_COLUMNS = tuple(DERIVED.get(c, (c,))[0] for c in INDEX_COLUMNS)  # what the index reads of a part


def history_path(release: int) -> str:
    return f"{HISTORY}/changes-{release:06d}.parquet"


# what the reason rules read of each evidence table (manifests/change_reasons.py)
EVIDENCE_COLUMNS = {"articles": ("article_id", "version", "license_family", "license_code", "source_md5"),
                    "dropped": ("key", "stage", "dropped_by", "reason"),
                    "errors": ("input", "article_id", "figure_id", "stage", "reason", "detail"),
                    "figures": ("article_id", "figure_id"), "units": ("unit_id", "fingerprint")}
# per changed sample: (evidence, release side, join columns (table, sample)); the last row wins, as in a dict
LOOKUPS = (("new_dropped", "dropped", "n", "o", (("key", "key"),)),
           ("new_errors", "errors", "n", "o", (("article_id", "article_id"), ("figure_id", "figure_id"))),
           ("new_articles", "articles", "n", "o", (("article_id", "article_id"),)),
           ("new_figures", "figures", "n", "o", (("article_id", "article_id"), ("figure_id", "figure_id"))),
           ("old_articles", "articles", "o", "n", (("article_id", "article_id"),)),
           ("old_dropped", "dropped", "o", "n", (("key", "key"),)),
           ("old_errors", "errors", "o", "n", (("article_id", "article_id"), ("figure_id", "figure_id"))))
BATCH = 20_000  # changed samples whose reasons are worked out at a time
RANGE_ROWS = 25_000  # changed keys joined and sorted with their evidence at a time (200,000 overran DuckDB's 512 MB)


def _index_sql(names: set[str] | None, table: str) -> str:
    """The index query over a table of samples with columns ``names`` registered as ``table`` (a
    column it lacks is null: parts written before ``json_sha256`` have no fingerprint, so their
    samples count as updated)."""
    if names is None:
        return "SELECT " + ", ".join(f'NULL::VARCHAR AS "{c}"' for c in INDEX_COLUMNS) + " WHERE false"

    def column(name: str) -> str:
        source, expr = DERIVED.get(name, (name, f'"{name}"'))
        return f'{expr if source in names else "NULL"} AS "{name}"'
    return f"SELECT {', '.join(column(c) for c in INDEX_COLUMNS)} FROM {table}"


def _load_tables(con: duckdb.DuckDBPyConnection, side: str, source: Output) -> None:
    """Temp tables ``{side}_{name}`` of the release's evidence tables: the columns the rules read
    (null where a file lacks one), each with its row number, read a row group at a time."""
    for name, columns in EVIDENCE_COLUMNS.items():
        target = pa.schema([getattr(schema, name.upper()).field(c) for c in columns] + [pa.field("_row", pa.int64())])
        rel = f"manifest/{name}.parquet"
        reader = pa.RecordBatchReader.from_batches(target, _numbered(source, rel, target))
        con.execute(f"CREATE TEMP TABLE {side}_{name} AS SELECT * FROM reader")


def _numbered(source: Output, rel: str, target: pa.Schema) -> Iterator[pa.RecordBatch]:
    if not source.exists(rel):
        return
    row = 0
    with source.fs.open(source.path(rel), "rb") as f:
        parquet = pq.ParquetFile(f)
        have = set(parquet.schema_arrow.names)
        for batch in parquet.iter_batches(batch_size=BATCH, columns=[c for c in target.names if c in have]):
            arrays = [batch.column(c).cast(t.type) if c in have else pa.nulls(batch.num_rows, t.type)
                      for c, t in zip(target.names[:-1], target)]
            arrays.append(pa.array(range(row, row + batch.num_rows), pa.int64()))
            row += batch.num_rows
            yield pa.RecordBatch.from_arrays(arrays, schema=target)


def _lookup_sql(alias: str, table: str, on: tuple[tuple[str, str], ...], side: str) -> tuple[str, str]:
    """(select expression, join) for one lookup: the last matching row of ``table`` as a struct, or null.
    Only the rows whose first join column a changed sample of this range has are grouped: whole
    groups, so the last row of each is the same."""
    columns = EVIDENCE_COLUMNS[table.split("_", 1)[1]]
    keys = ", ".join(f'"{c}"' for c, _ in on)
    first, first_side = on[0]
    where = "AND article_id IS NOT NULL" if table.endswith("errors") else ""  # as make_evidence indexes them
    # the first column is never null here (IN drops nulls), so a sample absent from this side matches nothing
    match = " AND ".join([f'{alias}."{first}" = {side}."{first_side}"'] +
                         [f'{alias}."{c}" IS NOT DISTINCT FROM {side}."{s}"' for c, s in on[1:]])
    fields = ", ".join(f'"{c}" := "{c}"' for c in columns)
    last = (f"(SELECT {keys}, arg_max(struct_pack({fields}), _row) AS found FROM {table} "
            f'WHERE "{first}" IN (SELECT "{first_side}" FROM {side}_changed) {where} GROUP BY ALL)')
    return f"{alias}.found AS {alias}", f"LEFT JOIN {last} {alias} ON {match}"


# the units a changed sample of this range may come from (``change_reasons._units_of`` picks among
# them): unit ids named like its PMCID, its article id or a folder of its source URL; the last row wins
_UNITS_SQL = ("SELECT unit_id, arg_max(coalesce(fingerprint, ''), _row) FROM {side}_units WHERE unit_id IN ("
              "SELECT unnest(list_concat([pmcid, article_id], string_split(coalesce(source_url, ''), '/'))) "
              "FROM (SELECT pmcid, article_id, source_url FROM o_changed UNION ALL "
              "SELECT pmcid, article_id, source_url FROM n_changed)) GROUP BY unit_id")
_CHANGED_KEYS = ('SELECT coalesce(o."key", n."key") AS "key" FROM o_step o FULL JOIN n_step n ON o."key" = n."key" '
                 'WHERE o."key" IS NULL OR n."key" IS NULL OR o.fingerprint IS DISTINCT FROM n.fingerprint')


def _changed_sql() -> str:
    """The changed samples of one range (``o_changed``, ``n_changed``), key-sorted, with both
    sides' rows and their evidence."""
    selects, joins = [], []
    for alias, table, release, side, on in LOOKUPS:
        sel, join = _lookup_sql(alias, f"{release}_{table}", on, side)
        selects.append(sel)
        joins.append(join)
    sides = ", ".join(f'{s}."{c}" AS "{s}.{c}"' for s in "on" for c in INDEX_COLUMNS)
    return (f"SELECT {sides}, {', '.join(selects)}, "
            f'n."key" IS NOT NULL AND n.article_id IN (SELECT article_id FROM o_article_ids) AS old_has_article '
            f'FROM o_changed o FULL JOIN n_changed n ON o."key" = n."key" {" ".join(joins)} '
            f'ORDER BY coalesce(o."key", n."key")')


def _sorted_index(con: duckdb.DuckDBPyConnection, output: Output) -> Iterator[pa.Table]:
    """A release's sample index in key order, merged from its parts (``key_runs``): never the
    whole index at once. ``con`` is a cursor of its own, so its statements leave others' results open."""
    def read(path: str) -> pa.Table:
        with output.fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            names = set(parquet.schema_arrow.names)
            con.register("part", parquet.read(columns=[c for c in SOURCE_COLUMNS if c in names]))
        return con.execute(_index_sql(names, "part")).arrow().read_all().cast(INDEX).sort_by("key")
    return key_runs.merged(output, part_paths(output, SAMPLES), read, INDEX)


def write_changes(baseline: Baseline, output: Output, release: int, families: tuple[str, ...],
                  config_hash: str) -> Counter[tuple[str, str]]:
    """Work out the changes from the previous release to what ``output`` holds now (call it after
    the build wrote its shards and tables) and write them (``changes.parquet`` and the history):
    the changed samples, with the evidence each reason reads, stream through the rules and out to
    the files ``BATCH`` at a time (a first release, where every sample is a new article's, as it
    comes). Returns (change, reason) -> samples."""
    from medcorpus.pipelines.spool import driver_db, write_stream

    found: Counter[tuple[str, str]] = Counter()
    files = (CHANGES, history_path(release))
    with tempfile.TemporaryDirectory(prefix="medcorpus-changes-") as work, driver_db(work) as con:
        new = _sorted_index(con.cursor(), output)
        if baseline.output is None:
            write_stream(output, files, _first_rows(new, release, found), schema.CHANGES)
            return found
        previous = baseline.output
        old = _sorted_index(con.cursor(), previous)

        def evidence() -> change_reasons.Evidence:
            return _load_evidence(con, previous, output, families, config_hash)
        batches = (schema.to_table(_change_rows(b.to_pylist(), ev, release, baseline.release, found), schema.CHANGES)
                   for b, ev in _changed_batches(con, old, new, evidence))
        write_stream(output, files, batches, schema.CHANGES)
    return found


def _load_evidence(con: duckdb.DuckDBPyConnection, previous: Output, output: Output, families: tuple[str, ...],
                   config_hash: str) -> change_reasons.Evidence:
    """Both releases' evidence tables in DuckDB, the previous release's article ids, and the
    evidence every changed sample may read (the new release's unit-level errors)."""
    data = open_dataset(previous, SAMPLES)
    if data is not None:
        con.register("o_samples", data)
    names = set(data.schema.names) if data is not None else None
    con.execute(f"CREATE TEMP TABLE o_article_ids AS SELECT DISTINCT article_id FROM ({_index_sql(names, 'o_samples')})")
    _load_tables(con, "o", previous)
    _load_tables(con, "n", output)
    return _unit_errors(con, families, config_hash)


def _first_rows(new: Iterator[pa.Table], release: int, found: Counter[tuple[str, str]]) -> Iterator[pa.Table]:
    """A first release's list, as ``_change_rows`` makes it: every sample added, a new article's,
    in key order."""
    for step in new:
        n = step.num_rows
        found["added", "new article"] += n
        constant = {"release": release, "previous_release": 0, "change": "added", "reason": "new article"}
        columns = {name: pa.repeat(value, n) for name, value in constant.items()}
        columns |= {"key": step["key"], "article_id": step["article_id"], "detail": pa.nulls(n, pa.string())}
        for name in SIDES:
            columns[f"old_{name}"] = pa.nulls(n, pa.string())
            columns[f"new_{name}"] = step["license_family" if name == "family" else name]
        yield pa.table(columns).select(schema.CHANGES.names).cast(schema.CHANGES)


def _changed_batches(con: duckdb.DuckDBPyConnection, old: Iterator[pa.Table], new: Iterator[pa.Table],
                     evidence: Callable[[], change_reasons.Evidence]) -> Iterator[tuple[pa.RecordBatch, change_reasons.Evidence]]:
    """The changed samples with their evidence, in key order, ``RANGE_ROWS`` changed keys at a
    time, each batch with the ``evidence`` context plus the units its range's samples may come
    from: a rebuild under a new config changes every sample, and one join and sort of them all
    with their evidence (or every unit of both releases in Python) would grow with the corpus.
    The evidence is loaded at the first change, so a rebuild that changed nothing reads none. Each
    range is read to its end before the next statement (a statement ends the connection's open result)."""
    context = None
    for o, n in _changed_ranges(con.cursor(), old, new):
        if context is None:
            context = evidence()
        con.register("o_changed", o)
        con.register("n_changed", n)
        units = {side: dict(con.execute(_UNITS_SQL.format(side=side)).fetchall()) for side in "on"}
        ev = dataclasses.replace(context, old_units=units["o"], new_units=units["n"])
        for batch in con.execute(_changed_sql()).to_arrow_reader(BATCH):
            yield batch, ev


def _changed_ranges(con: duckdb.DuckDBPyConnection, old: Iterator[pa.Table],
                    new: Iterator[pa.Table]) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Both sides' rows of every key added, removed or with another fingerprint, in key order:
    the two key-sorted indexes walked side by side, a step of keys at a time."""
    pending: list[tuple[pa.Table, pa.Table]] = []
    count = 0
    for o, n in key_runs.in_step([old, new], INDEX):
        if o["key"].equals(n["key"]) and o["fingerprint"].equals(n["fingerprint"]):
            continue  # the same keys, fingerprints (nulls alike) and order: nothing changed here
        con.register("o_step", o)
        con.register("n_step", n)
        keys = con.execute(_CHANGED_KEYS).arrow().read_all()["key"]
        if len(keys):
            pending.append((o.filter(pc.is_in(o["key"], keys)), n.filter(pc.is_in(n["key"], keys))))
            count += len(keys)
        if count >= RANGE_ROWS:
            yield from _ranges(pending)
            pending, count = [], 0
    if pending:
        yield from _ranges(pending)


def _ranges(pending: list[tuple[pa.Table, pa.Table]]) -> Iterator[tuple[pa.Table, pa.Table]]:
    """The pending changed rows of both sides, ``RANGE_ROWS`` keys at most at a time (a step may
    bring a whole part's changes)."""
    o, n = (pa.concat_tables([pair[i] for pair in pending]) for i in (0, 1))
    keys = pc.unique(pa.chunked_array(o["key"].chunks + n["key"].chunks, pa.string())).sort()
    for start in range(0, len(keys), RANGE_ROWS):
        lo, hi = keys[start], keys[min(start + RANGE_ROWS, len(keys)) - 1]
        within = (pc.field("key") >= lo) & (pc.field("key") <= hi)
        yield o.filter(within), n.filter(within)


def _unit_errors(con: duckdb.DuckDBPyConnection, families: tuple[str, ...], config_hash: str) -> change_reasons.Evidence:
    """The evidence every changed sample may read: the new release's unit-level errors."""
    columns = EVIDENCE_COLUMNS["errors"]
    errors = [dict(zip(columns, r)) for r in con.execute(
        f"SELECT {', '.join(columns)} FROM n_errors WHERE stage = 'fetch' OR article_id IS NULL ORDER BY _row").fetchall()]
    return change_reasons.make_evidence({}, {"errors": errors}, families, config_hash, __version__)


def _change_rows(batch: list[dict[str, Any]], context: change_reasons.Evidence, release: int, previous: int,
                 found: Counter[tuple[str, str]]) -> list[dict[str, Any]]:
    """The change rows of one batch of changed samples (each with its evidence), counted in ``found``."""
    ev = dataclasses.replace(context, **{alias: {} for alias, *_ in LOOKUPS})
    for r in batch:
        for alias, _, _, side, on in LOOKUPS:
            if r[alias] is not None:
                key = tuple(r[f"{side}.{s}"] for _, s in on)
                getattr(ev, alias)[key[0] if len(key) == 1 else key] = r[alias]
    ev.new_figures = set(ev.new_figures)  # type: ignore[arg-type]
    rows = []
    for r in batch:
        old, new = ({c: r[f"{s}.{c}"] for c in INDEX_COLUMNS} for s in "on")
        old, new = (old if old["key"] is not None else None), (new if new["key"] is not None else None)
        if old is None:
            change, (reason, detail) = "added", change_reasons.added(new, ev, {new["article_id"]} if r["old_has_article"] else set())
        elif new is None:
            change, (reason, detail) = "removed", change_reasons.removed(old, ev)
        else:
            change, (reason, detail) = "updated", change_reasons.updated(old, new, ev)
        found[change, reason] += 1
        rows.append({"release": release, "previous_release": previous, "key": (old or new)["key"],
                     "change": change, "reason": reason, "detail": detail or None,
                     "article_id": (new or old).get("article_id"), **_side("old", old), **_side("new", new)})
    return rows


def _side(side: str, row: dict[str, Any] | None) -> dict[str, Any]:
    row = row or {}
    return {f"{side}_{name}": row.get("license_family" if name == "family" else name) for name in SIDES}


def releases_with_history(output: Output) -> list[int]:
    names = [posixpath.basename(r) for r in output.list(HISTORY)]
    return sorted(int(n[len("changes-"):-len(".parquet")]) for n in names
                  if n.startswith("changes-") and n.endswith(".parquet"))


def compose(output: Output, start: int, end: int) -> list[dict[str, Any]]:
    """The changes from release ``start`` to release ``end`` (``start`` < ``end``): the lists of
    releases start+1..end folded per key, first old side against last new side. Raises
    ValueError when a list in between is missing."""
    have = set(releases_with_history(output))
    missing = [r for r in range(start + 1, end + 1) if r not in have]
    if missing:
        raise ValueError(f"no change list for release(s) {', '.join(map(str, missing))} "
                         f"(lists kept: {', '.join(map(str, sorted(have))) or 'none'})")
    steps: dict[str, list[dict[str, Any]]] = {}
    for release in range(start + 1, end + 1):
        for row in read_table(output, history_path(release)).to_pylist():
            steps.setdefault(row["key"], []).append(row)
    return [row for key in sorted(steps) if (row := _fold(steps[key], start, end)) is not None]


def _fold(steps: list[dict[str, Any]], start: int, end: int) -> dict[str, Any] | None:
    first, last = steps[0], steps[-1]
    old = {f"old_{n}": first[f"old_{n}"] for n in SIDES}
    new = {f"new_{n}": last[f"new_{n}"] for n in SIDES}
    if old["old_fingerprint"] is None and new["new_fingerprint"] is None:
        return None  # added and removed again in between
    if old["old_fingerprint"] is not None and old["old_fingerprint"] == new["new_fingerprint"]:
        return None  # back where it was
    change = "added" if old["old_fingerprint"] is None else "removed" if new["new_fingerprint"] is None else "updated"
    reasons = list(dict.fromkeys(s["reason"] for s in steps))
    details = [s["detail"] for s in steps if s["detail"]]
    return {"release": end, "previous_release": start, "key": last["key"], "change": change,
            "reason": "; ".join(reasons), "detail": "; ".join(details) or None,
            "article_id": last["article_id"] or first["article_id"], **old, **new}


def counts(rows: Iterable[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """(change, reason) -> samples."""
    return Counter((r["change"], r["reason"]) for r in rows)


def removal_list(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What derived copies must drop: removed samples, and updated ones whose old image or license
    family is gone, each with the old image's hashes (sha256 of the bytes, hash of the pixels,
    perceptual hash) so copies can be found even after re-encoding."""
    out = []
    for r in rows:
        if r["change"] == "removed" or (r["change"] == "updated" and (
                r["old_image_sha256"] != r["new_image_sha256"] or r["old_family"] != r["new_family"])):
            out.append({"key": r["key"], "change": r["change"], "reason": r["reason"], "article_id": r["article_id"],
                        "image_sha256": r["old_image_sha256"], "image_exact_hash": r["old_image_exact_hash"],
                        "image_phash": r["old_image_phash"], "family": r["old_family"], "shard": r["old_shard"]})
    return out
