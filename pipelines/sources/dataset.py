"""``dataset:PATH``: a labelled image dataset (UniMed-CLIP style classification data).

Layouts: an ImageFolder (``split/label/*.png`` or ``label/*.png``; split folders named train,
val/validation, test ...) or a CSV of ``path,label[,split]`` (named by the descriptor's ``csv``, else
the one top-level CSV with those columns). A descriptor (``dataset.yaml``/``.json``,
``transforms/dataset_info.py``) names the dataset, its version, modality, body part, license and
the words for each label. Units are runs of up to ``CHUNK`` images of one split and label. Keys are
the dataset name, split, label and a keyed hash of the file's path (file names of some datasets
carry patient numbers), so nothing of the file names reaches the output.

The test and validation images are registered as evaluation sets (``evalset_entries``): a sample
of any source whose image is a near-duplicate of one is dropped by decontamination.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any, Iterator

from medcorpus.pipelines.sources.imaging import read_descriptor, secret_tag
from medcorpus.schemas.records import SkipError, UnitRef
from medcorpus.transforms.dataset_info import EVAL_SPLITS, SPLITS, DatasetInfo, split_name
from medcorpus.transforms.keys import slug
from medcorpus.transforms.options import ConfigError
from medcorpus.transforms.pseudonyms import pseudonym

CHUNK = 256
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the dataset folder
    label: str
    split: str | None


@dataclass
class LabelledImage:
    key: str
    label: str
    split: str | None
    data: bytes | None


@dataclass
class DatasetChunk:
    """A fetched unit: images of one split and label. Its ``repr`` names the unit only."""

    unit: UnitRef
    info: DatasetInfo
    images: list[LabelledImage] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"DatasetChunk({self.unit.source}:{self.unit.unit_id})"


class DatasetSource:
    name = "dataset"
    parser = "dataset"

    def __init__(self, path: str, secret: bytes = b"") -> None:
        """``secret`` keys the sample keys; listing the evaluation images alone needs none."""
        self.root = Path(path).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset source: {self.root} is not a directory")
        self.info = read_descriptor(self.root, self.root.name)
        self.secret = secret
        self._chunks: dict[str, list[Entry]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_chunks": None}

    def entries(self) -> list[Entry]:
        rows = csv_entries(self.root, self.info.csv) if self.info.csv or _label_csv(self.root) else folder_entries(self.root)
        return sorted(rows, key=lambda e: (e.split or "", e.label, e.path))

    def chunks(self) -> dict[str, list[Entry]]:
        if self._chunks is None:
            out: dict[str, list[Entry]] = {}
            for (split, label), group in groupby(self.entries(), key=lambda e: (e.split, e.label)):
                items = list(group)
                for n in range(0, len(items), CHUNK):
                    out[f"{slug(split or 'all')}-{slug(label)}-{n // CHUNK:05d}"] = items[n:n + CHUNK]
            self._chunks = out
        return self._chunks

    def key(self, entry: Entry) -> str:
        digest = pseudonym(self.secret, "image", f"{self.info.name}:{entry.path}")[:16]
        return slug(f"{self.info.name}_{entry.split or 'all'}_{entry.label}") + f"_{digest}"

    def list_units(self) -> Iterator[UnitRef]:
        tag = secret_tag(self.secret)
        for unit_id, items in sorted(self.chunks().items()):
            sizes = [(e.path, (self.root / e.path).stat().st_size if (self.root / e.path).is_file() else None)
                     for e in items]
            fingerprint = f"{tag}-{hashlib.sha256(repr((sizes, self.info)).encode()).hexdigest()[:16]}"
            yield UnitRef(self.name, unit_id, self.info.name, fingerprint)

    def open(self, unit: UnitRef) -> DatasetChunk:
        items = self.chunks().get(unit.unit_id)
        if items is None:
            raise SkipError("unit_not_found", "the images of this unit are no longer in the dataset")
        return DatasetChunk(unit, self.info, [LabelledImage(self.key(e), e.label, e.split, self._read(e)) for e in items])

    def _read(self, entry: Entry) -> bytes | None:
        path = (self.root / entry.path).resolve()
        if self.root not in path.parents or not path.is_file():
            return None
        return path.read_bytes()

    def read_media(self, unit: UnitRef, name: str) -> bytes:
        raise SkipError("image_not_found", "a dataset's images come with their unit")

    def evalset_entries(self) -> list[Any]:
        """The test and validation images as eval sets ``dataset:NAME:SPLIT`` (perceptual hashes)."""
        from medcorpus.manifests.evalsets import EvalEntry
        from medcorpus.transforms.dedup import hash_image

        out = []
        for n, entry in enumerate(self.entries()):
            if entry.split in EVAL_SPLITS.values() and (data := self._read(entry)) is not None:
                try:
                    value = f"{hash_image(data).perceptual:032x}"
                except Exception:  # noqa: BLE001 - an undecodable image is recorded when its unit runs
                    continue
                detail = f"{self.info.name}/{entry.split}/{entry.label}/#{n}"  # dataset-relative, not the file name
                out.append(EvalEntry(f"dataset:{self.info.name}:{entry.split}", "image_hash", value, detail))
        return out


def folder_entries(root: Path) -> list[Entry]:
    """``split/label/file`` when the top folders are split names, else ``label/file``."""
    top = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    by_split = bool(top) and all(p.name.lower() in SPLITS for p in top)
    out = []
    for folder in top:
        labels = sorted(p for p in folder.iterdir() if p.is_dir()) if by_split else [folder]
        for label in labels:
            for f in sorted(label.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    out.append(Entry(f.relative_to(root).as_posix(), label.name,
                                     split_name(folder.name) if by_split else None))
    if not out:
        raise ConfigError(f"dataset source: no images under {root} (expected split/label/*.png, label/*.png "
                          "or a CSV of path,label[,split] named by the descriptor's csv)")
    return out


def _label_csv(root: Path) -> Path | None:
    for path in sorted(root.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            if {"path", "label"} <= {h.strip() for h in next(csv.reader(f), [])}:
                return path
    return None


def csv_entries(root: Path, name: str | None) -> list[Entry]:
    path = root / name if name else _label_csv(root)
    if path is None or not path.is_file():
        raise ConfigError(f"dataset source: csv {name!r} is not a file in {root}")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"path", "label"} <= set(rows[0]):
        raise ConfigError(f"{path}: needs the columns path and label (and optionally split)")
    return [Entry(r["path"].strip(), r["label"].strip(), split_name(r.get("split"))) for r in rows
            if r["path"].strip() and r["label"].strip()]
