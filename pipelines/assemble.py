"""From staged unit results to shards and manifest tables — the same code behind every runner.

    collect  staged unit results -> spooled Parquet tables in the work directory (pipelines/spool.py):
             the sample index (family, key, bytes, unit), dedup records, articles, figures, errors,
             dropped rows; the driver holds one unit at a time
    dedup    records -> clusters (pipelines/dedup.py: DuckDB and vectorized bands locally, or the
             runner's shuffle) -> dropped rows and cluster columns, spooled
    plan     non-duplicates, key-sorted within a license family by DuckDB (an external sort) and cut
             as they stream -> one small plan file per shard (keys, units, cluster columns)
    write    one tar per plan, then its manifest part (a worker reads its plan file); then the
             tables, sorted by DuckDB and streamed row group by row group

The driver's memory grows with the shards and the units, not with the samples. Shard membership
depends only on the set of samples, never on processing order, so any runner that stages the same
units writes the same bytes. Each shard's tar is in place before its manifest part is written: a
manifest never points at a missing shard.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from medcorpus.files import file_sha256
from medcorpus.manifests.parquet import SHARD_SHA256, read_table, write_rows
from medcorpus.manifests.releases import link_shard
from medcorpus.manifests.shards import ShardPlan, cut_shards, sizes_path
from medcorpus.manifests.storage import Output
from medcorpus.manifests.writers import ShardWriter, TarShardWriter
from medcorpus.pipelines.config import BuildConfig
from medcorpus.pipelines.graph import sidecar_jsons
from medcorpus.pipelines.spool import ORD, Spool, write_sorted
from medcorpus.pipelines.staging import Staging, UnitResult
from medcorpus.schemas import manifest as schema

TABLES: dict[str, tuple[pa.Schema, tuple[str, ...]]] = {
    "articles": (schema.ARTICLES, ("article_id",)),
    "figures": (schema.FIGURES, ("key",)),
    "errors": (schema.ERRORS, ("input", "stage", "reason", "figure_id", "detail")),
    "dropped": (schema.DROPPED, ("key", "stage")),
}
_s, _i = pa.string(), pa.int64()
SAMPLE_INDEX = pa.schema([("family", _s), ("key", _s), ("size", _i), ("token", _s), ("article_id", _s),
                          ("figure_id", _s)])
DEDUP_RECORDS = pa.schema([("key", _s), ("article_id", _s), ("version", _i), ("license_code", _s), ("pixels", _i),
                           ("exact", _s), ("hi", pa.uint64()), ("lo", pa.uint64()), ("caption", _s), ("group", _s),
                           ("label", _s), ("box", pa.list_(pa.float64())), ("width", _i), ("height", _i),
                           ("bands", pa.list_(pa.uint64())), ("sample", _i)])
UPDATES = pa.schema([("key", _s), ("dedup_cluster", _s), ("duplicate_of", _s), ("removed", pa.bool_())])
PLAN_ROWS = pa.schema([("key", _s), ("token", _s), ("dedup_cluster", _s), ("duplicate_of", _s)])


@dataclass
class Assembly:
    """What the driver knows after staging: counts and plans; the rows are in ``spool``."""

    spool: Spool
    families: tuple[str, ...]
    plans: list[ShardPlan] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    samples: int = 0  # staged samples of the written families (with duplicate keys)
    records: int = 0  # dedup records of the first sample of each key
    planned_bytes: int = 0
    errors_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def index(self) -> str:
        """The sample index, first occurrence of each key (DuckDB relation)."""
        return f"read_parquet('{self.spool.root / 'index.parquet'}')"

    @property
    def record_table(self) -> str:
        """The dedup records of those samples (DuckDB relation)."""
        return f"read_parquet('{self.spool.root / 'records.parquet'}')"

    def count(self, table: str) -> int:
        return self.spool.rows.get(table, 0)


def collect(results: Iterable[tuple[str, UnitResult]], config: BuildConfig, spool_root: str | Path) -> Assembly:
    """Spool every staged unit's rows; then find keys staged by two units (the first stays)."""
    asm = Assembly(Spool(spool_root), tuple(config.families))
    for name, (table_schema, _) in TABLES.items():
        asm.spool.declare(name, table_schema)
    asm.spool.declare("samples", SAMPLE_INDEX)
    asm.spool.declare("dedup", DEDUP_RECORDS)
    dedup_on, options = _dedup_on(config), config.dedup_options()
    for token, result in results:
        for name in TABLES:
            asm.spool.add(name, getattr(result, name))
        asm.counters.update(result.counters)
        index, records = [], []
        for s in result.samples:
            if s.family not in asm.families:
                asm.counters[f"family_not_written:{s.family}"] += 1
                continue
            index.append({"family": s.family, "key": s.key, "size": s.size, "token": token,
                          "article_id": s.row.get("article_id"), "figure_id": s.row.get("figure_id")})
            if dedup_on and s.row.get("image_phash"):
                record = _with_bands(dedup_record(s.row), s.caption_bands, options)
                records.append({**_record_row(record), "sample": asm.samples + len(index) - 1})
        asm.samples += len(index)
        asm.spool.add("samples", index)
        asm.spool.add("dedup", records)
    asm.spool.close("samples", "dedup")
    _first_of_each_key(asm)
    return asm


