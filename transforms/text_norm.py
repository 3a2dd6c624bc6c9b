"""Token normalisation shared by the vocabulary index (aliases) and the matcher (caption text).

Both sides go through the same spaCy tokenizer and the same per-token rule, so a caption matches an alias
regardless of case, accents, plural number (``cysts`` / ``cyst``, ``arteries`` / ``artery``, ``metastases``
/ ``metastasis``, ``bronchi`` / ``bronchus``), hyphens (``non-small`` / ``non small``) and possessives
(``Crohn's disease`` / ``Crohn disease``) and anatomical relational adjectives (``pulmonary`` / ``lung``,
see ``data/anatomy_adjectives.tsv``). ``NORMALIZER_VERSION`` is stored in every index: an index built
with another version has its keys recomputed at load.
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Iterable

NORMALIZER_VERSION = 2
ADJECTIVES_FILE = Path(__file__).resolve().parent / "data" / "anatomy_adjectives.tsv"
DROP_TOKENS = frozenset({"-", "'s", "’s", "'", "’", "\u2010", "\u2011", "\u2013"})


@lru_cache(maxsize=1)
def tokenizer():  # type: ignore[no-untyped-def]
    """spaCy's rule-based English tokenizer (no model needed)."""
    import spacy

    return spacy.blank("en").tokenizer


def _read_adjectives(path: Path = ADJECTIVES_FILE) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            adj, noun = line.split("\t")
            out[adj.strip()] = noun.strip()
    return out


ADJECTIVE_NOUNS = _read_adjectives()


def strip_accents(s: str) -> str:
    if s.isascii():
        return s
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


@lru_cache(maxsize=200_000)
def norm_token(token: str) -> str:
    """Lower case, no accents, one key for singular and plural (applied alike to aliases and text).

    English plurals are reduced to the singular; Latin/Greek pairs share a key: ``-sis``/``-ses`` -> ``-se``
    (stenosis, stenoses), ``-us``/``-i`` -> ``-i`` (bronchus, bronchi), ``-um``/``-a`` -> ``-a``
    (diverticulum, diverticula), ``-ae`` -> ``-a`` (vertebrae). Collisions this creates (basis/base) are rare
    in captions and cost less than missed plurals.
    """
    t = strip_accents(token).lower()
    if t in ADJECTIVE_NOUNS:
        t = ADJECTIVE_NOUNS[t]
    if len(t) <= 3 or not t.isalpha():
        return t
    if t.endswith("ies") and len(t) > 4:
        t = t[:-3] + "y"
    elif t.endswith(("sses", "xes", "ches", "shes", "zes", "uses")):
        t = t[:-2]
    elif t.endswith("sis"):
        t = t[:-2] + "e"
    elif t.endswith("ae") and len(t) > 4:
        t = t[:-1]
    elif t.endswith("s") and not t.endswith(("ss", "us", "is")):
        t = t[:-1]
    if len(t) >= 5 and t.endswith("us"):
        t = t[:-2] + "i"
    elif len(t) >= 5 and t.endswith("um"):
        t = t[:-2] + "a"
    return t


def norm_tokens(tokens: Iterable[str]) -> list[str]:
    return [norm_token(t) for t in tokens if t not in DROP_TOKENS and not t.isspace()]


def norm_key(text: str) -> str:
    """The lookup key of an alias: its normalised tokens joined by single spaces."""
    return " ".join(norm_tokens(t.text for t in tokenizer()(text)))
