"""Per-sample quality filters: cheap checks that run on every figure, each decision with its reason.

Every filter returns a score and a verdict; ``assess`` runs them in a fixed order and records the
first one that fails (``dropped_by``) with a human reason, while the scores of every filter that
could run are kept, so dropped samples can be audited and thresholds tuned from the manifest.
Image checks work on a small downscaled grayscale copy (``MEASURE_SIDE``): the statistics they
need (spread, entropy, edges) survive downscaling and the cost stays flat whatever the input size.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from medcorpus.schemas.quality import score_entries
from medcorpus.transforms.images import to_8bit
from medcorpus.transforms.options import Fraction, NonNegative, NonNegativeInt, Positive, known_names, validated
from medcorpus.transforms.quality_filters import FILTERS as FILTER_REGISTRY, Evidence, Language, caption_counts

MEASURE_SIDE = 128
FILTERS = tuple(FILTER_REGISTRY)  # names, in the order in which a failure drops (transforms/quality_filters.py)

DEFAULT_EXCLUDED_TYPES = ("retraction", "retracted-article", "correction", "erratum", "corrigendum",
                          "expression-of-concern", "addendum", "withdrawal", "removal", "reply",
                          "obituary", "announcement", "calendar", "in-brief", "book-review")
"""JATS ``article-type`` values whose figures are not new image-text data (retractions, errata,
notices ...). Compared after lower-casing and mapping spaces/underscores to hyphens."""


@dataclass(frozen=True)
class FilterOptions:
    """Thresholds of every filter (dataflow.yaml ``quality:``); a filter not in ``enabled`` never drops."""

    enabled: tuple[str, ...] = FILTERS
    min_side: NonNegativeInt = 64      # px of the original image; smaller is an icon or formula
    max_aspect: Positive = 8.0         # long side / short side
    min_std: NonNegative = 4.0         # grayscale standard deviation (0-255) below = near-blank
    min_entropy: NonNegative = 1.0     # bits of the 64-bin grayscale histogram below = near-blank
    min_caption_chars: NonNegativeInt = 10
    max_caption_chars: NonNegativeInt = 10_000
    min_caption_words: NonNegativeInt = 2
    languages: tuple[str, ...] = ("en",)  # ISO 639-1 codes kept; empty = any language
    min_language_prob: Fraction = 0.5  # langid probability of a kept language needed to keep ...
    language_min_chars: NonNegativeInt = 40  # ... judged only on captions at least this long
    exclude_article_types: tuple[str, ...] = DEFAULT_EXCLUDED_TYPES

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> FilterOptions:
        """Build from a config mapping (``quality:``), validated: unknown keys and filters are errors."""
        options = validated(cls, values, "quality")
        known_names(options.enabled, FILTERS, "quality.enabled")
        return options


@dataclass
class QualityDecision:
    keep: bool
    dropped_by: str | None = None
    reason: str | None = None
    scores: dict[str, float] = field(default_factory=dict)

    def columns(self) -> dict[str, Any]:
        """Manifest columns (see ``schemas.quality``)."""
        return {"quality_scores": score_entries(self.scores), "quality_dropped_by": self.dropped_by,
                "quality_reason": self.reason}


@dataclass(frozen=True)
class ImageStats:
    width: int
    height: int
    std: float
    entropy: float
    edge_density: float


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


def image_scores(stats: ImageStats | None) -> dict[str, float]:
    if stats is None:
        return {}
    short, long = min(stats.width, stats.height), max(stats.width, stats.height)
    return {"min_side": float(short), "aspect": round(long / max(short, 1), 4), "gray_std": round(stats.std, 4),
            "entropy": round(stats.entropy, 4), "edge_density": round(stats.edge_density, 4)}


# ---- the decision --------------------------------------------------------------------------------

def assess(image: bytes | Image.Image | ImageStats | None, caption: str, article_type: str | None = None,
           options: FilterOptions = FilterOptions(), language: Language | None = None) -> QualityDecision:
    """Run every enabled filter in ``FILTERS`` order; the first failure drops the sample, and the
    scores of every measurement and enabled filter are kept for audit.

    ``image`` may be the original bytes, a decoded PIL image, or precomputed ``ImageStats``;
    ``language`` replaces ``identify_language`` (a worker's memo of it).
    """
    stats = image if isinstance(image, ImageStats) else measure_image(image)
    chars, words = caption_counts(caption or "")
    scores = {"caption_chars": float(chars), "caption_words": float(words)}
    evidence = Evidence(caption or "", article_type, stats, language)
    failure: tuple[str, str | None] | None = None
    for name, check in FILTER_REGISTRY.items():
        if name not in options.enabled:
            continue
        verdict = check.filter(evidence, options)
        scores.update(verdict.scores)
        if not verdict.keep and failure is None:
            failure = (name, verdict.reason)
    scores.update(image_scores(stats))
    if failure is None:
        return QualityDecision(True, None, None, scores)
    return QualityDecision(False, failure[0], failure[1], scores)
