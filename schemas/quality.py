"""Arrow fields of the manifest columns added by quality filters, image-type tags, dedup and
decontamination, plus the table of dropped samples; ``schemas.manifest`` merges them.

Column values come from ``QualityDecision.columns()``, ``ImageTags.columns()``,
``DedupResult.columns(key)``, ``Match.columns()`` and ``decontam_columns(hits)``.
"""
from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

_str, _f64, _i32 = pa.string(), pa.float64(), pa.int32()

HIT = pa.struct([pa.field("evalset", _str), pa.field("kind", _str), pa.field("detail", _str)])

SCORES = pa.list_(pa.struct([pa.field("name", _str), pa.field("value", _f64)]))
"""Named scores as a list of {name, value}, sorted by name: Hugging Face ``datasets`` cannot hold an
Arrow map. DuckDB reads one score as ``map_from_entries(quality_scores)['caption_chars']``."""


def score_entries(scores: dict[str, float] | None) -> list[dict[str, Any]]:
    """A score dict as the ``SCORES`` column value."""
    return [{"name": k, "value": float(v)} for k, v in sorted((scores or {}).items())]


QUALITY_FIELDS = [
    pa.field("quality_scores", SCORES),     # filter score name -> value (kept and dropped)
    pa.field("quality_dropped_by", _str),                # null for kept samples
    pa.field("quality_reason", _str),
]

IMAGE_TYPE_FIELDS = [
    pa.field("image_type", _str),                        # one of transforms.image_types.LABELS
    pa.field("image_type_confidence", _f64),
    pa.field("image_type_scores", SCORES),
]

DEDUP_FIELDS = [
    pa.field("image_exact_hash", _str),                  # sha256 of normalized pixels
    pa.field("image_phash", _str),                       # pHash‖dHash, 32 hex digits
    pa.field("dedup_cluster", _str),                     # smallest key of the cluster; null = no duplicate
    pa.field("duplicate_of", _str),                      # canonical key; null for canonicals and singletons
]

DECONTAM_FIELDS = [
    pa.field("decontam_hits", pa.list_(HIT)),            # empty list = clean
]

SAMPLE_FIELDS = [*QUALITY_FIELDS, *IMAGE_TYPE_FIELDS, *DEDUP_FIELDS, *DECONTAM_FIELDS]

DROPPED = pa.schema([
    pa.field("key", _str, nullable=False),
    pa.field("article_id", _str),
    pa.field("figure_id", _str),
    pa.field("stage", _str, nullable=False),             # quality | dedup | decontam
    pa.field("dropped_by", _str, nullable=False),        # filter name, dedup kinds (exact,image,caption,panel), or eval set
    pa.field("reason", _str),
    pa.field("duplicate_of", _str),
    pa.field("scores", SCORES),
    # dedup evidence between the sample and ``duplicate_of``: audit any removal with one query
    pa.field("match_hamming", _i32),                     # pHash‖dHash bits apart (of 128)
    pa.field("match_jaccard", _f64),                     # caption shingle Jaccard, when captions matched
    pa.field("match_via", _str),                         # a panel's figure, whose duplicate it follows
])
"""manifest/dropped.parquet: every sample not shipped, with the filter that dropped it."""


def decontam_columns(hits: Iterable[Any]) -> dict[str, Any]:
    return {"decontam_hits": [{"evalset": h.evalset, "kind": h.kind, "detail": h.detail} for h in hits]}


def dropped_row(key: str, stage: str, dropped_by: str, reason: str | None = None, *, article_id: str | None = None,
                figure_id: str | None = None, duplicate_of: str | None = None,
                scores: dict[str, float] | None = None) -> dict[str, Any]:
    return {"key": key, "article_id": article_id, "figure_id": figure_id, "stage": stage, "dropped_by": dropped_by,
            "reason": reason, "duplicate_of": duplicate_of, "scores": score_entries(scores),
            "match_hamming": None, "match_jaccard": None, "match_via": None}
