"""Per-unit results staged in the work directory: what makes a killed or repeated run resume.

Each unit's result is written as two files named by (unit fingerprint, config hash, code version):
``.data`` (member bytes) first, then ``.meta`` (rows) — a unit counts as done only when its
``.meta`` exists, and both are written to a temporary name and renamed. This is an internal cache
(pickle); the published formats are the shards and the Parquet manifest.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcorpus.schemas.records import UnitRef


@dataclass
class StagedSample:
    key: str
    family: str
    row: dict[str, Any]  # manifest row without the shard columns; also the JSON sidecar
    size: int  # bytes of all members, for shard sizing


@dataclass
class UnitResult:
    unit_id: str
    samples: list[StagedSample] = field(default_factory=list)
    members: dict[str, dict[str, bytes]] = field(default_factory=dict)  # key -> {ext: bytes}
    articles: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)  # filtered or decontaminated samples
    counters: dict[str, int] = field(default_factory=dict)


def unit_token(unit: UnitRef, config_hash: str, code_version: str) -> str:
    blob = "\x1f".join([unit.source, unit.unit_id, unit.fingerprint, config_hash, code_version])
    return hashlib.sha1(blob.encode()).hexdigest()


class Staging:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, token: str, kind: str) -> Path:
        return self.root / token[:2] / f"{token}.{kind}"

    def done(self, token: str) -> bool:
        return self._path(token, "meta").exists()

    def _write(self, path: Path, obj: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            pickle.dump(obj, f, protocol=5)
        os.replace(tmp, path)

    def write(self, token: str, result: UnitResult) -> None:
        members, result.members = result.members, {}
        self._write(self._path(token, "data"), members)
        self._write(self._path(token, "meta"), result)
        result.members = members

    def read_meta(self, token: str) -> UnitResult:
        with open(self._path(token, "meta"), "rb") as f:
            return pickle.load(f)

    def read_members(self, token: str) -> dict[str, dict[str, bytes]]:
        with open(self._path(token, "data"), "rb") as f:
            return pickle.load(f)
