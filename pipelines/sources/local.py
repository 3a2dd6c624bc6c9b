"""``local:PATH``: a directory of article folders (XML + media), as mirrors and fixtures lay them out.

An article folder holds one article XML; MECA packages name it in ``manifest.xml`` (under
``content/``), Texture DAR packages in ``manifest.xml``'s ``<document path>``; otherwise the one XML
whose root is ``<article>`` is taken. Every other file is a media file, named relative to the folder.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Iterator

from medcorpus.pipelines.failures import MissingPath
from medcorpus.pipelines.sources.base import ArticlePackage, meta_tuple
from medcorpus.schemas.records import SkipError, UnitRef
from medcorpus.transforms.jats import wide_codec

_PACKAGE_FILES = {"manifest.xml", "transfer.xml", "directives.xml"}
_ARTICLE_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?article[\s>]")
_MECA_ITEM = re.compile(rb'<item[^>]*type="article"[^>]*>.*?<instance[^>]*href="([^"]+\.(?:xml|nxml))"', re.S)
_DAR_DOC = re.compile(rb'<document[^>]*path="([^"]+)"')


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _head(path: Path) -> bytes:
    """The start of an XML file, as ASCII-compatible bytes whatever its encoding (UTF-16 too)."""
    head = path.read_bytes()[:20_000]
    codec = wide_codec(head)
    return head.decode(codec, "ignore").encode("utf-8") if codec else head


def find_article_xml(folder: Path, files: list[str]) -> str:
    manifest = next((f for f in files if f.lower() == "manifest.xml"), None)
    if manifest:
        head = (folder / manifest).read_bytes()[:200_000]
        m = _MECA_ITEM.search(head) or _DAR_DOC.search(head)
        if m and m.group(1).decode() in files:
            return m.group(1).decode()
    candidates = [
        f for f in files
        if f.lower().endswith((".xml", ".nxml")) and Path(f).name.lower() not in _PACKAGE_FILES
        and _ARTICLE_ROOT.search(_head(folder / f))
    ]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise SkipError("xml_not_found", f"no article XML in {folder.name}")
    raise SkipError("xml_ambiguous", f"several article XMLs in {folder.name}: {candidates}")


class LocalSource:
    name = "local"
    parser = "jats"  # journal articles: the JATS parse stage

    def __init__(self, path: str) -> None:
        self.root = Path(path).expanduser().resolve()
        if not self.root.is_dir():
            raise MissingPath(f"local source: {self.root} is not a directory",
                              "--source local:PATH names a folder of article folders (or one article folder)")

    def _folders(self) -> list[Path]:
        subdirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if subdirs:
            return subdirs
        return [self.root]  # a single article folder

    def list_units(self) -> Iterator[UnitRef]:
        for folder in self._folders():
            stat = [(f, (folder / f).stat().st_size) for f in _files(folder)]
            fingerprint = hashlib.sha1(repr(stat).encode()).hexdigest()
            yield UnitRef(source=self.name, unit_id=folder.name, locator=str(folder),
                          fingerprint=fingerprint, meta=meta_tuple({"pmcid": _pmcid_hint(folder.name)}))

    def open(self, unit: UnitRef) -> ArticlePackage:
        folder = Path(unit.locator)
        files = _files(folder)
        xml_name = find_article_xml(folder, files)
        xml = (folder / xml_name).read_bytes()
        media = [f for f in files if f != xml_name and not f.lower().endswith((".xml", ".nxml"))]
        return ArticlePackage(unit=unit, xml=xml, media_names=media, source=self,
                              source_url=(folder / xml_name).as_uri(), source_md5=hashlib.md5(xml).hexdigest())

    def read_media(self, unit: UnitRef, name: str) -> bytes:
        folder = Path(unit.locator)
        path = (folder / name).resolve()
        if folder.resolve() not in path.parents or not path.is_file():
            raise SkipError("image_not_found", f"{name} is not a file of {folder.name}")
        return path.read_bytes()


def _pmcid_hint(name: str) -> str | None:
    m = re.fullmatch(r"(PMC\d+)(?:\.\d+)?", name)
    return m.group(1) if m else None


def is_within(base: str, name: str) -> bool:
    """True when joining ``name`` under ``base`` cannot escape it (archive member names)."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return False
    joined = os.path.normpath(os.path.join(base, name))
    return joined == base or joined.startswith(base.rstrip(os.sep) + os.sep)
