"""From staged unit results to shards and manifest tables — the same code behind every runner.

    collect  staged unit results -> rows, sizes, dedup records (small: no image bytes)
    dedup    records -> clusters (the runner decides where: in-process, or a distributed shuffle)
    plan     non-duplicates, key-sorted within a license family -> shard plans
    write    one tar per plan, then its manifest part; then the tables

Shard membership depends only on the set of samples, never on processing order, so any runner
that stages the same units writes the same bytes. Each shard's tar is in place before its
manifest part is written: a manifest never points at a missing shard.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from medcorpus.files import file_sha256
from medcorpus.manifests.parquet import SHARD_SHA256, read_table, write_rows
from medcorpus.manifests.releases import link_shard
from medcorpus.manifests.shards import ShardPlan, plan_shards, sizes_path
from medcorpus.manifests.storage import Output
from medcorpus.manifests.writers import ShardWriter, TarShardWriter
from medcorpus.pipelines.config import BuildConfig
from medcorpus.pipelines.graph import sidecar_jsons
from medcorpus.pipelines.staging import Staging, UnitResult
from medcorpus.schemas import manifest as schema


@dataclass
class Assembly:
    """What the driver knows after staging: small rows only, no image bytes."""

    token_of_key: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # family -> (key, bytes)
    dedup_records: list[Any] = field(default_factory=list)
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> columns set after staging
    plans: list[ShardPlan] = field(default_factory=list)
    articles: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)


def collect(results: Iterable[tuple[str, UnitResult]], config: BuildConfig) -> Assembly:
    asm = Assembly(sizes={f: [] for f in config.families})
    dedup_on = bool(config.dedup_options().kinds) and "quality" in config.stages
    for token, result in results:
        asm.articles.extend(result.articles)
        asm.figures.extend(result.figures)
        asm.errors.extend(result.errors)
        asm.dropped.extend(result.dropped)
        asm.counters.update(result.counters)
        for s in result.samples:
            if s.family not in asm.sizes:
                asm.counters[f"family_not_written:{s.family}"] += 1
                continue
            if s.key in asm.token_of_key:
                asm.errors.append({"input": s.key, "stage": "assemble", "reason": "duplicate_key",
                                   "detail": "the same key came from two units", "article_id": s.row.get("article_id"),
                                   "figure_id": s.row.get("figure_id")})
                continue
            asm.token_of_key[s.key] = token
            asm.sizes[s.family].append((s.key, s.size))
            if dedup_on and s.row.get("image_phash"):
                asm.dedup_records.append(dedup_record(s.row))
    return asm


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


def apply_dedup(asm: Assembly, result: Any) -> None:
    """Duplicates leave the shards for ``dropped``, each with its evidence; every clustered sample
    records its cluster."""
    for key in result.cluster_of:
        asm.updates[key] = result.columns(key)
    rows_of = {r.key: r for r in asm.dedup_records}
    for key, match in result.matches.items():
        rec = rows_of[key]
        asm.dropped.append({"key": key, "article_id": rec.article_id, "figure_id": None, "stage": "dedup",
                            "reason": f"duplicate of {match.canonical}", "scores": [], **match.columns()})
    for family, sizes in asm.sizes.items():
        asm.sizes[family] = [(k, n) for k, n in sizes if k not in result.matches]


def plan(asm: Assembly, config: BuildConfig) -> None:
    for family in config.families:
        asm.plans.extend(plan_shards(family, asm.sizes[family], config.shards.max_samples,
                                     config.shards.max_bytes, asm.updates))


def write_shard(plan: ShardPlan, tokens: dict[str, str], staging: Staging, output: Output,
                writer: ShardWriter | None = None, previous: Output | None = None) -> int:
    """Write one shard (a tar, unless another writer is given) and then its manifest part; return
    the number of samples written. A tar the ``previous`` release holds with the same members is
    linked from there instead (``releases.link_shard``)."""
    rows_by_key, members_by_key = _staged_samples(plan, tokens, staging)
    linked = None
    if previous is not None and writer is None:
        linked = link_shard(previous, output, plan.manifest_part, plan.name,
                            [_member_digests(k, rows_by_key[k], members_by_key[k]) for k in plan.keys])
    if linked is not None:
        offsets, digest = linked
    else:
        writer = writer or TarShardWriter()
        with output.staged_file(plan.name) as tmp:  # the shard is in place before its manifest part
            writer.open(tmp)
            for key in plan.keys:
                writer.write(key, members_by_key[key])
            offsets = writer.close()
            digest = file_sha256(tmp)
    rows = []
    for key in plan.keys:
        row = dict(rows_by_key[key])
        image_member = f"{key}.{row['image_format']}"
        row.update(shard=plan.name, image_member=image_member)
        row["image_offset"], row["image_size"] = offsets[image_member]
        row["txt_offset"], row["txt_size"] = offsets[f"{key}.txt"]
        row["json_offset"], row["json_size"] = offsets[f"{key}.json"]
        row["json_sha256"] = hashlib.sha256(members_by_key[key]["json"]).hexdigest()
        rows.append(row)
    write_rows(output, plan.manifest_part, rows, schema.SAMPLES, ("key",), {SHARD_SHA256: digest})
    return len(rows)


def _member_digests(key: str, row: dict[str, Any], members: dict[str, bytes]) -> dict[str, Any]:
    """What decides a sample's bytes in a tar: its member names and their contents' hashes."""
    return {"key": key, "image_member": f"{key}.{row['image_format']}", "image_sha256": row["image_sha256"],
            "caption": row["caption"], "json_sha256": hashlib.sha256(members["json"]).hexdigest()}


def _staged_samples(plan: ShardPlan, tokens: dict[str, str],
                    staging: Staging) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, bytes]]]:
    """The plan's rows (with the columns decided after staging) and members (with the JSON sidecar)."""
    rows_by_key: dict[str, dict[str, Any]] = {}
    members_by_key: dict[str, dict[str, bytes]] = {}
    for token in dict.fromkeys(tokens[k] for k in plan.keys):
        meta = staging.read_meta(token)
        members = staging.read_members(token)
        for s in meta.samples:
            if s.key in tokens and tokens[s.key] == token:
                rows_by_key[s.key] = {**s.row, **plan.updates.get(s.key, {})}
                members_by_key[s.key] = dict(members[s.key])
    for key, sidecar in zip(rows_by_key, sidecar_jsons(list(rows_by_key.values()))):
        members_by_key[key]["json"] = sidecar
    return rows_by_key, members_by_key


