"""Mention detection without a NER model: longest-match lookup of normalised token n-grams in the vocabulary.

Guards against the classic dictionary-matching errors:
- stop-words and very short strings are never mentions on their own, and 3-letter aliases (``leg``,
  ``orf``) match only as the vocabulary spells them (or capitalised), so ``ORF`` is not ``orf`` (``All`` is an HPO name, ``in`` a
  synonym somewhere);
- short all-capital aliases (``TB``, ``MS``, ``LAD``) are not matched on their own: the abbreviation detector
  links them where the text defines them (``tuberculosis (TB)``). In captions most undefined short forms
  name something else than the vocabulary's entry (``LAD`` is the artery, not leukocyte adhesion
  deficiency); ``undefined_abbreviations=True`` matches them case-exactly when they name one concept;
- short aliases the vocabulary spells with a case pattern of their own (``aHUS``, ``BRCA1``, ``HeLa``)
  are abbreviations too: matched only with that spelling, so the place name "Ahus" is not aHUS;
- a small list of words that open vocabularies use as names but captions use as ordinary English
  (``left``, ``narrow``, ``arrow`` is not one, but ``large`` is) is kept out (``GENERIC_WORDS``), and
  phrases of other fields that contain a body word are never mentions (``NON_MEDICAL_PHRASES``:
  forestry's "diameter at breast height", a trial's "treatment arm", the "elbow method").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Sequence

from medcorpus.transforms.text_norm import DROP_TOKENS, norm_token
from medcorpus.transforms.vocab_index import VocabIndex

# Single words that are names of (mostly HPO modifier) concepts but in captions are plain English.
GENERIC_WORDS = frozenset({
    "left", "right", "bilateral", "unilateral", "mild", "moderate", "severe", "profound", "acute", "chronic",
    "subacute", "progressive", "episodic", "recurrent", "large", "small", "narrow", "broad", "wide", "tall",
    "short", "long", "high", "low", "normal", "abnormal", "abnormality", "generalized", "localized", "focal",
    "diffuse", "distal", "proximal", "central", "peripheral", "sporadic", "variable", "frequent", "occasional",
    "obligate", "very", "rare", "common", "onset", "death", "all", "disease", "syndrome", "disorder",
    "finding", "symptom", "sign", "image", "view", "figure", "case", "patient", "right side", "left side",
    "single", "multiple", "complete", "incomplete", "partial", "total", "stage", "type", "grade", "level",
    "gas",  # free gas, gas vesicle, gas sensor: never the vocabulary's flatulence
})


# Phrases (normalised tokens) whose body word is not the body: skipped whole by the matcher.
NON_MEDICAL_PHRASES = tuple(tuple(p.split()) for p in (
    "breast height", "rule of thumb", "study arm", "treatment arm", "control arm", "placebo arm", "trial arm",
    "arm of the study", "arm of the trial", "head to head", "head-to-head", "hand in hand", "face to face",
    "face-to-face", "face validity", "eye of the storm", "heart of the matter", "back and forth", "elbow method",
    "elbow point", "knee point", "knee of the curve", "arms race", "foot of the", "neck and neck",
))


@lru_cache(maxsize=1)
def _non_medical() -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(norm_token(t) for t in ph) for ph in NON_MEDICAL_PHRASES)


def _is_case_pattern_abbreviation(spelling: str, max_chars: int) -> bool:
    """All capitals (TB), capitals after a small letter (aHUS) or letters with digits (BRCA1, HT1080)."""
    if len(spelling) > max_chars + 2 or " " in spelling:
        return False
    inner_upper = any(c.isupper() for c in spelling[1:])
    digits_and_letters = any(c.isdigit() for c in spelling) and any(c.isalpha() for c in spelling)
    return spelling.isupper() or inner_upper or digits_and_letters


@dataclass(frozen=True)
class MatcherConfig:
    max_tokens: int = 10
    min_chars: int = 3
    abbrev_max_chars: int = 5
    undefined_abbreviations: bool = False
    generic_words: frozenset[str] = GENERIC_WORDS
    extra_stop_words: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Match:
    start: int  # token index in the doc (inclusive)
    end: int  # token index (exclusive)
    key: str
    cuis: tuple[str, ...]


def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


@dataclass
class VocabMatcher:
    keys: dict[str, tuple[str, ...]]
    case_exact: dict[str, set[str]] = field(default_factory=dict)  # key -> allowed exact spellings
    max_tokens: int = 10

    @classmethod
    def from_vocab(cls, vocab: VocabIndex, config: MatcherConfig = MatcherConfig()) -> "VocabMatcher":
        stop = _stop_words() | config.extra_stop_words
        generic = {" ".join(norm_token(t) for t in w.split()) for w in config.generic_words}
        keys: dict[str, tuple[str, ...]] = {}
        case_exact: dict[str, set[str]] = {}
        longest = 1
        for key, cuis in vocab.key_to_cuis.items():
            toks = key.split(" ")
            if len(toks) > config.max_tokens:
                continue
            if len(toks) == 1 and (key in stop or key in generic):
                continue
            if key in generic:
                continue
            if all(t in stop or not t.isalnum() for t in toks):
                continue
            spellings = vocab.key_cased.get(key, set())
            abbrevs = {s for s in spellings if _is_case_pattern_abbreviation(s, config.abbrev_max_chars)}
            if len(key) < config.min_chars or (abbrevs and len(key) <= config.abbrev_max_chars + 2):
                if not abbrevs or len(cuis) > 1 or not config.undefined_abbreviations:
                    continue  # short and not a defined abbreviation, or an ambiguous one
                case_exact[key] = abbrevs
            elif len(key) <= config.min_chars:  # 3-letter words (leg, rib, orf): as spelt, or capitalised
                case_exact[key] = spellings | {s[:1].upper() + s[1:] for s in spellings}
            keys[key] = cuis
            longest = max(longest, len(toks))
        return cls(keys, case_exact, longest)

    def match_tokens(self, words: Sequence[str]) -> list[Match]:
        """Greedy longest match over the token texts of a doc; returns token-index spans."""
        idx = [i for i, w in enumerate(words) if w not in DROP_TOKENS and not w.isspace()]
        normed = [norm_token(words[i]) for i in idx]
        out: list[Match] = []
        p = 0
        n = len(idx)
        while p < n:
            skip = next((len(ph) for ph in _non_medical() if tuple(normed[p:p + len(ph)]) == ph), 0)
            if skip:
                p += skip
                continue
            found = None
            for q in range(min(n, p + self.max_tokens), p, -1):
                key = " ".join(normed[p:q])
                cuis = self.keys.get(key)
                if cuis is None:
                    continue
                exact = self.case_exact.get(key)
                if exact is not None and " ".join(words[i] for i in idx[p:q]) not in exact:
                    continue
                found = Match(idx[p], idx[q - 1] + 1, key, cuis)
                p = q
                break
            if found is None:
                p += 1
            else:
                out.append(found)
        return out

    def lookup(self, words: Iterable[str]) -> tuple[str, ...]:
        """CUIs of a whole span (e.g. an abbreviation's long form or a NER mention), exact after normalising."""
        ws = list(words)
        key = " ".join(norm_token(w) for w in ws if w not in DROP_TOKENS and not w.isspace())
        return self.keys.get(key, ())
