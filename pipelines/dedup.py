"""Deduplication as steps between the stages and the shards, over the spooled dedup records
(``assemble.collect`` writes them, one small row per sample):

    collapse  copies of identical pixels follow their class lead (``dedup_clusters.twin_leads``,
              here one DuckDB window over the records): they never enter the buckets
    bucket    exact-pixel key, image LSH bands, caption MinHash bands (computed by the staging
              workers, ``add_caption_bands``)
    verify    ``candidate_pairs`` per bucket: the true Hamming distance / Jaccard
    cluster   ``dedup_clusters.finish`` over the records the pairs and copies name, a batch of
              whole connected components at a time: one counterpart per article pair,
              canonical-anchored stars, panels following their figures
    apply     ``assemble.apply_dedup``: duplicates to ``dropped`` with their evidence

The verified pairs go to a DuckDB table, not the driver's memory. Every runner takes the same
path: the image bands are vectorized over two uint64 columns (``near_pairs_array``) in groups of
bands, one task per worker (``band_group_pairs``, run through ``Runner.shuffle`` on the hash
columns written to Parquet in the staging folder: the local pool, Ray actors, Beam workers); the
exact and caption band keys are DuckDB group-bys, a hash partition of the keys at a time, streamed
out one shared bucket at a time. So the driver holds one bucket and one batch of components
(``FINISH_RECORDS`` records, or one larger component), never a row per record, and every runner
gives the same pairs, so the same removals (``tests/test_runners_dedup.py``).
"""
from __future__ import annotations

import shutil
from functools import partial
from itertools import groupby, islice
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import fsspec
import numpy as np
import pyarrow as pa

from medcorpus.pipelines.assemble import Assembly, record_of
from medcorpus.pipelines.spool import READ_ROWS
from medcorpus.transforms.dedup import (DedupOptions, DedupRecord, Pair, candidate_pairs, near_pairs_columns,
                                        text_only)
from medcorpus.transforms.dedup_clusters import DedupResult, finish

BATCH = 50_000
FINISH_RECORDS = 50_000  # records per ``finish`` call (whole components)
PAIRS = pa.schema([("key_a", pa.string()), ("key_b", pa.string()), ("kind", pa.string()), ("distance", pa.float64())])
PAIR_FIELDS = ", ".join(PAIRS.names)
PAIR_COLUMNS = "key_a VARCHAR, key_b VARCHAR, kind VARCHAR, distance DOUBLE"
HASH_ROWS = 1_000_000  # hash rows per Parquet part the band groups read (16 MB)
BAND_PART_ROWS = 16_000_000  # exact and caption bucket keys per partition: a third of what 512 MB of DuckDB held
GROUP_RECORDS = 200_000  # a band group per this many records, up to one per worker: a small build runs one


def dedup(runner: Any, job: Any, asm: Assembly) -> Iterator[tuple[DedupResult, dict[str, str]]]:
    """The removals over the spooled records, a batch of whole clusters at a time (``_batches``),
    each with its dropped keys' article ids."""
    options = job.config.dedup_options()
    db = asm.spool.db
    _twins_table(db, asm.record_table, options)
    db.execute(f"CREATE OR REPLACE TEMP VIEW solo AS SELECT * FROM {asm.record_table} ANTI JOIN twins USING (key)")
    db.execute(f"CREATE OR REPLACE TEMP TABLE pairs ({PAIR_COLUMNS})")
    if "image" in options.kinds:
        _image_pairs(db, options, runner, job)
    text = text_only(options)
    if text.kinds:
        _text_pairs(db, text)
    for records, pairs, twins, newest in _batches(db, asm.record_table, FINISH_RECORDS):
        result = finish(records, pairs, options, twins=twins, newest=newest)
        yield result, {k: records[k].article_id for k in result.matches}


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


