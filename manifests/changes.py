"""What changed between releases: ``manifest/changes.parquet`` and ``medcorpus diff``.

A build compares the samples of the previous release (its folder: ``manifests/releases.py``) with
the ones it publishes: a key only in the old one is *removed*, only in the new one *added*, in both with
a different fingerprint *updated*; unchanged samples are not listed, and neither is a sample that
only moved to another shard. The fingerprint is ``json_sha256``, the hash of the sample's JSON
member, which holds every manifest column but the shard placement, so any change a consumer can
see in a sample (image, caption, family, concepts, duplicate cluster, config ...) counts; it is
read from the manifest, never recomputed. The comparison runs in DuckDB over the two indexes and
only changed rows reach Python. Reasons come from ``change_reasons``.

Every release's list is kept (``manifest/history/changes-NNNNNN.parquet``, the latest also as
``manifest/changes.parquet``; each release's folder carries the lists of those before it) rather than the whole key index of every release: a list holds only
what changed (a few rows a week against tens of millions per index), and composing the lists of
releases N+1..M gives the changes from N to M exactly, because each row carries both sides
(family, shard, image hashes, fingerprint).
"""
from __future__ import annotations

import posixpath
from collections import Counter
from typing import Any, Iterable

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from medcorpus import __version__
from medcorpus.manifests import change_reasons
from medcorpus.manifests.parquet import read_table, write_rows
from medcorpus.manifests.query import open_dataset
from medcorpus.manifests.releases import Baseline
from medcorpus.manifests.storage import Output
from medcorpus.schemas import manifest as schema

CHANGES = "manifest/changes.parquet"
HISTORY = "manifest/history"
SIDES = ("family", "shard", "image_sha256", "image_exact_hash", "image_phash", "fingerprint")
INDEX_COLUMNS = ("key", "article_id", "pmcid", "version", "figure_id", "license_code", "license_family", "shard",
                 "image_sha256", "image_exact_hash", "image_phash", "caption_md5", "dedup_cluster", "duplicate_of",
                 "source_md5", "source_url", "config_hash", "medcorpus_version", "fingerprint")


def history_path(release: int) -> str:
    return f"{HISTORY}/changes-{release:06d}.parquet"


def _index_sql(data: ds.Dataset, table: str) -> str:
    """The index query over a samples dataset registered as ``table`` (a column its parts lack is
    null: parts written before ``json_sha256`` have no fingerprint, so their samples count as updated)."""
    names = set(data.schema.names)
    derived = {"caption_md5": ("caption", 'md5("caption")'), "fingerprint": ("json_sha256", '"json_sha256"')}

    def column(name: str) -> str:
        source, expr = derived.get(name, (name, f'"{name}"'))
        return f'{expr if source in names else "NULL"} AS "{name}"'
    return f"SELECT {', '.join(column(c) for c in INDEX_COLUMNS)} FROM {table}"


def _changed_pairs(baseline: Baseline, output: Output) -> list[tuple[dict | None, dict | None]]:
    """(old row, new row) for every key added, removed or with another fingerprint."""
    con = duckdb.connect()
    empty = "SELECT " + ", ".join(f'NULL::VARCHAR AS "{c}"' for c in INDEX_COLUMNS) + " WHERE false"
    old_data, new_data = baseline.index_dataset(), open_dataset(output, "manifest/samples")
    old_sql = new_sql = empty
    if old_data is not None:
        con.register("old_samples", old_data)
        old_sql = _index_sql(old_data, "old_samples")
    if new_data is not None:
        con.register("new_samples", new_data)
        new_sql = _index_sql(new_data, "new_samples")
    cols = ", ".join(f'{s}."{c}" AS "{s}.{c}"' for s in "on" for c in INDEX_COLUMNS)
    rows = con.execute(f'WITH o AS ({old_sql}), n AS ({new_sql}) SELECT {cols} FROM o FULL JOIN n ON o."key" = n."key" '
                       f'WHERE o."key" IS NULL OR n."key" IS NULL OR o.fingerprint IS DISTINCT FROM n.fingerprint '
                       f'ORDER BY coalesce(o."key", n."key")').to_arrow_table().to_pylist()
    split = [({c: r[f"o.{c}"] for c in INDEX_COLUMNS}, {c: r[f"n.{c}"] for c in INDEX_COLUMNS}) for r in rows]
    return [(old if old["key"] is not None else None, new if new["key"] is not None else None) for old, new in split]


def compute(baseline: Baseline, output: Output, release: int, families: tuple[str, ...],
            config_hash: str) -> list[dict[str, Any]]:
    """The changes from the previous release to what ``output`` holds now (call it after the
    build wrote its shards and tables)."""
    pairs = _changed_pairs(baseline, output)
    keys = [(old or new)["key"] for old, new in pairs]
    article_ids = sorted({r["article_id"] for pair in pairs for r in pair if r and r.get("article_id")})
    old_tables = {name: _only(name, baseline.tables[name], keys, article_ids) for name in baseline.tables}
    new_tables = {name: _only(name, read_table(output, f"manifest/{name}.parquet"), keys, article_ids)
                  for name in change_reasons.EVIDENCE if output.exists(f"manifest/{name}.parquet")}
    evidence = change_reasons.make_evidence(old_tables, new_tables, families, config_hash, __version__)
    old_articles = set(baseline.article_ids(article_ids))
    rows = []
    for old, new in pairs:
        if old is None:
            change, (reason, detail) = "added", change_reasons.added(new, evidence, old_articles)
        elif new is None:
            change, (reason, detail) = "removed", change_reasons.removed(old, evidence)
        else:
            change, (reason, detail) = "updated", change_reasons.updated(old, new, evidence)
        rows.append({"release": release, "previous_release": baseline.release, "key": (old or new)["key"],
                     "change": change, "reason": reason, "detail": detail or None,
                     "article_id": (new or old).get("article_id"), **_side("old", old), **_side("new", new)})
    return rows


def _only(name: str, table: pa.Table, keys: list[str], article_ids: list[str]) -> list[dict[str, Any]]:
    """The rows of an evidence table about these samples or their articles (unit-level errors and
    units are all kept: they name no parsed article)."""
    if name == "dropped":
        table = table.filter(pc.is_in(table["key"], pa.array(keys, pa.string())))
    elif name in ("articles", "figures", "errors"):
        mask = pc.is_in(table["article_id"], pa.array(article_ids, pa.string()))
        if name == "errors":  # and the unit-level ones (change_reasons._unit_level)
            mask = pc.or_kleene(pc.or_kleene(mask, pc.is_null(table["article_id"])), pc.equal(table["stage"], "fetch"))
        table = table.filter(mask)
    return table.to_pylist()


def _side(side: str, row: dict[str, Any] | None) -> dict[str, Any]:
    row = row or {}
    return {f"{side}_{name}": row.get("license_family" if name == "family" else name) for name in SIDES}


def write(output: Output, rows: list[dict[str, Any]], release: int) -> None:
    """This release's list as ``changes.parquet`` and in the history."""
    for rel in (CHANGES, history_path(release)):
        write_rows(output, rel, rows, schema.CHANGES, ("key",))


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
