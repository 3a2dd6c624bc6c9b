"""Per-unit results staged in the work directory: what makes a killed or repeated run resume.

Each unit's result is written as two files named by (unit fingerprint, config hash, code version):
``.data`` (member bytes) first, then ``.meta`` (rows) — a unit counts as done only when its
``.meta`` exists, and both are written to a temporary name and renamed. This is an internal cache
(pickle); the published formats are the shards and the Parquet manifest.

The root is a local folder or an fsspec URL (``gs://bucket/work/staging``, ``s3://...``): distributed
runners on machines without a shared filesystem stage there, and the driver reads it back. On an
object store a file becomes visible only when its upload completes, which gives the same atomicity.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import posixpath
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

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
        self.url = str(root)
        fs, path = fsspec.core.url_to_fs(self.url)
        self.fs = None if isinstance(fs, LocalFileSystem) else fs
        if self.fs is None:
            self.root = Path(path)
            self.root.mkdir(parents=True, exist_ok=True)
            self.url = str(self.root)
        else:
            self.root = path  # type: ignore[assignment]  # a path inside the remote filesystem

    def _path(self, token: str, kind: str) -> Any:
        if self.fs is None:
            return self.root / token[:2] / f"{token}.{kind}"
        return posixpath.join(str(self.root), token[:2], f"{token}.{kind}")

    def done(self, token: str) -> bool:
        path = self._path(token, "meta")
        return path.exists() if self.fs is None else self.fs.exists(path)

    def _write(self, path: Any, obj: Any) -> None:
        if self.fs is not None:  # visible only once the upload completes
            with self.fs.open(path, "wb") as f:
                pickle.dump(obj, f, protocol=5)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        with open(tmp, "wb") as f:
            pickle.dump(obj, f, protocol=5)
        os.replace(tmp, path)

    def _read(self, path: Any) -> Any:
        with (open(path, "rb") if self.fs is None else self.fs.open(path, "rb")) as f:
            return pickle.load(f)

    def write(self, token: str, result: UnitResult) -> None:
        members, result.members = result.members, {}
        self._write(self._path(token, "data"), members)
        self._write(self._path(token, "meta"), result)
        result.members = members

    def read_meta(self, token: str) -> UnitResult:
        return self._read(self._path(token, "meta"))

    def read_members(self, token: str) -> dict[str, dict[str, bytes]]:
        return self._read(self._path(token, "data"))
