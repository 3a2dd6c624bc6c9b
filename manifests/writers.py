"""Shard writers behind one small interface: open a file, write samples, close → where each member's
bytes lie. The manifest records those offsets, so any format that stores members contiguously can
be a shard format; another one is one class here (img2dataset's writer split).

``TarShardWriter`` writes WebDataset tars with webdataset's own ``TarWriter``: a fixed mtime, owner
and mode, so the same samples give the same bytes on every runner; offsets are read back from the
finished tar's headers (tarfile's ``offset_data``), so they are where each member's data really starts.
"""
from __future__ import annotations

import tarfile
from typing import Any, BinaryIO, Protocol

MTIME = 0  # reproducible tars: a member's time says nothing about the sample


class ShardWriter(Protocol):
    extension: str

    def open(self, path: str) -> None: ...

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """One sample: its members by extension (``jpg``, ``txt``, ``json`` ...)."""

    def close(self) -> dict[str, tuple[int, int]]:
        """Finish the file; member name (``{key}.{ext}``) → (data offset, size)."""


class TarShardWriter:
    extension = "tar"

    def __init__(self) -> None:
        self._path = ""
        self._stream: BinaryIO | None = None
        self._tar: Any = None  # webdataset.TarWriter

    def open(self, path: str) -> None:
        import webdataset as wds  # imports torch: only the processes that write shards pay for it

        self._path = path
        self._stream = open(path, "wb")
        self._tar = wds.TarWriter(self._stream, encoder=False, mtime=MTIME, user="medcorpus", group="medcorpus")

    def write(self, key: str, members: dict[str, bytes]) -> None:
        assert self._tar is not None, "open() first"
        try:
            self._tar.write({"__key__": key, **members})
        except BaseException:
            self._discard()
            raise

    def close(self) -> dict[str, tuple[int, int]]:
        assert self._tar is not None and self._stream is not None, "open() first"
        try:
            self._tar.close()
        except BaseException:
            self._discard()
            raise
        self._stream.close()
        with tarfile.open(self._path, "r:") as tar:
            return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}

    def _discard(self) -> None:
        """After a failed write (a full disk): close the file without flushing tarfile's buffer again
        (its finalizer would, and print the same error once more); the caller removes the file."""
        stream = getattr(getattr(self._tar, "tarstream", None), "fileobj", None)
        if stream is not None:
            stream.closed = True
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError:
                pass
