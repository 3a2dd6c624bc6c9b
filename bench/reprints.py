"""Reprints of real articles: the same article under new ids with every figure transformed.

A reprint is what deduplication meets in a real corpus: a figure reused by another article
(a review, a reprint, a preprint and its journal version), re-encoded, resized or recropped by the
publisher. The articles are the real shared packages; only the ids and the image bytes change,
and that change is synthetic (stated here, where it is made).

``counterpart(key)`` maps a sample key of either copy to the key the other copy gives the same
figure or panel: the ground truth of ``bench/dedup_reprint_eval.py`` and of the dedup tests.
(The pipeline may cut a transformed figure into other panels than the original; such panels have
no counterpart key among the samples.)
"""
from __future__ import annotations

import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif")
_ARTICLE_ID = re.compile(rb"(<article-id[^>]*>)([^<]+)(</article-id>)")


@dataclass(frozen=True)
class Scenario:
    """One way a publisher changes a figure: a name and what it does to the image (and its format)."""

    name: str
    apply: Callable[[Image.Image], Image.Image]
    fmt: str = "JPEG"          # saved as JPEG (quality) or PNG
    quality: int = 85


def _resize(scale: float) -> Callable[[Image.Image], Image.Image]:
    return lambda img: img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                                  Image.Resampling.BICUBIC)


def _crop(pixels: int) -> Callable[[Image.Image], Image.Image]:
    return lambda img: img.crop((pixels, pixels, img.width - pixels, img.height - pixels))


def _same(img: Image.Image) -> Image.Image:
    return img


SCENARIOS = (
    Scenario("resize_0.5", _resize(0.5)),
    Scenario("resize_0.7", _resize(0.7)),
    Scenario("resize_0.9", _resize(0.9)),
    Scenario("jpeg_q40", _same, quality=40),
    Scenario("jpeg_q90", _same, quality=90),
    Scenario("recrop_3px", _crop(3)),
    Scenario("to_png", _same, fmt="PNG"),
    Scenario("grayscale", lambda img: img.convert("L").convert("RGB")),
    Scenario("reprint_0.8_q60", _resize(0.8), quality=60),   # the reported case: 0.8x, JPEG quality 60
)


def transform_bytes(data: bytes, scenario: Scenario) -> tuple[bytes, str]:
    """The transformed image and its extension."""
    with Image.open(io.BytesIO(data)) as im:
        img = ImageOps.exif_transpose(im).convert("RGB")
    out = scenario.apply(img)
    buf = io.BytesIO()
    if scenario.fmt == "PNG":
        out.save(buf, "PNG")
        return buf.getvalue(), ".png"
    out.save(buf, "JPEG", quality=scenario.quality)
    return buf.getvalue(), ".jpg"


def make_reprint(src: Path, dest: Path, scenario: Scenario, tag: str = "reprint") -> Path:
    """Copy an article folder under new article ids (``<article-id>`` values prefixed with ``tag``),
    every figure image transformed by ``scenario``; XML and other files unchanged otherwise."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.rglob("*")):
        if f.is_dir():
            continue
        target = dest / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix.lower() in (".xml", ".nxml"):
            target.write_bytes(_ARTICLE_ID.sub(lambda m: m.group(1) + tag.encode() + b"-" + m.group(2) + m.group(3),
                                               f.read_bytes()))
        elif f.suffix.lower() in IMAGE_SUFFIXES and f.stat().st_size > 10_000:  # figures, not formula glyphs
            data, ext = transform_bytes(f.read_bytes(), scenario)
            target.with_suffix(ext).write_bytes(data)
        else:
            shutil.copyfile(f, target)
    return dest


def counterpart(key: str, tag: str = "reprint") -> str:
    """The other copy's key of the same figure or panel: article ids gain ``tag-`` in the reprint,
    and keys begin with the article id's slug."""
    prefix = f"{tag}-"
    return key[len(prefix):] if key.startswith(prefix) else prefix + key
