"""The quality filters: small classes, each returning keep, reason and its own scores (datatrove's
``BaseFilter`` shape). ``FILTERS`` is the registry, in the order in which a failure drops a sample;
adding a filter is one class and one line there (and its name in ``quality.enabled``)."""
from __future__ import annotations

import base64
import bz2
import hashlib
import pickle
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from medcorpus.files import atomic_write, cache_root

if TYPE_CHECKING:
    from medcorpus.transforms.quality import FilterOptions, ImageStats


Language = Callable[[str], tuple[str, float]]


@dataclass(frozen=True)
class Evidence:
    """What filters judge: the caption, the article type, the image's statistics (None: undecodable),
    and the language identifier (``identify_language``, or a caller's memo of it)."""

    caption: str
    article_type: str | None
    stats: "ImageStats | None"
    language: Language | None = None


@dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str | None = None
    scores: dict[str, float] = field(default_factory=dict)


KEEP = Verdict(True)


class Filter:
    name: ClassVar[str]

    def filter(self, ev: Evidence, options: "FilterOptions") -> Verdict:
        raise NotImplementedError


# ---- article and caption -------------------------------------------------------------------------

def normalize_article_type(article_type: str | None) -> str:
    return re.sub(r"[\s_]+", "-", (article_type or "").strip().lower())


class ArticleType(Filter):
    """Retractions, errata, notices ... carry no new image-text data."""

    name = "article_type"

    def filter(self, ev: Evidence, options: "FilterOptions") -> Verdict:
        kind = normalize_article_type(ev.article_type)
        if kind and kind in {normalize_article_type(t) for t in options.exclude_article_types}:
            return Verdict(False, f"article type {kind!r} is excluded")
        return KEEP


_WORD = re.compile(r"\w+", re.UNICODE)


def caption_counts(caption: str) -> tuple[int, int]:
    text = caption.strip()
    return len(text), len(_WORD.findall(text))


class CaptionLength(Filter):
    name = "caption_length"

    def filter(self, ev: Evidence, options: "FilterOptions") -> Verdict:
        chars, words = caption_counts(ev.caption)
        if chars < options.min_caption_chars or words < options.min_caption_words:
            return Verdict(False, f"caption has {chars} chars / {words} words < "
                                  f"{options.min_caption_chars} / {options.min_caption_words}")
        if chars > options.max_caption_chars:
            return Verdict(False, f"caption has {chars} chars > {options.max_caption_chars}")
        return KEEP