def _first_of_each_key(asm: Assembly) -> None:
    """The index and dedup records without keys an earlier unit staged; each such key is an error."""
    db, samples, root = asm.spool.db, asm.spool.scan("samples"), asm.spool.root
    db.execute(f"CREATE TEMP TABLE dup AS SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY key ORDER BY {ORD}) "
               f"AS n FROM {samples}) WHERE n > 1")
    asm.spool.add("errors", [{"input": key, "stage": "assemble", "reason": "duplicate_key",
                              "detail": "the same key came from two units", "article_id": article, "figure_id": figure}
                             for key, article, figure in db.execute(f"SELECT key, article_id, figure_id FROM dup ORDER BY {ORD}").fetchall()])
    db.execute(f"COPY (SELECT * FROM {samples} WHERE {ORD} NOT IN (SELECT {ORD} FROM dup)) TO '{root / 'index.parquet'}'"
               " (FORMAT PARQUET)")
    db.execute(f"COPY (SELECT * EXCLUDE ({ORD}) FROM {asm.spool.scan('dedup')} WHERE sample NOT IN (SELECT {ORD} FROM dup))"
               f" TO '{root / 'records.parquet'}' (FORMAT PARQUET)")
    db.execute("DROP TABLE dup")
    asm.records = db.execute(f"SELECT count(*) FROM {asm.record_table}").fetchone()[0]


def dedup_record(row: dict[str, Any]) -> Any:
    from medcorpus.pipelines.sources.imaging import TEMPLATE_CAPTION_SOURCES
    from medcorpus.transforms.dedup import ImageHashes, make_record

    perceptual = int(row["image_phash"], 16)
    hashes = ImageHashes(row["image_exact_hash"], perceptual >> 64, perceptual & ((1 << 64) - 1))
    caption = "" if row.get("source") in TEMPLATE_CAPTION_SOURCES else row.get("caption") or ""
    return make_record(row["key"], hashes, caption, row["article_id"], row.get("version") or 1,
                       row.get("license_code") or "unknown", (row.get("orig_width") or 0) * (row.get("orig_height") or 0),
                       group=row.get("parent_key") or row["key"], label=row.get("panel_label"),
                       box=row.get("panel_box"), width=row.get("width") or 0, height=row.get("height") or 0)


def _dedup_on(config: BuildConfig) -> bool:
    return bool(config.dedup_options().kinds) and "quality" in config.stages


def add_caption_bands(result: UnitResult, config: BuildConfig) -> UnitResult:
    """The caption MinHash bands of each sample's dedup record, computed by the worker that stages
    the unit (after every stage that may rewrite the caption): bucketing the captions is then a
    scan on the driver, not a MinHash per caption."""
    from medcorpus.transforms.dedup import caption_bands

    options = config.dedup_options()
    if _dedup_on(config) and "caption" in options.kinds:
        for s in result.samples:
            if s.row.get("image_phash"):
                s.caption_bands = caption_bands(dedup_record(s.row).caption_tokens, options)
    return result


