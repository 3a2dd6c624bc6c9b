"""Cut a figure into panels around the panel labels printed on it (one anchor per caption label).

Why: when layout analysis and the caption disagree on the panel count, the labels read on the
figure still say where each panel starts. A recursive cut that must separate the anchors finds
the panels even where gutters are missing (panels touching: under-segmentation) and keeps a
panel's sub-plots together (over-segmentation), because a region holding one anchor is never cut.

At each step the region is cut at the widest background gutter (or thin border line) that has
anchors on both sides and crosses no anchor; without one, at the emptiest row or column between
two groups of anchors, just before the later group (labels sit at their panel's top-left).
Boxes are ``(x1, y1, x2, y2)`` at the mask's resolution.
"""
from __future__ import annotations

import numpy as np

from .panels import Box, LayoutOptions, _interior_gutters, _separators, _trim

__all__ = ["cut_by_anchors"]

# a weak cut (no clean gutter) may cross at most this share of content along its line
_MAX_WEAK_FILL = 0.35


def cut_by_anchors(content: np.ndarray, gray: np.ndarray, anchors: dict[str, Box],
                   opts: LayoutOptions | None = None) -> dict[str, Box] | None:
    """One box per anchor label, or None when the anchors cannot be separated cleanly."""
    opts = opts or LayoutOptions()
    h, w = content.shape
    out: dict[str, Box] = {}
    if not _cut(content, gray, (0, 0, w, h), anchors, opts, out) or set(out) != set(anchors):
        return None
    return out if all(_plausible(out[k], b, w, h, opts) for k, b in anchors.items()) else None


def _plausible(panel: Box, anchor: Box, w: int, h: int, opts: LayoutOptions) -> bool:
    """A panel at least panel-sized, with its label in its upper left part."""
    pw, ph = panel[2] - panel[0], panel[3] - panel[1]
    side = opts.min_panel_side_frac * max(w, h)
    return (min(pw, ph) >= side and pw * ph >= opts.min_panel_area_frac * w * h
            and anchor[0] - panel[0] <= 0.5 * pw and anchor[1] - panel[1] <= 0.35 * ph)


def _cut(content: np.ndarray, gray: np.ndarray, region: Box, anchors: dict[str, Box], opts: LayoutOptions,
         out: dict[str, Box]) -> bool:
    trimmed = _trim(content, region)
    if trimmed is None:
        return False
    if len(anchors) == 1:
        out[next(iter(anchors))] = trimmed
        return True
    min_side = int(opts.min_panel_side_frac * max(content.shape))
    best = (_gutter_cut(content, gray, trimmed, anchors, opts, min_side)
            or _weak_cut(content, trimmed, anchors, min_side))
    if best is None:
        return False
    axis, pos = best
    x1, y1, x2, y2 = trimmed
    first = (x1, y1, pos, y2) if axis == 0 else (x1, y1, x2, pos)
    second = (pos, y1, x2, y2) if axis == 0 else (x1, pos, x2, y2)
    before = {k: b for k, b in anchors.items() if _centre(b, axis) < pos}
    after = {k: b for k, b in anchors.items() if k not in before}
    return _cut(content, gray, first, before, opts, out) and _cut(content, gray, second, after, opts, out)


def _centre(b: Box, axis: int) -> float:
    return (b[axis] + b[axis + 2]) / 2


def _splits_anchors(anchors: dict[str, Box], axis: int, s: int, e: int) -> bool:
    """Every anchor wholly before or after the band [s, e), and anchors on both sides."""
    before = sum(b[axis + 2] <= e for b in anchors.values())
    after = sum(b[axis] >= s for b in anchors.values())
    return before + after == len(anchors) and 0 < before < len(anchors)


def _just_after_label(anchors: dict[str, Box], axis: int, pos: int) -> bool:
    """A cut at ``pos`` would pass within a letter's size after a label: the label would end its
    panel instead of starting it (a gutter between a row of labels and their panels)."""
    return any(0 <= pos - b[axis + 2] < b[axis + 2] - b[axis] for b in anchors.values())


def _gutter_cut(content: np.ndarray, gray: np.ndarray, box: Box, anchors: dict[str, Box],
                opts: LayoutOptions, min_side: int) -> tuple[int, int] | None:
    """The widest real gutter (relative to the region's extent) that separates the anchors; of the
    gutters giving the same split of anchors, the one nearest the later anchors (a panel's label
    sits at its top-left, so a gap above the label is the panel's edge, not a gap under a title)."""
    x1, y1, x2, y2 = box
    sub = content[y1:y2, x1:x2]
    sub_g = gray[y1:y2, x1:x2]
    splits: dict[tuple[int, frozenset[str]], tuple[float, int]] = {}
    for axis in (0, 1):
        counts = sub.sum(axis=axis, dtype=np.int32)  # per column (axis 0) or per row (axis 1)
        lines = sub_g.T if axis == 0 else sub_g
        across = (y2 - y1) if axis == 0 else (x2 - x1)
        origin = x1 if axis == 0 else y1
        for s, e in _interior_gutters(_separators(counts, lines, across, opts), 1):
            if (not _splits_anchors(anchors, axis, origin + s, origin + e) or min(s, len(counts) - e) < min_side
                    or _just_after_label(anchors, axis, origin + s)):
                continue
            key = (axis, frozenset(k for k, b in anchors.items() if b[axis + 2] <= origin + e))
            width, _ = splits.get(key, (0.0, 0))
            splits[key] = (max(width, (e - s) / len(counts)), origin + (s + e) // 2)  # later gutters win
    if not splits:
        return None
    (axis, _), (_, pos) = max(splits.items(), key=lambda kv: (kv[1][0], -kv[0][0], sorted(kv[0][1])))
    return axis, pos


def _weak_cut(content: np.ndarray, box: Box, anchors: dict[str, Box], min_side: int) -> tuple[int, int] | None:
    """No gutter: between two anchors consecutive along either axis, the row (column) with the least
    content, nearest the later anchor; the emptiest such line of all, None if each is mostly content."""
    x1, y1, x2, y2 = box
    best: tuple[float, int, int] | None = None
    for axis in (0, 1):
        starts = sorted(anchors.values(), key=lambda b: (b[axis], b))
        origin = x1 if axis == 0 else y1
        counts = content[y1:y2, x1:x2].sum(axis=axis, dtype=np.int32)
        across = (y2 - y1) if axis == 0 else (x2 - x1)
        for a, b in zip(starts, starts[1:]):
            # after the earlier label, before the later one, leaving both sides panel-sized
            lo, hi = max(a[axis + 2], origin + min_side), min(b[axis], origin + len(counts) - min_side)
            if hi - lo < 2:
                continue
            seg = counts[lo - origin:hi - origin]
            fill = seg / max(1, across)
            # the emptiest line, ties to the one nearest the later label
            k = int(len(seg) - 1 - np.argmin(fill[::-1]))
            if not _splits_anchors(anchors, axis, lo + k, lo + k + 1):
                continue
            if fill[k] <= _MAX_WEAK_FILL and (best is None or fill[k] < best[0]):
                best = (float(fill[k]), axis, lo + k)
    return None if best is None else (best[1], best[2])
