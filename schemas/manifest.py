"""Arrow schemas of the manifest tables: the one source of truth for column names and types.

Bump ``SCHEMA_VERSION`` whenever a column is added, removed or changes meaning; it is written into
every Parquet file's metadata (``medcorpus.schema_version``) so readers can tell releases apart.
Sample rows hold only what is derived from the input and the config, never run facts (time, host),
so the same input and config give byte-identical manifests; run facts live in ``runs``.
"""
from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa

from medcorpus.schemas.concepts import CONCEPT_TYPE
from medcorpus.schemas.llm import LLM_FIELDS
from medcorpus.schemas.quality import DROPPED, SAMPLE_FIELDS as QUALITY_FIELDS

SCHEMA_VERSION = 8  # 2: panels; 3: llm; 4: quality, image type, dedup, decontam, dropped; 5: concepts;
# 6: dropped.match_* (the evidence of each duplicate), runs.mode and .units_kept, the units table;
# 7: imaging columns (DICOM, reports, labelled datasets); 8: samples.json_sha256, runs.release and
# .samples_by_*, the changes table

_str, _i32, _i64, _f64, _bool = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()

ARTICLE_FIELDS = [
    pa.field("article_id", _str, nullable=False),
    pa.field("pmcid", _str),
    pa.field("pmid", _str),
    pa.field("doi", _str),
    pa.field("version", _i32),
    pa.field("journal", _str),
    pa.field("year", _i32),
    pa.field("title", _str),
    pa.field("article_type", _str),
    pa.field("license_code", _str),
    pa.field("license_url", _str),
    pa.field("license_family", _str),
]

PROVENANCE_FIELDS = [
    pa.field("source", _str),
    pa.field("source_url", _str),
    pa.field("source_md5", _str),
    pa.field("medcorpus_version", _str),
    pa.field("config_hash", _str),
]

PANEL_FIELDS = [
    # compound figures: a panel sample names its parent figure's key, its box in the parent's
    # image (pixels, as stored in the shard), its caption label and the pairing's confidence
    pa.field("parent_key", _str),
    pa.field("panel_index", _i32),
    pa.field("panel_box", pa.list_(_i32)),
    pa.field("panel_label", _str),
    pa.field("panel_confidence", _f64),
    pa.field("n_panels", _i32),  # on a whole figure: how many panel samples it gave
    pa.field("split_status", _str),  # split | single_panel | kept whole: the reason
]
"""Columns of the panels stage."""

CONCEPT_FIELDS = [
    # UMLS concepts of the caption and of the citing paragraphs (view `concepts` flattens them)
    pa.field("concepts", CONCEPT_TYPE),
    pa.field("context_concepts", CONCEPT_TYPE),
    pa.field("anatomy", pa.list_(_str)),  # hints derived from the concepts
    pa.field("modality", pa.list_(_str)),
    pa.field("concept_vocab", _str),  # content id of the vocabulary linked with
]
"""Columns of the concepts stage."""

REPORT_TYPE = pa.struct([pa.field(name, _str) for name in ("indication", "comparison", "findings", "impression")])

IMAGING_FIELDS = [
    # samples of imaging sources (DICOM series, image+report collections, labelled datasets); null
    # for journal figures. Identifiers are pseudonyms (keyed hashes), never the source's own values.
    pa.field("image_modality", _str),  # DICOM Modality code (CT, MR, CR, DX, US ...) or the dataset's
    pa.field("body_part", _str),
    pa.field("view_position", _str),  # PA, AP, LATERAL ... (projection files or the DICOM header)
    pa.field("pixel_spacing", pa.list_(_f64)),  # mm, (row, column)
    pa.field("frame_index", _i32),  # frame of a multi-frame instance, or slice of a volume series
    pa.field("window", _str),  # the VOI window used to render it: "lung", "C=40 W=400", "voi_lut" ...
    pa.field("patient_pseudo_id", _str),
    pa.field("study_pseudo_id", _str),
    pa.field("series_pseudo_id", _str),
    pa.field("patient_identity_removed", _bool),
    pa.field("deid_method", pa.list_(_str)),  # DICOM CID 7050 codes (113100 Basic Profile, options)
    pa.field("dataset_name", _str),
    pa.field("dataset_version", _str),
    pa.field("dataset_split", _str),  # train | validation | test, as the dataset declares
    pa.field("labels", pa.list_(_str)),
    pa.field("report", REPORT_TYPE),  # report sections of image+report collections
]
"""Columns of the imaging sources, filled by their parse stages."""

