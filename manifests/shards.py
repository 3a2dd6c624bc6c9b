"""WebDataset tar shards: deterministic bytes, byte offsets for every member, atomic placement.

Members are written by webdataset's own ``TarWriter`` with a fixed mtime, owner and mode, so the
same samples give the same tar bytes on every runner. Offsets are read back from the finished tar
(tarfile's ``offset_data``), so the manifest records where each member's data really starts.
"""
from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import webdataset as wds

MTIME = 0  # reproducible tars: a member's time says nothing about the sample


@dataclass(frozen=True)
class ShardPlan:
    family: str
    index: int
    keys: tuple[str, ...]
    # columns decided after staging (dedup cluster), per key: they travel with the plan to its writer
    updates: Mapping[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        return f"shards/{self.family}/{self.index:06d}.tar"

    @property
    def manifest_part(self) -> str:
        return f"manifest/samples/{self.family}-{self.index:06d}.parquet"


def plan_shards(family: str, sizes: Sequence[tuple[str, int]], max_samples: int, max_bytes: int,
                updates: Mapping[str, dict[str, Any]] | None = None) -> list[ShardPlan]:
    """Cut key-sorted samples into shards of at most ``max_samples`` samples and ``max_bytes`` bytes."""
    plans: list[ShardPlan] = []
    current: list[str] = []
    current_bytes = 0
    updates = updates or {}

    def close() -> None:
        plans.append(ShardPlan(family, len(plans), tuple(current), {k: updates[k] for k in current if k in updates}))

    for key, size in sorted(sizes):
        if current and (len(current) >= max_samples or current_bytes + size > max_bytes):
            close()
            current, current_bytes = [], 0
        current.append(key)
        current_bytes += size
    if current:
        close()
    return plans


def write_tar(path: str, samples: Iterable[tuple[str, dict[str, bytes]]]) -> None:
    with open(path, "wb") as stream:
        writer = wds.TarWriter(stream, encoder=False, mtime=MTIME, user="medcorpus", group="medcorpus")
        for key, members in samples:
            writer.write({"__key__": key, **members})
        writer.close()


def member_offsets(path: str) -> dict[str, tuple[int, int]]:
    """Member name → (data offset, size), from the tar's own headers."""
    with tarfile.open(path, "r:") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}
