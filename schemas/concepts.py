"""Arrow type of the per-sample ``concepts`` column and the conversion from linked concepts.

The nested column keeps every mention; the flat view for DuckDB is ``UNNEST``:

    SELECT id FROM manifest, UNNEST(concepts) AS t(c)
    WHERE c.cui = 'C0024109' AND c."group" = 'DISO'

(or ``list_filter``/``list_has_any`` on ``concepts``). ``CONCEPT_FLAT_SCHEMA`` is the one-row-per-concept
table (``sample_id`` + the struct's fields) for writers that prefer a separate ``concepts`` file.
"""
from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

CONCEPT_FIELDS: list[pa.Field] = [
    pa.field("cui", pa.string(), nullable=False),
    pa.field("name", pa.string()),
    pa.field("tuis", pa.list_(pa.string())),
    pa.field("group", pa.string()),  # UMLS semantic group: ANAT, DISO, PROC, CHEM ...
    pa.field("mention", pa.string()),
    pa.field("start", pa.int32()),  # character offsets into the linked text
    pa.field("end", pa.int32()),
    pa.field("score", pa.float32()),
    pa.field("negated", pa.bool_()),
]
CONCEPT_STRUCT = pa.struct(CONCEPT_FIELDS)
CONCEPT_TYPE = pa.list_(CONCEPT_STRUCT)
CONCEPT_FLAT_SCHEMA = pa.schema([pa.field("sample_id", pa.string(), nullable=False), *CONCEPT_FIELDS])

_KEYS = [f.name for f in CONCEPT_FIELDS]


def concept_dicts(concepts: Iterable[Any]) -> list[dict[str, Any]]:
    """``list[Concept]`` (or dicts) -> plain dicts with exactly the struct's fields, ready for ``CONCEPT_TYPE``."""
    out = []
    for c in concepts:
        d = c if isinstance(c, dict) else c.to_dict()
        out.append({
            "cui": d["cui"], "name": d.get("name"), "tuis": list(d.get("tuis") or []), "group": d.get("group"),
            "mention": d.get("mention"), "start": int(d["start"]), "end": int(d["end"]),
            "score": float(d.get("score", 0.0)), "negated": bool(d.get("negated", False)),
        })
    return out


def concepts_array(per_sample: Iterable[Iterable[Any]]) -> pa.Array:
    """One ``CONCEPT_TYPE`` value per sample."""
    return pa.array([concept_dicts(cs) for cs in per_sample], type=CONCEPT_TYPE)


def flat_concepts_table(sample_ids: Iterable[str], per_sample: Iterable[Iterable[Any]]) -> pa.Table:
    """The flat view as its own table: one row per (sample, concept mention)."""
    rows: dict[str, list[Any]] = {k: [] for k in ["sample_id", *_KEYS]}
    for sid, cs in zip(sample_ids, per_sample):
        for d in concept_dicts(cs):
            rows["sample_id"].append(sid)
            for k in _KEYS:
                rows[k].append(d[k])
    return pa.Table.from_pydict(rows, schema=CONCEPT_FLAT_SCHEMA)