@lru_cache(maxsize=1)
def _identifier() -> Any:
    """langid's model ships inside the package (no download) as a bz2 pickle whose unpacking takes
    seconds; its unpacked arrays are kept in ``cache_root()`` (named by the model's digest), so later
    workers load them in a fraction of that. Once per process."""
    from langid.langid import LanguageIdentifier, model

    path = cache_root() / f"langid-{hashlib.sha256(model).hexdigest()[:16]}.pkl"
    try:
        with open(path, "rb") as fh:
            parts = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError):
        parts = _unpack_langid(model)
        try:
            atomic_write(path, lambda fh: pickle.dump(parts, fh, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            pass
    nb_ptc, nb_pc, nb_classes, tk_nextmove, tk_output = parts
    return LanguageIdentifier(nb_ptc, nb_pc, nb_ptc.shape[0], nb_classes, tk_nextmove, tk_output, norm_probs=True)


def _unpack_langid(model: bytes) -> tuple[Any, ...]:
    """What ``LanguageIdentifier.from_modelstring`` unpacks, as it does."""
    import numpy as np

    nb_ptc, nb_pc, nb_classes, tk_nextmove, tk_output = pickle.loads(bz2.decompress(base64.b64decode(model)))
    pc = np.array(nb_pc)
    return np.array(nb_ptc).reshape(int(len(nb_ptc) / len(nb_pc)), len(pc)), pc, nb_classes, tk_nextmove, tk_output


LANGUAGE_SAMPLE_CHARS = 400  # langid's cost grows with length; a few sentences decide the language
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


def identify_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) from langid, on the text's first few sentences."""
    lang, prob = _identifier().classify(text[:LANGUAGE_SAMPLE_CHARS])
    return str(lang), float(prob)


def allowed_sentence_share(text: str, options: "FilterOptions", language: Language | None = None) -> float:
    """Share of the caption's characters in sentences of an allowed language (1.0 when its first
    sentence, the figure's title, is in one).

    English captions often cite foreign names ("Source: Encuesta Continua de Hogares, Instituto
    Nacional de Estadística"), which can tip a whole-caption guess; judged sentence by sentence
    they do not."""
    sentences = [x for x in _SENTENCE.split(text) if len(x) >= 20]
    total = sum(len(x) for x in sentences)
    if not total:
        return 0.0
    allowed = [(language or identify_language)(x)[0] in options.languages for x in sentences]
    if allowed[0]:
        return 1.0
    return sum(len(x) for x, ok in zip(sentences, allowed) if ok) / total


class CaptionLanguage(Filter):
    name = "caption_language"

    def filter(self, ev: Evidence, options: "FilterOptions") -> Verdict:
        text = ev.caption.strip()
        if not options.languages or len(text) < options.language_min_chars:
            return KEEP
        lang, prob = (ev.language or identify_language)(text)
        kept_prob = prob if lang in options.languages else 1.0 - prob
        if lang not in options.languages or prob < options.min_language_prob:
            kept_prob = max(kept_prob, allowed_sentence_share(text, options, ev.language))
            lang, prob = (options.languages[0], kept_prob) if kept_prob >= options.min_language_prob else (lang, prob)
        scores = {"language_prob": round(kept_prob, 4)}
        if lang not in options.languages or prob < options.min_language_prob:
            return Verdict(False, f"caption language {lang} (p={prob:.2f}); kept: "
                                  f"{','.join(options.languages)} with p >= {options.min_language_prob}", scores)
        return Verdict(True, None, scores)


# ---- image ---------------------------------------------------------------------------------------

class ImageDecodable(Filter):
    name = "image_decodable"

    def filter(self, ev: Evidence, options: "FilterOptions") -> Verdict:
        return KEEP if ev.stats is not None else Verdict(False, "image could not be decoded")


class MinSide(Filter):
    """Icons and formula glyphs are not figures."""

    name = "min_side"

    def filter(self, ev: Evidence, options: "FilterOptions") -> Verdict:
        short = min(ev.stats.width, ev.stats.height) if ev.stats else options.min_side
        return KEEP if short >= options.min_side else Verdict(False, f"shorter side {short} px < min_side {options.min_side}")


class MaxAspect(Filter):
    name = "max_aspect"

    def filter(self, ev: Evidence, options: "FilterOptions") -> Verdict:
        if ev.stats is None:
            return KEEP
        short, long = min(ev.stats.width, ev.stats.height), max(ev.stats.width, ev.stats.height)
        aspect = long / max(short, 1)
        return KEEP if aspect <= options.max_aspect else Verdict(
            False, f"aspect ratio {aspect:.1f} > max_aspect {options.max_aspect}")


class LowInformation(Filter):
    """Near-blank images: too little spread, or too flat a histogram."""

    name = "low_information"

    def filter(self, ev: Evidence, options: "FilterOptions") -> Verdict:
        if ev.stats is None:
            return KEEP
        if ev.stats.std < options.min_std:
            return Verdict(False, f"grayscale std {ev.stats.std:.2f} < min_std {options.min_std}")
        if ev.stats.entropy < options.min_entropy:
            return Verdict(False, f"histogram entropy {ev.stats.entropy:.2f} bits < min_entropy {options.min_entropy}")
        return KEEP


FILTERS: dict[str, Filter] = {f.name: f for f in (
    ArticleType(),
    CaptionLength(),
    CaptionLanguage(),
    ImageDecodable(),
    MinSide(),
    MaxAspect(),
    LowInformation(),
)}
