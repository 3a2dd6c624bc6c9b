"""Shard plans: which samples go to which shard of a license family (the writers are in
``manifests/writers.py``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


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
