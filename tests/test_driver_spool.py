"""The driver's streaming steps give what the in-memory ones gave: spooled tables written sorted are
the bytes ``write_rows`` writes, plans cut from the DuckDB-sorted index are ``plan_shards``' plans,
keys staged twice keep their first unit, and duplicates leave the plans with their evidence.

Rows here are synthetic (the mechanics need more rows than the shared articles have: two row
groups of a table, several shards per family); the end-to-end builds on real articles are in
test_build.py, test_dedup_reprints.py and test_runners_parity.py.
"""
from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medcorpus.manifests.parquet import write_rows
from medcorpus.manifests.shards import plan_shards
from medcorpus.manifests.storage import Output
from medcorpus.pipelines import assemble
from medcorpus.pipelines.config import BuildConfig, ShardOptions
from medcorpus.pipelines import spool as spool_module
from medcorpus.pipelines.spool import Spool, write_sorted
from medcorpus.pipelines.staging import StagedSample, Staging, UnitResult
from medcorpus.schemas import manifest as schema
from medcorpus.transforms.dedup_clusters import DedupResult, Match

SORT = ("input", "stage", "reason", "figure_id", "detail")


def _errors(n: int) -> list[dict[str, object]]:
    rng = random.Random(7)
    words = ["α-fig", "Zeta", "zeta", "b", "", None, "é", "fig 10", "fig 9"]
    return [{"input": f"{rng.choice(words[:5])}{rng.randrange(500)}", "stage": rng.choice(["parse", "image"]),
             "reason": rng.choice(["image_not_found", "bad_xml"]), "detail": rng.choice(words),
             "article_id": f"A{i}", "figure_id": rng.choice(words)} for i in range(n)]


def test_spooled_table_has_the_bytes_write_rows_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "SORT_ROWS", 7_000)  # the big table is sorted in key ranges
    output = Output(str(tmp_path / "out"))
    spool = Spool(tmp_path / "spool")
    for name, rows in (("big", _errors(60_000)), ("small", _errors(37)), ("empty", [])):
        spool.declare(name, schema.ERRORS)
        for start in range(0, len(rows), 7_000):  # appended unit by unit, flushed in between
            spool.add(name, rows[start:start + 7_000])
        spool.close(name)
        assert write_sorted(output, f"b/{name}.parquet", spool, name, schema.ERRORS, SORT) == len(rows)
        write_rows(output, f"a/{name}.parquet", rows, schema.ERRORS, SORT)
        assert output.read_bytes(f"a/{name}.parquet") == output.read_bytes(f"b/{name}.parquet"), name
    assert pq.ParquetFile(output.path("b/big.parquet")).metadata.num_row_groups == 2
    held = spool.db.execute("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
                            "WHERE tag = 'EXTERNAL_FILE_CACHE'").fetchone()[0]
    assert held == 0  # the files read (spool, key ranges) are not kept in the process
    spool.finish()
    assert not (tmp_path / "spool").exists()