def _with_bands(record: Any, bands: tuple[int, ...] | None, options: Any) -> Any:
    """``record`` with its caption bands: the worker's, or computed here for a unit staged without
    them (by an earlier version)."""
    from medcorpus.transforms.dedup import caption_bands

    if bands is None and "caption" in options.kinds:
        bands = caption_bands(record.caption_tokens, options)
    return replace(record, bands=tuple(bands or ()))


def _record_row(r: Any) -> dict[str, Any]:
    """A dedup record as a spooled row (caption tokens are [a-z0-9]+: joined by spaces, split back)."""
    return {"key": r.key, "article_id": r.article_id, "version": r.version, "license_code": r.license_code,
            "pixels": r.pixels, "exact": r.exact, "hi": r.perceptual >> 64, "lo": r.perceptual & ((1 << 64) - 1),
            "caption": " ".join(r.caption_tokens), "group": r.group, "label": r.label, "box": list(r.box),
            "width": r.width, "height": r.height, "bands": list(r.bands)}


def record_of(row: dict[str, Any]) -> Any:
    """The spooled row back as a ``DedupRecord``."""
    from medcorpus.transforms.dedup import DedupRecord

    return DedupRecord(row["key"], row["article_id"], row["version"], row["license_code"], row["pixels"], row["exact"],
                       (row["hi"] << 64) | row["lo"], tuple(row["caption"].split()), row["group"], row["label"],
                       tuple(row["box"] or ()), row["width"], row["height"], tuple(row.get("bands") or ()))


def read_records(asm: Assembly) -> list[Any]:
    """Every dedup record as a ``DedupRecord`` (what a runner's shuffle takes; small builds, tests)."""
    rows = asm.spool.db.execute(f"SELECT * FROM {asm.record_table} ORDER BY sample").to_arrow_table().to_pylist()
    return [record_of(r) for r in rows]


def apply_dedup(asm: Assembly, batches: Iterable[tuple[Any, dict[str, str]]]) -> None:
    """Duplicates leave the shards for ``dropped``, each with its evidence; every clustered sample
    records its cluster. ``batches``: dedup results of disjoint clusters, each with its dropped
    keys' article ids."""
    asm.spool.declare("updates", UPDATES)
    for result, articles in batches:
        asm.spool.add("updates", ({"key": key, **result.columns(key), "removed": key in result.matches}
                                  for key in result.cluster_of))
        asm.spool.add("dropped", ({"key": key, "article_id": articles[key], "figure_id": None, "stage": "dedup",
                                   "reason": f"duplicate of {match.canonical}", "scores": [], **match.columns()}
                                  for key, match in result.matches.items()))
    asm.spool.close("updates")


def plan(asm: Assembly, config: BuildConfig, staging: Staging) -> None:
    """Shard plans, family by family, from the key-sorted index without the duplicates; each plan's
    rows go to a file beside the staged units, where its writer reads them."""
    updates = asm.spool.scan("updates") if asm.count("updates") else None
    join = (f"LEFT JOIN {updates} u USING (key) WHERE NOT coalesce(u.removed, false) AND" if updates else "WHERE")
    columns = "u.dedup_cluster, u.duplicate_of" if updates else "NULL, NULL"
    for family in config.families:
        sql = f"SELECT s.key, s.size, s.token, {columns} FROM {asm.index} s {join} s.family = ? ORDER BY s.key"
        for index, items in cut_shards(_rows(asm.spool.batches(sql, [family])), config.shards.max_samples,
                                       config.shards.max_bytes):
            asm.plans.append(_plan_file(family, index, items, staging))
            asm.planned_bytes += sum(item[1] for item in items)


def _rows(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[Any, ...]]:
    for batch in batches:
        yield from zip(*(c.to_pylist() for c in batch.columns))


def _plan_file(family: str, index: int, items: list[tuple[Any, ...]], staging: Staging) -> ShardPlan:
    path = staging.plan_path(f"{family}-{index:06d}.parquet")
    table = pa.table([pa.array([item[c] for item in items], PLAN_ROWS.field(i).type)
                      for i, c in enumerate((0, 2, 3, 4))], schema=PLAN_ROWS)
    with staging.open(path, "wb") as f:
        pq.write_table(table, f, compression="zstd")
    return ShardPlan(family, index, rows=path, count=len(items))


