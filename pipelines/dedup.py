"""Deduplication as steps between the stages and the shards, over the spooled dedup records
(``assemble.collect`` writes them, one small row per sample):

    collapse  copies of identical pixels follow their class lead (``dedup_clusters.twin_leads``,
              here one DuckDB window over the records): they never enter the buckets
    bucket    ``bucket_keys``: exact-pixel key, image LSH bands, caption MinHash bands   (map)
    verify    ``candidate_pairs`` per bucket: the true Hamming distance / Jaccard       (reduce)
    cluster   ``dedup_clusters.finish`` over the records the pairs and copies name: one
              counterpart per article pair, canonical-anchored stars, panels following their figures
    apply     ``assemble.apply_dedup``: duplicates to ``dropped`` with their evidence

On the local runner the buckets are vectorized image bands over two uint64 columns
(``near_pairs_array``) and DuckDB group-bys over the exact and caption band keys, so the driver
holds 16 bytes per record plus the records that pair. On Ray and Beam, bucket → verify is the
runner's shuffle (hash partitions: map and reduce calls on the Ray actors, a Beam ``GroupByKey``)
over the records outside the copies, which the driver streams into Parquet parts in the staging
folder (one batch at a time, no Python rows) for the workers to read; every runner gives the same
pairs, so the same removals (``tests/test_runners_dedup.py``).
"""
from __future__ import annotations

from functools import partial
from itertools import groupby
from operator import itemgetter
from typing import Any, Iterable, Iterator, Sequence

import fsspec
import numpy as np

from medcorpus.pipelines.assemble import Assembly, record_of
from medcorpus.transforms.dedup import (DedupOptions, DedupRecord, Pair, bucket_keys, caption_band_values,
                                        caption_minhash, candidate_pairs, near_pairs_array, text_only)
from medcorpus.transforms.dedup_clusters import DedupResult, finish

BATCH = 50_000
PART = 10_000  # fewest records per shuffle part (map task) but the last: a task on fewer costs less than it waits


