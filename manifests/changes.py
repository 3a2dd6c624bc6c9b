"""What changed between releases: ``manifest/changes.parquet`` and ``medcorpus diff``.

A build compares the sample index of the previous release (``manifests/releases.py``) with the
one it publishes: a key only in the old one is *removed*, only in the new one *added*, in both with
a different content fingerprint *updated*; unchanged samples are not listed, and neither is a
sample that only moved to another shard. The fingerprint is the md5 of the whole manifest row
without its shard placement and provenance (``SHARD_COLUMNS``, ``medcorpus_version``,
``config_hash``), so any change a consumer can see in a sample (image, caption, family, concepts,
duplicate cluster ...) counts. Reasons come from ``change_reasons``.

Every release's list is kept (``manifest/history/changes-NNNNNN.parquet``, the latest also as
``manifest/changes.parquet``) rather than the whole key index of every release: a list holds only
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
_INDEX_COLUMNS = ("article_id", "pmcid", "version", "figure_id", "license_code", "license_family", "shard",
                  "image_sha256", "image_exact_hash", "image_phash", "dedup_cluster", "duplicate_of",
                  "source_md5", "source_url", "config_hash", "medcorpus_version")
_NOT_CONTENT = (*schema.SHARD_COLUMNS, "medcorpus_version", "config_hash")


def history_path(release: int) -> str:
    return f"{HISTORY}/changes-{release:06d}.parquet"


def sample_index(output: Output) -> pa.Table | None:
    """Key, the columns reasons look at, and the content fingerprint of every published sample."""
    data = open_dataset(output, "manifest/samples")
    if data is None:
        return None
    names = set(data.schema.names)
    con = duckdb.connect()
    con.register("samples", data)
    cols = ", ".join(f'"{c}"' if c in names else f'NULL AS "{c}"' for c in _INDEX_COLUMNS)
    excluded = ", ".join(f'"{c}"' for c in _NOT_CONTENT if c in names)
    caption = 'md5("caption")' if "caption" in names else "NULL"
    return con.execute(
        f'SELECT s."key", {cols}, {caption} AS caption_md5, f.fingerprint FROM samples s JOIN '
        f'(SELECT t."key", md5(CAST(t AS VARCHAR)) AS fingerprint FROM (SELECT * EXCLUDE ({excluded}) '
        f'FROM samples) t) f USING ("key") ORDER BY s."key"').to_arrow_table()


def compute(baseline: Baseline, output: Output, release: int, families: tuple[str, ...],
            config_hash: str) -> list[dict[str, Any]]:
    """The changes from the previous release to what ``output`` holds now (call it after the
    build wrote its shards and tables)."""
    old = {r["key"]: r for r in (baseline.index.to_pylist() if baseline.index is not None else [])}
    current = sample_index(output)
    new = {r["key"]: r for r in (current.to_pylist() if current is not None else [])}
    evidence = change_reasons.make_evidence(
        {name: baseline.rows(name) for name in baseline.tables}, _tables(output), families, config_hash, __version__)
    old_articles = {r["article_id"] for r in old.values()}
    rows = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before is None:
            change, (reason, detail) = "added", change_reasons.added(after, evidence, old_articles)
        elif after is None:
            change, (reason, detail) = "removed", change_reasons.removed(before, evidence)
        elif before["fingerprint"] != after["fingerprint"]:
            change, (reason, detail) = "updated", change_reasons.updated(before, after, evidence)
        else:
            continue
        rows.append({"release": release, "previous_release": baseline.release, "key": key, "change": change,
                     "reason": reason, "detail": detail or None,
                     "article_id": (after or before).get("article_id"),
                     **_side("old", before), **_side("new", after)})
    return rows


def _side(side: str, row: dict[str, Any] | None) -> dict[str, Any]:
    row = row or {}
    return {f"{side}_{name}": row.get("license_family" if name == "family" else name) for name in SIDES}


def _tables(output: Output) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for name in ("articles", "figures", "errors", "dropped", "units"):
        rel = f"manifest/{name}.parquet"
        if output.exists(rel):
            found[name] = read_table(output, rel).to_pylist()
    return found


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
