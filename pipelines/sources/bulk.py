"""``bulk:PATH``: legacy PMC OA packages — bulk XML ``.tar.gz`` and per-article ``PMC<id>.tar.gz``.

Archives are hostile until proven otherwise: member names that escape their folder, links and
devices are refused, and no member may claim or deliver more than ``max_member_bytes`` (a bomb is
cut off while reading, not after). Bulk XML packages are read once, sequentially, into the work
directory (a gzip stream cannot seek); per-article packages are read into memory when opened.
"""
from __future__ import annotations

import hashlib
import re
import tarfile
from pathlib import Path
from typing import IO, Iterator

from medcorpus.files import atomic_write
from medcorpus.pipelines.failures import MissingPath
from medcorpus.pipelines.sources.base import ArticlePackage, meta_tuple
from medcorpus.pipelines.sources.local import is_within
from medcorpus.schemas.records import SkipError, UnitRef

_ARTICLE_PACKAGE = re.compile(r"(PMC\d+)\.tar\.gz$")
_XML = (".xml", ".nxml")


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, cap: int) -> bytes:
    if not member.isfile():
        raise SkipError("archive_unsafe_member", f"{member.name}: not a regular file")
    if not is_within("/x", member.name):
        raise SkipError("archive_unsafe_member", f"{member.name}: path escapes the archive")
    if member.size > cap:
        raise SkipError("archive_member_too_large", f"{member.name}: {member.size} bytes > {cap}")
    f: IO[bytes] | None = tar.extractfile(member)
    data = f.read(cap + 1) if f else b""
    if len(data) > cap:
        raise SkipError("archive_member_too_large", f"{member.name}: more than {cap} bytes")
    return data


class BulkSource:
    name = "bulk"
    parser = "jats"  # journal articles: the JATS parse stage

    def __init__(self, path: str, *, cache_dir: str, max_member_bytes: int = 512 * 1024 * 1024) -> None:
        self.path = Path(path).expanduser().resolve()
        self.cache_dir = Path(cache_dir)
        self.max_member_bytes = max_member_bytes
        if not self.path.exists():
            raise MissingPath(f"bulk source: {self.path} does not exist",
                              "--source bulk:PATH names a PMC bulk archive (.tar.gz) or a folder of them")

    def _archives(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        return sorted(p for p in self.path.rglob("*.tar.gz") if p.is_file())

    def list_units(self) -> Iterator[UnitRef]:
        units: list[UnitRef] = []
        for archive in self._archives():
            m = _ARTICLE_PACKAGE.search(archive.name)
            if m:
                st = archive.stat()
                units.append(UnitRef(self.name, m.group(1), str(archive), f"{st.st_size}-{st.st_mtime_ns}",
                                     meta_tuple({"pmcid": m.group(1), "kind": "package"})))
            else:
                units.extend(self._explode_bulk(archive))
        yield from sorted(units, key=lambda u: u.unit_id)

    def _explode_bulk(self, archive: Path) -> list[UnitRef]:
        """Write each XML member once to the work dir (reruns only scan); unsafe members become units that fail."""
        target = self.cache_dir / "bulk" / hashlib.sha1(str(archive).encode()).hexdigest()[:16]
        target.mkdir(parents=True, exist_ok=True)
        units: list[UnitRef] = []
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.isdir() or not member.name.lower().endswith(_XML):
                    continue
                stem = Path(member.name).stem
                dest = target / (re.sub(r"[^A-Za-z0-9._-]", "_", stem) + ".xml")
                meta = {"pmcid": stem if re.fullmatch(r"PMC\d+", stem) else None, "kind": "bulk-xml",
                        "archive": archive.name, "member": member.name}
                if not dest.exists():
                    try:
                        data = _read_member(tar, member, self.max_member_bytes)
                    except SkipError as exc:
                        meta["error"] = f"{exc.reason}|{exc.detail}"
                        units.append(UnitRef(self.name, stem, "", "error", meta_tuple(meta)))
                        continue
                    atomic_write(dest, data)
                if dest.exists():
                    fp = hashlib.md5(dest.read_bytes()).hexdigest()
                    units.append(UnitRef(self.name, stem, str(dest), fp, meta_tuple(meta)))
        return units

    def open(self, unit: UnitRef) -> ArticlePackage:
        meta = unit.meta_dict()
        if "error" in meta:
            reason, _, detail = meta["error"].partition("|")
            raise SkipError(reason, detail)
        if meta.get("kind") == "package":
            return self._open_package(unit)
        xml = Path(unit.locator).read_bytes()
        return ArticlePackage(unit=unit, xml=xml, media_names=[], source=self, no_media=True,
                              source_url=f"{meta.get('archive')}#{meta.get('member')}",
                              source_md5=hashlib.md5(xml).hexdigest())

    def _open_package(self, unit: UnitRef) -> ArticlePackage:
        xml_name, xml, media = None, b"", {}
        try:
            with tarfile.open(unit.locator, "r:gz") as tar:
                for member in tar:
                    if member.isdir():
                        continue
                    data = _read_member(tar, member, self.max_member_bytes)
                    name = member.name.split("/", 1)[-1] if "/" in member.name else member.name
                    if name.lower().endswith(_XML) and xml_name is None:
                        xml_name, xml = name, data
                    else:
                        media[name] = data
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise SkipError("archive_corrupt", f"{Path(unit.locator).name}: {exc}") from None
        if xml_name is None:
            raise SkipError("xml_not_found", f"no XML in {Path(unit.locator).name}")
        return ArticlePackage(unit=unit, xml=xml, media_names=sorted(media), source=self, media=media,
                              source_url=Path(unit.locator).as_uri(), source_md5=hashlib.md5(xml).hexdigest())

    def read_media(self, unit: UnitRef, name: str) -> bytes:
        raise SkipError("image_not_found", f"{name} is not in the package")
