"""Where a build's outputs go: a local directory or any fsspec URL (``s3://bucket/prefix``).

Every file appears atomically (``medcorpus.files``): local files are written under a temporary name
and renamed; object stores make an object visible only when its upload completes.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from medcorpus.files import atomic_path, atomic_write


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

    @contextmanager
    def staged_file(self, rel: str) -> Iterator[str]:
        """A local file name to write ``rel`` into; published whole when the block ends cleanly.

        Local: a unique hidden sibling renamed into place (no fsync: shards are large and a killed
        build only needs the rename to be atomic). Remote: a local temporary file uploaded at the end.
        """
        if self.is_local:
            with atomic_path(self.path(rel), fsync=False) as tmp:
                yield tmp
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(rel)}.", suffix=os.path.splitext(rel)[1])
        os.close(fd)
        try:
            yield tmp
            self.fs.put_file(tmp, self.path(rel))
        finally:
            os.unlink(tmp)

    def write_bytes(self, rel: str, data: bytes) -> None:
        atomic_write(self.path(rel), data, fs=self.fs)

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

    def copy_from(self, source: "Output", rel: str, *, link: bool = False) -> None:
        """Put ``source``'s file ``rel`` at ``rel`` here, atomically: on local disks a hard link when
        ``link`` (the bytes are shared, never rewritten: every writer replaces files by renaming),
        else a copy; on one object store a server-side copy."""
        src, dest = source.path(rel), self.path(rel)
        if self.is_local and source.is_local:
            with atomic_path(dest, fsync=False) as tmp:
                if not (link and _hard_link(src, tmp)):
                    shutil.copyfile(src, tmp)
        elif self.fs is source.fs:
            self.fs.copy(src, dest)
        else:
            with source.fs.open(src, "rb") as f:
                atomic_write(dest, f.read(), fs=self.fs)

    def remove(self, rel: str) -> None:
        self.fs.rm(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open(self.path(rel), "rb") as f:
            return f.read()

    def read_range(self, rel: str, offset: int, size: int) -> bytes:
        with self.fs.open(self.path(rel), "rb") as f:
            f.seek(offset)
            return f.read(size)


def _hard_link(src: str, dest: str) -> bool:
    """Whether ``dest`` could be made a hard link of ``src`` (not across devices, nor on every filesystem)."""
    try:
        os.link(src, dest)
    except OSError:
        return False
    return True
