"""Where a build's outputs go: a local directory or any fsspec URL (``s3://bucket/prefix``).

Every file appears atomically: local files are written under a temporary name and renamed;
object stores make an object visible only when its upload completes.
"""
from __future__ import annotations

import os
import posixpath
import tempfile
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

_UMASK = os.umask(0)
os.umask(_UMASK)


class Output:
    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        if self.is_local:
            self.root = str(Path(self.root).resolve())
            os.makedirs(self.root, exist_ok=True)

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel)

    def put_file(self, local_path: str, rel: str) -> None:
        """Move a finished local file into place; the file at ``rel`` is never half-written."""
        os.chmod(local_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files follow the umask
        if self.is_local:
            dest = self.path(rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(local_path, dest)
        else:
            self.fs.put_file(local_path, self.path(rel))
            os.unlink(local_path)

    def write_bytes(self, rel: str, data: bytes) -> None:
        tmp = self.temp_path(rel)
        with open(tmp, "wb") as f:
            f.write(data)
        self.put_file(tmp, rel)

    def temp_path(self, rel: str) -> str:
        """A temporary local file name next to ``rel`` (same filesystem, so the rename is atomic)."""
        directory = None
        if self.is_local:
            directory = self.path(os.path.dirname(rel))
            os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(rel)}.", suffix=".tmp", dir=directory)
        os.close(fd)
        return tmp

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def list(self, rel_dir: str) -> list[str]:
        """Files under ``rel_dir`` as paths relative to the root (recursive; hidden temp files skipped)."""
        base = self.path(rel_dir)
        if not self.fs.exists(base):
            return []
        found = self.fs.find(base)
        root = self.root.rstrip("/") + "/"
        rels = [p[len(root):] if p.startswith(root) else p for p in (str(x) for x in found)]
        return sorted(r for r in rels if not posixpath.basename(r).startswith("."))

    def remove(self, rel: str) -> None:
        self.fs.rm(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open(self.path(rel), "rb") as f:
            return f.read()

    def read_range(self, rel: str, offset: int, size: int) -> bytes:
        with self.fs.open(self.path(rel), "rb") as f:
            f.seek(offset)
            return f.read(size)
