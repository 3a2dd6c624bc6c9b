"""Resolve a <graphic xlink:href> to one of the media files an article ships.

Hrefs come extension-less (eLife ``elife-19405-fig1``), as PLOS DOIs (``info:doi/10.1371/
journal.pone.0038869.g001`` → ``pone.0038869.g001.tif``) or as plain names, sometimes under a
MECA ``content/`` folder. Several renditions of one stem (``.jpg`` and ``.tif``) are the same
figure and the best is taken; anything less certain is an ``image_not_found`` error, never a guess.
"""
from __future__ import annotations

import posixpath
from typing import Sequence

from medcorpus.schemas.records import SkipError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif", ".bmp", ".webp")
# Full-resolution, lossless-or-original renditions first; GIF previews last.
_PREFERENCE = {ext: i for i, ext in enumerate((".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"))}


def _split(name: str) -> tuple[str, str]:
    base = posixpath.basename(name)
    stem, ext = posixpath.splitext(base)
    if ext.lower() in IMAGE_EXTENSIONS:
        return stem, ext.lower()
    return base, ""


def _best(candidates: list[str]) -> str:
    stems = {_split(c)[0].lower() for c in candidates}
    if len(stems) > 1:
        raise SkipError("image_ambiguous", f"several files match: {sorted(candidates)}")
    return min(candidates, key=lambda c: (_PREFERENCE.get(_split(c)[1], 99), c))


def resolve_graphic(href: str, media_names: Sequence[str]) -> str:
    images = [m for m in media_names if _split(m)[1]]
    href_path = href.split("info:doi/", 1)[-1]
    href_base = posixpath.basename(href_path)
    exact = [m for m in images if m == href_path or posixpath.basename(m) == href_base]
    if exact:
        return _best(exact)
    stem, _ = _split(href_base)
    by_stem = [m for m in images if _split(m)[0] == stem]
    if not by_stem:
        by_stem = [m for m in images if _split(m)[0].lower() == stem.lower()]
    if by_stem:
        return _best(by_stem)
    # PLOS DOI hrefs: journal.pone.0038869.g001 is stored as pone.0038869.g001.* or g001.*,
    # i.e. as a dotted suffix of the href's stem
    tail = [m for m in images if stem.endswith("." + _split(m)[0])]
    if tail:
        return _best(tail)
    raise SkipError("image_not_found", f"no media file matches href {href!r}")
