"""Arrow fields of the manifest columns the LLM stage adds.

``schemas.manifest`` puts ``LLM_FIELDS`` in every samples schema, null unless the llm stage runs,
so one schema (and one schema version) serves corpora built with and without it. ``generated`` keeps
every output of every task, accepted or not, with its provenance, so a corpus can be re-filtered
with another threshold and every generated caption traced to backend, model, prompt and params.
"""
from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

__all__ = ["GENERATED_STRUCT", "SUBCAPTION_STRUCT", "LLM_FIELDS", "to_arrow_row"]

_str, _f64, _bool = pa.string(), pa.float64(), pa.bool_()

GENERATED_STRUCT = pa.struct([
    pa.field("task", _str),            # subcaptions | enrich | recaption | extract
    pa.field("text", _str),            # the output (JSON text for subcaptions and extract)
    pa.field("accepted", _bool),       # passed the faithfulness gate / subcaption check
    pa.field("score", _f64),
    pa.field("unsupported", pa.list_(_str)),  # "kind:text" claims the sources do not support
    pa.field("backend", _str),         # openai | local
    pa.field("model", _str),
    pa.field("prompt_hash", _str),     # template hash of the task
    pa.field("params_json", _str),     # generation parameters, canonical JSON
    pa.field("cache_hit", _bool),
])
SUBCAPTION_STRUCT = pa.struct([pa.field("label", _str), pa.field("text", _str)])

LLM_FIELDS = [
    pa.field("caption_original", _str),        # the caption as parsed, before cleaning or generation
    pa.field("caption_clean", _str),           # after rule-based cleaning
    pa.field("caption_llm", _str),             # accepted VLM re-caption, null when off or rejected
    pa.field("context_llm", _str),             # accepted summary of the citing paragraphs
    pa.field("subcaptions", pa.list_(SUBCAPTION_STRUCT)),
    pa.field("subcaptions_source", _str),      # llm | rules
    pa.field("structured_llm", _str),          # accepted extraction (JSON, schema EXTRACTION_SCHEMA)
    pa.field("generated", pa.list_(GENERATED_STRUCT)),
]


def to_arrow_row(out: dict[str, Any]) -> dict[str, Any]:
    """A ``LLMStage.process`` / ``recaption`` result as values for ``LLM_FIELDS`` (JSON columns decoded)."""
    row = {f.name: out.get(f.name) for f in LLM_FIELDS}
    for key in ("generated", "subcaptions"):
        if isinstance(row[key], str):
            row[key] = json.loads(row[key])
    row["generated"] = row["generated"] or []
    return row
