"""Read panel labels ("a", "B", "(c)") printed on a figure, by OCR of small candidate regions.

Why only small regions: OCR of a whole figure costs a second and reads every tick label; panel
labels sit at panel corners or as tiny isolated pieces in the gutters. We crop those candidates,
normalise each to dark-on-white at a fixed height, paste them into one mosaic and OCR it once
per figure.

The OCR runs in-process: each thread keeps one tesseract engine (``tesserocr``, built against the
system's libtesseract, the library the ``tesseract`` command uses, so the reads are the command's),
made on first use and reused for every figure; a process start and model load per figure cost
about ten times the recognition itself. Without ``tesserocr`` the ``tesseract`` command is run
once per figure (``pytesseract``); without either ``detect_labels`` returns no labels and the
caller falls back to reading order with a lower confidence.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from .panels import Box

__all__ = ["LabelHit", "ocr_available", "ocr_engine", "candidate_regions", "label_glyphs", "detect_labels"]

_CELL_H = 64  # mosaic row height; a candidate is scaled to 40 px of text height
_TEXT_H = 40
# one letter, maybe bracketed; a bold capital is sometimes read twice ("Cc")
_RE_LABEL = re.compile(r"^\(?([A-Za-z])(?i:\1)?\)?[.:]?$")
_TIMEOUT_MS = 10_000  # one mosaic; a read that takes longer gives no labels
# A line read with mean confidence under this is read again inverted. Candidates are already dark on
# white: at tesseract's 0.7 that second read cost a third of the OCR time and, over the sample build's
# mosaics, never won for lines between 0.5 and 0.7.
_INVERT_THRESHOLD = 0.5
_engines = threading.local()  # a tesseract engine is not thread-safe: one per thread


@dataclass(frozen=True)
class LabelHit:
    """A label read on the figure: lower-case text, its candidate box, OCR confidence in [0, 1]."""

    label: str
    box: Box
    confidence: float


def ocr_engine():  # -> tesserocr.PyTessBaseAPI | None
    """This thread's in-process tesseract engine (English, one block of text: psm 6), made on the
    first call and kept; None when ``tesserocr`` is missing or finds no English tessdata."""
    if not hasattr(_engines, "api"):
        _engines.api = _new_engine()
    return _engines.api


def _new_engine():  # -> tesserocr.PyTessBaseAPI | None
    try:
        import tesserocr

        api = tesserocr.PyTessBaseAPI(lang="eng", psm=tesserocr.PSM.SINGLE_BLOCK)
        api.SetVariable("invert_threshold", str(_INVERT_THRESHOLD))
        return api
    except (ImportError, RuntimeError):
        return None


@lru_cache(maxsize=1)
def _openmp() -> ctypes.CDLL | None:
    """The process's OpenMP runtime, the one libtesseract calls (torch's copy when torch loaded first)."""
    try:
        return ctypes.CDLL("libgomp.so.1")
    except OSError:
        return None


@contextmanager
def _serial_openmp() -> Iterator[None]:
    """Every OpenMP parallel region runs on one thread while tesseract reads: its LSTM asks for 4
    threads per layer, which on one small mosaic cost ~5x the CPU (they spin while they wait) and
    workers already use every core. OMP_THREAD_LIMIT cannot do it: the runtime reads it when it
    loads, which in a worker is when spaCy imports torch. Restored after the read, so other stages
    keep their threads."""
    omp = _openmp()
    if omp is None:
        yield
        return
    levels = omp.omp_get_max_active_levels()
    omp.omp_set_max_active_levels(0)
    try:
        yield
    finally:
        omp.omp_set_max_active_levels(levels)


@lru_cache(maxsize=1)
def _command_available() -> bool:
    try:
        import pytesseract  # noqa: F401
    except ImportError:
        return False
    return shutil.which("tesseract") is not None


def ocr_available() -> bool:
    """True when labels can be read: the in-process engine, or pytesseract and the tesseract command."""
    return ocr_engine() is not None or _command_available()


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


def label_glyphs(content: np.ndarray, scale: int = 1, limit: int | None = None) -> list[Box]:
    """Isolated letter-sized blobs anywhere on the figure, tallest first (at most ``limit``): a panel
    label printed inside a panel, or in a panel that layout analysis did not separate, is one
    connected component with background all around it, and panel labels are usually the figure's
    largest letters (OCR time grows with the number of blobs). ``content`` = the layout's content
    mask (at ``scale`` times reduced size)."""
    from scipy import ndimage

    lab, _ = ndimage.label(content, structure=np.ones((3, 3), dtype=bool))
    side = max(content.shape)
    integral = np.pad(content.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    out: list[Box] = []
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        y1, y2, x1, x2 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        h, w = y2 - y1, x2 - x1
        if not (8 <= h * scale and h <= 0.06 * side and max(3, 0.15 * h) <= w <= 1.3 * h):
            continue
        m = max(2, int(0.35 * h))  # a margin of background a third of the letter's height
        ya, yb, xa, xb = max(0, y1 - m), min(content.shape[0], y2 + m), max(0, x1 - m), min(content.shape[1], x2 + m)
        around = integral[yb, xb] - integral[ya, xb] - integral[yb, xa] + integral[ya, xa]
        if around == int(np.count_nonzero(lab[sl] == k)):
            out.append((x1 * scale, y1 * scale, x2 * scale, y2 * scale))
    out.sort(key=lambda b: (b[1] - b[3], b[1], b[0]))
    return out[:limit]


def _near_top_left(m: Box, p: Box, limit: float) -> bool:
    cx, cy = (m[0] + m[2]) / 2, (m[1] + m[3]) / 2
    return p[0] - limit <= cx <= p[0] + limit and p[1] - limit <= cy <= p[1] + limit


def _normalise(image: Image.Image, box: Box) -> Image.Image:
    """The candidate with a small margin, scaled smoothly to ~_TEXT_H, binarised, dark on white."""
    pad = 3
    w, h = image.size  # a margin beyond the image would read as black: clamp, then pad with the page
    crop = image.crop((max(0, box[0] - pad), max(0, box[1] - pad), min(w, box[2] + pad), min(h, box[3] + pad)))
    crop = ImageOps.expand(crop.convert("L"), border=pad, fill=int(np.asarray(crop.convert("L")).max()))
    scale = _TEXT_H / max(1, crop.height)
    crop = crop.resize((max(1, min(int(crop.width * scale), 3 * _TEXT_H)), _TEXT_H), Image.LANCZOS)
    g = np.asarray(crop, dtype=np.uint8)
    dark = g < (int(g.min()) + int(g.max())) / 2
    if dark.mean() > 0.5:
        dark = ~dark
    img = Image.fromarray(np.where(dark, 0, 255).astype(np.uint8))
    return ImageOps.expand(img, border=(_CELL_H - _TEXT_H) // 2, fill=255)


def detect_labels(image: Image.Image, candidates: list[Box], min_confidence: float = 0.5) -> list[LabelHit]:
    """OCR every candidate in one tesseract read; keep single-letter reads."""
    if not candidates or not ocr_available():
        return []
    cells = [_normalise(image, b) for b in candidates]
    width = max(c.width for c in cells) + 20
    mosaic = Image.new("L", (width, _CELL_H * len(cells)), 255)
    for i, c in enumerate(cells):
        mosaic.paste(c, (10, i * _CELL_H))
    best: dict[int, LabelHit] = {}
    for text, conf, top, height in _read_words(mosaic):
        m = _RE_LABEL.match(text.strip())
        conf = conf / 100.0
        if not m or conf < min_confidence:
            continue
        row = int((top + height / 2) // _CELL_H)
        if 0 <= row < len(candidates) and (row not in best or best[row].confidence < conf):
            best[row] = LabelHit(m.group(1).lower(), candidates[row], conf)
    return [best[k] for k in sorted(best)]


def _read_words(mosaic: Image.Image) -> list[tuple[str, int, int, int]]:
    """(text, confidence in whole percent, top, height) of each word tesseract reads on the mosaic:
    tesseract's TSV, the same from the engine and the command; [] when the read fails or times out."""
    api = ocr_engine()
    if api is not None:
        api.SetImage(mosaic)
        with _serial_openmp():
            tsv = api.GetTSVText(0) if api.Recognize(_TIMEOUT_MS) else ""
        rows = [line.split("\t") for line in tsv.splitlines()]
    else:
        import pytesseract

        os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # the command's OpenMP, for the reason above
        try:
            tsv = pytesseract.image_to_data(mosaic, config=f"--psm 6 -c invert_threshold={_INVERT_THRESHOLD}",
                                            timeout=_TIMEOUT_MS // 1000)
        except (RuntimeError, pytesseract.TesseractError):
            return []
        rows = [line.split("\t") for line in tsv.splitlines()[1:]]
    # columns: level page block par line word left top width height conf text; level 5 = a word
    return [(r[11], int(float(r[10])), int(r[7]), int(r[9])) for r in rows if len(r) == 12 and r[0] == "5"]
