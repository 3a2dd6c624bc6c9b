"""Caption/in-text concept linking: text -> UMLS concepts (CUI, name, types, group, span, score, negated).

Built on spaCy + scispacy, fed with a vocabulary index that medcorpus builds (``vocab_index``):

1. mentions: a biomedical NER model when one is configured (a local spaCy/scispacy model path), otherwise the
   longest-match vocabulary matcher (``concept_matcher``);
2. abbreviations: scispacy's ``AbbreviationDetector`` (Schwartz & Hearst) defines short forms in the text;
   every occurrence of a defined short form is linked through its long form;
3. linking: a mention whose normalised text is a vocabulary alias links exactly; otherwise (NER mentions,
   undefined long forms) scispacy's ``EntityLinker`` / ``CandidateGenerator`` searches the char-3-gram TF-IDF
   ANN index; compound mentions also yield their head concepts (``right kidney`` -> ``kidney``);
4. negation: medspacy's ConText rules (``no evidence of pneumothorax``), or a small NegEx-style fallback.

``ConceptLinker.load`` does all expensive work (index, spaCy pipeline, ConText rules) once: load it once per
worker and call ``link`` per record.
"""
from __future__ import annotations

import logging
import re
from functools import lru_cache
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from medcorpus.transforms.concept_matcher import Match, MatcherConfig, VocabMatcher
from medcorpus.transforms.text_norm import DROP_TOKENS, norm_token
from medcorpus.transforms.vocab_index import VocabIndex

log = logging.getLogger(__name__)


@dataclass
class Concept:
    cui: str
    name: str
    tuis: list[str]
    group: str | None
    mention: str
    start: int  # character offsets into the linked text
    end: int
    score: float
    negated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LinkerConfig:
    ner_model: str | None = None  # path of a local spaCy/scispacy pipeline with an NER component
    abbreviations: bool = True
    negation: bool = True
    nested: bool = True  # also emit head concepts of compound mentions
    exclude_groups: frozenset[str] = frozenset({"CONC"})  # qualifiers (left, severe, position) help nobody select
    ann_threshold: float = 0.85
    ann_k: int = 10
    matcher: MatcherConfig = field(default_factory=MatcherConfig)


@dataclass
class _Mention:
    start: int  # token indices
    end: int
    cuis: tuple[str, ...]
    key: str
    score: float


NEG_TRIGGERS = re.compile(r"\b(no|not|without|absence of|absent|negative for|free of|ruled out|rules out|"
                          r"no evidence of|no signs? of|resolution of|resolved)\b", re.I)
NEG_TERMINATORS = re.compile(r"\b(but|however|although|except|which|with|and)\b|[.;:]", re.I)


def _cui_number(cui: str) -> int:
    digits = re.sub(r"\D", "", cui)
    return int(digits) if digits else 0