def test_key_ranges_are_split_into_files_that_go_when_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The big table's key ranges go through files of their own in the spool, gone once the rows are
    read and when the reader stops early; the first range is empty here (the n-th key is the
    smallest: a thousand rows share it) and the rows still come in ``write_rows`` order."""
    monkeypatch.setattr(spool_module, "SORT_ROWS", 500)
    rows = _errors(6_000)
    for row in rows[1_000:2_000]:
        row.update(input="", stage="", reason="", figure_id=None, detail=None)
    output = Output(str(tmp_path / "out"))
    spool = Spool(tmp_path / "spool")
    spool.declare("big", schema.ERRORS)
    spool.add("big", rows)
    spool.close("big")
    ranges = tmp_path / "spool" / "ranges"
    reader = spool_module.sorted_batches(spool, "big", SORT)
    next(reader)
    assert len({p.parent for p in ranges.rglob("*.parquet")}) == len(rows) // 500 - 1
    reader.close()
    assert not any(ranges.rglob("*.parquet"))
    assert write_sorted(output, "b/big.parquet", spool, "big", schema.ERRORS, SORT) == len(rows)
    assert not any(ranges.rglob("*.parquet"))
    write_rows(output, "a/big.parquet", rows, schema.ERRORS, SORT)
    assert output.read_bytes("a/big.parquet") == output.read_bytes("b/big.parquet")
    spool.finish()


def test_range_index_is_the_number_of_bounds_at_or_below_the_key() -> None:
    """A row's range (the nested CASEs' binary search) is the count of bounds at or below its key."""
    import bisect

    import duckdb

    keys = ["", "\x00", "a", "a\x00b", "a\x01", "ab", "b", "bb", "c", "z", "é", "ω"]
    db = duckdb.connect()
    db.execute("CREATE TABLE t (k VARCHAR)")
    db.executemany("INSERT INTO t VALUES (?)", [[k] for k in keys])
    for m in range(1, len(keys)):
        for bounds in (keys[1:m + 1], keys[::-1][:m][::-1], keys[1::2][:m]):
            index, params = spool_module._range_index("k", bounds)
            got = dict(db.execute(f"SELECT k, {index} FROM t", params).fetchall())
            assert got == {k: bisect.bisect_right(bounds, k) for k in keys}, bounds


def _units(rng: random.Random) -> list[tuple[str, UnitResult]]:
    units = []
    for u in range(300):
        result = UnitResult(f"u{u}")
        for j in range(rng.randint(0, 9)):
            key = f"k{rng.randrange(2_000):05d}"  # some keys come from two units
            family = rng.choice(["comm", "noncomm", "other"])
            result.samples.append(StagedSample(key, family, {"article_id": f"A{u}", "figure_id": f"f{j}"},
                                               rng.choice([10, 200, 5_000])))
        units.append((f"token{u:04d}", result))
    return units


def test_streamed_plans_equal_the_in_memory_planner(tmp_path: Path) -> None:
    rng = random.Random(3)
    units = _units(rng)
    config = replace(BuildConfig(stages=("fetch", "parse", "image")), shards=ShardOptions(max_samples=37, max_bytes=40_000),
                     families=("comm", "noncomm"))
    asm = assemble.collect(units, config, tmp_path / "spool")
    first: dict[str, tuple[str, StagedSample]] = {}
    for token, result in units:  # what the driver kept in memory: the first unit of each key wins
        for s in result.samples:
            if s.family in config.families:
                first.setdefault(s.key, (token, s))
    dropped = sorted(rng.sample(sorted(first), 40))
    result = DedupResult({k: dropped[0] for k in dropped}, {dropped[0]: dropped[0]}, [],
                         {k: Match(k, dropped[0], ("exact",), 0) for k in dropped[1:]})
    assemble.apply_dedup(asm, [(result, {k: "A" for k in dropped})])
    staging = Staging(tmp_path / "staging")
    assemble.plan(asm, config, staging)
    expected = []
    for family in config.families:
        sizes = [(k, s.size) for k, (_, s) in first.items() if s.family == family and k not in result.matches]
        expected += plan_shards(family, sizes, 37, 40_000, {k: result.columns(k) for k in result.cluster_of})
    assert [(p.family, p.index, p.samples) for p in asm.plans] == [(p.family, p.index, len(p.keys)) for p in expected]
    assert len(expected) > 6
    for got, want in zip(asm.plans, expected):
        keys, tokens, updates = assemble.plan_rows(got, staging)
        assert keys == want.keys and tokens == {k: first[k][0] for k in keys}
        assert updates == {k: v for k, v in want.updates.items() if v["dedup_cluster"]}
    n_dup = sum(len(r.samples) for _, r in units) - asm.counters.get("family_not_written:other", 0) - len(first)
    assemble.write_tables(asm, Output(str(tmp_path / "out")))
    assert asm.errors_by_reason == {"duplicate_key": n_dup} and n_dup > 0
    assert asm.count("dropped") == 39


def test_shared_buckets_stay_within_the_driver_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bucket keys of 125,000 records (16 caption bands and an exact key each, 2.1 M rows; one record
    in 50 shares its bands with 124 others) grouped under a 48 MB DuckDB budget: a list() aggregate
    over every band runs out of memory there; the keys written in hash partitions, each counted,
    the members' records read in one pass for all partitions, stream out in key order within
    each partition."""
    import duckdb

    from medcorpus.pipelines import dedup
    from medcorpus.transforms.dedup import DedupOptions

    db = spool_module.driver_db(tmp_path, "48MB")
    record = "CASE WHEN i % 50 = 0 THEN i % 1000 ELSE i END"
    db.execute(f"""CREATE TEMP TABLE solo AS SELECT 'k' || lpad(i::VARCHAR, 7, '0') AS key, 'A' || i AS article_id,
        1 AS version, 'CC BY' AS license_code, 100 AS pixels, md5(i::VARCHAR) AS exact, 0::UBIGINT AS hi,
        i::UBIGINT AS lo, 'a caption' AS caption, '' AS "group", '' AS label, []::DOUBLE[] AS box, 0 AS width,
        0 AS height, list_transform(range(16), b -> hash({record}, b)) AS bands FROM range(125000) t(i)""")
    with pytest.raises(duckdb.OutOfMemoryException):
        db.execute("SELECT band, list(key ORDER BY key) FROM (SELECT unnest(bands)::VARCHAR AS band, key FROM solo) "
                   "GROUP BY band HAVING count(*) > 1").fetchall()
    monkeypatch.setattr(dedup, "BAND_PART_ROWS", 500_000)
    parts = dedup._band_table(db, DedupOptions(kinds=("exact", "caption")), tmp_path / "bands")
    assert len(parts) == 5
    buckets = list(dedup._shared_buckets(db, parts))
    names = [b for b, _ in buckets]
    assert sum(a > b for a, b in zip(names, names[1:])) < len(parts)  # a sorted run per partition
    # records 0, 50, 100 ... share their bands with every record 1,000 apart: 20 values x 16 bands
    assert len(buckets) == 20 * 16 and len({b for b, _ in buckets}) == 20 * 16
    for _, members in buckets:
        keys = [int(r.key[1:]) for r in members]
        assert keys == sorted(keys) and len(keys) == 125 and len({k % 1000 for k in keys}) == 1


