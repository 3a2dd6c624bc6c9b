"""License codes and shard families.

A sample's license decides which shard family may hold it; the mapping from code to family is
configuration (``licenses:`` in dataflow.yaml), the parsing of codes from XML and metadata is here.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

DEFAULT_FAMILIES: dict[str, list[str]] = {
    "comm": ["CC BY", "CC0", "PD"],
    "noncomm": ["CC BY-NC", "CC BY-NC-ND", "CC BY-NC-SA", "CC BY-ND", "CC BY-SA"],
}
"""CC BY-ND and BY-SA allow commercial use but not every use a training corpus makes: they go to
``noncomm`` unless a user's policy says otherwise. Everything unlisted goes to ``other``."""

_CC_URL = re.compile(r"creativecommons\.org/(licenses|publicdomain)/([a-z\-]+)(?:/([\d.]+))?", re.I)
_CODE = re.compile(r"\bCC[\s_-]*(0|BY(?:[\s_-]*(?:NC|ND|SA))*)\b", re.I)
_TEXT_RULES: Sequence[tuple[re.Pattern[str], str]] = [
    (re.compile(r"public domain|not subject to copyright|free of all copyright", re.I), "PD"),
    (re.compile(r"attribution[\s-]*non-?commercial[\s-]*no[\s-]*deriv", re.I), "CC BY-NC-ND"),
    (re.compile(r"attribution[\s-]*non-?commercial[\s-]*share", re.I), "CC BY-NC-SA"),
    (re.compile(r"attribution[\s-]*non-?commercial", re.I), "CC BY-NC"),
    (re.compile(r"attribution[\s-]*no[\s-]*deriv", re.I), "CC BY-ND"),
    (re.compile(r"attribution[\s-]*share", re.I), "CC BY-SA"),
    (re.compile(r"creative commons attribution", re.I), "CC BY"),
]


def normalize_code(code: str | None) -> str | None:
    """``cc-by-nc``, ``CC BY-NC 4.0``, ``cc_by`` → ``CC BY-NC``; ``CC0``; ``None`` if unrecognized."""
    if not code:
        return None
    m = _CODE.search(code.replace("CC-", "CC "))
    if not m:
        if re.search(r"public\s*domain|\bpd\b", code, re.I):
            return "PD"
        return None
    body = m.group(1).upper()
    if body == "0":
        return "CC0"
    parts = [p for p in re.split(r"[\s_-]+", body) if p]
    return "CC " + "-".join(parts)


def code_from_url(url: str | None) -> str | None:
    if not url:
        return None
    m = _CC_URL.search(url)
    if not m:
        return None
    kind, name = m.group(1).lower(), m.group(2).lower()
    if kind == "publicdomain":
        return "CC0" if name.startswith("zero") else "PD"
    return normalize_code("CC " + name)


def code_from_text(text: str | None) -> str | None:
    if not text:
        return None
    for pattern, code in _TEXT_RULES:
        if pattern.search(text):
            return code
    return None


def resolve_license(
    metadata_code: str | None = None, url: str | None = None, text: str | None = None
) -> str:
    """The per-article metadata code is authoritative; the XML's URL, then its wording, follow."""
    return normalize_code(metadata_code) or code_from_url(url) or code_from_text(text) or "unknown"


def license_family(code: str, families: Mapping[str, Sequence[str]] | None = None) -> str:
    families = DEFAULT_FAMILIES if families is None else families
    for family, codes in families.items():
        if code in codes:
            return family
    return "other"
