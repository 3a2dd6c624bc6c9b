"""Mention detection without a NER model: longest-match lookup of normalised token n-grams in the vocabulary.

Guards against the classic dictionary-matching errors:
- stop-words and very short strings are never mentions on their own, and 3-letter aliases (``leg``,
  ``orf``) match only as the vocabulary spells them (or capitalised), so ``ORF`` is not ``orf`` (``All`` is an HPO name, ``in`` a
  synonym somewhere);
- short all-capital aliases (``TB``, ``MS``, ``LAD``) are not matched on their own: the abbreviation detector
  links them where the text defines them (``tuberculosis (TB)``). In captions most undefined short forms
  name something else than the vocabulary's entry (``LAD`` is the artery, not leukocyte adhesion
  deficiency); ``undefined_abbreviations=True`` matches them case-exactly when they name one concept;
- a small list of words that open vocabularies use as names but captions use as ordinary English
  (``left``, ``narrow``, ``arrow`` is not one, but ``large`` is) is kept out (``GENERIC_WORDS``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
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
})


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
            abbrevs = {s for s in spellings if len(s) <= config.abbrev_max_chars and s.isupper()}
            if len(key) < config.min_chars or (abbrevs and len(key) <= config.abbrev_max_chars):
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
