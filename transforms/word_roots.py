"""Word roots: one key for the inflected and derived forms of a word, so text is compared on meaning.

Why: the faithfulness gate must accept "thrombosed" for "thrombosis" and "left ventricular" for
"left ventricle" without accepting "hepatitis" for "hepatic". Snowball's English stemmer (nltk, rule
based, no data files) folds inflection and most derivation; adjectives of disease nouns are mapped to
the noun first, and a disease-forming suffix (-itis, -oma, -osis ...) always stays part of the key.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from medcorpus.transforms.text_norm import ADJECTIVE_NOUNS

__all__ = ["DISEASE_SUFFIX", "root"]

DISEASE_SUFFIX = re.compile(r"^[a-z][a-z\-]{3,}(?:itis|oma|omas|osis|oses|emia|aemia|pathy|plasia|trophy|ectasia|"
                            r"megaly|stasis|algia|ism|cele|rrhea|rrhoea|penia|cytosis|sclerosis|stenosis)$")

# adjectives and participles of disease nouns: thrombosed/thrombotic -> thrombosis, ischemic -> ischemia
_DISEASE_FORMS = [(re.compile(p), r) for p, r in (
    (r"(?<=[a-z]{4})(?:osed|otic)$", "osis"), (r"(?<=[a-z]{4})culous$", "culosis"), (r"(?<=[a-z]{4})itic$", "itis"),
    (r"(?<=[a-z]{3})omatous$", "oma"), (r"(?<=[a-z]{3})(?:emic|aemic)$", "emia"), (r"(?<=[a-z]{3})plastic$", "plasia"),
    (r"(?<=[a-z]{3})trophic$", "trophy"), (r"(?<=[a-z]{3})ectatic$", "ectasia"), (r"(?<=[a-z]{3})pathic$", "pathy"))]


@lru_cache(maxsize=65536)
def root(word: str) -> str:
    """The key of a normalized (lower-case) word: thrombosed/thrombotic/thrombosis, ventricular/
    ventricle, enhancing/enhancement/enhanced share one; hepatitis and hepatic do not."""
    word = ADJECTIVE_NOUNS.get(word, word)  # hepatic -> liver, pulmonary -> lung
    for pattern, noun in _DISEASE_FORMS:
        if pattern.search(word):
            return pattern.sub(noun, word)
    if DISEASE_SUFFIX.match(word) or not word.isalpha():
        return word
    stem = _stemmer().stem(word)
    for suffix in ("ular", "ul", "l"):  # ventricular/ventricle, muscular/muscle
        if stem.endswith(suffix) and len(stem) - len(suffix) >= 4:
            return stem[:-len(suffix)]
    return stem


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    from nltk.stem.snowball import SnowballStemmer

    return SnowballStemmer("english")
