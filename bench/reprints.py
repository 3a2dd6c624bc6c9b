"""Reprints of real articles: the same article under new ids with every figure transformed.

A reprint is what deduplication meets in a real corpus: a figure reused by another article
(a review, a reprint, a preprint and its journal version), re-encoded, resized or recropped by the
publisher. The articles are the real shared packages; only the ids and the image bytes change,
and that change is synthetic (stated here, where it is made).

``counterpart(key)`` maps a figure's key in either copy to the other copy's key of the same figure.
``panel_counterparts`` gives the same for panels by geometry: the other copy's panel covering the
same region of that figure. Keys alone cannot say it, since a degraded copy whose panel labels
cannot be read is labelled in reading order, which need not be the original's. Both are the ground
truth of ``bench/dedup_reprint_eval.py`` and of the dedup tests. (The pipeline may cut a
transformed figure into other panels than the original; such panels have no counterpart.)
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


def panel_counterparts(out: Path, work: Path | None = None, tag: str = "reprint",
                       min_iou: float = 0.5) -> dict[str, str]:
    """Panel key -> the other copy's panel with the largest overlap (at least ``min_iou``) in the
    counterpart figure, boxes relative to their figure (every scenario keeps the layout up to scale
    or a 3 px crop). Read from the release's staged records (``work``: the build's work folder)."""
    import pyarrow.parquet as pq

    from medcorpus.manifests import layout
    from medcorpus.pipelines.staging import Staging
    from medcorpus.transforms.panels import iou

    release = layout.resolve(str(out))
    tokens = pq.read_table(f"{release.url}/manifest/units.parquet", columns=["token"]).column("token").to_pylist()
    staging = Staging(str((work or out / "_work") / "staging"))
    rows = [s.row for t in tokens for s in staging.read_meta(t).samples]
    size = {r["key"]: (r["width"], r["height"]) for r in rows if not r.get("parent_key")}
    panels: dict[str, list[tuple[str, tuple[float, ...]]]] = {}
    for r in rows:
        if r.get("parent_key") and r.get("panel_box") and r["parent_key"] in size:
            w, h = size[r["parent_key"]]
            x1, y1, x2, y2 = r["panel_box"]
            panels.setdefault(r["parent_key"], []).append((r["key"], (x1 / w, y1 / h, x2 / w, y2 / h)))
    out_map: dict[str, str] = {}
    for figure, own in panels.items():
        other = panels.get(counterpart(figure, tag), [])
        for key, box in own:
            best = max(other, key=lambda o: iou(box, o[1]), default=None)
            if best is not None and iou(box, best[1]) >= min_iou:
                out_map[key] = best[0]
    return out_map


def is_panel_key(key: str) -> bool:
    """A panel's key ends in ``_p`` and its label (``..._fig10_pa``); a figure id may itself hold
    ``_p`` (``..._pone-0056489-g001``), never a label without a hyphen at the end."""
    return re.search(r"_p[^_\-]+$", key) is not None


def counterpart(key: str, tag: str = "reprint") -> str:
    """The other copy's key of the same figure or panel: article ids gain ``tag-`` in the reprint,
    and keys begin with the article id's slug."""
    prefix = f"{tag}-"
    return key[len(prefix):] if key.startswith(prefix) else prefix + key