def write_tables(asm: Assembly, output: Output) -> None:
    write_rows(output, "manifest/articles.parquet", asm.articles, schema.ARTICLES, ("article_id",))
    write_rows(output, "manifest/figures.parquet", asm.figures, schema.FIGURES, ("key",))
    write_rows(output, "manifest/errors.parquet", asm.errors, schema.ERRORS,
               ("input", "stage", "reason", "figure_id", "detail"))
    write_rows(output, "manifest/dropped.parquet", asm.dropped, schema.DROPPED, ("key", "stage"))
    write_decontam_report(asm, output)
    write_deid_report(asm, output)


def write_decontam_report(asm: Assembly, output: Output) -> None:
    """Per eval set: how many samples it removed, by what kind of match, and which."""
    from medcorpus.manifests.evalsets import Hit, report, write_report_csv

    hits: dict[str, list[Hit]] = {}
    for row in asm.dropped:
        if row["stage"] == "decontam":
            for part in (row["reason"] or "").split("; "):
                evalset, kind, detail = (part.split(":", 2) + ["", ""])[:3]
                hits.setdefault(row["key"], []).append(Hit(evalset, kind, detail))
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
    """``attribution.csv``: citation, license and URL of every sample in the release (CC BY asks it)."""
    from medcorpus.manifests import attribution

    rows = []
    for part in output.list("manifest/samples"):
        rows.extend(read_table(output, part).select(attribution.INPUT_COLUMNS).to_pylist())
    with output.staged_file("attribution.csv") as tmp:
        return attribution.write_attribution(rows, tmp)


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


def errors_by_reason(errors: Iterable[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(e["reason"] for e in errors).items()))


def reasons_json(errors: Iterable[dict[str, Any]]) -> str:
    return json.dumps(errors_by_reason(errors), sort_keys=True)
