"""``reports:PATH``: image+report collections; one unit per study (one report and its images).

Two layouts, told apart by what PATH holds:

* **Open-i / IU X-ray**: a reports CSV (``uid``, ``findings``, ``impression``, and ``indication``,
  ``comparison``, ``Problems`` when present), a projections CSV (``uid``, ``filename``,
  ``projection``) and the image files anywhere under PATH, found by file name;
* **MIMIC-CXR**: ``files/pXX/pXXXXXXXX/sYYYYYYYY.txt`` (the free-text report) beside the folder
  ``sYYYYYYYY/`` of its images (``*.jpg``, ``*.png`` or ``*.dcm``); a ``*metadata*.csv`` with
  ``dicom_id`` and ``ViewPosition`` (MIMIC-CXR-JPG) gives view positions, else the DICOM header.

An optional ``dataset.yaml`` (``transforms/dataset_info.py``) names the collection, its version and
license. Unit ids and keys are pseudonyms of the study id (``transforms/pseudonyms.py``, keyed with
the corpus secret); the source's own ids, paths and file names never reach the output.
"""
from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from medcorpus.pipelines.sources.imaging import file_index, read_descriptor, secret_tag
from medcorpus.schemas.records import SkipError, UnitRef
from medcorpus.transforms.dataset_info import DatasetInfo
from medcorpus.transforms.keys import slug
from medcorpus.transforms.pseudonyms import pseudonym

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
_MIMIC_REPORT = re.compile(r"^s\d+\.txt$", re.I)


@dataclass
class StudyImage:
    """One image of a study: its bytes (``None`` when the file is absent) and what is known of it."""

    index: int
    suffix: str
    data: bytes | None
    view: str | None = None


@dataclass
class Study:
    """A fetched study. Holds the source's own ids and text: it lives in one worker only, and its
    ``repr`` (which error records may quote) names the unit's pseudonym alone."""

    unit: UnitRef
    collection: DatasetInfo
    patient: str | None
    study: str
    text: str | None = None  # free text (MIMIC) ...
    columns: dict[str, str] = field(default_factory=dict)  # ... or sections from CSV columns (IU)
    labels: list[str] = field(default_factory=list)
    images: list[StudyImage] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Study({self.unit.source}:{self.unit.unit_id})"


@dataclass
class _Record:
    """A listed study: where its report and images are (in the worker's index, never in a unit)."""

    patient: str | None
    study: str
    report: dict[str, str] | Path
    images: list[tuple[Path | None, str, str | None]]  # (file or None when absent, suffix, view)
    labels: list[str]


class ReportsSource:
    name = "reports"
    parser = "reports"

    def __init__(self, path: str, secret: bytes) -> None:
        self.root = Path(path).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"reports source: {self.root} is not a directory")
        self.layout = detect_layout(self.root)
        self.info = read_descriptor(self.root, "iu-xray" if self.layout == "iu" else "mimic-cxr")
        self.secret = secret
        self._records: dict[str, _Record] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_records": None}  # each worker indexes the layout itself

    def _index(self) -> dict[str, _Record]:
        if self._records is None:
            records = iu_records(self.root) if self.layout == "iu" else mimic_records(self.root)
            self._records = {self.unit_id(r): r for r in records}
        return self._records

    def unit_id(self, record: _Record) -> str:
        return f"{slug(self.info.name)}-{pseudonym(self.secret, 'study', f'{self.info.name}:{record.study}')}"

    def list_units(self) -> Iterator[UnitRef]:
        tag = secret_tag(self.secret)
        for unit_id, record in sorted(self._index().items()):
            yield UnitRef(self.name, unit_id, self.info.name, _fingerprint(self.secret, record, tag))

    def open(self, unit: UnitRef) -> Study:
        record = self._index().get(unit.unit_id)
        if record is None:
            raise SkipError("study_not_found", "the study is no longer in the collection")
        study = Study(unit, self.info, record.patient, record.study, labels=list(record.labels))
        if isinstance(record.report, Path):
            study.text = record.report.read_text(encoding="utf-8", errors="replace")
        else:
            study.columns = dict(record.report)
        study.images = [StudyImage(n, suffix, path.read_bytes() if path and path.is_file() else None, view)
                        for n, (path, suffix, view) in enumerate(record.images)]
        return study

    def read_media(self, unit: UnitRef, name: str) -> bytes:
        raise SkipError("image_not_found", "a study's images come with the study")


def _fingerprint(secret: bytes, record: _Record, tag: str) -> str:
    """Changes with the report and the images (their sizes), keyed so it says nothing of either."""
    report = record.report if isinstance(record.report, dict) else record.report.stat().st_size
    sizes = [p.stat().st_size if p and p.is_file() else None for p, _, _ in record.images]
    digest = hashlib.sha256(repr((report, sizes, record.labels)).encode()).hexdigest()
    return f"{tag}-{pseudonym(secret, 'fingerprint', digest)[:16]}"


def detect_layout(root: Path) -> str:
    if (root / "files").is_dir() or any(root.glob("p*/p*/s*.txt")):
        return "mimic"
    if _csv_with(root, {"uid", "findings", "impression"}):
        return "iu"
    raise FileNotFoundError(f"reports source: {root} holds neither an Open-i reports CSV (uid, findings, "
                            "impression) nor a MIMIC-CXR files/pXX/pXXXXXXXX/sYYYYYYYY.txt tree")


def _csv_with(root: Path, columns: set[str]) -> Path | None:
    for path in sorted(root.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), [])
        if columns <= {h.strip() for h in header}:
            return path
    return None


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def iu_records(root: Path) -> Iterator[_Record]:
    reports = _csv_with(root, {"uid", "findings", "impression"})
    projections = _csv_with(root, {"uid", "filename", "projection"})
    images: dict[str, list[tuple[str, str]]] = {}
    for row in _rows(projections) if projections else []:
        images.setdefault(row["uid"].strip(), []).append((row["filename"].strip(), row["projection"].strip()))
    files = file_index(root, IMAGE_SUFFIXES)
    for row in _rows(reports):  # type: ignore[arg-type]
        uid = row["uid"].strip()
        labels = [p.strip() for p in (row.get("Problems") or "").split(";") if p.strip()]
        report = {k: row.get(k) or "" for k in ("indication", "comparison", "findings", "impression")}
        yield _Record(None, uid, report, [(files.get(name), _suffix(name), view.upper() or None)
                                          for name, view in sorted(images.get(uid, []))], sorted(set(labels)))


def mimic_records(root: Path) -> Iterator[_Record]:
    views = _mimic_views(root)
    base = root / "files" if (root / "files").is_dir() else root
    for report in sorted(p for p in base.glob("p*/p*/s*.txt") if _MIMIC_REPORT.match(p.name)):
        folder = report.with_suffix("")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        yield _Record(report.parent.name, report.stem, report,
                      [(p, p.suffix.lower(), views.get(p.stem)) for p in files], [])


def _mimic_views(root: Path) -> dict[str, str]:
    meta = next((p for p in sorted(root.glob("*metadata*.csv"))), None)
    if meta is None:
        return {}
    return {r["dicom_id"]: r["ViewPosition"].strip().upper() for r in _rows(meta)
            if r.get("dicom_id") and (r.get("ViewPosition") or "").strip()}


def _suffix(name: str) -> str:
    lower = name.lower()
    return ".png" if lower.endswith(".dcm.png") else Path(lower).suffix