def plan_rows(plan: ShardPlan, staging: Staging) -> tuple[tuple[str, ...], dict[str, str], dict[str, dict[str, Any]]]:
    """A file-backed plan's keys, their units' tokens and the columns decided after staging."""
    with staging.open(plan.rows, "rb") as f:
        rows = pq.read_table(f).to_pylist()
    updates = {r["key"]: {"dedup_cluster": r["dedup_cluster"], "duplicate_of": r["duplicate_of"]}
               for r in rows if r["dedup_cluster"] is not None}
    return tuple(r["key"] for r in rows), {r["key"]: r["token"] for r in rows}, updates


def write_shard(plan: ShardPlan, tokens: dict[str, str], staging: Staging, output: Output,
                writer: ShardWriter | None = None, previous: Output | None = None) -> int:
    """Write one shard (a tar, unless another writer is given) and then its manifest part; return
    the number of samples written. A tar the ``previous`` release holds with the same members is
    linked from there instead (``releases.link_shard``)."""
    keys, updates = plan.keys, plan.updates
    if plan.rows:
        keys, tokens, updates = plan_rows(plan, staging)
    rows_by_key, members_by_key = _staged_samples(keys, updates, tokens, staging)
    json_sha256 = {k: hashlib.sha256(members_by_key[k]["json"]).hexdigest() for k in keys}
    linked = None
    if previous is not None and writer is None:
        linked = link_shard(previous, output, plan.manifest_part, plan.name,
                            [_member_digests(k, rows_by_key[k], json_sha256[k]) for k in keys])
    offsets, digest = linked or _write_tar(plan.name, keys, members_by_key, output, writer or TarShardWriter())
    rows = []
    for key in keys:
        row = dict(rows_by_key[key])
        image_member = f"{key}.{row['image_format']}"
        row.update(shard=plan.name, image_member=image_member)
        row["image_offset"], row["image_size"] = offsets[image_member]
        row["txt_offset"], row["txt_size"] = offsets[f"{key}.txt"]
        row["json_offset"], row["json_size"] = offsets[f"{key}.json"]
        row["json_sha256"] = json_sha256[key]
        rows.append(row)
    write_rows(output, plan.manifest_part, rows, schema.SAMPLES, ("key",), {SHARD_SHA256: digest})
    return len(rows)


def _write_tar(name: str, keys: tuple[str, ...], members_by_key: dict[str, dict[str, bytes]], output: Output,
               writer: ShardWriter) -> tuple[dict[str, Any], str]:
    """Write the shard's members in key order; its member offsets and sha256 (the shard is in place
    before its manifest part)."""
    with output.staged_file(name) as tmp:
        writer.open(tmp)
        for key in keys:
            writer.write(key, members_by_key[key])
        offsets = writer.close()
        return offsets, file_sha256(tmp)


def _member_digests(key: str, row: dict[str, Any], json_sha256: str) -> dict[str, Any]:
    """What decides a sample's bytes in a tar: its member names and their contents' hashes."""
    return {"key": key, "image_member": f"{key}.{row['image_format']}", "image_sha256": row["image_sha256"],
            "caption": row["caption"], "json_sha256": json_sha256}


def _staged_samples(keys: tuple[str, ...], updates: Any, tokens: dict[str, str],
                    staging: Staging) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, bytes]]]:
    """The plan's rows (with the columns decided after staging) and members (with the JSON sidecar)."""
    rows_by_key: dict[str, dict[str, Any]] = {}
    members_by_key: dict[str, dict[str, bytes]] = {}
    for token in dict.fromkeys(tokens[k] for k in keys):
        meta = staging.read_meta(token)
        members = staging.read_members(token)
        for s in meta.samples:
            if s.key in tokens and tokens[s.key] == token:
                rows_by_key[s.key] = {**s.row, **updates.get(s.key, {})}
                members_by_key[s.key] = dict(members[s.key])
    for key, sidecar in zip(rows_by_key, sidecar_jsons(list(rows_by_key.values()))):
        members_by_key[key]["json"] = sidecar
    return rows_by_key, members_by_key


