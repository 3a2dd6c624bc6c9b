"""Read panel labels ("a", "B", "(c)") printed on a figure, by OCR of small candidate regions.

Why only small regions: OCR of a whole figure costs a second and reads every tick label; panel
labels sit at panel corners or as tiny isolated pieces in the gutters. We crop those candidates,
normalise each to dark-on-white at a fixed height, paste them into one mosaic and call tesseract
once per figure (one process start instead of one per candidate).

The OCR is optional: without the ``tesseract`` binary (or ``pytesseract``) ``detect_labels``
returns no labels and the caller falls back to reading order with a lower confidence.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps

from .panels import Box

__all__ = ["LabelHit", "ocr_available", "candidate_regions", "detect_labels"]

_CELL_H = 64  # mosaic row height; a candidate is scaled to 40 px of text height
_TEXT_H = 40
_RE_LABEL = re.compile(r"^\(?([A-Za-z])\)?[.:]?$")


@dataclass(frozen=True)
class LabelHit:
    """A label read on the figure: lower-case text, its candidate box, OCR confidence in [0, 1]."""

    label: str
    box: Box
    confidence: float


@lru_cache(maxsize=1)
def ocr_available() -> bool:
    """True when pytesseract imports and the tesseract binary is on PATH."""
    try:
        import pytesseract  # noqa: F401
    except ImportError:
        return False
    return shutil.which("tesseract") is not None


def candidate_regions(panels: tuple[Box, ...], minor: tuple[Box, ...], size: tuple[int, int]) -> list[Box]:
    """Tiny pieces near a panel's top-left corner, plus each panel's top-left corner itself."""
    w, h = size
    side = max(w, h)
    out: list[Box] = []
    for m in minor:
        mw, mh = m[2] - m[0], m[3] - m[1]
        if 3 <= mw <= 0.06 * side and 5 <= mh <= 0.06 * side and mw <= 2.5 * mh:
            if any(_near_top_left(m, p, 0.08 * side) for p in panels):
                out.append(m)
    for p in panels:
        pw, ph = p[2] - p[0], p[3] - p[1]
        s = int(min(max(0.14 * min(pw, ph), 18), 60, pw, ph))
        out.append((p[0], p[1], p[0] + s, p[1] + s))
    return list(dict.fromkeys(out))


def _near_top_left(m: Box, p: Box, limit: float) -> bool:
    cx, cy = (m[0] + m[2]) / 2, (m[1] + m[3]) / 2
    return p[0] - limit <= cx <= p[0] + limit and p[1] - limit <= cy <= p[1] + limit


def _normalise(image: Image.Image, box: Box) -> Image.Image:
    """The candidate with a small margin, scaled smoothly to ~_TEXT_H, binarised, dark on white."""
    pad = 3
    crop = image.crop((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad)).convert("L")
    scale = _TEXT_H / max(1, crop.height)
    crop = crop.resize((max(1, min(int(crop.width * scale), 3 * _TEXT_H)), _TEXT_H), Image.LANCZOS)
    g = np.asarray(crop, dtype=np.uint8)
    dark = g < (int(g.min()) + int(g.max())) / 2
    if dark.mean() > 0.5:
        dark = ~dark
    img = Image.fromarray(np.where(dark, 0, 255).astype(np.uint8))
    return ImageOps.expand(img, border=(_CELL_H - _TEXT_H) // 2, fill=255)


def detect_labels(image: Image.Image, candidates: list[Box], min_confidence: float = 0.5) -> list[LabelHit]:
    """OCR every candidate in one tesseract call; keep single-letter reads."""
    if not candidates or not ocr_available():
        return []
    import pytesseract

    cells = [_normalise(image, b) for b in candidates]
    width = max(c.width for c in cells) + 20
    mosaic = Image.new("L", (width, _CELL_H * len(cells)), 255)
    for i, c in enumerate(cells):
        mosaic.paste(c, (10, i * _CELL_H))
    try:
        data = pytesseract.image_to_data(
            mosaic, config="--psm 6", output_type=pytesseract.Output.DICT, timeout=10
        )
    except (RuntimeError, pytesseract.TesseractError):
        return []
    best: dict[int, LabelHit] = {}
    for text, conf, top, height in zip(data["text"], data["conf"], data["top"], data["height"]):
        m = _RE_LABEL.match(text.strip())
        conf = float(conf) / 100.0
        if not m or conf < min_confidence:
            continue
        row = int((top + height / 2) // _CELL_H)
        if 0 <= row < len(candidates) and (row not in best or best[row].confidence < conf):
            best[row] = LabelHit(m.group(1).lower(), candidates[row], conf)
    return [best[k] for k in sorted(best)]
