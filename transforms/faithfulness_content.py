"""Does a generated text say something, about the source, in real sentences?

Why: claim checks only look at what a text states; a text that states nothing checkable ("An
image."), text about something else, or a random-weight model's token stream ("detected t technique
bodies fistulography ...") has no unsupported claim and used to pass. The gate also requires:

- coverage: a share of the caption's content words (the source's first line) is carried by the
  output, by words of the same root, synonym, abbreviation or first six letters;
- on topic: most content words of the output occur in the source, matched the same way (a topic,
  not a claim: venogram/venography and thrombus/thrombogenesis count; claims are checked apart);
- fluency: its word order is that of real writing (``fluency``), and where it reuses the source's
  words, mostly the source's order (``source_order``: a shuffle of the caption is not a paraphrase).

Coverage and fluency apply to prose; a structured extraction (``prose=False``) is only held on topic.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from medcorpus.transforms.fluency import fluency, source_order
from medcorpus.transforms.medvocab import ABBREVIATIONS, GENERIC, Lexicon, tokenize
from medcorpus.transforms.text_norm import ADJECTIVE_NOUNS
from medcorpus.transforms.word_roots import root

__all__ = ["ContentLimits", "content_problems", "coverage", "function_words", "on_topic"]


@dataclass(frozen=True)
class ContentLimits:
    min_coverage: float = 0.2
    min_on_topic: float = 0.5
    min_fluency: float | None = -1.9
    min_source_order: float | None = 0.5


@lru_cache(maxsize=1)
def function_words() -> frozenset[str]:
    """spaCy's English stop words: words that carry no claim of their own."""
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    return function_words() | GENERIC


def _content_words(text: str) -> list[str]:
    stop = _stop_words()
    return [w for w, _, _ in tokenize(text) if len(w) >= 3 and w.replace("-", "").isalpha() and w not in stop]


def _keys(word: str, lex: Lexicon) -> set[str]:
    """The roots a word stands for: its own, its synonym set's, an abbreviation's expansion words,
    and a hyphenated compound's parts (anti-TB -> anti, tuberculosis)."""
    out = {root(word), root(lex.canon(word)), lex.canon(word), root(ADJECTIVE_NOUNS.get(word, word))}
    for part in (word.split("-") if "-" in word else []) + [word]:
        out |= {root(part), root(lex.canon(part))}
        for long in ABBREVIATIONS.get(part, ()):
            words = [root(w) for w, _, _ in tokenize(long)]
            out |= {*words, " ".join(words)}
    return out


def _text_keys(text: str, lex: Lexicon) -> set[str]:
    out: set[str] = set()
    for w, _, _ in tokenize(text):
        out |= _keys(w, lex)
    return out | _phrases(text)


@lru_cache(maxsize=1)
def _expansions() -> tuple[str, ...]:
    return tuple(" ".join(root(w) for w, _, _ in tokenize(long)) for longs in ABBREVIATIONS.values() for long in longs)


def _phrases(text: str) -> set[str]:
    """Abbreviation expansions written out in ``text`` ("tuberculosis" stands for TB)."""
    joined = " " + " ".join(root(w) for w, _, _ in tokenize(text)) + " "
    return {p for p in _expansions() if f" {p} " in joined}


def _carried(words: list[str], reference: str, lex: Lexicon) -> float:
    """Share of ``words`` that ``reference`` has: same root, synonym, abbreviation, or the same first
    six letters (venogram/venography, thrombus/thrombogenesis: the topic, not a claim)."""
    keys = _text_keys(reference, lex)
    prefixes = {w[:6] for w, _, _ in tokenize(reference) if len(w) >= 6}
    return sum(bool(_keys(w, lex) & keys) or (len(w) >= 6 and w[:6] in prefixes) for w in words) / len(words)


def on_topic(generated: str, source: str, lex: Lexicon) -> float | None:
    """Share of the output's content words that the source has (None when it has none)."""
    words = _content_words(generated)
    return _carried(words, source, lex) if words else None


def coverage(generated: str, caption: str, lex: Lexicon) -> float | None:
    """Share of the caption's content words the output carries (None when the caption has none)."""
    words = list(dict.fromkeys(_content_words(caption)))
    return _carried(words, generated, lex) if words else None


def content_problems(source: str, generated: str, lex: Lexicon, limits: ContentLimits,
                     prose: bool = True) -> list[str]:
    """Labels of the content requirements ``generated`` fails (empty when it passes)."""
    caption = next((line for line in source.splitlines() if line.strip()), "")
    topic = on_topic(generated, source, lex)
    if topic is None:
        return ["content:no_content_words"]
    problems = []
    if topic < limits.min_on_topic:
        problems.append(f"content:off_topic={topic:.2f}")
    if not prose:  # a structured extraction: its fields need not restate the caption or read as prose
        return problems
    cov = coverage(generated, caption, lex)
    if cov is not None and cov < limits.min_coverage:
        problems.append(f"content:coverage={cov:.2f}")
    flu = fluency(generated) if limits.min_fluency is not None else None
    if flu is not None and flu < limits.min_fluency:
        problems.append(f"content:fluency={flu:.2f}")
    order = source_order(generated, source) if limits.min_source_order is not None else None
    if order is not None and order < limits.min_source_order:
        problems.append(f"content:scrambled={order:.2f}")
    return problems