def test_staged_units_on_an_object_store_are_read_concurrently_and_in_order(s3_output_bucket, fault_proxy, monkeypatch):
    """The driver's collect reads every staged unit once: on S3 (moto behind the loopback proxy)
    several reads are in flight, never more than the threads, and the units come back in the
    order asked, each its own (a ``.retry`` unit too)."""
    import s3fs

    from fixtures_s3 import Fault

    monkeypatch.setenv("AWS_ENDPOINT_URL", fault_proxy.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", fault_proxy.url)
    s3fs.S3FileSystem.clear_instance_cache()
    try:  # a cached filesystem pointing at the proxy must not outlive the test
        staging = Staging(f"s3://{s3_output_bucket.name}/work/staging")
        tokens = [f"{i:02x}{'ab' * 19}" for i in range(24)]
        for i, token in enumerate(tokens):
            staging.write(token, UnitResult(f"unit-{i}", errors=[{"reason": "fetch_transient"}] if i == 5 else []))
        fault_proxy.reset()
        fault_proxy.faults.append(Fault("delay", times=1000, stall_s=0.05))  # a round trip like a remote store's
        read = list(staging.read_metas(reversed(tokens), threads=4))
        assert [t for t, _ in read] == tokens[::-1]
        assert [r.unit_id for _, r in read] == [f"unit-{i}" for i in reversed(range(24))]
        assert read[-6][1].retry and staging.staged(tokens[5]) and not staging.done(tokens[5])
        assert 1 < fault_proxy.max_in_flight <= 4
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


def test_range_bounds_are_every_nth_key_across_batch_edges():
    """The sorted write's key ranges hold SORT_ROWS rows each: the bounds are the n-th, 2n-th ... key
    of the sorted column, however DuckDB cuts its result into batches."""
    import pyarrow as pa

    keys = [f"k{i:03d}" for i in range(1, 24)]
    cuts = [0, 4, 5, 11, 23]  # batches of 4, 1, 6 and 12 keys
    batches = [pa.record_batch([pa.array(keys[a:b])], names=["k"]) for a, b in zip(cuts, cuts[1:])]
    assert spool_module._every_nth(batches, 5) == ["k005", "k010", "k015", "k020"]
    assert spool_module._every_nth(batches, 30) == []