def _text_pairs(db: Any, options: DedupOptions) -> None:
    """The exact and caption pairs among the records outside the copies (the ``solo`` view), into
    ``pairs``: DuckDB group-bys over their bucket keys, one hash partition of the keys at a time,
    each shared bucket verified as it streams out."""
    folder = _temp_folder(db) / "bands"
    try:
        parts = _band_table(db, options, folder)
        _insert_pairs(db, (p for bucket, members in _shared_buckets(db, parts)
                           for p in candidate_pairs(bucket, members, options)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # ≈ 1 GB at 3 M records: not kept for the rest of the build


def _insert_pairs(db: Any, pairs: Iterable[Pair]) -> None:
    """Append pairs to ``pairs``, a batch at a time: the driver never holds them all."""
    it = iter(pairs)
    chunks = (pa.table({f: pa.array([getattr(p, f) for p in chunk], PAIRS.field(f).type) for f in PAIRS.names})
              for chunk in iter(lambda: list(islice(it, BATCH)), []))
    path = _temp_folder(db) / "pairs.parquet"
    try:
        _write_parquet(path, chunks, PAIRS)
        db.execute(f"INSERT INTO pairs SELECT * FROM read_parquet('{path}')")
    finally:
        path.unlink(missing_ok=True)


def _temp_folder(db: Any) -> Path:
    """The folder of DuckDB's spill files (the spool's own), for tables kept as Parquet."""
    path = Path(db.execute("SELECT current_setting('temp_directory')").fetchone()[0])
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_parquet(path: Path, chunks: Iterable[Any], schema: Any) -> None:
    """Arrow tables to one Parquet file. They are computed while a result of the same DuckDB
    connection streams out (the records they come from), and any other statement on that
    connection would end that stream early: so ``chunks`` is lazy (a generator that runs its own
    queries once iterated), and nothing else runs on the connection until it is exhausted."""
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, schema) as writer:
        for chunk in chunks:
            writer.write_table(chunk)


def _shared_buckets(db: Any, parts: Sequence[str]) -> Iterator[tuple[str, list[DedupRecord]]]:
    """Each bucket key (of the hash partitions ``_band_table`` wrote) that two or more records
    share, with its records in key order, a partition at a time. A partition's group-by fits the
    driver's DuckDB budget, where the whole key table's did not past a few million records. The keys'
    64-bit hashes are counted, not the strings (a collision only adds a bucket of one, which pairs
    nothing). The members' records are picked in one pass over the records for all partitions (the
    partitions grow with the corpus, so a pass for each would grow as n²), then joined with each
    partition's members. Between statements everything is a Parquet file, not a DuckDB table, so
    each sort has the whole budget. Each partition's members stream out sorted, with their records,
    and are grouped here: one bucket's records in memory at a time."""
    if not parts:
        return
    for part in parts:
        keys = f"read_parquet('{part}/*.parquet')"
        db.execute(f"COPY (SELECT band, key FROM {keys} WHERE hash(band) IN (SELECT hash(band) AS h FROM {keys} "
                   f"GROUP BY h HAVING count(*) > 1)) TO '{part}.members.parquet' (FORMAT parquet)")
    held = f"{Path(parts[0]).parent}/held.parquet"
    every = ", ".join(f"'{part}.members.parquet'" for part in parts)
    db.execute(f"COPY (SELECT * EXCLUDE (bands) FROM solo WHERE key IN (SELECT key FROM read_parquet([{every}]))) "
               f"TO '{held}' (FORMAT parquet)")
    for part in parts:
        path = f"{part}.records.parquet"
        db.execute(f"COPY (SELECT m.band AS _band, h.* FROM read_parquet('{part}.members.parquet') m "
                   f"JOIN read_parquet('{held}') h USING (key)) TO '{path}' (FORMAT parquet)")
        yield from _grouped(db, f"read_parquet('{path}')")


def _grouped(db: Any, members: str) -> Iterator[tuple[str, list[DedupRecord]]]:
    rows = db.execute(f"SELECT * FROM {members} ORDER BY _band, key").to_arrow_reader(READ_ROWS)
    try:
        for bucket, group in groupby((r for batch in rows for r in batch.to_pylist()), key=itemgetter("_band")):
            yield bucket, [record_of(r) for r in group]
    finally:
        rows.close()  # the sorted result holds DuckDB memory until its reader is closed


def _image_pairs(db: Any, options: DedupOptions, runner: Any, job: Any) -> None:
    """Near image pairs into ``pairs``: the bands split into groups (``_band_groups``), each group
    a task on the runner's workers over the two hash columns (16 bytes a record, Parquet parts in
    the staging folder; ``band_group_pairs``). The bands are independent, so the groups find the
    pairs one process over all bands finds; the driver only streams the hashes out and the pairs
    in, and looks their keys up in DuckDB."""
    db.execute("CREATE OR REPLACE TEMP TABLE hashes AS SELECT row_number() OVER (ORDER BY key) - 1 AS i, key, hi, lo "
               "FROM solo")
    folder = f"{job.staging_root.rstrip('/')}/dedup-hashes"  # one build at a time holds a work dir
    try:
        parts = write_parts(db.execute("SELECT hi, lo FROM hashes ORDER BY i").to_arrow_reader(HASH_ROWS), folder)
        if parts:
            groups = _band_groups(db.execute("SELECT count(*) FROM hashes").fetchone()[0], options, runner.workers)
            found = runner.shuffle(job, groups, partial(band_group_pairs, parts=tuple(parts), options=options),
                                   _itself, _first, name="image-bands")
            _insert_image_pairs(db, found)
    finally:
        _remove(folder)
    db.execute("DROP TABLE hashes")


def _band_groups(records: int, options: DedupOptions, workers: int) -> list[str]:
    """The bands in ``first:end`` groups of about equal size: one per worker, fewer on small
    inputs (one per ``GROUP_RECORDS`` records), so a small build starts no extra task."""
    n = max(1, min(options.bands, workers, -(-records // GROUP_RECORDS)))
    bounds = np.linspace(0, options.bands, n + 1).astype(int)
    return [f"{a}:{b}" for a, b in zip(bounds[:-1], bounds[1:])]


def _insert_image_pairs(db: Any, urls: Iterable[str]) -> None:
    """The band groups' pairs (row numbers, from their Parquet files) into ``pairs`` by key, each
    pair once however many groups found it."""
    db.execute("CREATE OR REPLACE TEMP TABLE found (i BIGINT, j BIGINT, d INTEGER)")
    for url in urls:
        db.register("part", _read_table(url))
        db.execute("INSERT INTO found SELECT * FROM part")
        db.unregister("part")
    db.execute("INSERT INTO pairs SELECT least(a.key, b.key), greatest(a.key, b.key), 'image', f.d::DOUBLE "
               "FROM (SELECT DISTINCT i, j, d FROM found) f JOIN hashes a ON a.i = f.i JOIN hashes b ON b.i = f.j")
    db.execute("DROP TABLE found")


def band_group_pairs(group: str, parts: Sequence[str], options: DedupOptions) -> list[str]:
    """On a worker: the near pairs (row numbers ``i < j`` and distance) among the hashes in
    ``parts`` that share a band of ``group`` ("first:end"), written as one Parquet file beside them."""
    import pyarrow.parquet as pq

    first, end = (int(x) for x in group.split(":"))
    table = pa.concat_tables(_read_table(url) for url in parts)
    hi, lo = table.column("hi").to_numpy(), table.column("lo").to_numpy()  # contiguous copies
    del table
    i, j, d = near_pairs_columns(hi, lo, options, bands=range(first, end))
    url = f"{parts[0].rsplit('/', 1)[0]}/pairs-{first:04d}.parquet"
    fs, path = fsspec.core.url_to_fs(url)
    with fs.open(path, "wb") as f:
        pq.write_table(pa.table({"i": i, "j": j, "d": d.astype(np.int32)}), f)
    return [url]


def _itself(item: str) -> list[str]:
    return [item]


def _first(key: str, items: list[str]) -> list[str]:
    return items[:1]


def _read_table(url: str) -> Any:
    import pyarrow.parquet as pq

    fs, path = fsspec.core.url_to_fs(url)
    with fs.open(path, "rb") as f:
        return pq.read_table(f)


def _band_table(db: Any, options: DedupOptions, folder: Path) -> list[str]:
    """The exact and caption bucket keys (``band``, ``key``) of every record outside the copies
    (the caption MinHash bands the workers computed, ``assemble.add_caption_bands``), written once
    as Parquet beside DuckDB's spill files in hash partitions of the key (``part=N`` folders, about
    ``BAND_PART_ROWS`` rows each; tens of millions of rows at a few million records: as one table
    they would fill DuckDB's memory before its group-by could spill); returns the partitions' folders."""
    shutil.rmtree(folder, ignore_errors=True)
    keys = []
    if "caption" in options.kinds:
        keys.append("SELECT 'c' || b || ':' || v AS band, key FROM "
                    "(SELECT key, unnest(bands) AS v, unnest(range(len(bands))) AS b FROM solo)")
    if "exact" in options.kinds:
        keys.append("SELECT 'x:' || exact AS band, key FROM solo")
    if not keys:
        return []
    per_record = ("caption" in options.kinds) * options.caption_bands + ("exact" in options.kinds)
    parts = max(1, -(-db.execute("SELECT count(*) FROM solo").fetchone()[0] * per_record // BAND_PART_ROWS))
    db.execute(f"COPY (SELECT *, hash(band) % {parts} AS part FROM ({' UNION ALL '.join(keys)})) TO '{folder}' "
               "(FORMAT parquet, PARTITION_BY (part), WRITE_PARTITION_COLUMNS false)")
    return sorted(str(p) for p in folder.glob("part=*"))


Batch = tuple[dict[str, DedupRecord], list[Pair], dict[str, str], dict[str, int]]


def _batches(db: Any, source: str, size: int) -> Iterator[Batch]:
    """The records ``finish`` can depend on (the pairs', every copy and lead, the panels of those
    figures), with their pairs, copies and their articles' newest versions, in batches of whole
    connected components (``_components``): ``finish`` decides within one component (a pair, a copy
    and its lead, a panel and its figure link it), so batches give the removals one call over all
    would, while the driver holds one batch of records."""
    _involved(db, source)
    _components(db, size)
    db.execute("CREATE OR REPLACE TEMP TABLE batched_pairs AS SELECT DISTINCT p.*, n.batch FROM pairs p "
               "JOIN numbered n ON n.key = p.key_a")
    db.execute("CREATE OR REPLACE TEMP TABLE batched_twins AS "
               "SELECT t.*, n.batch FROM twins t JOIN numbered n USING (key)")
    db.execute(f"""CREATE OR REPLACE TEMP TABLE newest AS SELECT article_id, max(version) AS version FROM {source}
        WHERE article_id IN (SELECT DISTINCT article_id FROM involved) GROUP BY article_id""")
    for (batch,) in db.execute("SELECT DISTINCT batch FROM numbered ORDER BY batch").fetchall():
        records = {r["key"]: record_of(r) for r in _rows(db, "SELECT * EXCLUDE (i, batch) FROM numbered "
                                                              "WHERE batch = ? ORDER BY key", batch)}
        pairs = [Pair(*row) for row in db.execute(f"SELECT {PAIR_FIELDS} FROM batched_pairs WHERE batch = ?",
                                                  [batch]).fetchall()]
        twins = dict(db.execute("SELECT key, lead FROM batched_twins WHERE batch = ?", [batch]).fetchall())
        newest = dict(db.execute("SELECT article_id, version FROM newest SEMI JOIN (SELECT article_id FROM numbered "
                                 "WHERE batch = ?) USING (article_id)", [batch]).fetchall())
        yield records, pairs, twins, newest


def _rows(db: Any, sql: str, *params: Any) -> Iterator[dict[str, Any]]:
    for batch in db.execute(sql, list(params)).to_arrow_reader(READ_ROWS):
        yield from batch.to_pylist()


def _involved(db: Any, source: str) -> None:
    """``involved``: the records named by a pair or a copy, and the panels of those figures."""
    db.execute("CREATE OR REPLACE TEMP TABLE named AS SELECT key_a AS key FROM pairs UNION SELECT key_b FROM pairs "
               "UNION SELECT key FROM twins UNION SELECT lead FROM twins")
    db.execute(f"""CREATE OR REPLACE TEMP TABLE involved AS
        SELECT * FROM {source} WHERE key IN (SELECT key FROM named) OR "group" IN (SELECT key FROM named)""")


def _components(db: Any, size: int) -> None:
    """``numbered``: each involved record with its connected component's batch. Components are
    found on integer ids (scipy, a few bytes an edge) and packed into batches of about ``size``
    records in key order; a component is never split, so one larger than ``size`` is a batch alone."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    db.execute("CREATE OR REPLACE TEMP TABLE ids AS "
               "SELECT key, row_number() OVER (ORDER BY key) - 1 AS i FROM involved")
    n = db.execute("SELECT count(*) FROM ids").fetchone()[0]
    # three statements, not one UNION ALL of the three joins: at 10 M records that one parked
    # every DuckDB thread for good (no error, no CPU), as duckdb/duckdb#24961 describes
    edges = [db.execute(f"SELECT a.i AS u, b.i AS v FROM {table} x JOIN ids a ON a.key = x.{one} "
                        f"JOIN ids b ON b.key = x.{other}").fetchnumpy()
             for table, one, other in (("pairs", "key_a", "key_b"), ("twins", "key", "lead"),
                                       ("involved", "key", '"group"'))]
    u, v = (np.concatenate([e[c] for e in edges]) for c in "uv")
    graph = coo_matrix((np.ones(len(u), np.int8), (u, v)), shape=(n, n))
    label = connected_components(graph, directed=False)[1] if n else np.zeros(0, np.int64)
    batch = _pack(np.bincount(label), size)[label]
    db.register("label", pa.table({"i": np.arange(n, dtype=np.int64), "batch": batch.astype(np.int64)}))
    db.execute("CREATE OR REPLACE TEMP TABLE numbered AS SELECT r.*, ids.i, label.batch FROM involved r "
               "JOIN ids USING (key) JOIN label USING (i) ORDER BY label.batch, r.key")
    db.unregister("label")
    db.execute("DROP TABLE ids")


def _pack(sizes: np.ndarray, size: int) -> np.ndarray:
    """Batch of each component (in label order): consecutive components until a batch holds ``size``."""
    out = np.empty(len(sizes), np.int64)
    batch, filled = 0, 0
    for c, count in enumerate(sizes):
        if filled and filled + count > size:
            batch, filled = batch + 1, 0
        out[c] = batch
        filled += count
    return out


def write_parts(batches: Iterable[Any], folder: str) -> list[str]:
    """Each record batch as one Parquet part in ``folder``, emptied first (a local path or an
    fsspec URL the workers reach): what the band groups read."""
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


def _remove(folder: str) -> None:
    fs, path = fsspec.core.url_to_fs(folder)
    if fs.exists(path):
        fs.rm(path, recursive=True)
