"""The faithfulness gate: is every claim of a generated text supported by its sources?

Generated captions, summaries and extractions are kept only where the medical concepts, laterality,
numbers and measurements they state appear in the sources (caption, in-text paragraphs). Support is
judged on meaning, not spelling: synonyms, abbreviations and other forms of a source word count
(see ``medvocab`` and ``word_roots``: thrombosed/thrombosis, ventricular/ventricle; abbreviations a
text defines itself are found with scispacy's AbbreviationDetector), units are converted (5 mm =
0.5 cm), and negation must agree ("no hemorrhage" does not support "hemorrhage"). An optional
concept linker (text → concepts with ``.cui``) adds UMLS-level matching. An output must also say
something, about the source, in real sentences (``faithfulness_content``): empty, off-topic and
random-token text is refused even though it states no unsupported claim.

The gate is pure and deterministic: the pipeline stage and ``medcorpus faithfulness`` call
``check`` with the same options and get the same verdict.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Sequence

from medcorpus.transforms.faithfulness_content import ContentLimits, content_problems, function_words
from medcorpus.transforms.medvocab import (ABBREVIATIONS, GENERIC, ConceptMatch, Lexicon, kind_of, load_lexicon,
                                           norm_word, tokenize)
from medcorpus.transforms.word_roots import DISEASE_SUFFIX, root

__all__ = ["FaithfulnessOptions", "Faithfulness", "Claim", "check", "Linker", "quantities", "laterality_claims"]

Linker = Callable[[str], Sequence[Any]]  # text -> concepts with .cui, .start, .end (.negated, .group optional)


@dataclass(frozen=True)
class FaithfulnessOptions:
    threshold: float = 0.75
    # an unsupported claim of these kinds rejects the output whatever the score: one invented
    # diagnosis, number or side is a hallucination however much else is right
    critical: tuple[str, ...] = ("number", "laterality", "negation", "disease", "phenotype")
    concepts: bool = True
    numbers: bool = True
    laterality: bool = True
    suffix_terms: bool = True   # out-of-vocabulary diagnosis-like words (-itis, -oma, -osis ...)
    abbreviations: bool = True  # scispacy AbbreviationDetector on source and output
    vocab_dir: str | None = None
    # the output must say something the source says (``faithfulness_content``): a share of the
    # caption's content words, mostly words of the source, and word order of real writing (``fluency``)
    min_coverage: float = 0.2
    min_on_topic: float = 0.5
    min_fluency: float | None = -1.9
    min_source_order: float | None = 0.5

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "FaithfulnessOptions":
        values = dict(values or {})
        if "critical" in values:
            values["critical"] = tuple(values["critical"])
        return cls(**values)


@dataclass(frozen=True)
class Claim:
    kind: str  # disease | phenotype | symptom | anatomy | abbreviation | concept | number | laterality | negation
    text: str
    supported: bool

    def label(self) -> str:
        return f"{self.kind}:{self.text}"


@dataclass(frozen=True)
class Faithfulness:
    score: float
    accepted: bool
    unsupported: list[str]
    claims: list[Claim] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "accepted": self.accepted, "unsupported": list(self.unsupported)}


# --- negation -----------------------------------------------------------------------------------------

_CLAUSE_END = re.compile(r"[.;:!?]|\b(?:but|however|although|whereas|except)\b", re.I)
_PRE_NEG = re.compile(
    r"\b(?:no|not|without|absence of|absent|negative for|free of|rule[sd]? out|ruled out|never|neither|nor|"
    r"resolution of|resolved)\b(?:\W+\w+){0,5}\W*$", re.I)
_POST_NEG = re.compile(r"^\W*(?:\w+\W+){0,2}?(?:was|were|is|are|has been|have been)?\s*"
                       r"(?:absent|not\b|excluded|ruled out|resolved|negative)", re.I)


def is_negated(text: str, start: int, end: int) -> bool:
    """A negation cue before the mention in its clause, or right after it ("X was absent")."""
    before = text[max(0, start - 80):start]
    cut = list(_CLAUSE_END.finditer(before))
    if cut:
        before = before[cut[-1].end():]
    if _PRE_NEG.search(before):
        return True
    after = text[end:end + 40]
    stop = _CLAUSE_END.search(after)
    return bool(_POST_NEG.search(after[:stop.start()] if stop else after))


# --- numbers and measurements ---------------------------------------------------------------------------

_UNITS: dict[str, tuple[str, float]] = {
    "nm": ("length", 1e-6), "µm": ("length", 1e-3), "μm": ("length", 1e-3), "um": ("length", 1e-3),
    "mm": ("length", 1.0), "cm": ("length", 10.0), "m": ("length", 1000.0),
    "ng": ("mass", 1e-6), "µg": ("mass", 1e-3), "μg": ("mass", 1e-3), "ug": ("mass", 1e-3), "mg": ("mass", 1.0),
    "g": ("mass", 1000.0), "kg": ("mass", 1e6),
    "µl": ("volume", 1e-3), "μl": ("volume", 1e-3), "ul": ("volume", 1e-3), "ml": ("volume", 1.0),
    "cc": ("volume", 1.0), "l": ("volume", 1000.0),
    "ms": ("time", 1e-3), "s": ("time", 1.0), "sec": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0),
    "hr": ("time", 3600.0), "hour": ("time", 3600.0), "day": ("time", 86400.0), "week": ("time", 604800.0),
    "month": ("time", 2629800.0), "year": ("time", 31557600.0), "yr": ("time", 31557600.0),
    "%": ("percent", 1.0), "x": ("magnification", 1.0), "×": ("magnification", 1.0),
    "mmhg": ("pressure", 1.0), "hu": ("density", 1.0), "t": ("field", 1.0), "tesla": ("field", 1.0),
    "gy": ("dose", 1.0), "kv": ("voltage", 1.0), "mhz": ("frequency", 1.0), "bpm": ("rate", 1.0),
}
_WORD_NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                 "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20, "thirty": 30, "hundred": 100,
                 "twice": 2, "double": 2, "triple": 3, "first": 1, "second": 2, "third": 3, "fourth": 4}
_UNIT_RE = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))
_QTY = re.compile(
    rf"(?<![A-Za-z0-9.])([×x]\s?)?(\d+(?:[.,]\d+)?)(?:\s*(?:-|–|to)\s*(\d+(?:[.,]\d+)?))?"
    rf"(?:\s*-?\s*({_UNIT_RE}|years?|yrs?|months?|weeks?|days?|hours?|hrs?)(?![A-Za-z]))?", re.I)
_WORD_NUM = re.compile(r"\b(" + "|".join(_WORD_NUMBERS) + r")\b", re.I)


@dataclass(frozen=True)
class Quantity:
    value: float
    dimension: str | None
    base: float
    text: str


def _unit(raw: str | None) -> tuple[str | None, float]:
    if not raw:
        return None, 1.0
    u = raw.lower().strip()
    if u not in _UNITS and u.endswith("s") and u[:-1] in _UNITS:
        u = u[:-1]
    if u in ("yrs",):
        u = "yr"
    dim, factor = _UNITS.get(u, (None, 1.0))
    return dim, factor


def quantities(text: str) -> list[Quantity]:
    """Every number in ``text`` with its unit dimension and value in the dimension's base unit.

    Numbers glued to letters (T2, CD4, H1N1) are names, not quantities, and are skipped."""
    out = []
    for m in _QTY.finditer(text):
        times, a, b, unit = m.groups()
        if times and not unit:
            unit = "x"
        dim, factor = _unit(unit)
        for raw in (a, b):
            if raw:
                v = float(raw.replace(",", ".")) if raw.count(",") == 1 and len(raw.split(",")[1]) != 3 \
                    else float(raw.replace(",", ""))
                out.append(Quantity(v, dim, v * factor, m.group(0).strip()))
    for m in _WORD_NUM.finditer(text):
        v = float(_WORD_NUMBERS[m.group(1).lower()])
        out.append(Quantity(v, None, v, m.group(0)))
    return out


def _number_supported(q: Quantity, source: list[Quantity]) -> bool:
    for s in source:
        if q.dimension and s.dimension == q.dimension and abs(s.base - q.base) <= 1e-6 * max(abs(q.base), 1e-9):
            return True
        if s.value == q.value and (s.dimension is None or q.dimension is None or s.dimension == q.dimension):
            return True
    return False


# --- laterality ------------------------------------------------------------------------------------------

_SIDES = re.compile(r"\b(left|right|bilateral(?:ly)?|both sides|unilateral|ipsilateral|contralateral)\b", re.I)
_SIDE_SUPPORT = {"left": {"left", "bilateral"}, "right": {"right", "bilateral"},
                 "bilateral": {"bilateral"}, "unilateral": {"unilateral", "left", "right"},
                 "ipsilateral": {"ipsilateral"}, "contralateral": {"contralateral"}}


def _side(word: str) -> str:
    w = word.lower()
    return "bilateral" if w.startswith("bilateral") or w == "both sides" else w


def laterality_claims(text: str) -> set[str]:
    return {_side(m.group(1)) for m in _SIDES.finditer(text)}


def _sides_supported(side: str, source_sides: set[str]) -> bool:
    if side == "bilateral" and {"left", "right"} <= source_sides:
        return True
    return bool(_SIDE_SUPPORT.get(side, {side}) & source_sides)


# --- abbreviations -----------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _abbreviation_nlp() -> Any:
    import spacy
    from scispacy.abbreviation import AbbreviationDetector  # noqa: F401  (registers the factory)

    nlp = spacy.blank("en")
    nlp.add_pipe("abbreviation_detector")
    return nlp


def defined_abbreviations(text: str) -> dict[str, str]:
    """``{"PE": "pulmonary embolism"}`` for every "long form (SHORT)" definition in ``text``."""
    if "(" not in text:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # W036: the detector's unused global matcher
        doc = _abbreviation_nlp()(text)
    return {a.text: a._.long_form.text for a in doc._.abbreviations}


def _expand(text: str, abbrevs: dict[str, str]) -> str:
    """Each short form replaced by its long form, except inside its own definition's parentheses."""
    for short, long in sorted(abbrevs.items(), key=lambda kv: -len(kv[0])):
        text = re.sub(rf"(?<!\()\b{re.escape(short)}\b(?!\))", long, text)
    return text


