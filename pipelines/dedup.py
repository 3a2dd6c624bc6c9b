"""Deduplication as steps over the runner's one shuffle primitive, between the stages and the shards:

    hash     the quality stage's hashes, one small record per sample (assemble.dedup_record)
    collapse ``dedup_clusters.bucketed``: copies of identical pixels stay out of the buckets and
             follow their class lead in ``finish`` (work linear in the number of copies)
    bucket   ``bucket_keys``: exact-pixel key, image LSH bands, caption MinHash bands   (map)
    verify   ``candidate_pairs`` per bucket: the true Hamming distance / Jaccard       (reduce)
    cluster  ``dedup_clusters.finish``: one counterpart per article pair, canonical-anchored stars,
             panels following their figures                                          (driver)
    apply    ``assemble.apply_dedup``: duplicates to ``dropped`` with their evidence

``Runner.shuffle`` runs bucket → verify (a Ray ``groupby``, a Beam ``GroupByKey``); no runner knows
about deduplication, and every runner gives the same pairs, so the same removals. On the local
runner the driver holds every record anyway, so the image bands are matched vectorized
(``dedup_clusters.dedup_local``: the same pairs, ~6x faster than grouping 145 keys per record in
Python); ``tests/test_runners_dedup.py`` checks both paths agree.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Sequence

from medcorpus.transforms.dedup import DedupOptions, DedupRecord, Pair, bucket_keys, candidate_pairs
from medcorpus.transforms.dedup_clusters import DedupResult, bucketed, dedup_local, finish


def dedup(runner: Any, job: Any, records: Sequence[DedupRecord]) -> DedupResult:
    options = job.config.dedup_options()
    if runner.name == "local":
        return dedup_local(records, options)
    return finish({r.key: r for r in records}, shuffled_pairs(runner, job, records, options), options)


def shuffled_pairs(runner: Any, job: Any, records: Sequence[DedupRecord], options: DedupOptions) -> list[Pair]:
    """bucket → verify on the runner's shuffle: every verified pair (in any order)."""
    return runner.shuffle(job, bucketed(records, options), partial(bucket_keys, options=options),
                          partial(candidate_pairs, options=options), name="dedup")
