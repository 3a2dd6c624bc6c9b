"""Per-sample quality filters: cheap checks that run on every figure, each decision with its reason.

Every filter returns a score and a verdict; ``assess`` runs them in a fixed order and records the
first one that fails (``dropped_by``) with a human reason, while the scores of every filter that
could run are kept, so dropped samples can be audited and thresholds tuned from the manifest.
Image checks work on a small downscaled grayscale copy (``MEASURE_SIDE``): the statistics they
need (spread, entropy, edges) survive downscaling and the cost stays flat whatever the input size.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from medcorpus.transforms.images import to_8bit

MEASURE_SIDE = 128
FILTERS = ("article_type", "caption_length", "caption_language", "image_decodable", "min_side",
           "max_aspect", "low_information")

DEFAULT_EXCLUDED_TYPES = ("retraction", "retracted-article", "correction", "erratum", "corrigendum",
                          "expression-of-concern", "addendum", "withdrawal", "removal", "reply",
                          "obituary", "announcement", "calendar", "in-brief", "book-review")
"""JATS ``article-type`` values whose figures are not new image-text data (retractions, errata,
notices ...). Compared after lower-casing and mapping spaces/underscores to hyphens."""


@dataclass(frozen=True)
class FilterOptions:
    """Thresholds of every filter (dataflow.yaml ``quality:``); a filter not in ``enabled`` never drops."""

    enabled: tuple[str, ...] = FILTERS
    min_side: int = 64                 # px of the original image; smaller is an icon or formula
    max_aspect: float = 8.0            # long side / short side
    min_std: float = 4.0               # grayscale standard deviation (0-255) below = near-blank
    min_entropy: float = 1.0           # bits of the 64-bin grayscale histogram below = near-blank
    min_caption_chars: int = 10
    max_caption_chars: int = 10_000
    min_caption_words: int = 2
    languages: tuple[str, ...] = ("en",)  # ISO 639-1 codes kept; empty = any language
    min_language_prob: float = 0.5     # langid probability of a kept language needed to keep ...
    language_min_chars: int = 40       # ... judged only on captions at least this long
    exclude_article_types: tuple[str, ...] = DEFAULT_EXCLUDED_TYPES

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> FilterOptions:
        """Build from a config mapping; unknown keys are an error (a typo must not pass silently)."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown quality filter options: {sorted(unknown)}")
        bad = set(values.get("enabled", ())) - set(FILTERS)
        if bad:
            raise ValueError(f"unknown filters {sorted(bad)}; known: {list(FILTERS)}")
        for key in ("enabled", "languages", "exclude_article_types"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass
class QualityDecision:
    keep: bool
    dropped_by: str | None = None
    reason: str | None = None
    scores: dict[str, float] = field(default_factory=dict)

    def columns(self) -> dict[str, Any]:
        """Manifest columns (see ``schemas.quality``)."""
        return {"quality_scores": dict(sorted(self.scores.items())), "quality_dropped_by": self.dropped_by,
                "quality_reason": self.reason}


@dataclass(frozen=True)
class ImageStats:
    width: int
    height: int
    std: float
    entropy: float
    edge_density: float


def _fail(name: str, reason: str) -> tuple[str, str]:
    return name, reason


# ---- image ---------------------------------------------------------------------------------------

def open_small(image: bytes | Image.Image, side: int = MEASURE_SIDE) -> tuple[Image.Image, int, int]:
    """A grayscale copy at most ``side`` px and the original size; JPEGs decode at reduced scale."""
    if isinstance(image, Image.Image):
        img = image
    else:
        img = Image.open(io.BytesIO(image))
    width, height = img.size
    if img.format == "JPEG":
        img.draft("L", (side, side))
    small = to_8bit(img).convert("L")  # the encoder's conversion: transparency measured as white paper
    small.thumbnail((side, side), Image.Resampling.BILINEAR)
    return small, width, height


def image_stats(small: Image.Image, width: int, height: int) -> ImageStats:
    """Spread, histogram entropy and edge density of a small grayscale image."""
    a = np.asarray(small, dtype=np.float32)
    hist = np.bincount((a.astype(np.uint8) >> 2).ravel(), minlength=64).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    entropy = float(-(p * np.log2(p)).sum())
    edges = 0.0
    if a.shape[0] > 1 and a.shape[1] > 1:
        gx = np.abs(np.diff(a, axis=1))[:-1, :]
        gy = np.abs(np.diff(a, axis=0))[:, :-1]
        edges = float(((gx + gy) > 32).mean())
    return ImageStats(width, height, float(a.std()), entropy, edges)


def measure_image(image: bytes | Image.Image | None) -> ImageStats | None:
    """``None`` when the image cannot be decoded."""
    if image is None:
        return None
    try:
        small, w, h = open_small(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return image_stats(small, w, h)


def image_failures(stats: ImageStats | None, options: FilterOptions) -> list[tuple[str, str]]:
    """Every image filter that fails, as (filter, reason), each judged on its own."""
    if stats is None:
        return [_fail("image_decodable", "image could not be decoded")]
    out = []
    short, long = min(stats.width, stats.height), max(stats.width, stats.height)
    if short < options.min_side:
        out.append(_fail("min_side", f"shorter side {short} px < min_side {options.min_side}"))
    if long / max(short, 1) > options.max_aspect:
        out.append(_fail("max_aspect", f"aspect ratio {long / max(short, 1):.1f} > max_aspect {options.max_aspect}"))
    if stats.std < options.min_std:
        out.append(_fail("low_information", f"grayscale std {stats.std:.2f} < min_std {options.min_std}"))
    elif stats.entropy < options.min_entropy:
        out.append(_fail("low_information",
                         f"histogram entropy {stats.entropy:.2f} bits < min_entropy {options.min_entropy}"))
    return out


def image_scores(stats: ImageStats | None) -> dict[str, float]:
    if stats is None:
        return {}
    short, long = min(stats.width, stats.height), max(stats.width, stats.height)
    return {"min_side": float(short), "aspect": round(long / max(short, 1), 4), "gray_std": round(stats.std, 4),
            "entropy": round(stats.entropy, 4), "edge_density": round(stats.edge_density, 4)}


# ---- caption and article -------------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=1)
def _identifier() -> Any:
    """langid's model ships inside the package (no download); loading takes seconds, so once per process."""
    from langid.langid import LanguageIdentifier, model

    return LanguageIdentifier.from_modelstring(model, norm_probs=True)


LANGUAGE_SAMPLE_CHARS = 400  # langid's cost grows with length; a few sentences decide the language


def identify_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) from langid, on the text's first few sentences."""
    lang, prob = _identifier().classify(text[:LANGUAGE_SAMPLE_CHARS])
    return str(lang), float(prob)


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


def allowed_sentence_share(text: str, options: FilterOptions) -> float:
    """Share of the caption's characters in sentences of an allowed language (1.0 when its first
    sentence, the figure's title, is in one).

    English captions often cite foreign names ("Source: Encuesta Continua de Hogares, Instituto
    Nacional de Estadística"), which can tip a whole-caption guess; judged sentence by sentence
    they do not."""
    sentences = [x for x in _SENTENCE.split(text) if len(x) >= 20]
    total = sum(len(x) for x in sentences)
    if not total:
        return 0.0
    allowed = [identify_language(x)[0] in options.languages for x in sentences]
    if allowed[0]:
        return 1.0
    return sum(len(x) for x, ok in zip(sentences, allowed) if ok) / total


def check_caption(caption: str, options: FilterOptions) -> tuple[tuple[str, str] | None, dict[str, float]]:
    text = caption.strip()
    n_words = len(_WORD.findall(text))
    scores = {"caption_chars": float(len(text)), "caption_words": float(n_words)}
    failure: tuple[str, str] | None = None
    if "caption_length" in options.enabled:
        if len(text) < options.min_caption_chars or n_words < options.min_caption_words:
            failure = _fail("caption_length", f"caption has {len(text)} chars / {n_words} words < "
                            f"{options.min_caption_chars} / {options.min_caption_words}")
        elif len(text) > options.max_caption_chars:
            failure = _fail("caption_length", f"caption has {len(text)} chars > {options.max_caption_chars}")
    if "caption_language" in options.enabled and options.languages and len(text) >= options.language_min_chars:
        lang, prob = identify_language(text)
        kept_prob = prob if lang in options.languages else 1.0 - prob
        if lang not in options.languages or prob < options.min_language_prob:
            kept_prob = max(kept_prob, allowed_sentence_share(text, options))
            lang, prob = (options.languages[0], kept_prob) if kept_prob >= options.min_language_prob else (lang, prob)
        scores["language_prob"] = round(kept_prob, 4)
        if failure is None and (lang not in options.languages or prob < options.min_language_prob):
            failure = _fail("caption_language", f"caption language {lang} (p={prob:.2f}); kept: "
                            f"{','.join(options.languages)} with p >= {options.min_language_prob}")
    return failure, scores


def normalize_article_type(article_type: str | None) -> str:
    return re.sub(r"[\s_]+", "-", (article_type or "").strip().lower())


def check_article_type(article_type: str | None, options: FilterOptions) -> tuple[str, str] | None:
    kind = normalize_article_type(article_type)
    excluded = {normalize_article_type(t) for t in options.exclude_article_types}
    if kind and kind in excluded:
        return _fail("article_type", f"article type {kind!r} is excluded")
    return None


# ---- the decision --------------------------------------------------------------------------------

def assess(image: bytes | Image.Image | ImageStats | None, caption: str, article_type: str | None = None,
           options: FilterOptions = FilterOptions()) -> QualityDecision:
    """Run every enabled filter; the first failure (in ``FILTERS`` order) drops the sample.

    ``image`` may be the original bytes, a decoded PIL image, or precomputed ``ImageStats``.
    """
    failures: list[tuple[str, str]] = []
    scores: dict[str, float] = {}
    if "article_type" in options.enabled and (f := check_article_type(article_type, options)):
        failures.append(f)
    cap_failure, cap_scores = check_caption(caption or "", options)
    scores.update(cap_scores)
    if cap_failure:
        failures.append(cap_failure)
    stats = image if isinstance(image, ImageStats) else measure_image(image)
    scores.update(image_scores(stats))
    failures.extend(f for f in image_failures(stats, options) if f[0] in options.enabled)
    if not failures:
        return QualityDecision(True, None, None, scores)
    order = {name: i for i, name in enumerate(FILTERS)}
    name, reason = min(failures, key=lambda f: order[f[0]])
    return QualityDecision(False, name, reason, scores)