class ConceptLinker:
    """Loaded once per worker; ``link`` is pure with respect to its input text."""

    def __init__(self, vocab: VocabIndex, config: LinkerConfig = LinkerConfig()) -> None:
        self.vocab = vocab
        self.config = config
        self.matcher = VocabMatcher.from_vocab(vocab, config.matcher)
        self.nlp = self._build_nlp(config)
        self.context = self._build_context(config) if config.negation else None
        self._entity_linker: Any = None

    @classmethod
    def load(cls, path: str | Path, config: LinkerConfig | None = None, **overrides: Any) -> "ConceptLinker":
        """Load a vocabulary index directory and build the pipeline (seconds; do it once per worker)."""
        cfg = replace(config or LinkerConfig(), **overrides)
        return cls(VocabIndex.load(path), cfg)

    # --- construction -------------------------------------------------------------------------------------

    @staticmethod
    def _build_nlp(config: LinkerConfig):  # type: ignore[no-untyped-def]
        import spacy

        nlp = spacy.load(config.ner_model) if config.ner_model else spacy.blank("en")
        if not any(nlp.has_pipe(p) for p in ("parser", "senter", "sentencizer")):
            nlp.add_pipe("sentencizer", first=True)
        if config.abbreviations:
            import scispacy.abbreviation  # noqa: F401  (registers the "abbreviation_detector" factory)

            nlp.add_pipe("abbreviation_detector")
        return nlp

    @staticmethod
    def _build_context(config: LinkerConfig):  # type: ignore[no-untyped-def]
        try:
            import spacy
            from medspacy.context import ConText  # noqa: F401  (registers "medspacy_context")
        except ImportError:
            log.info("medspacy not installed: negation by the built-in NegEx-style rules")
            return None
        holder = spacy.blank("en")
        return holder.add_pipe("medspacy_context", config={"rules": "default"})

    def entity_linker(self):  # type: ignore[no-untyped-def]
        """scispacy's ``EntityLinker`` over our ANN index (created on first need: NER mentions, long forms)."""
        if self._entity_linker is None:
            from scispacy.linking import EntityLinker

            self._entity_linker = EntityLinker(candidate_generator=self.vocab.candidate_generator(),
                                               resolve_abbreviations=True, k=self.config.ann_k,
                                               threshold=self.config.ann_threshold, filter_for_definitions=False,
                                               max_entities_per_mention=1)
        return self._entity_linker

    # --- linking ------------------------------------------------------------------------------------------

    def link(self, text: str) -> list[Concept]:
        """Concepts mentioned in ``text``, in text order (one entry per mention and CUI)."""
        return self._link_doc(self.nlp(text))

    def link_many(self, texts: Iterable[str], batch_size: int = 256) -> list[list[Concept]]:
        """``link`` over many texts with spaCy's batching (faster per text)."""
        return [self._link_doc(doc) for doc in self.nlp.pipe(texts, batch_size=batch_size)]

    def _link_doc(self, doc) -> list[Concept]:  # type: ignore[no-untyped-def]
        words = [t.text for t in doc]
        abbrev = self._abbreviation_mentions(doc) if self.config.abbreviations else []
        taken = {i for m in abbrev for i in range(m.start, m.end)}
        if self.config.ner_model:
            found = self._ner_mentions(doc)
        else:
            found = [self._from_match(m) for m in self.matcher.match_tokens(words)]
        mentions = sorted(abbrev + [m for m in found if not taken.intersection(range(m.start, m.end))],
                          key=lambda m: m.start)
        concepts: list[Concept] = []
        spans = []
        for m in mentions:
            c = self._concept(doc, m)
            if c is None:
                continue
            spans.append((m.start, m.end))
            concepts.append(c)
            if self.config.nested and m.end - m.start > 1:
                concepts.extend(self._nested(doc, words, m))
        self._mark_negation(doc, concepts, spans)
        return sorted(concepts, key=lambda c: (c.start, -(c.end - c.start)))

    def _from_match(self, m: Match) -> _Mention:
        return _Mention(m.start, m.end, m.cuis, m.key, 1.0)

    def _allowed(self, cuis: Sequence[str]) -> list[str]:
        ex = self.config.exclude_groups
        return [c for c in cuis if c in self.vocab.concepts and self.vocab.concepts[c].group not in ex]

    def _choose(self, cuis: Sequence[str], key: str) -> tuple[str, float] | None:
        """One CUI per mention: the one whose preferred name is the mention, then the one more sources assert,
        then the oldest (lowest) CUI."""
        allowed = self._allowed(cuis)
        if not allowed:
            return None
        if len(allowed) == 1:
            return allowed[0], 1.0
        named = [c for c in allowed if self.vocab.concepts[c].name_key == key]
        pool = named or allowed
        concepts = self.vocab.concepts
        return min(pool, key=lambda c: (-concepts[c].n_sources, _cui_number(c))), (0.9 if named else 0.8)

    def _concept(self, doc, m: _Mention, factor: float = 1.0) -> Concept | None:  # type: ignore[no-untyped-def]
        chosen = self._choose(m.cuis, m.key)
        if chosen is None:
            return None
        cui, s = chosen
        info = self.vocab.concepts[cui]
        span = doc[m.start:m.end]
        return Concept(cui=cui, name=info.name, tuis=list(info.tuis), group=info.group, mention=span.text,
                       start=span.start_char, end=span.end_char, score=round(m.score * s * factor, 4))

    def _nested(self, doc, words: list[str], m: _Mention) -> list[Concept]:  # type: ignore[no-untyped-def]
        """Concepts inside a compound mention: its head chain (the proper suffixes that are vocabulary terms:
        ``right kidney`` -> ``kidney``) and single-word anatomical modifiers (``lung carcinoma`` -> ``lung``,
        ``hepatic cyst`` -> ``liver``), i.e. the hypernyms and the finding site a user selects by."""
        out: list[Concept] = []
        seen: set[str] = set()
        for s in range(m.start, m.end):
            if words[s] in DROP_TOKENS:
                continue
            for e in ((m.end, s + 1) if s > m.start else (s + 1,)):
                if e - s >= m.end - m.start:
                    continue
                cuis = self.matcher.lookup(words[s:e])
                if not cuis:
                    continue
                key = " ".join(norm_token(w) for w in words[s:e] if w not in DROP_TOKENS)
                c = self._concept(doc, _Mention(s, e, cuis, key, m.score), factor=0.9)
                if c is None or c.cui in seen or (e != m.end and c.group != "ANAT"):
                    continue
                seen.add(c.cui)
                out.append(c)
        return out

    def _abbreviation_mentions(self, doc) -> list[_Mention]:  # type: ignore[no-untyped-def]
        """Short forms defined in the text, linked through their long form (exact, else ANN)."""
        out: list[_Mention] = []
        resolved: dict[str, tuple[tuple[str, ...], str, float] | None] = {}
        for short in getattr(doc._, "abbreviations", []):
            long_form = short._.long_form
            if long_form is None:
                continue
            lf = long_form.text if hasattr(long_form, "text") else str(long_form)
            if lf not in resolved:
                resolved[lf] = self._resolve_text(lf)
            hit = resolved[lf]
            if hit is not None:
                out.append(_Mention(short.start, short.end, hit[0], hit[1], hit[2]))
        return out

    def _resolve_text(self, text: str) -> tuple[tuple[str, ...], str, float] | None:
        words = [t.text for t in self.nlp.tokenizer(text)]
        key = " ".join(norm_token(w) for w in words if w not in DROP_TOKENS)
        cuis = self.matcher.lookup(words)
        if cuis:
            return cuis, key, 1.0
        if not self.vocab.has_ann:
            return None
        cands = self.vocab.candidate_generator()([text], self.config.ann_k)[0]
        best = max(((max(c.similarities), c.concept_id) for c in cands), default=None)
        if best is None or best[0] < self.config.ann_threshold:
            return None
        return (best[1],), key, float(best[0])

    def _ner_mentions(self, doc) -> list[_Mention]:  # type: ignore[no-untyped-def]
        """NER entities: exact alias lookup first, scispacy's EntityLinker (ANN) for the rest."""
        out: list[_Mention] = []
        pending = []
        for ent in doc.ents:
            words = [t.text for t in ent]
            cuis = self.matcher.lookup(words)
            key = " ".join(norm_token(w) for w in words if w not in DROP_TOKENS)
            if cuis:
                out.append(_Mention(ent.start, ent.end, cuis, key, 1.0))
            else:
                pending.append((ent, key))
        if pending and self.vocab.has_ann:
            self.entity_linker()(doc)
            for ent, key in pending:
                if ent._.kb_ents:
                    cui, score = ent._.kb_ents[0]
                    out.append(_Mention(ent.start, ent.end, (cui,), key, float(score)))
        return out

    # --- negation -----------------------------------------------------------------------------------------

    def _mark_negation(self, doc, concepts: list[Concept], spans: list[tuple[int, int]]) -> None:  # type: ignore[no-untyped-def]
        if not self.config.negation or not concepts:
            return
        negated_chars: list[tuple[int, int]] = []
        if self.context is not None:
            from spacy.tokens import Span

            uniq = sorted(set(spans))
            nonoverlap, last = [], -1
            for s, e in uniq:
                if s >= last:
                    nonoverlap.append(Span(doc, s, e, label="CONCEPT"))
                    last = e
            doc.ents = nonoverlap
            self.context(doc)
            negated_chars = [(e.start_char, e.end_char) for e in doc.ents if e._.is_negated]
        else:
            negated_chars = [(c.start, c.end) for c in concepts if _negex(doc.text, c.start)]
        for c in concepts:
            c.negated = any(s <= c.start and c.end <= e for s, e in negated_chars)


def _negex(text: str, start: int, window: int = 60) -> bool:
    """Fallback negation: a trigger before the mention in the same clause, within ``window`` characters."""
    before = text[max(0, start - window):start]
    trig = None
    for trig in NEG_TRIGGERS.finditer(before):
        pass
    if trig is None:
        return False
    return NEG_TERMINATORS.search(before[trig.end():]) is None


@lru_cache(maxsize=4)
def shared_linker(path: str, ner_model: str | None = None) -> ConceptLinker:
    """The process-wide linker for a vocabulary: runners call this in each worker, never per record."""
    return ConceptLinker.load(path, ner_model=ner_model)


def concept_hints(concepts: Iterable[Concept | dict[str, Any]], text: str | None = None) -> dict[str, list[str]]:
    """Anatomy and imaging-modality hints for the image-type tags, from the concepts and the caption's
    modality words (``concept_hints.hints``)."""
    from medcorpus.transforms.concept_hints import hints

    return hints(concepts, text)
