"""Compound-figure splitting: the one entry point the pipeline calls.

``split_figure(image, caption, options)`` finds panels (layout analysis, or a learned detector when
configured), splits the caption per label, and pairs panels with subcaptions:

1. panel labels read by OCR on the figure, when they name the caption's labels (highest confidence):
   when the panel and label counts disagree and the caption's labels are read (``anchor_sets``: which
   read of a letter, an unread one placed at a free panel corner in reading order), the figure is cut
   into one panel per label around them (``panel_anchors``: touching panels, sub-plots of a panel);
2. otherwise, when the panel and label counts agree, reading order (row-major) for one row or one
   column of panels; a grid that rows and columns order apart gets the order the letters read at its
   panel corners support (``panel_order``: the reads, rows or columns; row-major, marked a guess,
   when no read tells them apart);
3. positional captions ("Left: ... Right: ...") pair by geometry;
4. more panels than labels (at most twice as many): the pieces merged into as many clean rows or
   columns as there are labels (``merge_panels``), then reading order or geometry (lower confidence);
5. otherwise the figure is kept whole and ``kept_whole_reason`` says why.

Pure and deterministic: the same image, caption and options always give the same result.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations
from typing import Callable, Literal

from PIL import Image

from .options import Fraction, PositiveInt
from .anchor_sets import CONF_OCR_READ, anchor_sets, reads_next_label
from .panel_anchors import cut_by_anchors
from .panel_labels import LabelHit, candidate_regions, detect_labels, label_glyphs, ocr_available
from .panel_order import CONF_ORDER_UNCONFIRMED, OrderedLabels, label_per_box, order_labels, orders_differ
from .panels import Box, Layout, LayoutOptions, _analysis_arrays, _scale, analyze_layout, reading_order
from .subcaptions import SubcaptionSplit, split_caption

__all__ = [
    "SubfigureOptions",
    "PanelPair",
    "SubfigureResult",
    "split_figure",
    "find_panels",
    "panel_key",
    "crop_panel",
]

Detector = Callable[[Image.Image], list[tuple[Box, float]]]

# Confidence of a pairing, by how it was made.
CONF_OCR_BASE = 0.6  # + 0.4 * OCR confidence when the label was read on the panel
CONF_READING_ORDER = 0.5
CONF_READING_ORDER_OCR_DISAGREES = 0.2
CONF_POSITION = 0.6
CONF_MERGED = 0.4  # pieces of a panel merged along the figure's rows or columns, then reading order
# OCR reads this sure may anchor a panel (a label read several times keeps its best-fitting read);
# labelling a layout panel by the letter read on it wants CONF_OCR_READ (``anchor_sets``)
ANCHOR_MIN_OCR = 0.2
GLYPHS_PER_LABEL = 3  # letter blobs OCR'd per caption label (the largest ones)


@dataclass(frozen=True)
class SubfigureConfig:
    """dataflow.yaml ``subfigures:``: the panels stage's settings (``SubfigureOptions`` adds the
    loaded detector)."""

    ocr: Literal["never", "auto", "always"] = "never"  # auto: counts disagree, or agree on a grid
    keep_whole_figure: bool = True  # the parent figure stays a sample beside its panels
    split_unlabeled: bool = False  # split figures whose caption names no panels (reading order only)
    max_panels: PositiveInt = 40
    min_confidence: Fraction = 0.0  # pairs below it are not emitted (the figure stays whole)
    detector: str | None = None  # path of an ONNX/TorchScript panel detector replacing layout analysis


@dataclass(frozen=True)
class SubfigureOptions:
    """How the stage splits figures.

    ocr: "never" (default: layout + reading order only, ~165 figures/s per core), "auto" (OCR only
    when the panel and label counts disagree, so labels on the figure can cut or regroup panels,
    or agree on a grid lettered along rows or down columns, so the letters can tell which),
    "always" (OCR every compound figure, so each pair is confirmed by the label printed on it). One
    read costs ~0.03-0.1 s of CPU per OCR'd figure (each worker's tesseract engine is loaded once);
    "auto" pays it only where counts disagree or agree on a grid (33 of the sample's 82 figures).
    keep_whole_figure: whether the pipeline also keeps the parent figure as a sample; carried here
    so the stage's config lives in one place (split_figure itself does not use it).
    detector: a callable image -> [(box, score)] (e.g. ``LearnedPanelDetector``) replacing the
    layout analysis.
    """

    layout: LayoutOptions = field(default_factory=LayoutOptions)
    ocr: Literal["never", "auto", "always"] = "never"
    keep_whole_figure: bool = True
    split_unlabeled: bool = False
    max_panels: int = 40
    detector: Detector | None = None


@dataclass(frozen=True)
class PanelPair:
    """One panel: its box in the parent image, its caption label, its text and how sure we are."""

    box: Box
    label: str | None
    subcaption: str
    confidence: float


@dataclass(frozen=True)
class SubfigureResult:
    """``panels`` is empty when the figure is kept whole; ``kept_whole_reason`` then says why."""

    compound: bool
    panels: tuple[PanelPair, ...]
    kept_whole_reason: str | None
    shared_text: str
    caption_labels: tuple[str, ...] = ()
    layout_panel_count: int = 0
    method: str = ""


def crop_panel(image: Image.Image, box: Box) -> Image.Image:
    """The panel's pixels as a new image."""
    return image.crop(box)


def panel_key(parent_key: str, pair: PanelPair, index: int) -> str:
    """Stable sample key of a panel: parent key + label (or position); no dots (WebDataset)."""
    suffix = pair.label if pair.label and pair.label.replace("'", "p").isalnum() else f"{index:02d}"
    return f"{parent_key}_p{suffix.replace(chr(39), 'p')}"


def _boxes(image: Image.Image, options: SubfigureOptions) -> tuple[list[Box], list[float], Layout]:
    layout = analyze_layout(image, options.layout)
    if options.detector is None:
        return list(layout.panels), [1.0] * len(layout.panels), layout
    scored = options.detector(image)
    if not scored:
        w, h = image.size
        return [(0, 0, w, h)], [1.0], layout
    ordered = reading_order([b for b, _ in scored])
    score = {b: s for b, s in scored}
    return ordered, [score[b] for b in ordered], layout


def find_panels(image: Image.Image, options: SubfigureOptions | None = None) -> list[PanelPair]:
    """Panels of a figure without a caption (labels from OCR when enabled); for ``medcorpus panels``."""
    options = options or SubfigureOptions()
    boxes, scores, layout = _boxes(image, options)
    hits = _ocr(image, boxes, layout) if options.ocr != "never" and len(boxes) > 1 else []
    by_box = label_per_box(boxes, hits)
    out = []
    for b, s in zip(boxes, scores):
        hit = by_box.get(b)
        conf = (CONF_OCR_BASE + 0.4 * hit.confidence) if hit else CONF_READING_ORDER
        out.append(PanelPair(b, hit.label if hit else None, "", round(conf * s, 4)))
    return out


def _ocr(image: Image.Image, boxes: list[Box], layout: Layout, mask: tuple | None = None,
         n_labels: int = 0) -> list[LabelHit]:
    """Labels read at the panels' corners and, given the layout's content ``mask`` (content, gray,
    scale), on the figure's largest isolated letter-sized blobs (a few per caption label)."""
    candidates = candidate_regions(tuple(boxes), layout.minor, image.size)
    if mask is None:
        return detect_labels(image, candidates)
    glyphs = label_glyphs(mask[0], mask[2], limit=GLYPHS_PER_LABEL * n_labels + 8)
    candidates = list(dict.fromkeys([*candidates, *glyphs]))
    return detect_labels(image, candidates, min_confidence=ANCHOR_MIN_OCR)


def _anchored_pairs(image: Image.Image, split: SubcaptionSplit, hits: list[LabelHit], mask: tuple,
                    boxes: list[Box], opts: LayoutOptions) -> SubfigureResult | None:
    """The caption's labels read on the figure: the figure cut into one panel per label
    (``cut_by_anchors``), whatever layout analysis found; the first set of reads
    (``anchor_sets``) that cuts cleanly wins. None when none does."""
    labels = split.labels
    content, gray, scale = mask
    w, h = image.size
    for best in anchor_sets(hits, labels, boxes):
        anchors = {lab: (b.box[0] // scale, b.box[1] // scale, -(-b.box[2] // scale), -(-b.box[3] // scale))
                   for lab, b in best.items()}
        cut = cut_by_anchors(content, gray, anchors, opts)
        if cut is not None:
            pairs = tuple(PanelPair(_scale(cut[lab], scale, w, h), lab, split.text_for(lab),
                                    round(CONF_OCR_BASE + 0.4 * best[lab].confidence, 4)) for lab in labels)
            return SubfigureResult(True, pairs, None, split.shared, tuple(labels), len(boxes), "ocr_anchors")
    return None


def _group_by_labels(boxes: list[Box], hits: list[LabelHit], wanted: list[str]) -> dict[str, tuple[Box, float]] | None:
    """Regroup over-segmented panels under the labels read on the figure (a panel made of several
    pieces has one label at its top-left). None unless every wanted label was read exactly once."""
    anchors: dict[str, LabelHit] = {}
    for h in hits:
        if h.label in wanted and (h.label not in anchors or anchors[h.label].confidence < h.confidence):
            anchors[h.label] = h
    if set(anchors) != set(wanted):
        return None
    groups: dict[str, Box] = {}
    for b in boxes:
        pcx, pcy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        above_left = [a for a in anchors.values() if a.box[0] <= pcx and a.box[1] <= pcy]
        pool = above_left or list(anchors.values())
        a = min(pool, key=lambda a: (abs(a.box[0] - b[0]) + abs(a.box[1] - b[1]), a.label))
        g = groups.get(a.label, b)
        groups[a.label] = (min(g[0], b[0]), min(g[1], b[1]), max(g[2], b[2]), max(g[3], b[3]))
    if set(groups) != set(wanted):
        return None
    return {lab: (groups[lab], anchors[lab].confidence) for lab in wanted}


_POS_TARGET = {"left": (0.0, 0.5), "right": (1.0, 0.5), "top": (0.5, 0.0), "bottom": (0.5, 1.0), "center": (0.5, 0.5)}


def _position_target(label: str) -> tuple[float, float] | None:
    parts = label.split("-")
    if not all(p in _POS_TARGET for p in parts):
        return None
    xs = [_POS_TARGET[p][0] for p in parts if p in ("left", "right")] or [0.5]
    ys = [_POS_TARGET[p][1] for p in parts if p in ("top", "bottom")] or [0.5]
    return xs[0], ys[0]


def _pair_by_position(boxes: list[Box], labels: list[str], size: tuple[int, int]) -> list[tuple[Box, str]] | None:
    targets = [_position_target(lab) for lab in labels]
    if any(t is None for t in targets) or len(boxes) != len(labels) or len(boxes) > 7:
        return None
    w, h = size
    centers = [((b[0] + b[2]) / 2 / w, (b[1] + b[3]) / 2 / h) for b in boxes]

    def cost(perm: tuple[int, ...]) -> float:
        return sum(abs(centers[i][0] - targets[j][0]) + abs(centers[i][1] - targets[j][1]) for j, i in enumerate(perm))

    best = min(permutations(range(len(boxes))), key=lambda p: (cost(p), p))
    return [(boxes[i], labels[j]) for j, i in enumerate(best)]


def _bbox(group: list[Box]) -> Box:
    return (min(b[0] for b in group), min(b[1] for b in group), max(b[2] for b in group), max(b[3] for b in group))


def _groups_along(boxes: list[Box], k: int, axis: int) -> tuple[list[Box], float] | None:
    """The boxes cut into ``k`` bands at the ``k - 1`` widest gaps between their centres along an
    axis (0: columns, 1: rows); each band merged into one box. None unless the bands are disjoint
    along the axis (true rows or columns)."""
    centre = sorted(boxes, key=lambda b: ((b[axis] + b[axis + 2]) / 2, b))
    mids = [(b[axis] + b[axis + 2]) / 2 for b in centre]
    gaps = sorted(range(1, len(mids)), key=lambda i: (-(mids[i] - mids[i - 1]), i))[:k - 1]
    cuts = [0, *sorted(gaps), len(mids)]
    bands = [_bbox(centre[a:b]) for a, b in zip(cuts, cuts[1:])]
    # a real row (column) cut: each band ends, along the axis, before the next one starts
    tol = 0.02 * (max(b[axis + 2] for b in bands) - min(b[axis] for b in bands))
    if any(a[axis + 2] > b[axis] + tol for a, b in zip(bands, bands[1:])):
        return None
    smallest_gap = min(mids[i] - mids[i - 1] for i in gaps) if gaps else 0.0
    return bands, smallest_gap


def merge_panels(boxes: list[Box], k: int, axes: tuple[int, ...] = (0, 1)) -> list[Box] | None:
    """Over-segmented panels merged into ``k`` (a label covering a panel's pieces: a blot above its
    loading control, two plots under one letter), when the pieces fall into ``k`` clean columns
    (axis 0) or rows (axis 1); the cleaner cut (wider gap) wins. Reading order; None when no axis
    cuts cleanly, or when there are more than twice as many pieces as labels (a grid of many pieces is
    more often one panel's small multiples than several panels' pieces)."""
    if not 1 < k < len(boxes) <= 2 * k:
        return None
    options = [g for g in (_groups_along(boxes, k, axis) for axis in axes) if g is not None]
    if not options:
        return None
    bands, _ = max(options, key=lambda o: o[1])
    return reading_order(bands)


def _merged_pairs(split: SubcaptionSplit, boxes: list[Box], n: int, size: tuple[int, int]) -> SubfigureResult | None:
    labels = split.labels
    positional = _position_target(labels[0]) is not None
    # "Left: ... Right: ..." names columns, "Top: ... Bottom: ..." rows
    axes = ((0,) if all("left" in lab or "right" in lab for lab in labels) else (1,)) if positional else (0, 1)
    merged = merge_panels(boxes, len(labels), axes)
    if merged is None:
        return None
    if positional:
        paired = _pair_by_position(merged, labels, size)
        if paired is None:
            return None
    else:
        paired = list(zip(merged, labels))
    pairs = tuple(PanelPair(b, lab, split.text_for(lab), CONF_MERGED) for b, lab in paired)
    return SubfigureResult(True, pairs, None, split.shared, tuple(labels), n, "merged")


def _whole(split: SubcaptionSplit, compound: bool, reason: str, n_layout: int) -> SubfigureResult:
    return SubfigureResult(compound, (), reason, split.shared, tuple(split.labels), n_layout, "whole")


def split_figure(image: Image.Image, caption: str, options: SubfigureOptions | None = None) -> SubfigureResult:
    """Split one figure into (panel box, label, subcaption, confidence) pairs, or keep it whole."""
    options = options or SubfigureOptions()
    split = split_caption(caption or "")
    labels = split.labels
    boxes, scores, layout = _boxes(image, options)
    n = len(boxes)
    if n > options.max_panels:
        return _whole(split, True, f"too_many_panels:{n}", n)
    if n < 2 and len(labels) < 2:
        return _whole(split, False, "single_panel", n)
    if len(labels) < 2:
        if not options.split_unlabeled:
            return _whole(split, True, f"caption_has_no_panel_labels:{n}_panels", n)
        pairs = tuple(PanelPair(b, None, split.text_for(None), round(0.3 * s, 4)) for b, s in zip(boxes, scores))
        return SubfigureResult(True, pairs, None, split.shared, (), n, "unlabeled")
    if _position_target(labels[0]) is not None:
        paired = _pair_by_position(boxes, labels, image.size)
        if paired is None:
            merged = _merged_pairs(split, boxes, n, image.size)
            return merged or _whole(split, n > 1, f"count_mismatch:{n}_panels_{len(labels)}_positions", n)
        score = dict(zip(boxes, scores))
        pairs = tuple(PanelPair(b, lab, split.text_for(lab), round(CONF_POSITION * score[b], 4)) for b, lab in paired)
        return SubfigureResult(True, pairs, None, split.shared, tuple(labels), n, "position")

    want_ocr = options.ocr == "always" or (options.ocr == "auto" and (n != len(labels) or orders_differ(boxes)))
    mask = (layout.arrays or _analysis_arrays(image, options.layout)) if want_ocr and n != len(labels) else None
    hits = _ocr(image, boxes, layout, mask, len(labels)) if want_ocr and ocr_available() else []
    if mask is not None and hits:
        anchored = _anchored_pairs(image, split, hits, mask, boxes, options.layout)
        if anchored is not None:
            return anchored
        hits = [h for h in hits if h.confidence >= CONF_OCR_READ]
    if hits and n > len(labels) and not reads_next_label(hits, labels):
        groups = _group_by_labels(boxes, hits, labels)
        if groups is not None:
            pairs = tuple(
                PanelPair(box, lab, split.text_for(lab), round(CONF_OCR_BASE + 0.4 * c, 4))
                for lab, (box, c) in groups.items()
            )
            return SubfigureResult(True, pairs, None, split.shared, tuple(labels), n, "ocr_regroup")
    if n != len(labels):
        merged = _merged_pairs(split, boxes, n, image.size) if n > len(labels) else None
        return merged or _whole(split, n > 1, f"count_mismatch:{n}_panels_{len(labels)}_labels", n)
    return _ordered_pairs(split, boxes, scores, hits if want_ocr else None, n)


def _ordered_pairs(split: SubcaptionSplit, boxes: list[Box], scores: list[float], hits: list[LabelHit] | None,
                   n: int) -> SubfigureResult:
    """As many panels as labels: each label on the panel the letters read on the figure put it
    (``order_labels``: the reads, rows or columns), else row-major; ``hits`` None = OCR is off
    (``ocr: never``), row-major as configured. A pair is as sure as the read on its panel:
    agreeing, none, disagreeing, or none where the order itself is a guess."""
    labels = split.labels
    by_box = label_per_box(boxes, hits or [])
    order = (order_labels(boxes, labels, {b: h.label for b, h in by_box.items()}) if hits is not None
             else OrderedLabels(tuple(boxes), "reading_order"))
    score = dict(zip(boxes, scores))
    pairs = []
    for b, lab in zip(order.boxes, labels):
        hit = by_box.get(b)
        if hit is not None and hit.label == lab:
            conf = CONF_OCR_BASE + 0.4 * hit.confidence
        elif hit is not None:
            conf = CONF_READING_ORDER_OCR_DISAGREES
        else:
            conf = CONF_ORDER_UNCONFIRMED if b in order.guessed else CONF_READING_ORDER
        pairs.append(PanelPair(b, lab, split.text_for(lab), round(conf * score[b], 4)))
    return SubfigureResult(True, tuple(pairs), None, split.shared, tuple(labels), n, order.method)
