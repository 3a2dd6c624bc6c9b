"""``dicom:PATH``: DICOM files, folder trees, a DICOMDIR, .zip/.tar archives of them; local or an
fsspec URL. A unit is a series (SeriesInstanceUID).

Nothing that could identify a patient leaves the source: a unit's id is a keyed pseudonym of its
series UID, its locator and metadata are empty (file and folder names are often patient names), and
which files make a series is kept in memory (``index``), travelling with the pickled source to the
workers; a worker that gets the source without it lists again.
"""
from __future__ import annotations

import hashlib
import io
import os
import secrets as _secrets
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import fsspec

from medcorpus.schemas.records import SkipError, UnitRef
from medcorpus.transforms.pseudonyms import pseudonym

ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_HEADER_TAGS = ["SeriesInstanceUID", "SOPInstanceUID", "Modality"]


@dataclass(frozen=True)
class FileRef:
    """One DICOM file: a path (local or URL), or a member of an archive at ``path``."""

    path: str
    member: str | None = None
    stamp: str = ""  # size and modification time: what the fingerprint follows


@dataclass
class DicomSeries:
    """A series, opened: its instances' bytes (the parse stage reads them)."""

    unit_id: str
    instances: list[bytes]
    license_code: str = "unknown"  # as the source states it; the parse stage maps it to a family
    source_name: str = "dicom"
    dataset_name: str | None = None  # the collection (IDC's collection_id)

    @property
    def error_input(self) -> str:
        """How an error names the series (its pseudonym: never a path or a UID)."""
        return f"dicom:{self.unit_id}"


def load_secret(path: str) -> bytes:
    """The corpus secret at ``path``, created (32 random bytes, mode 0600) when it does not exist."""
    p = Path(path).expanduser()
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(_secrets.token_hex(32))
    return bytes.fromhex(p.read_text().strip())


def default_secret_file(out: str) -> str:
    """Where a corpus's generated secret lives when the config names none: the cache root, outside
    the output folder, one per output (a rebuild of the same output keeps its pseudonyms)."""
    from medcorpus.files import cache_root

    return str(cache_root() / "secrets" / f"{hashlib.sha256(out.rstrip('/').encode()).hexdigest()[:24]}.key")


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVES)


def _read_header(blob: bytes | io.IOBase):
    import pydicom

    return pydicom.dcmread(blob, stop_before_pixels=True, specific_tags=_HEADER_TAGS)


def _archive_members(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[tuple[str, bytes]]:
    with fs.open(path, "rb") as f:
        data = f.read()
    if path.lower().endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                if not info.is_dir():
                    yield info.filename, z.read(info)
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            for m in sorted((m for m in t.getmembers() if m.isfile()), key=lambda m: m.name):
                yield m.name, t.extractfile(m).read()  # type: ignore[union-attr]


class DicomSource:
    name = "dicom"
    parser = "dicom"

    def __init__(self, path: str, secret: bytes) -> None:
        self.path = path
        self.secret = secret
        self.key_id = hashlib.sha256(b"key-id\x1f" + secret).hexdigest()[:12]  # joins fingerprints
        self.index: dict[str, list[FileRef]] | None = None

    def _files(self) -> tuple[fsspec.AbstractFileSystem, list[str]]:
        fs, root = fsspec.core.url_to_fs(self.path)
        if fs.isfile(root):
            if os.path.basename(root).upper() == "DICOMDIR":  # its folder holds the files it lists
                root = root.rsplit("/", 1)[0] if "/" in root else "."
            else:
                return fs, [root]
        if not fs.isdir(root):
            raise FileNotFoundError(f"dicom source {self.path!r}: no such file or folder")
        return fs, sorted(p for p in fs.find(root) if os.path.basename(p).upper() != "DICOMDIR")

    def _refs(self) -> Iterator[tuple[FileRef, bytes | None]]:
        fs, files = self._files()
        for path in files:
            info = fs.info(path)
            stamp = f"{info.get('size')}:{info.get('mtime') or info.get('LastModified') or info.get('ETag') or ''}"
            if _is_archive(path):
                for member, data in _archive_members(fs, path):
                    yield FileRef(path, member, f"{stamp}:{len(data)}"), data
            else:
                yield FileRef(path, None, stamp), None

    def _series_key(self, ref: FileRef, data: bytes | None) -> str | None:
        """``series:<uid>`` of a DICOM file, ``file:<name>`` of a .dcm file that cannot be read (it
        becomes a unit of its own, recorded as an error), None for anything else (a README)."""
        from pydicom.errors import InvalidDicomError

        try:
            ds = _read_header(io.BytesIO(data)) if data is not None else self._header_of_file(ref.path)
        except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, AttributeError):
            name = ref.member or ref.path
            return f"file:{ref.path}#{ref.member or ''}" if name.lower().endswith((".dcm", ".dicom")) else None
        uid = str(ds.get("SeriesInstanceUID") or "").strip()
        return f"series:{uid}" if uid else f"file:{ref.path}#{ref.member or ''}"

    def _header_of_file(self, path: str):
        with fsspec.open(path, "rb") as f:
            return _read_header(f)

    def build_index(self) -> dict[str, list[FileRef]]:
        groups: dict[str, list[FileRef]] = {}
        for ref, data in self._refs():
            key = self._series_key(ref, data)
            if key is not None:
                kind = key.split(":", 1)[0]
                groups.setdefault(f"{kind}-{pseudonym(self.secret, key.split(':', 1)[0], key)}", []).append(ref)
        self.index = dict(sorted(groups.items()))
        return self.index

    def list_units(self) -> Iterator[UnitRef]:
        for unit_id, refs in self.build_index().items():
            stamps = "\x1f".join(f"{pseudonym(self.secret, 'file', r.path + '#' + (r.member or ''))}:{r.stamp}" for r in refs)
            fingerprint = hashlib.sha1(f"{self.key_id}\x1f{stamps}".encode()).hexdigest()
            yield UnitRef(self.name, unit_id, "", fingerprint)

    def read_refs(self, refs: list[FileRef]) -> list[bytes]:
        """The files' bytes; each archive is read once."""
        archives: dict[str, dict[str, bytes]] = {}
        out = []
        for ref in refs:
            if ref.member is None:
                with fsspec.open(ref.path, "rb") as f:
                    out.append(f.read())
                continue
            if ref.path not in archives:
                fs, path = fsspec.core.url_to_fs(ref.path)
                archives[ref.path] = dict(_archive_members(fs, path))
            if ref.member not in archives[ref.path]:
                raise SkipError("dicom_missing", "an archive member listed earlier is gone")
            out.append(archives[ref.path][ref.member])
        return out

    def open(self, unit: UnitRef) -> DicomSeries:
        index = self.index if self.index is not None else self.build_index()
        refs = index.get(unit.unit_id)
        if refs is None:
            raise SkipError("dicom_missing", "the series is no longer in the source")
        return DicomSeries(unit.unit_id, self.read_refs(refs))

    def read_media(self, unit: UnitRef, name: str) -> bytes:
        raise SkipError("image_not_found", "a DICOM source has no media files")
