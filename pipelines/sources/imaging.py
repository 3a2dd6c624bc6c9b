"""What the imaging sources (``reports:``, ``dataset:``) share: the corpus secret their pseudonyms
are keyed with, the collection descriptor, and a file index by name.

Nothing a source lists may identify a patient: unit ids, locators, fingerprints and keys are
pseudonyms or dataset-relative names, because they reach ``units.parquet``, ``errors`` and keys.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import yaml

from medcorpus.files import atomic_write, cache_root
from medcorpus.transforms.dataset_info import DatasetInfo
from medcorpus.transforms.options import ConfigError
from medcorpus.transforms.pseudonyms import pseudonym

SECRET_ENV = "MEDCORPUS_PSEUDONYM_SECRET"
DESCRIPTORS = ("dataset.yaml", "dataset.yml", "dataset.json")


def corpus_secret() -> bytes:
    """The key of every pseudonym: ``$MEDCORPUS_PSEUDONYM_SECRET``, else a random secret made
    once per machine in the cache root (mode 0600). A corpus built on several machines, or rebuilt
    elsewhere, must set the variable so its pseudonyms agree. Never written under an output."""
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode("utf-8")
    path = cache_root() / "pseudonym_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, secrets.token_hex(32).encode())
        path.chmod(0o600)
    return path.read_bytes().strip()


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