# --- concepts ----------------------------------------------------------------------------------------------

@dataclass
class _Source:
    keys: set[tuple[str, bool]]
    words: set[tuple[str, bool]]
    cuis: set[tuple[str, bool]]
    quantities: list[Quantity]
    sides: set[str]
    roots: set[tuple[str, bool]] = field(default_factory=set)


def _concept_negations(text: str, matches: Iterable[ConceptMatch]) -> list[tuple[ConceptMatch, bool]]:
    return [(m, is_negated(text, m.start, m.end)) for m in matches]


_NEGATING_PREFIXES = frozenset({"non", "no", "un"})


def _word_polarity(text: str, lex: Lexicon) -> set[tuple[str, bool]]:
    """Each word with whether it is negated; a hyphenated compound also stands for its parts
    ("CT-scan" says CT), negated after a negating prefix ("non-contrast" says no contrast)."""
    out = set()
    for w, s, e in tokenize(text):
        neg = is_negated(text, s, e)
        out.add((lex.canon(w), neg))
        parts = [p for p in w.split("-") if p]
        if len(parts) > 1:
            flip = parts[0] in _NEGATING_PREFIXES
            out.update((lex.canon(p), neg != flip) for p in parts[flip:])
    return out


def _root_polarity(words: set[tuple[str, bool]]) -> set[tuple[str, bool]]:
    return {(root(w), neg) for w, neg in words}


