"""What the imaging sources (``reports:``, ``dataset:``) share: a tag of the corpus secret their
pseudonyms are keyed with (``sources/dicom.py`` loads it), the collection descriptor, and a file
index by name.

Nothing a source lists may identify a patient: unit ids, locators, fingerprints and keys are
pseudonyms or dataset-relative names, because they reach ``units.parquet``, ``errors`` and keys.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from medcorpus.transforms.dataset_info import DatasetInfo
from medcorpus.transforms.options import ConfigError
from medcorpus.transforms.pseudonyms import pseudonym

DESCRIPTORS = ("dataset.yaml", "dataset.yml", "dataset.json")
TEMPLATE_CAPTION_SOURCES = frozenset({"dataset"})
"""Sources whose captions medcorpus writes from templates (``transforms/label_captions.py``): English
by construction, too terse for language identification, and alike by design, so neither the
language filter nor caption near-duplicates judge them (their images still do)."""


def secret_tag(secret: bytes) -> str:
    """A short value that changes with the secret: staged units made under another secret (other
    pseudonyms) are never reused."""
    return pseudonym(secret, "tag", "medcorpus")[:12]


def read_descriptor(root: Path, default_name: str) -> DatasetInfo:
    """The collection's descriptor, validated (a bad key or value is a ``ConfigError`` naming it);
    without one, the folder name and an unknown license (shard family ``other``)."""
    for name in DESCRIPTORS:
        path = root / name
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            try:
                values = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
            except (json.JSONDecodeError, yaml.YAMLError) as exc:
                raise ConfigError(f"{path}: not valid {'JSON' if name.endswith('.json') else 'YAML'}: {exc}") from None
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: expected a mapping of name, version, modality, body_part, license, labels")
            return DatasetInfo.from_dict(values, str(path))
    return DatasetInfo(name=default_name)


def file_index(root: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Files under ``root`` with one of ``suffixes`` (lower case), by file name."""
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(suffixes):
                out.setdefault(name, Path(dirpath) / name)
    return out
