"""Shard plans: which samples go to which shard of a license family (the writers are in
``manifests/writers.py``), and the ``sizes.json`` that webdataset trainers read.

Shard basenames are unique across the whole output (``shards/comm/comm-000003.tar``): trainers such
as open_clip key ``sizes.json`` by basename and take shards of several folders in one brace list.
"""
from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

from medcorpus.manifests.storage import Output

SIZES_FILE = "sizes.json"


@dataclass(frozen=True)
class ShardPlan:
    family: str
    index: int
    keys: tuple[str, ...] = ()
    # columns decided after staging (dedup cluster), per key: they travel with the plan to its writer
    updates: Mapping[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)
    # a plan too large to travel (the driver's): its keys, staged-unit tokens and updates live in
    # this Parquet file (``pipelines/assemble.py`` writes it, the shard's writer reads it)
    rows: str | None = None
    count: int = 0

    @property
    def name(self) -> str:
        return shard_name(self.family, self.index)

    @property
    def manifest_part(self) -> str:
        return f"manifest/samples/{self.family}-{self.index:06d}.parquet"

    @property
    def samples(self) -> int:
        return self.count if self.rows else len(self.keys)


def shard_name(family: str, index: int) -> str:
    return f"shards/{family}/{family}-{index:06d}.tar"


Item = tuple  # (key, bytes, ...): what travels with a sample through the planner


def plan_shards(family: str, sizes: Sequence[tuple[str, int]], max_samples: int, max_bytes: int,
                updates: Mapping[str, dict[str, Any]] | None = None) -> list[ShardPlan]:
    """Cut key-sorted samples into shards of at most ``max_samples`` samples and ``max_bytes`` bytes.

    The last two shards are balanced, so no family ends with a tiny shard: a trainer that gives each
    worker whole shards would otherwise hand one worker too few samples for a batch. Membership
    depends only on the set of samples (key order), never on processing order."""
    updates = updates or {}
    return [ShardPlan(family, i, tuple(k for k, _ in g), {k: updates[k] for k, _ in g if k in updates})
            for i, g in cut_shards(sorted(sizes), max_samples, max_bytes)]


def cut_shards(ordered: Iterable[Item], max_samples: int, max_bytes: int) -> Iterator[tuple[int, list[Item]]]:
    """``plan_shards``' cut over key-sorted ``(key, bytes, ...)`` items as they stream in: each shard
    is yielded once the one after the next begins (the last two are balanced at the end), so at most
    three shards' items are held."""
    pending: list[list[Item]] = []
    current_bytes, index = 0, 0
    for item in ordered:
        size = item[1]
        if not pending or len(pending[-1]) >= max_samples or (pending[-1] and current_bytes + size > max_bytes):
            pending.append([])
            current_bytes = 0
            if len(pending) > 2:
                yield index, pending.pop(0)
                index += 1
        pending[-1].append(item)
        current_bytes += size
    if len(pending) == 2:
        pending = _balance(pending[0] + pending[1], max_samples, max_bytes)
    for group in pending:
        yield index, group
        index += 1


def _balance(items: list[Item], max_samples: int, max_bytes: int) -> list[list[Item]]:
    """Split two consecutive shards' samples at the cut nearest the middle that keeps both within
    the limits (the greedy cut always does, so one exists)."""
    total = sum(item[1] for item in items)
    prefix = [0]
    for item in items:
        prefix.append(prefix[-1] + item[1])

    def fits(cut: int) -> bool:
        head, tail = cut, len(items) - cut
        return (0 < head <= max_samples and 0 < tail <= max_samples
                and (head == 1 or prefix[cut] <= max_bytes) and (tail == 1 or total - prefix[cut] <= max_bytes))

    cuts = sorted(range(1, len(items)), key=lambda c: (abs(2 * c - len(items)), c))
    cut = next((c for c in cuts if fits(c)), None)
    return [items] if cut is None else [items[:cut], items[cut:]]


def sizes_path(family: str) -> str:
    return f"shards/{family}/{SIZES_FILE}"


def write_sizes(output: Output, plans: Sequence[ShardPlan]) -> None:
    """One ``sizes.json`` per shard folder, each covering every shard of the output."""
    data = sizes_json((p.name, p.samples) for p in plans)
    for family in sorted({p.family for p in plans}):
        output.write_bytes(sizes_path(family), data)


def sizes_json(shards: Iterable[tuple[str, int]]) -> bytes:
    """``sizes.json``: sample count by shard basename, for every shard of the output (open_clip
    reads the one beside the first shard of a brace list, which may span folders)."""
    sizes = {posixpath.basename(name): int(n) for name, n in shards}
    return json.dumps(dict(sorted(sizes.items())), indent=1).encode("utf-8")
