"""Epoch orders for the manifest loader: which selected sample comes when, on which rank and
DataLoader worker. Pure functions of (sizes, weights, seed, epoch, rank, world size, batch size),
so every process computes the same orders without talking to the others.

- Shuffling is blockwise: blocks of neighbouring samples (in shard order) are permuted, then
  samples are permuted within windows of a few blocks. A batch then touches a few blocks, whose
  members a ranged reader fetches with few requests, and the order still changes every epoch.
- A source's stream runs through one permutation of its samples after another (a new one per
  cycle); an epoch takes the next ``quota`` samples of it. With one source, quota = size: every
  sample exactly once per epoch. Mixed sources each take their weighted share of the epoch and are
  interleaved evenly; a source whose share exceeds its size repeats samples (only then).
- Ranks take contiguous slices of the epoch order (sizes differ by at most one; ``even`` drops
  the last ``len % world`` samples of the epoch instead). Within a rank, batch ``j`` of the rank's
  remaining order goes to worker ``j % workers``: exactly the batch DataLoader asks that worker
  for, so batches arrive in the rank's order.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

BLOCK = 64  # neighbouring samples shuffled as a unit
WINDOW = 8  # blocks whose samples are shuffled together


def permutation(n: int, seed: int, source: int, cycle: int, shuffle: bool = True) -> np.ndarray:
    """A blockwise permutation of ``range(n)``, fixed by (seed, source, cycle)."""
    if not shuffle or n <= 1:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([seed, source, cycle])
    starts = rng.permutation(np.arange(0, n, BLOCK))
    order = np.concatenate([np.arange(s, min(s + BLOCK, n)) for s in starts])
    span = BLOCK * WINDOW
    for lo in range(0, n, span):
        rng.shuffle(order[lo:lo + span])
    return order


def quotas(sizes: Sequence[int], weights: Sequence[float], length: int) -> list[int]:
    """Samples per source in an epoch of ``length``: proportional to the weights (largest remainder)."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != len(sizes) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per selection, and not all zero")
    exact = w / w.sum() * length
    base = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - base), kind="stable")[: length - int(base.sum())]:
        base[i] += 1
    return [int(q) for q in base]


def source_epoch(size: int, quota: int, seed: int, source: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Positions (into the source) of the ``quota`` samples this epoch takes from the source."""
    if size == 0 or quota == 0:
        return np.zeros(0, dtype=np.int64)
    first = epoch * quota
    out = []
    for cycle in range(first // size, (first + quota - 1) // size + 1):
        perm = permutation(size, seed, source, cycle, shuffle)
        lo, hi = max(first, cycle * size) - cycle * size, min(first + quota, (cycle + 1) * size) - cycle * size
        out.append(perm[lo:hi])
    return np.concatenate(out)


def epoch_order(sources: Sequence[np.ndarray], quota: Sequence[int], seed: int, epoch: int,
                shuffle: bool) -> np.ndarray:
    """The epoch's order over the combined index: each source's share, interleaved evenly."""
    picks, keys, ids = [], [], []
    for i, (members, q) in enumerate(zip(sources, quota)):
        picks.append(members[source_epoch(len(members), q, seed, i, epoch, shuffle)])
        keys.append((np.arange(q) + 0.5) / max(q, 1))
        ids.append(np.full(q, i))
    if len(picks) == 1:
        return picks[0]
    ranking = np.lexsort((np.concatenate(ids), np.concatenate(keys)))
    return np.concatenate(picks)[ranking]


def rank_slice(order: np.ndarray, rank: int, world_size: int, even: bool = False) -> np.ndarray:
    """This rank's contiguous part of the epoch order."""
    n = len(order) - (len(order) % world_size if even else 0)
    return order[n * rank // world_size: n * (rank + 1) // world_size]


def worker_part(remaining: np.ndarray, worker: int, workers: int, batch_size: int) -> np.ndarray:
    """The batches of ``remaining`` that DataLoader takes from this worker, in order."""
    chunks = [remaining[j:j + batch_size] for j in range(worker * batch_size, len(remaining), workers * batch_size)]
    return np.concatenate(chunks) if chunks else remaining[:0]
