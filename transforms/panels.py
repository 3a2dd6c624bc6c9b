"""Find the panels of a figure by layout analysis alone (no trained weights, no OCR).

Why this way: PMC compound figures are mostly grids of panels separated by background gutters or
thin border lines. A recursive XY cut on a background mask finds those gutters in a few
milliseconds. The cut over-segments (axis titles, legends, tick labels, panel letters become their
own pieces), so pieces too small to be a panel are merged into the nearest large piece and kept
as ``minor`` regions (the panel-label detector looks at them).

Boxes are ``(x1, y1, x2, y2)`` in pixels of the input image, x2/y2 exclusive.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

__all__ = ["Box", "LayoutOptions", "Layout", "analyze_layout", "reading_order", "column_order", "iou"]

Box = tuple[int, int, int, int]
_WHITE = 200  # a uniform band this light is page, not picture
_HAIRLINE_FLANK = 0.15  # a hairline gutter has solid content this share of the piece on each side


@dataclass(frozen=True)
class LayoutOptions:
    """Thresholds of the layout analysis, as fractions of the figure size where it matters."""

    max_side: int = 1400  # larger figures are analysed at a reduced size (gutters survive: "all background")
    bg_tolerance: int = 40  # max channel distance from the background colour still counted as background
    min_gutter_px: int = 1  # a gutter this wide (at analysis size) separates panels
    line_max_frac: float = 0.012  # uniform lines up to this thickness (fraction of the side) are separators
    min_panel_side_frac: float = 0.06  # both sides of a panel >= this fraction of the figure's longer side
    min_panel_area_frac: float = 0.012  # a panel covers >= this fraction of the figure
    max_aspect: float = 10.0  # longer/shorter side of a panel
    merge_distance_frac: float = 0.12  # a minor piece farther than this from every panel stays alone
    max_depth: int = 10


@dataclass(frozen=True)
class Layout:
    """Panels in reading order, the small pieces left over, and the figure size; ``arrays`` keeps
    the analysis (content mask, gray, scale) for the label reads that need it again."""

    width: int
    height: int
    panels: tuple[Box, ...]
    minor: tuple[Box, ...]
    arrays: tuple[np.ndarray, np.ndarray, int] | None = field(default=None, compare=False, repr=False)

    @property
    def compound(self) -> bool:
        return len(self.panels) >= 2


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _area(b: Box) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _frame(rgb: Image.Image) -> np.ndarray:
    """The one-pixel frame as (n, 3) int32, read without converting the whole image."""
    w, h = rgb.size
    strips = [rgb.crop(b) for b in ((0, 0, w, 1), (0, h - 1, w, h), (0, 0, 1, h), (w - 1, 0, w, h))]
    return np.concatenate([np.asarray(s).reshape(-1, 3) for s in strips]).astype(np.int32)


def _background_rgb(frame: np.ndarray) -> np.ndarray:
    """Most common colour of the frame (white if the frame has no clear majority)."""
    light = (frame >= 230).all(axis=1)
    if light.mean() >= 0.25:  # figure pages are white; drawn panel borders may cover the frame
        return np.median(frame[light], axis=0).astype(np.int32)
    q = (frame // 16) * 16
    keys = q[:, 0] * 65536 + q[:, 1] * 256 + q[:, 2]
    vals, counts = np.unique(keys, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] < 0.3 * len(keys):
        return np.array([255, 255, 255], dtype=np.int32)
    return np.median(frame[keys == vals[top]], axis=0).astype(np.int32)


def _analysis_arrays(image: Image.Image, opts: LayoutOptions) -> tuple[np.ndarray, np.ndarray, int]:
    """(content mask, gray, scale): content = pixels that differ from the background colour."""
    return _analysis(image, opts)[:3]


def _analysis(image: Image.Image, opts: LayoutOptions) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """``_analysis_arrays`` and whether the background found is dark."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    bg = _background_rgb(_frame(rgb))
    # some channel farther than the tolerance from the background's: a per-band lookup table marks
    # such values 255, and the gray of a pixel is > 0 iff any band is marked (two passes in C)
    lut = [255 if abs(v - int(c)) > opts.bg_tolerance else 0 for c in bg for v in range(256)]
    content = np.asarray(rgb.point(lut).convert("L")) > 0
    gray = np.asarray(rgb.convert("L"))
    scale = max(1, int(np.ceil(max(content.shape) / opts.max_side)))
    if scale > 1:
        h, w = (content.shape[0] // scale) * scale, (content.shape[1] // scale) * scale
        content = content[:h, :w].reshape(h // scale, scale, w // scale, scale).any(axis=(1, 3))
        gray = gray[:h:scale, :w:scale]
    return content, gray, scale, int(bg.mean()) < 128


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True."""
    padded = np.concatenate(([False], flags.astype(bool, copy=False), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _separators(counts: np.ndarray, lines: np.ndarray, across: int, opts: LayoutOptions,
                white_gutters: bool = False) -> np.ndarray:
    """Per row (or column) of a piece: empty of content, part of a thin uniform line (a drawn
    panel border), part of a uniform white band of any width when ``white_gutters`` (the page
    gutters of a figure whose background was found dark: photos reaching the frame), or a thin
    near-empty line between two solid blocks (a hairline gutter between touching photos, with JPEG
    noise in it). ``counts`` = content pixels per row, ``lines`` = the piece's gray rows,
    ``across`` = the row length; the gray range is only computed for rows that are nearly all content."""
    empty = counts == 0
    if across < 8:
        return empty
    n = len(counts)
    max_line = max(2, int(opts.line_max_frac * n))
    solid = counts > 0.9 * across
    full = np.flatnonzero(solid)
    if full.size:
        uniform = np.zeros_like(empty)
        white = np.zeros_like(empty)
        rows = lines[full]
        low = rows.min(axis=1)
        uniform[full] = (rows.max(axis=1).astype(np.int16) - low) < 24
        white[full] = white_gutters & (low >= _WHITE)
        for s, e in _runs(uniform):
            if not (s == 0 or e == n) and (e - s <= max_line or white[s:e].all()):
                empty[s:e] = True
    if full.size < 4:  # a hairline needs solid lines on both sides
        return empty
    flank = max(2, int(_HAIRLINE_FLANK * n))
    for s, e in _runs((counts <= 0.03 * across) & ~empty):
        if (e - s <= max_line and s >= flank and e + flank <= n
                and solid[s - 2:s].all() and solid[e:e + 2].all()
                and counts[s - flank:s].mean() > 0.6 * across and counts[e:e + flank].mean() > 0.6 * across):
            empty[s:e] = True
    return empty


def _trim(content: np.ndarray, box: Box) -> Box | None:
    x1, y1, x2, y2 = box
    sub = content[y1:y2, x1:x2]
    rows = np.flatnonzero(sub.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(sub.any(axis=0))
    return (x1 + int(cols[0]), y1 + int(rows[0]), x1 + int(cols[-1]) + 1, y1 + int(rows[-1]) + 1)


def _interior_gutters(sep: np.ndarray, min_gap: int) -> list[tuple[int, int]]:
    return [(s, e) for s, e in _runs(sep) if s > 0 and e < len(sep) and e - s >= min_gap]


def _xy_cut(content: np.ndarray, gray: np.ndarray, box: Box, depth: int, opts: LayoutOptions, min_side: float,
            white_gutters: bool = False) -> list[Box]:
    # Content pixels per row and per column, counted once per piece: trimming empty rows leaves the
    # column counts unchanged (and vice versa), so the trimmed piece's counts are slices of these.
    bx1, by1, bx2, by2 = box
    sub = content[by1:by2, bx1:bx2].view(np.uint8)
    row_n, col_n = sub.sum(axis=1, dtype=np.int32), sub.sum(axis=0, dtype=np.int32)
    rows, cols = np.flatnonzero(row_n), np.flatnonzero(col_n)
    if rows.size == 0:
        return []
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    trimmed = x1, y1, x2, y2 = bx1 + c0, by1 + r0, bx1 + c1, by1 + r1
    # A piece narrower or lower than a panel can hold no panel: do not cut text into letters.
    if depth >= opts.max_depth or ((x2 - x1) < min_side and (y2 - y1) < min_side):
        return [trimmed]
    if (x2 - x1) < min_side or (y2 - y1) < min_side:
        return _split_strip(content, trimmed, col_n[c0:c1] if (x2 - x1) >= (y2 - y1) else row_n[r0:r1])
    sub_g = gray[y1:y2, x1:x2]
    row_g = _interior_gutters(_separators(row_n[r0:r1], sub_g, x2 - x1, opts, white_gutters), opts.min_gutter_px)
    col_g = _interior_gutters(_separators(col_n[c0:c1], sub_g.T, y2 - y1, opts, white_gutters), opts.min_gutter_px)
    if not row_g and not col_g:
        return [trimmed]
    widest_row = max((e - s for s, e in row_g), default=0) / (y2 - y1)
    widest_col = max((e - s for s, e in col_g), default=0) / (x2 - x1)
    cuts, horizontal = (row_g, True) if widest_row >= widest_col else (col_g, False)
    out: list[Box] = []
    prev = 0
    for s, e in [*cuts, (None, None)]:
        end = s if s is not None else (y2 - y1 if horizontal else x2 - x1)
        piece = (x1, y1 + prev, x2, y1 + end) if horizontal else (x1 + prev, y1, x1 + end, y2)
        out.extend(_xy_cut(content, gray, piece, depth + 1, opts, min_side, white_gutters))
        prev = e if e is not None else prev
    return out


def _split_strip(content: np.ndarray, box: Box, along: np.ndarray) -> list[Box]:
    """A text-line-like strip, cut only at word-sized gaps along its length (panel letters in a
    gutter row become their own pieces, a sentence stays whole-ish). ``along`` = content pixels
    per position along the strip's length."""
    x1, y1, x2, y2 = box
    horizontal = (x2 - x1) >= (y2 - y1)
    thick = (y2 - y1) if horizontal else (x2 - x1)
    min_gap = max(3, int(0.6 * thick))
    words: list[list[int]] = []
    for s, e in _runs(along > 0):
        if words and s - words[-1][1] < min_gap:
            words[-1][1] = e
        else:
            words.append([s, e])
    out: list[Box] = []
    for s, e in words:
        piece = (x1 + s, y1, x1 + e, y2) if horizontal else (x1, y1 + s, x2, y1 + e)
        t = _trim(content, piece)
        if t is not None:
            out.append(t)
    return out


def _is_major(b: Box, w: int, h: int, opts: LayoutOptions) -> bool:
    bw, bh = b[2] - b[0], b[3] - b[1]
    side = opts.min_panel_side_frac * max(w, h)
    return (
        bw >= side
        and bh >= side
        and bw * bh >= opts.min_panel_area_frac * w * h
        and max(bw, bh) <= opts.max_aspect * min(bw, bh)
    )


def _merge_overlapping(boxes: list[Box]) -> list[Box]:
    """Union boxes that overlap by more than a fifth of the smaller one, until none do."""
    boxes = list(boxes)
    changed = True
    while changed:
        changed = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
                iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
                if ix * iy > 0.2 * min(_area(a), _area(b)):
                    boxes[i] = _union(a, b)
                    del boxes[j]
                    changed = True
                    break
            if changed:
                break
    return boxes


def _absorb_minor(majors: list[Box], minors: list[Box], limit: float) -> tuple[list[Box], list[Box]]:
    """Grow each panel by the small pieces nearest to it (axis titles, tick labels, legends).

    A piece joins the nearest panel it would not blow up (union <= 1.6x the panel's area and not
    reaching into another panel); thin lines (drawn borders) join nothing. Vectorized over the
    panels: a figure can have dozens of panels and hundreds of pieces."""
    panels = np.array(majors, dtype=np.int64)
    panel_area = (panels[:, 2] - panels[:, 0]) * (panels[:, 3] - panels[:, 1])
    grown = panels.copy()
    for m in sorted(minors, key=lambda b: (b[1], b[0])):
        if min(m[2] - m[0], m[3] - m[1]) <= 3:
            continue
        dx = np.maximum(0, np.maximum(panels[:, 0], m[0]) - np.minimum(panels[:, 2], m[2]))
        dy = np.maximum(0, np.maximum(panels[:, 1], m[1]) - np.minimum(panels[:, 3], m[3]))
        dist = dx + dy
        union = np.concatenate([np.minimum(grown[:, :2], m[:2]), np.maximum(grown[:, 2:], m[2:])], axis=1)
        area_u = (union[:, 2] - union[:, 0]) * (union[:, 3] - union[:, 1])
        area_g = (grown[:, 2] - grown[:, 0]) * (grown[:, 3] - grown[:, 1])
        cand = np.flatnonzero((dist <= limit) & (area_u <= 1.6 * area_g))
        if cand.size == 0:
            continue
        u, p = union[cand][:, None, :], panels[None, :, :]
        ix = np.maximum(0, np.minimum(u[..., 2], p[..., 2]) - np.maximum(u[..., 0], p[..., 0]))
        iy = np.maximum(0, np.minimum(u[..., 3], p[..., 3]) - np.maximum(u[..., 1], p[..., 1]))
        intrudes = ix * iy > 0.1 * panel_area[None, :]
        intrudes[np.arange(cand.size), cand] = False  # a panel's own area does not count
        fits = cand[~intrudes.any(axis=1)]
        if fits.size:
            k = int(fits[np.argmin(dist[fits])])  # nearest; ties go to the first panel
            grown[k] = union[k]
    return [tuple(int(v) for v in g) for g in grown], list(minors)  # type: ignore[misc]


def reading_order(boxes: list[Box]) -> list[Box]:
    """Row-major order: rows are panels whose tops lie within half a panel height of the topmost."""
    rest = sorted(boxes, key=lambda b: (b[1], b[0]))
    out: list[Box] = []
    while rest:
        anchor = min(rest, key=lambda b: (b[1], b[0]))
        limit = anchor[1] + 0.5 * (anchor[3] - anchor[1])
        row = [b for b in rest if b[1] < limit]
        row.sort(key=lambda b: (b[0], b[1]))
        out.extend(row)
        rest = [b for b in rest if b not in row]
    return out


def column_order(boxes: list[Box]) -> list[Box]:
    """Column-major order (down each column, columns left to right): ``reading_order`` of the
    transposed boxes, so columns are grouped the way rows are."""
    flip = {(b[1], b[0], b[3], b[2]): b for b in boxes}
    return [flip[t] for t in reading_order(list(flip))]


def analyze_layout(image: Image.Image, opts: LayoutOptions | None = None) -> Layout:
    """Split ``image`` into panels by gutters and border lines; one panel means a single figure."""
    opts = opts or LayoutOptions()
    w, h = image.size
    if w < 8 or h < 8:
        return Layout(w, h, ((0, 0, w, h),), ())
    content, gray, scale, dark = _analysis(image, opts)
    arrays = (content, gray, scale)
    ch, cw = content.shape
    leaves = _xy_cut(content, gray, (0, 0, cw, ch), 0, opts, opts.min_panel_side_frac * max(cw, ch), dark)
    majors = [b for b in leaves if _is_major(b, cw, ch, opts)]
    minors = [b for b in leaves if b not in majors]
    if len(majors) <= 1:
        return Layout(w, h, ((0, 0, w, h),), tuple(_scale(b, scale, w, h) for b in minors), arrays)
    grown, minors = _absorb_minor(majors, minors, opts.merge_distance_frac * max(cw, ch))
    panels = reading_order(_merge_overlapping(grown))
    if len(panels) <= 1:
        return Layout(w, h, ((0, 0, w, h),), tuple(_scale(b, scale, w, h) for b in minors), arrays)
    return Layout(w, h, tuple(_scale(b, scale, w, h) for b in panels), tuple(_scale(b, scale, w, h) for b in minors),
                  arrays)


def _scale(b: Box, s: int, w: int, h: int) -> Box:
    return (min(w, b[0] * s), min(h, b[1] * s), min(w, b[2] * s), min(h, b[3] * s))
