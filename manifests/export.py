"""Write a selection of a build as a fresh output: new shards (the members copied byte for byte by
ranged reads), their manifest parts, ``sizes.json``, ``attribution.csv``, the dataset card and a
completion record, so any webdataset trainer, ``medcorpus query``/``verify`` and the loader read
it like a build. License families stay apart, as in the build.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from medcorpus.manifests import card, completion
from medcorpus.manifests.layout import resolve
from medcorpus.manifests.parquet import write_rows
from medcorpus.manifests.ranges import RangeReader, member, sample_span
from medcorpus.manifests.selection import Params, select
from medcorpus.manifests.shards import ShardPlan, plan_shards, write_sizes
from medcorpus.manifests.storage import Output
from medcorpus.manifests.writers import TarShardWriter
from medcorpus.schemas import manifest as schema

NO_BYTE_LIMIT = 1 << 62


class ExportError(ValueError):
    """The export cannot start (e.g. its destination already holds files)."""


@dataclass
class ExportSummary:
    samples: int
    shards: int


def export(out: str, dest: str, where: str | None = None, params: Params = None, *, shard_size: int = 1000,
           allow_incomplete: bool = False) -> ExportSummary:
    """Export the samples ``where`` selects from ``out`` into the empty folder or URL ``dest``."""
    if shard_size < 1:
        raise ExportError("shard size must be >= 1")
    out = resolve(out).url  # one release for the selection and the shards (manifests/layout.py)
    rows = select(out, where, params, order_by="key", allow_incomplete=allow_incomplete).to_pylist()
    target = Output(dest)
    if target.list(""):
        raise ExportError(f"{dest} is not empty: export writes a fresh output")
    by_family: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_family.setdefault(row["license_family"] or "other", []).append(row)
    plans = []
    for family, family_rows in sorted(by_family.items()):
        spans = [sample_span(r["shard"], r.__getitem__) for r in family_rows]
        sizes = [(r["key"], s.end - s.start) for r, s in zip(family_rows, spans)]
        plans += plan_shards(family, sizes, shard_size, NO_BYTE_LIMIT)
    row_of = {r["key"]: r for r in rows}
    reader = RangeReader(Output(out))
    try:
        for plan in plans:
            _write_shard(plan, row_of, reader, target)
    finally:
        reader.close()
    write_sizes(target, plans)
    _write_attribution(target, rows)
    card.write_card(target)
    completion.write_record(target, uuid.uuid4().hex, dt.datetime.now(dt.timezone.utc), len(rows))
    return ExportSummary(len(rows), len(plans))


def _write_shard(plan: ShardPlan, row_of: dict[str, dict[str, Any]], reader: RangeReader, target: Output) -> None:
    """One shard with its members copied from the source, then its manifest part."""
    rows = [row_of[k] for k in plan.keys]
    spans = [sample_span(r["shard"], r.__getitem__) for r in rows]
    writer = TarShardWriter()
    with target.staged_file(plan.name) as tmp:
        writer.open(tmp)
        for row, span, blob in zip(rows, spans, reader.read(spans)):
            writer.write(row["key"], {ext: member(blob, span, name, row.__getitem__)
                                      for name, ext in (("image", row["image_format"]), ("txt", "txt"), ("json", "json"))})
        offsets = writer.close()
    out_rows = []
    for row in rows:
        new = dict(row, shard=plan.name)
        for name, member_name in (("image", row["image_member"]), ("txt", f"{row['key']}.txt"),
                                  ("json", f"{row['key']}.json")):
            new[f"{name}_offset"], new[f"{name}_size"] = offsets[member_name]
        out_rows.append(new)
    write_rows(target, plan.manifest_part, out_rows, schema.SAMPLES, ("key",))


def _write_attribution(target: Output, rows: list[dict[str, Any]]) -> None:
    from medcorpus.manifests import attribution

    with target.staged_file("attribution.csv") as tmp:
        attribution.write_attribution([{c: r.get(c) for c in attribution.INPUT_COLUMNS} for r in rows], tmp)
