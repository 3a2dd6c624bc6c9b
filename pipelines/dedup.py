"""Deduplication as steps over the runner's one shuffle primitive, between the stages and the shards:

    hash     the quality stage's hashes, one small record per sample (assemble.dedup_record)
    bucket   ``bucket_keys``: exact-pixel key, image LSH bands, caption MinHash bands   (map)
    verify   ``candidate_pairs`` per bucket: the true Hamming distance / Jaccard       (reduce)
    cluster  ``dedup_clusters.finish``: one counterpart per article pair, canonical-anchored stars,
             panels following their figures                                          (driver)
    apply    ``assemble.apply_dedup``: duplicates to ``dropped`` with their evidence

``Runner.shuffle`` runs bucket → verify (in-process, a Ray ``groupby``, a Beam ``GroupByKey``); no
runner knows about deduplication, and every runner gives the same pairs, so the same removals.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Sequence

from medcorpus.transforms.dedup import DedupRecord, bucket_keys, candidate_pairs
from medcorpus.transforms.dedup_clusters import DedupResult, finish


def dedup(runner: Any, job: Any, records: Sequence[DedupRecord]) -> DedupResult:
    options = job.config.dedup_options()
    pairs = runner.shuffle(job, records, partial(bucket_keys, options=options),
                           partial(candidate_pairs, options=options), name="dedup")
    return finish({r.key: r for r in records}, pairs, options)