def write_tables(asm: Assembly, output: Output) -> None:
    """The tables, each sorted by DuckDB and streamed from its spool (as ``write_rows`` would write them)."""
    asm.spool.close(*TABLES)
    for name, (table_schema, sort_by) in TABLES.items():
        write_sorted(output, f"manifest/{name}.parquet", asm.spool, name, table_schema, sort_by)
    asm.errors_by_reason = dict(asm.spool.db.execute(
        f"SELECT reason, count(*) FROM {asm.spool.scan('errors')} GROUP BY reason ORDER BY reason").fetchall()
        if asm.count("errors") else [])
    write_decontam_report(asm, output)
    write_deid_report(asm, output)


def write_decontam_report(asm: Assembly, output: Output) -> None:
    """Per eval set: how many samples it removed, by what kind of match, and which."""
    from medcorpus.manifests.evalsets import Hit, report, write_report_csv

    hits: dict[str, list[Hit]] = {}
    rows = asm.spool.db.execute(f"SELECT key, reason FROM {asm.spool.scan('dropped')} WHERE stage = 'decontam' "
                                f"ORDER BY {ORD}").fetchall() if asm.count("dropped") else []
    for key, reason in rows:
        for part in (reason or "").split("; "):
            evalset, kind, detail = (part.split(":", 2) + ["", ""])[:3]
            hits.setdefault(key, []).append(Hit(evalset, kind, detail))
    with output.staged_file("manifest/decontam_report.csv") as tmp:
        write_report_csv(tmp, report(hits))


def write_deid_report(asm: Assembly, output: Output) -> None:
    """``manifest/deid_report.json`` of a build with DICOM: instances seen, dropped by reason, frames
    and slices the policies left out, attributes removed, emptied and replaced (by keyword), summed over every unit of the output."""
    prefix = "parse:deid:"
    counts = {k[len(prefix):]: v for k, v in asm.counters.items() if k.startswith(prefix) and v}
    if not counts:
        return
    report: dict[str, Any] = {"instances": counts.pop("instances", 0)}
    for group in ("dropped", "not_selected", "removed", "emptied", "replaced"):
        items = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith(group + ":")}
        report[group] = dict(sorted(items.items()))
        report[f"{group}_total"] = sum(items.values())
    output.write_bytes("manifest/deid_report.json", json.dumps(report, indent=1, sort_keys=True).encode("utf-8"))


def write_attribution(output: Output) -> int:
    """``attribution.csv``: citation, license and URL of every sample in the release (CC BY asks it),
    by key; the manifest parts are merged in key order a part at a time (``key_runs``), so the rows
    stream to the file on any output."""
    from medcorpus.manifests import attribution, key_runs
    from medcorpus.manifests.query import part_paths

    columns = pa.schema([schema.SAMPLES.field(c) for c in attribution.INPUT_COLUMNS])

    def read(path: str) -> pa.Table:
        with output.fs.open(path, "rb") as f:
            return pq.read_table(f, columns=columns.names).cast(columns).sort_by("key")
    steps = key_runs.merged(output, part_paths(output, "manifest/samples"), read, columns)
    with output.staged_file("attribution.csv") as tmp:
        return attribution.write_attribution((r for step in steps for r in step.to_pylist()), tmp, presorted=True)


def remove_stale(asm: Assembly, output: Output) -> int:
    """Delete shards, manifest parts and ``sizes.json`` files of an earlier build that this build's
    plan does not have."""
    keep = ({p.name for p in asm.plans} | {p.manifest_part for p in asm.plans}
            | {sizes_path(p.family) for p in asm.plans})
    stale = [r for r in output.list("shards") + output.list("manifest/samples") if r not in keep]
    for rel in stale:
        output.remove(rel)
    return len(stale)


def append_run(output: Output, run: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = []
    if output.exists("manifest/runs.parquet"):
        rows = read_table(output, "manifest/runs.parquet").to_pylist()
    rows.append(run)
    write_rows(output, "manifest/runs.parquet", rows, schema.RUNS, ("started_at", "run_id"))


def reasons_json(errors_by_reason: dict[str, int]) -> str:
    return json.dumps(dict(sorted(errors_by_reason.items())), sort_keys=True)
