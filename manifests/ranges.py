"""Ranged reads of shard members: a sample's image, caption and sidecar are neighbours in its tar,
so one request fetches all three, and neighbouring samples of one shard share a request too.

Local shards are read with ``os.pread`` on file descriptors kept open per worker; any other fsspec
store gets one ``cat_ranges`` call per batch of requests (concurrent on async stores such as S3 and
HTTP).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

from medcorpus.manifests.storage import Output


@dataclass(frozen=True)
class Span:
    """Bytes ``[start, end)`` of one shard."""

    shard: str
    start: int
    end: int


MEMBERS = ("image", "txt", "json")


def sample_span(shard: str, column: Callable[[str], int]) -> Span:
    """The bytes that hold a sample's members, from its manifest columns (``column("image_offset")``)."""
    starts = [int(column(f"{m}_offset")) for m in MEMBERS]
    ends = [start + int(column(f"{m}_size")) for start, m in zip(starts, MEMBERS)]
    return Span(shard, min(starts), max(ends))


def member(blob: bytes, span: Span, name: str, column: Callable[[str], int]) -> bytes:
    """One member (``image``, ``txt``, ``json``) out of the bytes read for ``sample_span``."""
    lo = int(column(f"{name}_offset")) - span.start
    return blob[lo:lo + int(column(f"{name}_size"))]


def coalesce(spans: Sequence[Span], max_gap: int) -> tuple[list[Span], list[tuple[int, int]]]:
    """Merge spans of one shard that lie at most ``max_gap`` bytes apart. Returns the merged spans
    and, for every input span, (index of its merged span, its offset inside it)."""
    order = sorted(range(len(spans)), key=lambda i: (spans[i].shard, spans[i].start))
    merged: list[Span] = []
    where: list[tuple[int, int]] = [(0, 0)] * len(spans)
    for i in order:
        s = spans[i]
        last = merged[-1] if merged else None
        if last is not None and last.shard == s.shard and s.start - last.end <= max_gap:
            merged[-1] = Span(s.shard, last.start, max(last.end, s.end))
        else:
            merged.append(s)
        where[i] = (len(merged) - 1, s.start - merged[-1].start)
    return merged, where


class RangeReader:
    """Reads spans of an output's shards; create one per worker process (it holds open files)."""

    def __init__(self, output: Output, max_gap: int | None = None) -> None:
        self.output = output
        # a local read of a gap costs more than a second pread; a remote request costs far more
        self.max_gap = (16 << 10 if output.is_local else 1 << 20) if max_gap is None else max_gap
        self._fds: dict[str, int] = {}

    def read(self, spans: Sequence[Span]) -> list[bytes]:
        """The bytes of every span, in the order given."""
        merged, where = coalesce(spans, self.max_gap)
        blobs = self._read_merged(merged)
        out = []
        for span, (m, offset) in zip(spans, where):
            out.append(blobs[m][offset:offset + span.end - span.start])
        return out

    def _read_merged(self, merged: list[Span]) -> list[bytes]:
        if self.output.is_local:
            return [self._pread(s) for s in merged]
        paths = [self.output.path(s.shard) for s in merged]
        blobs = self.output.fs.cat_ranges(paths, [s.start for s in merged], [s.end for s in merged])
        for s, blob in zip(merged, blobs):
            if isinstance(blob, BaseException):
                raise blob
            if len(blob) != s.end - s.start:
                raise OSError(f"{s.shard}: short read at {s.start} ({len(blob)} of {s.end - s.start} bytes)")
        return blobs

    def _pread(self, span: Span) -> bytes:
        fd = self._fds.get(span.shard)
        if fd is None:
            fd = self._fds[span.shard] = os.open(self.output.path(span.shard), os.O_RDONLY)
        data = os.pread(fd, span.end - span.start, span.start)
        if len(data) != span.end - span.start:
            raise OSError(f"{span.shard}: short read at {span.start} ({len(data)} of {span.end - span.start} bytes)")
        return data

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
