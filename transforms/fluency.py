"""Fluency of a generated text: does it read like biomedical English, or like a random token stream?

Why: a model with broken or random weights emits real words in no order ("detected t technique
bodies fistulography ..."); every word may even be in the source, so claim checks alone accept it.
Word order is what tells the two apart. A word-bigram model counted from open-access article text
(``data/fluency_bigrams.tsv.gz``, built by ``bench/fluency_table.py``, see ``data/README.md``) scores
each adjacent pair by how much more likely the second word is after the first than on its own
(pointwise mutual information with absolute discounting, Kneser-Ney style); ``fluency`` is the mean
over the text's pairs. Real captions mostly score above 0, word salad and random token streams well
below (``bench/faithfulness_eval.py`` measures both).
"""
from __future__ import annotations

import gzip
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from medcorpus.transforms.medvocab import norm_word

__all__ = ["fluency", "breaks", "pairs", "source_order", "BigramModel", "count_ngrams", "write_table", "BIGRAMS_FILE"]

BIGRAMS_FILE = Path(__file__).resolve().parent / "data" / "fluency_bigrams.tsv.gz"
_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*[A-Za-z]|[A-Za-z]|\d+(?:[.,]\d+)*|[.;:!?()\[\]]")
_BREAK = frozenset(".;:!?()[]")
_DISCOUNT = 0.75


_PARENTHESES = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")


def _tokens(text: str) -> list[str]:
    """Normalized words, numbers as ``<n>``, clause punctuation as ``|`` (a pair never spans it);
    parenthesized asides (panel labels, citations, abbreviations) are left out of the sentence."""
    text = _PARENTHESES.sub(" ", text)
    return ["|" if t in _BREAK else "<n>" if t[0].isdigit() else norm_word(t)
            for t in (m.group(0) for m in _WORD.finditer(text))]


def pairs(text: str) -> list[tuple[str, str]]:
    """Adjacent word pairs of ``text`` within clauses."""
    toks = _tokens(text)
    return [(a, b) for a, b in zip(toks, toks[1:]) if a != "|" and b != "|"]


def count_ngrams(texts: Iterable[str]) -> tuple[Counter, Counter]:
    """(word counts, pair counts) of ``texts``."""
    uni: Counter = Counter()
    big: Counter = Counter()
    for t in texts:
        uni.update(w for w in _tokens(t) if w != "|")
        big.update(pairs(t))
    return uni, big


def write_table(uni: Counter, big: Counter, path: Path, min_count: int = 2) -> int:
    """The table shipped with the code (sorted, gzip without a timestamp: reproducible bytes). Pairs
    seen once are left out (their share of the discounted mass goes to the unigram back-off)."""
    rows = [f"{w}\t\t{n}" for w, n in sorted(uni.items())]
    rows += [f"{a}\t{b}\t{n}" for (a, b), n in sorted(big.items()) if n >= min_count]
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(("\n".join(rows) + "\n").encode("utf-8"))
    return len(rows)


@dataclass
class BigramModel:
    uni: dict[str, int]
    big: dict[tuple[str, str], int]

    def __post_init__(self) -> None:
        self.total = sum(self.uni.values())
        self.after: Counter = Counter()    # count of each word as a pair's first word
        self.types: Counter = Counter()    # distinct words seen after it
        for (a, _), n in self.big.items():
            self.after[a] += n
            self.types[a] += 1

    @classmethod
    def load(cls, path: Path = BIGRAMS_FILE) -> "BigramModel":
        uni, big = {}, {}
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                a, b, n = line.rstrip("\n").split("\t")
                if b:
                    big[(a, b)] = int(n)
                else:
                    uni[a] = int(n)
        return cls(uni, big)

    def unigram(self, w: str) -> float:
        return (self.uni.get(w, 0) + 0.5) / (self.total + 0.5 * len(self.uni))

    def pmi(self, a: str, b: str) -> float:
        """log P(b | a) / P(b): > 0 where b follows a more often than chance."""
        pb, ca = self.unigram(b), max(self.after.get(a, 0), self.uni.get(a, 0))
        if not ca:
            return 0.0  # a word never seen: no evidence either way
        # pairs seen once are not in the table: their discounted mass, like that of unseen ones, backs off
        p = max(self.big.get((a, b), 0) - _DISCOUNT, 0.0) / ca + _DISCOUNT * max(self.types[a], 1) / ca * pb
        return math.log(p / pb)


@lru_cache(maxsize=1)
def _model() -> BigramModel:
    return BigramModel.load()


_DET = frozenset("the a an this these those its their".split())
_PREP = frozenset("of in with for on at by from into during within without between through via".split())
_CONJ = frozenset("and or but nor".split())
_AUX = frozenset("is are was were".split())
_BREAK_PENALTY = 0.9


# a sentence that starts in lower case after a word and a full stop ("track. cholecystocutaneous"),
# abbreviations that end in a full stop aside
_LOWER_START = re.compile(r"\b([A-Za-z]{3,})\.\s+[a-z]{2,}")
_DOTTED = frozenset("etc approx fig figs resp vol min max ref refs sec viz".split())


def breaks(text: str) -> int:
    """Function-word sequences English does not allow: a determiner before a function word or the end
    of a clause ("the of", "a ."), a preposition before a preposition or auxiliary or the end, a
    conjunction before a conjunction or auxiliary or the end ("with and without" is English), and a
    sentence starting in lower case after a full stop. Real captions have almost none; word salad many."""
    toks = _tokens(text) + ["|"]
    n = sum(m.group(1).lower() not in _DOTTED for m in _LOWER_START.finditer(text))
    for a, b in zip(toks, toks[1:]):
        end = b == "|"
        n += (a in _DET and (end or b in _DET | _PREP | _CONJ | _AUX)) or \
             (a in _PREP and (end or b in _PREP | _AUX)) or (a in _CONJ and (end or b in _CONJ | _AUX))
    return n


def fluency(text: str, min_pairs: int = 3) -> float | None:
    """Mean pointwise mutual information of the text's adjacent word pairs, less 0.9 per function-word
    break (``breaks``); ``None`` for texts of fewer than ``min_pairs`` pairs (too short to judge).
    On ROCO captions 1-2% score below -1.9, on shuffled captions over half."""
    ps = pairs(text)
    if len(ps) < min_pairs:
        return None
    model = _model()
    return sum(model.pmi(a, b) for a, b in ps) / len(ps) - _BREAK_PENALTY * breaks(text)


def source_order(generated: str, source: str, window: int = 2, min_pairs: int = 5) -> float | None:
    """Share of the output's adjacent word pairs, among those whose two words both occur in the
    source, that keep the source's order (the second word within ``window`` words after the first);
    ``None`` below ``min_pairs`` such pairs. The bigram table judges English in general and lets
    through a shuffle of a caption's own words, whose pairs are each plausible somewhere; against
    the source, a copy or paraphrase keeps its phrases (about 0.5 and up) while a shuffle keeps few."""
    positions: dict[str, list[int]] = {}
    for i, t in enumerate(_tokens(source)):
        if t != "|":
            positions.setdefault(t, []).append(i)
    shared = [(positions[a], positions[b]) for a, b in pairs(generated) if a != b and a in positions and b in positions]
    if len(shared) < min_pairs:
        return None
    kept = sum(any(0 < j - i <= window for i in first for j in second) for first, second in shared)
    return kept / len(shared)
