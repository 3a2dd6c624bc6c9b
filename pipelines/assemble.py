"""From staged unit results to shards and manifest tables — the same code behind every runner.

Shard membership depends only on the set of samples (key order within a license family), never
on processing order, so any runner that stages the same units writes the same bytes. Each shard's
tar is in place before its manifest part is written: a manifest never points at a missing shard.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from medcorpus.manifests.parquet import read_table, write_rows
from medcorpus.manifests.shards import ShardPlan, member_offsets, plan_shards, write_tar
from medcorpus.manifests.storage import Output
from medcorpus.pipelines.config import BuildConfig
from medcorpus.pipelines.staging import Staging, UnitResult
from medcorpus.schemas import manifest as schema


@dataclass
class Assembly:
    """What the driver knows after staging: small rows only, no image bytes."""

    token_of_key: dict[str, str] = field(default_factory=dict)
    plans: list[ShardPlan] = field(default_factory=list)
    articles: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)


def collect(results: Iterable[tuple[str, UnitResult]], config: BuildConfig) -> Assembly:
    asm = Assembly()
    sizes: dict[str, list[tuple[str, int]]] = {f: [] for f in config.families}
    for token, result in results:
        asm.articles.extend(result.articles)
        asm.figures.extend(result.figures)
        asm.errors.extend(result.errors)
        asm.counters.update(result.counters)
        for s in result.samples:
            if s.family not in sizes:
                asm.counters[f"family_not_written:{s.family}"] += 1
                continue
            if s.key in asm.token_of_key:
                asm.errors.append({"input": s.key, "stage": "assemble", "reason": "duplicate_key",
                                   "detail": "the same key came from two units", "article_id": s.row.get("article_id"),
                                   "figure_id": s.row.get("figure_id")})
                continue
            asm.token_of_key[s.key] = token
            sizes[s.family].append((s.key, s.size))
    for family in config.families:
        asm.plans.extend(plan_shards(family, sizes[family], config.shards.max_samples, config.shards.max_bytes))
    return asm


def write_shard(plan: ShardPlan, tokens: dict[str, str], staging: Staging, output: Output) -> int:
    """Write one tar and then its manifest part; return the number of samples written."""
    rows_by_key: dict[str, dict[str, Any]] = {}
    members_by_key: dict[str, dict[str, bytes]] = {}
    for token in dict.fromkeys(tokens[k] for k in plan.keys):
        meta = staging.read_meta(token)
        members = staging.read_members(token)
        for s in meta.samples:
            if s.key in tokens and tokens[s.key] == token:
                rows_by_key[s.key] = s.row
                members_by_key[s.key] = members[s.key]
    tmp = output.temp_path(plan.name)
    write_tar(tmp, ((k, members_by_key[k]) for k in plan.keys))
    offsets = member_offsets(tmp)
    rows = []
    for key in plan.keys:
        row = dict(rows_by_key[key])
        ext = row["image_format"]
        image_member = f"{key}.{ext}"
        row.update(shard=plan.name, image_member=image_member)
        row["image_offset"], row["image_size"] = offsets[image_member]
        row["txt_offset"], row["txt_size"] = offsets[f"{key}.txt"]
        row["json_offset"], row["json_size"] = offsets[f"{key}.json"]
        rows.append(row)
    output.put_file(tmp, plan.name)
    write_rows(output, plan.manifest_part, rows, schema.SAMPLES, ("key",))
    return len(rows)


def write_tables(asm: Assembly, output: Output) -> None:
    write_rows(output, "manifest/articles.parquet", asm.articles, schema.ARTICLES, ("article_id",))
    write_rows(output, "manifest/figures.parquet", asm.figures, schema.FIGURES, ("key",))
    write_rows(output, "manifest/errors.parquet", asm.errors, schema.ERRORS,
               ("input", "stage", "reason", "figure_id", "detail"))


def remove_stale(asm: Assembly, output: Output) -> int:
    """Delete shards and manifest parts of an earlier build that this build's plan does not have."""
    keep = {p.name for p in asm.plans} | {p.manifest_part for p in asm.plans}
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
