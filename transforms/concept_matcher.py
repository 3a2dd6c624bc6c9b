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
- gene, chemical and cell-line symbols (letters with digits or a mixed case: ``BRCA1``, ``siRNA``,
  ``HeLa``) of one concept are matched undefined, as spelt, where the text speaks of molecular biology
  (``MOLECULAR_CONTEXT``: gene, expression, knockdown, cells ...);
- a small list of words that open vocabularies use as names but captions use as ordinary English
  (``left``, ``narrow``, ``arrow`` is not one, but ``large`` is) is kept out (``GENERIC_WORDS``), and
  phrases of other fields that contain a body word are never mentions (``NON_MEDICAL_PHRASES``:
  forestry's "diameter at breast height", a trial's "treatment arm", the "elbow method").
"""
from __future__ import annotations

import re
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
    # class names of whole MeSH branches: "gene expression", "Gene Ontology", "Human Protein Atlas"
    "gene", "protein", "nuclear protein", "cell line", "antibody", "nucleotide", "oligonucleotide", "enzyme",
    "receptor", "peptide", "antigen",
})


# Phrases (normalised tokens) whose body word is not the body: skipped whole by the matcher.
NON_MEDICAL_PHRASES = tuple(tuple(p.split()) for p in (
    "breast height", "rule of thumb", "study arm", "treatment arm", "control arm", "placebo arm", "trial arm",
    "arm of the study", "arm of the trial", "head to head", "head-to-head", "hand in hand", "face to face",
    "face-to-face", "face validity", "eye of the storm", "heart of the matter", "back and forth", "elbow method",
    "elbow point", "knee point", "knee of the curve", "arms race", "foot of the", "neck and neck",
))


# groups whose case-patterned symbols match undefined, and the words that must occur in the text
SYMBOL_GROUPS = frozenset({"GENE", "CHEM"})
SYMBOL_TUIS = frozenset({"T025"})  # cell lines (HeLa, MCF-7)
MOLECULAR_CONTEXT = re.compile(
    r"\b(?:genes?|genom\w*|proteins?|express\w*|overexpress\w*|mutat\w*|mutant\w*|knock\w*|silenc\w*|"
    r"transfect\w*|allel\w*|variants?|cells?|cell lines?|transcri\w*|loci|locus|promoters?|antibod\w*|"
    r"sequenc\w*|carriers?|kinases?|inhibit\w*|blots?|[sm]i?RNAs?|shRNAs?|CRISPR|deficien\w*|wild[- ]type|"
    r"clones?|plasmids?|vectors?|domains?|binding|pathways?|signal\w*|assays?|phosphorylat\w*|DNA|RNA)\b", re.I)


def _is_symbol(spelling: str) -> bool:
    """Letters with digits (BRCA1, HT1080, p53) or a mixed case that is not all capitals (siRNA, HeLa)."""
    has_digit = any(c.isdigit() for c in spelling) and any(c.isalpha() for c in spelling)
    mixed = any(c.islower() for c in spelling) and any(c.isupper() for c in spelling[1:])
    return has_digit or mixed


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
    symbols: frozenset[str] = frozenset()  # keys matched only in a molecular context

    @classmethod
    def from_vocab(cls, vocab: VocabIndex, config: MatcherConfig = MatcherConfig()) -> "VocabMatcher":
        stop = _stop_words() | config.extra_stop_words
        generic = {" ".join(norm_token(t) for t in w.split()) for w in config.generic_words}
        keys: dict[str, tuple[str, ...]] = {}
        case_exact: dict[str, set[str]] = {}
        symbols: set[str] = set()
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
                symbol = {s for s in abbrevs if _is_symbol(s)} if len(cuis) == 1 else set()
                info = vocab.concepts.get(cuis[0])
                if symbol and info is not None and (info.group in SYMBOL_GROUPS or SYMBOL_TUIS & set(info.tuis)):
                    case_exact[key] = symbol | {f"{s}s" for s in symbol}  # siRNAs
                    symbols.add(key)
                elif not abbrevs or len(cuis) > 1 or not config.undefined_abbreviations:
                    continue  # short and not a defined abbreviation, or an ambiguous one
                else:
                    case_exact[key] = abbrevs
            elif len(key) <= config.min_chars:  # 3-letter words (leg, rib, orf): as spelt, or capitalised
                case_exact[key] = spellings | {s[:1].upper() + s[1:] for s in spellings}
            keys[key] = cuis
            longest = max(longest, len(toks))
        return cls(keys, case_exact, longest, frozenset(symbols))

    def match_tokens(self, words: Sequence[str]) -> list[Match]:
        """Greedy longest match over the token texts of a doc; returns token-index spans."""
        idx = [i for i, w in enumerate(words) if w not in DROP_TOKENS and not w.isspace()]
        normed = [norm_token(words[i]) for i in idx]
        molecular: bool | None = None  # whether symbols may match: decided on the first one met
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
                if key in self.symbols:
                    if molecular is None:
                        molecular = MOLECULAR_CONTEXT.search(" ".join(words)) is not None
                    if not molecular:
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