def dedup(runner: Any, job: Any, asm: Assembly) -> tuple[DedupResult, dict[str, str]]:
    """The removals over the spooled records, and each dropped key's article id."""
    options = job.config.dedup_options()
    db = asm.spool.db
    _twins_table(db, asm.record_table, options)
    twins = dict(db.execute("SELECT key, lead FROM twins").fetchall())
    db.execute(f"CREATE OR REPLACE TEMP VIEW solo AS SELECT * FROM {asm.record_table} ANTI JOIN twins USING (key)")
    if runner.name == "local":
        pairs = local_pairs(db, options)
    else:
        # one folder per work dir (one build at a time holds it): what a killed build left is replaced
        folder = f"{job.staging_root.rstrip('/')}/dedup-parts"
        per_part = min(BATCH, max(PART, -(-asm.records // max(1, runner.workers))))
        try:
            parts = write_parts(db.execute("SELECT * FROM solo").to_arrow_reader(per_part), folder)
            pairs = sorted(set(shuffled_pairs(runner, job, parts, options)))
        finally:
            _remove(folder)
    records, newest = _involved(db, asm.record_table, pairs)
    result = finish(records, pairs, options, twins=twins, newest=newest)
    return result, {k: records[k].article_id for k in result.matches}


def _twins_table(db: Any, source: str, options: DedupOptions) -> None:
    """``twins(key, lead)``: ``twin_leads`` in SQL (canonical order: not an older version, license
    preference, most pixels, smallest key; figures and panels apart; a lead's own group stays)."""
    if "exact" not in options.kinds:
        db.execute("CREATE OR REPLACE TEMP TABLE twins (key VARCHAR, lead VARCHAR)")
        return
    prefs = options.license_preference
    rank = ("CASE license_code " + " ".join("WHEN ? THEN %d" % i for i in range(len(prefs)))
            + f" ELSE {len(prefs)} END") if prefs else "0"
    db.execute(f"""CREATE OR REPLACE TEMP TABLE twins AS
        WITH r AS (SELECT key, exact, "group", pixels, ("group" <> '' AND "group" <> key) AS panel,
                          version <> max(version) OVER (PARTITION BY article_id) AS old, {rank} AS lic FROM {source}),
        w AS (SELECT key, "group", first_value(key) OVER win AS lead, first_value("group") OVER win AS lead_group,
                     row_number() OVER win AS n FROM r
              WINDOW win AS (PARTITION BY exact, panel ORDER BY old, lic, pixels DESC, key))
        SELECT key, lead FROM w WHERE n > 1 AND NOT (lead_group <> '' AND lead_group = "group")""", list(prefs))


def local_pairs(db: Any, options: DedupOptions) -> list[Pair]:
    """Every verified pair among the records outside the copies (the ``solo`` view), in one process."""
    pairs: set[Pair] = set()
    if "image" in options.kinds:
        pairs.update(_image_pairs(db, options))
    text = text_only(options)
    if text.kinds:
        _band_table(db, text)
        for bucket, members in _shared_buckets(db):
            pairs.update(candidate_pairs(bucket, members, options))
    return sorted(pairs)


def _shared_buckets(db: Any) -> Iterator[tuple[str, list[DedupRecord]]]:
    """Each bucket key of ``bands`` that two or more records share, with its records in key order.
    Counting and joining spill within the driver's DuckDB budget; a ``list()`` aggregate over every
    band (tens of millions of rows at a few million records) would not, so the members stream out
    sorted and are grouped here."""
    db.execute("CREATE OR REPLACE TEMP TABLE shared AS SELECT band FROM bands GROUP BY band HAVING count(*) > 1")
    db.execute("CREATE OR REPLACE TEMP TABLE members AS SELECT band, key FROM bands SEMI JOIN shared USING (band)")
    records = _records(db, "solo", "key IN (SELECT DISTINCT key FROM members)")
    rows = db.execute("SELECT band, key FROM members ORDER BY band, key").to_arrow_reader(BATCH)
    sorted_rows = ((band, key) for batch in rows for band, key in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()))
    for bucket, group in groupby(sorted_rows, key=itemgetter(0)):
        yield bucket, [records[key] for _, key in group]


def _image_pairs(db: Any, options: DedupOptions) -> Iterator[Pair]:
    """Near image pairs from the two hash columns alone (16 bytes a record in memory); the keys
    of the pairs found are looked up in DuckDB."""
    import pyarrow as pa

    db.execute("CREATE OR REPLACE TEMP TABLE hashes AS SELECT row_number() OVER (ORDER BY key) - 1 AS i, key, hi, lo "
               "FROM solo")
    cols = db.execute("SELECT hi, lo FROM hashes ORDER BY i").fetchnumpy()
    h = np.empty((len(cols["hi"]), 2), np.uint64)
    h[:, 0], h[:, 1] = cols.pop("hi"), cols.pop("lo")
    i, j, d = near_pairs_array(h, options)
    del h
    db.register("found", pa.table({"i": i, "j": j, "d": d}))
    rows = db.execute("SELECT a.key, b.key, found.d FROM found JOIN hashes a ON a.i = found.i "
                      "JOIN hashes b ON b.i = found.j").fetchall()
    db.unregister("found")
    db.execute("DROP TABLE hashes")
    return (Pair(*sorted((x, y)), "image", float(dist)) for x, y, dist in rows)


def _band_table(db: Any, options: DedupOptions) -> None:
    """``bands(band, key)``: the exact and caption bucket keys of every record outside the copies."""
    import pyarrow as pa

    db.execute("CREATE OR REPLACE TEMP TABLE bands (band VARCHAR, key VARCHAR)")
    if "exact" in options.kinds:
        db.execute("INSERT INTO bands SELECT 'x:' || exact, key FROM solo")
    if "caption" not in options.kinds:
        return
    sql = f"SELECT key, caption FROM solo WHERE len(string_split(caption, ' ')) >= {int(options.caption_min_words)}"
    for batch in db.execute(sql).to_arrow_reader(BATCH):
        bands, keys = [], []
        for key, caption in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            signature = caption_minhash(caption.split(), options)
            if signature is not None:
                for b, v in enumerate(caption_band_values(signature, options)):
                    bands.append(f"c{b}:{v}")
                    keys.append(key)
        db.register("chunk", pa.table({"band": pa.array(bands, pa.string()), "key": pa.array(keys, pa.string())}))
        db.execute("INSERT INTO bands SELECT * FROM chunk")
        db.unregister("chunk")


def _records(db: Any, table: str, where: str = "true") -> dict[str, DedupRecord]:
    rows = db.execute(f"SELECT * FROM {table} WHERE {where}").to_arrow_reader(BATCH)
    return {r["key"]: record_of(r) for batch in rows for r in batch.to_pylist()}


def _involved(db: Any, source: str, pairs: Sequence[Pair]) -> tuple[dict[str, DedupRecord], dict[str, int]]:
    """The records ``finish`` can depend on: the pairs', every copy and lead, and the panels of those
    figures; and the newest version in the corpus of each of their articles."""
    import pyarrow as pa

    db.register("paired", pa.table({"key": pa.array(sorted({k for p in pairs for k in (p.key_a, p.key_b)}),
                                                     pa.string())}))
    db.execute("CREATE OR REPLACE TEMP TABLE named AS SELECT key FROM paired UNION SELECT key FROM twins "
               "UNION SELECT lead FROM twins")
    db.unregister("paired")
    db.execute(f"""CREATE OR REPLACE TEMP TABLE involved AS
        SELECT * FROM {source} WHERE key IN (SELECT key FROM named) OR "group" IN (SELECT key FROM named)""")
    newest = dict(db.execute(f"SELECT article_id, max(version) FROM {source} WHERE article_id IN "
                             "(SELECT DISTINCT article_id FROM involved) GROUP BY article_id").fetchall())
    return _records(db, "involved"), newest


def write_parts(batches: Iterable[Any], folder: str) -> list[str]:
    """Each record batch as one Parquet part in ``folder``, emptied first (a local path or an
    fsspec URL the workers reach): the input of the runner's shuffle, one map task per part."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _remove(folder)
    fs, path = fsspec.core.url_to_fs(folder)
    fs.makedirs(path, exist_ok=True)
    parts = []
    for i, batch in enumerate(batches):
        if batch.num_rows:
            parts.append(f"{folder.rstrip('/')}/part-{i:05d}.parquet")
            with fs.open(f"{path.rstrip('/')}/part-{i:05d}.parquet", "wb") as f:
                pq.write_table(pa.Table.from_batches([batch]), f)
    return parts


def write_records(records: Sequence[DedupRecord], folder: str, parts: int = 1) -> list[str]:
    """In-memory records as ``parts`` Parquet parts (``write_parts``): a shuffle's input for small
    inputs and tests."""
    import pyarrow as pa

    from medcorpus.pipelines.assemble import DEDUP_RECORDS, _record_row

    table = pa.Table.from_pylist([_record_row(r) for r in records], schema=DEDUP_RECORDS)
    return write_parts(table.to_batches(max_chunksize=max(1, -(-len(records) // parts))), folder)


def _remove(folder: str) -> None:
    fs, path = fsspec.core.url_to_fs(folder)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def read_part(url: str) -> Iterator[DedupRecord]:
    """The dedup records of one part ``write_parts`` wrote (on a worker)."""
    import pyarrow.parquet as pq

    fs, path = fsspec.core.url_to_fs(url)
    with fs.open(path, "rb") as f:
        for row in pq.read_table(f).to_pylist():
            yield record_of(row)


def shuffled_pairs(runner: Any, job: Any, parts: Sequence[str], options: DedupOptions) -> list[Pair]:
    """bucket → verify on the runner's shuffle over the records in ``parts`` (Parquet, outside the
    copies: ``write_parts``): every verified pair (in any order)."""
    return runner.shuffle(job, parts, read_part, partial(bucket_keys, options=options),
                          partial(candidate_pairs, options=options), name="dedup")