SAMPLES = pa.schema(
    [
        pa.field("key", _str, nullable=False),
        pa.field("shard", _str, nullable=False),
        pa.field("image_member", _str),
        pa.field("image_offset", _i64),
        pa.field("image_size", _i64),
        pa.field("txt_offset", _i64),
        pa.field("txt_size", _i64),
        pa.field("json_offset", _i64),
        pa.field("json_size", _i64),
        pa.field("json_sha256", _str),  # of the JSON member: the sample's fingerprint (every column but these)
        pa.field("image_sha256", _str),
        pa.field("image_format", _str),
        pa.field("width", _i32),
        pa.field("height", _i32),
        pa.field("orig_width", _i32),
        pa.field("orig_height", _i32),
        pa.field("caption", _str),
        pa.field("caption_title", _str),
        pa.field("mentions", pa.list_(_str)),
        pa.field("figure_id", _str),
        pa.field("figure_label", _str),
        pa.field("parent_figure_id", _str),
        pa.field("graphic_href", _str),
        pa.field("graphic_file", _str),
        *PANEL_FIELDS,
        *CONCEPT_FIELDS,
        *QUALITY_FIELDS,  # filter scores, image_type (+ confidence), hashes, dedup cluster, decontam hits
        *LLM_FIELDS,  # null unless the llm stage runs: caption_original, generated (with provenance) ...
        *IMAGING_FIELDS,
        *ARTICLE_FIELDS,
        *PROVENANCE_FIELDS,
    ]
)

SHARD_COLUMNS = ("shard", "image_member", "image_offset", "image_size", "txt_offset", "txt_size",
                 "json_offset", "json_size")
"""Columns of a sample row that exist only once the sample sits in a shard."""

ARTICLES = pa.schema(
    [
        *ARTICLE_FIELDS,
        pa.field("keywords", pa.list_(_str)),
        pa.field("n_figures", _i32),
        pa.field("n_samples", _i32),
        *PROVENANCE_FIELDS,
    ]
)

FIGURES = pa.schema(
    [
        pa.field("key", _str, nullable=False),
        pa.field("article_id", _str, nullable=False),
        pa.field("figure_id", _str),
        pa.field("figure_label", _str),
        pa.field("parent_figure_id", _str),
        pa.field("position", _i32),
        pa.field("caption_title", _str),
        pa.field("caption", _str),
        pa.field("mentions", pa.list_(_str)),
        pa.field("graphics", pa.list_(_str)),
        pa.field("has_media", _bool),
    ]
)

ERRORS = pa.schema(
    [
        pa.field("input", _str, nullable=False),
        pa.field("stage", _str, nullable=False),
        pa.field("reason", _str, nullable=False),
        pa.field("detail", _str),
        pa.field("article_id", _str),
        pa.field("figure_id", _str),
    ]
)

RUNS = pa.schema(
    [
        pa.field("run_id", _str),
        pa.field("started_at", pa.timestamp("ms", tz="UTC")),
        pa.field("finished_at", pa.timestamp("ms", tz="UTC")),
        pa.field("host", _str),
        pa.field("runner", _str),
        pa.field("workers", _i32),
        pa.field("source_spec", _str),
        pa.field("medcorpus_version", _str),
        pa.field("config_hash", _str),
        pa.field("units", _i64),
        pa.field("units_reused", _i64),
        pa.field("articles", _i64),
        pa.field("figures", _i64),
        pa.field("samples", _i64),
        pa.field("errors", _i64),
        pa.field("shards", _i64),
        pa.field("seconds", _f64),
        pa.field("errors_by_reason", _str),  # JSON object
        pa.field("mode", _str),  # snapshot (the whole source) | incremental (a restricted listing)
        pa.field("units_kept", _i64),  # incremental: units of the previous build carried over unchanged
        pa.field("release", _i64),  # the release this build published: 1, 2, ... (manifests/releases.py)
        pa.field("samples_by_family", _str),  # JSON objects: the release's samples per license family,
        pa.field("samples_by_image_type", _str),  # per image type and per imaging modality (DICOM code)
        pa.field("samples_by_modality", _str),
    ]
)

# The units the published build holds (manifest/units.parquet): what an incremental run starts from.
# ``token`` names the unit's staged result; ``meta`` is the source's unit metadata as JSON pairs.
UNITS = pa.schema(
    [
        pa.field("source", _str, nullable=False),
        pa.field("unit_id", _str, nullable=False),
        pa.field("locator", _str),
        pa.field("fingerprint", _str),
        pa.field("meta", _str),
        pa.field("token", _str, nullable=False),
    ]
)

# What changed between two releases (manifest/changes.parquet; manifests/changes.py): one row per
# sample key added, removed or updated, with the reason derived from the evidence and both sides.
CHANGES = pa.schema(
    [
        pa.field("release", _i64, nullable=False),  # the release these changes led to
        pa.field("previous_release", _i64, nullable=False),  # the release they start from (0: nothing)
        pa.field("key", _str, nullable=False),
        pa.field("change", _str, nullable=False),  # added | removed | updated
        pa.field("reason", _str, nullable=False),  # new article, new version, retracted, now filtered ...
        pa.field("detail", _str),  # the evidence: the error, the filter, which columns differ ...
        pa.field("article_id", _str),
        *[pa.field(f"{side}_{name}", _str) for side in ("old", "new")
          for name in ("family", "shard", "image_sha256", "image_exact_hash", "image_phash", "fingerprint")],
    ]
)

def with_version(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({b"medcorpus.schema_version": str(SCHEMA_VERSION).encode()})


def to_table(rows: Iterable[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows → table of exactly ``schema`` (unknown keys are an error: the schema is the contract)."""
    rows = list(rows)
    names = set(schema.names)
    for row in rows[:1]:
        extra = set(row) - names
        if extra:
            raise KeyError(f"columns not in schema: {sorted(extra)}")
    return pa.Table.from_pylist(rows, schema=with_version(schema))