def _linked(linker: Linker | None, text: str) -> list[Any]:
    if linker is None or not text.strip():
        return []
    return list(linker(text))


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


def _linker_kind(concept: Any) -> str:
    group = str(_attr(concept, "group", "") or "").upper()
    return {"DISO": "disease", "ANAT": "anatomy", "PROC": "concept", "CHEM": "concept"}.get(group, "concept")


def _analyse_source(text: str, lex: Lexicon, linker: Linker | None) -> _Source:
    matches = _concept_negations(text, lex.find(text))
    cuis = {(str(_attr(c, "cui")), bool(_attr(c, "negated", False))) for c in _linked(linker, text)}
    words = _word_polarity(text, lex)
    return _Source(
        keys={(k, neg) for m, neg in matches for k in m.keys},
        words=words,
        cuis=cuis,
        quantities=quantities(text),
        sides=laterality_claims(text),
        roots=_root_polarity(words),
    )


def _same_stem(a: str, b: str) -> bool:
    """abdomen/abdominal, thorax/thoracic, spine/spinal — but not head/heart."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n >= max(4, min(len(a), len(b)) - 2)


def _lexically_supported(words: Iterable[str], neg: bool, src: _Source, stems: bool = False) -> bool:
    for w in words:
        if w in GENERIC or (w, neg) in src.words or (root(w), neg) in src.roots:
            continue
        if stems and not DISEASE_SUFFIX.match(w) and any(n == neg and _same_stem(w, s) for s, n in src.words):
            continue
        return False
    return True


# kinds whose support may come from a word sharing its first letters (inflamed/inflammation): never
# diseases or phenotypes, where one letter changes the meaning
_STEMMED = frozenset({"anatomy", "symptom", "concept", "abbreviation"})


def _concept_claim(kind: str, mention: str, keys: Iterable[str], words: Iterable[str], neg: bool,
                   src: _Source, lex: Lexicon | None = None) -> Claim:
    keys, words = set(keys), list(words)
    if any((k, neg) in src.keys for k in keys) or _lexically_supported(words, neg, src, kind in _STEMMED):
        return Claim(kind, mention, True)
    if lex is not None and len(words) == 1:  # an abbreviation: its expansion written out in the source
        for long in ABBREVIATIONS.get(mention.lower(), ()):
            if _lexically_supported([lex.canon(w) for w, _, _ in tokenize(long)], neg, src):
                return Claim(kind, mention, True)
    if any((k, not neg) in src.keys for k in keys) or _lexically_supported(words, not neg, src):
        return Claim("negation", ("no " if neg else "") + mention, False)
    return Claim(kind, mention, False)


def _concept_claims(gen: str, lex: Lexicon, src: _Source, linker: Linker | None,
                    opts: FaithfulnessOptions) -> list[Claim]:
    claims, spans = [], []
    for c in _linked(linker, gen):
        start, end, cui = int(_attr(c, "start", 0)), int(_attr(c, "end", 0)), str(_attr(c, "cui"))
        neg = bool(_attr(c, "negated", False))
        mention = gen[start:end] or str(_attr(c, "mention", cui))
        words = [lex.canon(w) for w, _, _ in tokenize(mention)]
        if all(w in GENERIC for w in words):
            continue
        spans.append((start, end))
        if (cui, neg) in src.cuis:
            claims.append(Claim(_linker_kind(c), mention, True))
        else:
            own = [k for m in lex.find(mention) for k in m.keys]
            claims.append(_concept_claim(_linker_kind(c), mention, own, words, neg, src))
    covered = list(spans)
    for m in lex.find(gen):
        if any(m.start < e and s < m.end for s, e in spans):
            continue
        covered.append((m.start, m.end))
        neg = is_negated(gen, m.start, m.end)
        claims.append(_concept_claim(m.kind, gen[m.start:m.end], m.keys, m.words, neg, src, lex))
    for w, s, e in tokenize(gen):
        # a plain word whose polarity flipped ("no invasion" -> "invasion") is a claim too; function
        # words ("after", "there") are in a negation's reach without being negated
        cw = lex.canon(w)
        if len(w) < 4 or cw in GENERIC or w in function_words() or any(s < ce and cs < e for cs, ce in covered):
            continue
        neg = is_negated(gen, s, e)
        if (cw, neg) not in src.words and (cw, not neg) in src.words:
            covered.append((s, e))
            claims.append(Claim("negation", ("no " if neg else "") + gen[s:e], False))
    if opts.suffix_terms:
        for w, s, e in tokenize(gen):
            if DISEASE_SUFFIX.match(w) and not any(s < ce and cs < e for cs, ce in covered):
                neg = is_negated(gen, s, e)
                claims.append(_concept_claim("disease", gen[s:e], (), [lex.canon(w)], neg, src))
    return claims


def _known_abbreviations(text: str) -> dict[str, str]:
    """Built-in abbreviations present in ``text`` → their first expansion (so "TB" finds "tuberculosis")."""
    found = {}
    for w, s, e in tokenize(text):
        raw = text[s:e]
        if raw.isupper() and w in ABBREVIATIONS:
            found[raw] = ABBREVIATIONS[w][0]
    return found


def _dedupe(claims: list[Claim]) -> list[Claim]:
    seen, out = set(), []
    for c in claims:
        key = (c.kind, c.text.lower(), c.supported)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _texts(source: str, generated: str, opts: FaithfulnessOptions) -> tuple[str, str]:
    """The source with the long forms of its abbreviations appended, the output with the ones it or
    the source defines expanded."""
    src_text, gen_text = source or "", generated or ""
    if opts.abbreviations:
        defined = {**defined_abbreviations(src_text), **defined_abbreviations(gen_text)}
        src_long = [v for k, v in {**defined, **_known_abbreviations(src_text)}.items() if k in src_text]
        src_text = src_text + ("\n" + ".\n".join(src_long) if src_long else "")
        gen_text = _expand(gen_text, defined)
    return src_text, gen_text


def _claims(source: str, src_text: str, gen_text: str, opts: FaithfulnessOptions, lex: Lexicon,
            linker: Linker | None) -> list[Claim]:
    src = _analyse_source(src_text, lex, linker if opts.concepts else None)
    src.sides = laterality_claims(source or "")  # sides only from what the source says, not expansions
    claims: list[Claim] = []
    if opts.concepts:
        claims += _concept_claims(gen_text, lex, src, linker, opts)
    if opts.numbers:
        for q in quantities(gen_text):
            claims.append(Claim("number", q.text, _number_supported(q, src.quantities)))
    if opts.laterality:
        for side in sorted(laterality_claims(gen_text)):
            claims.append(Claim("laterality", side, _sides_supported(side, src.sides)))
    return _dedupe(claims)


def claims_of(source: str, generated: str, options: FaithfulnessOptions | None = None,
              linker: Linker | None = None) -> list[Claim]:
    """Every checkable claim of ``generated`` with whether ``source`` supports it."""
    opts = options or FaithfulnessOptions()
    src_text, gen_text = _texts(source, generated, opts)
    return _claims(source, src_text, gen_text, opts, load_lexicon(opts.vocab_dir), linker)


def check(source: str, generated: str, options: FaithfulnessOptions | None = None,
          linker: Linker | None = None, prose: bool = True) -> Faithfulness:
    """Score = supported claims / claims (1.0 without claims); accepted when the score reaches the
    threshold, no critical claim is unsupported and the output carries the source's content
    (``faithfulness_content``: coverage, on topic, and fluency for ``prose`` outputs). Empty output
    is never accepted."""
    opts = options or FaithfulnessOptions()
    if not (generated or "").strip():
        return Faithfulness(0.0, False, ["empty:"], [])
    lex = load_lexicon(opts.vocab_dir)
    src_text, gen_text = _texts(source, generated, opts)
    claims = _claims(source, src_text, gen_text, opts, lex, linker)
    bad = [c for c in claims if not c.supported]
    score = 1.0 if not claims else (len(claims) - len(bad)) / len(claims)
    critical = any(c.kind in opts.critical for c in bad)
    limits = ContentLimits(opts.min_coverage, opts.min_on_topic, opts.min_fluency, opts.min_source_order)
    problems = content_problems(src_text, gen_text, lex, limits, prose)
    return Faithfulness(score, score >= opts.threshold and not critical and not problems,
                        [c.label() for c in bad] + problems, claims)
