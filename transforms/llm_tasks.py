"""Prompt templates and output validation of the LLM/VLM tasks.

Each task is a fixed template whose hash goes into the request-cache key and the provenance of
every generated field: changing a word of a prompt changes the hash, so old answers are neither
reused nor mistaken for the new prompt's. Parsing and validation are pure functions so the same
checks run in the pipeline, the tests and offline re-validation.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

__all__ = ["TaskSpec", "TASKS", "SUBCAPTIONS", "ENRICH", "RECAPTION", "EXTRACT", "EXTRACTION_SCHEMA",
           "SUBCAPTION_SCHEMA", "parse_json", "schema_errors", "near_substring", "validate_subcaptions",
           "extraction_claims_text", "repair_prompt"]

MODALITIES = ["CT", "MRI", "X-ray", "ultrasound", "PET", "SPECT", "nuclear medicine", "angiography",
              "fluoroscopy", "mammography", "endoscopy", "histology", "immunohistochemistry", "cytology",
              "light microscopy", "fluorescence microscopy", "electron microscopy", "fundus photograph",
              "OCT", "clinical photograph", "ECG", "chart", "diagram", "other"]

EXTRACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "modality": {"type": "string", "enum": MODALITIES},
        "anatomy": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        "findings": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        "stain": {"type": ["string", "null"]},
        "laterality": {"type": ["string", "null"], "enum": ["left", "right", "bilateral", None]},
        "view": {"type": ["string", "null"]},
        "magnification": {"type": ["string", "null"]},
    },
    "required": ["modality", "anatomy", "findings"],
    "additionalProperties": False,
}

SUBCAPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "subcaptions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"label": {"type": "string", "maxLength": 8}, "text": {"type": "string"}},
                "required": ["label", "text"],
            },
        }
    },
    "required": ["subcaptions"],
}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    system: str
    user: str                      # str.format template over the task's input fields
    vision: bool = False           # the image goes with the prompt
    json_schema: dict[str, Any] | None = None
    version: int = 1

    def template_hash(self) -> str:
        blob = json.dumps([self.name, self.system, self.user, self.vision, self.json_schema, self.version],
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def render(self, inputs: dict[str, Any]) -> str:
        return self.user.format(**{k: ("" if v is None else v) for k, v in inputs.items()})

    def messages(self, inputs: dict[str, Any], image_url: str | None = None) -> list[dict[str, Any]]:
        """OpenAI chat messages; the image (a data URL) goes before the text, as VLMs are trained."""
        text = self.render(inputs)
        content: Any = text
        if self.vision and image_url:
            content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": text}]
        return [{"role": "system", "content": self.system}, {"role": "user", "content": content}]


SUBCAPTIONS = TaskSpec(
    name="subcaptions",
    system="You split figure captions of biomedical articles into per-panel subcaptions. "
           "Copy text verbatim from the caption; never add words.",
    user='Caption:\n"""{caption}"""\n\nReturn JSON {{"subcaptions": [{{"label": "A", "text": "..."}}]}} with one '
         "entry per panel label, each text copied from the caption.",
    json_schema=SUBCAPTION_SCHEMA,
)
ENRICH = TaskSpec(
    name="enrich",
    system="You summarize what an article's text says about one figure. Use only facts stated in the text.",
    user='Figure caption:\n"""{caption}"""\n\nParagraphs citing the figure:\n"""{context}"""\n\n'
         "In at most three sentences, summarize what these paragraphs say about the figure.",
)
RECAPTION = TaskSpec(
    name="recaption",
    system="You write accurate, self-contained captions for medical images. State only what the image, "
           "its caption and the context support; do not guess diagnoses, sizes or sides.",
    user='Original caption:\n"""{caption}"""\n\nContext from the article:\n"""{context}"""\n\n'
         "Write one fluent caption (1-3 sentences) describing the image: modality, anatomy and findings.",
    vision=True,
)
EXTRACT = TaskSpec(
    name="extract",
    system="You extract structured metadata about a medical figure. Use only facts in the caption and context; "
           "use null or [] when a field is not stated.",
    user='Caption:\n"""{caption}"""\n\nContext:\n"""{context}"""\n\nReturn one JSON object with keys modality (one of '
         + ", ".join(MODALITIES) + "), anatomy (list), findings (list), stain, laterality (left/right/bilateral/null), "
         "view, magnification.",
    json_schema=EXTRACTION_SCHEMA,
)
TASKS: dict[str, TaskSpec] = {t.name: t for t in (SUBCAPTIONS, ENRICH, RECAPTION, EXTRACT)}

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def parse_json(text: str) -> Any:
    """The first JSON value in a model answer (code fences and chatter around it are ignored)."""
    m = _FENCE.search(text or "")
    candidate = m.group(1) if m else (text or "")
    start = min((i for i in (candidate.find("{"), candidate.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON object in the answer")
    value, _ = json.JSONDecoder().raw_decode(candidate[start:])
    return value


def schema_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in validator.iter_errors(value)]


def repair_prompt(answer: str, errors: list[str], schema: dict[str, Any]) -> str:
    """The follow-up message of a bounded repair retry: what was wrong and what is expected."""
    return ("Your answer was not valid: " + "; ".join(errors[:5]) + "\nReturn only a JSON object matching this "
            "JSON schema, nothing else:\n" + json.dumps(schema))


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip(" .;,")


def near_substring(part: str, whole: str) -> float:
    """How much of ``part`` is copied from ``whole``: 1.0 for a substring up to case and spacing,
    else the fraction of its characters in blocks shared with ``whole``."""
    p, w = _norm(part), _norm(whole)
    if not p:
        return 0.0
    if p in w:
        return 1.0
    sm = difflib.SequenceMatcher(None, w, p, autojunk=False)
    return sum(b.size for b in sm.get_matching_blocks() if b.size >= 3) / len(p)


def validate_subcaptions(value: Any, caption: str, min_ratio: float = 0.9) -> tuple[list[dict[str, str]], list[str]]:
    """(subcaptions, errors): every subcaption must come from the caption (near-substring ≥ min_ratio)
    and labels must be distinct."""
    errors = schema_errors(value, SUBCAPTION_SCHEMA)
    if errors:
        return [], errors
    subs = [{"label": s["label"].strip(), "text": s["text"].strip()} for s in value["subcaptions"]]
    labels = [s["label"].lower() for s in subs]
    if len(set(labels)) != len(labels):
        errors.append("duplicate labels")
    for s in subs:
        r = near_substring(s["text"], caption)
        if r < min_ratio:
            errors.append(f"subcaption {s['label']} is not from the caption ({r:.2f})")
    return subs, errors


def extraction_claims_text(value: dict[str, Any]) -> str:
    """The checkable part of an extraction as text for the faithfulness gate (modality is judged from
    the image, so it is not a claim about the text)."""
    parts = [*value.get("anatomy", []), *value.get("findings", [])]
    parts += [str(value[k]) for k in ("stain", "laterality", "magnification") if value.get(k)]
    return ". ".join(str(p) for p in parts if p)
