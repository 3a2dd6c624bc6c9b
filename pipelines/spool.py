"""Driver-side tables that never sit in memory: rows appended to Parquet files in the work
directory as staged units are read, then sorted and joined by DuckDB (an external sort that
spills to disk past ``memory_limit``) and streamed to the output.

``write_sorted`` gives the same bytes as ``parquet.write_rows`` over the same rows: the same sort
(the ``sort_by`` columns as strings, None as ""; ties in append order, which ``_ord`` keeps), the
same schema and the same row groups (``ROW_GROUP`` rows, written one by one).
"""
from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterable, Iterator

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from medcorpus.manifests.parquet import ROW_GROUP, WRITE_OPTIONS
from medcorpus.manifests.storage import Output
from medcorpus.schemas.manifest import to_table, with_version

ORD = "_ord"
FLUSH_ROWS = 5_000  # rows buffered per table before they are appended (one row group)
MEMORY_LIMIT = "512MB"  # DuckDB's own budget in the driver; past it sorts and joins spill to temp_directory
SORT_ROWS = 100_000  # rows DuckDB sorts at a time when a table streams out (wide rows fit its budget)
READ_ROWS = 10_000  # rows a result batch carries out of DuckDB (wide table rows: a few MB)
THREADS = 2  # each DuckDB thread holds its own sort and join buffers inside that budget
SPLIT_ROWS = 10_000  # rows a DuckDB thread buffers before handing them to the range files (PARTITION_BY)
RANGE_GROUP_BYTES = "2MB"  # row group of a range file while a table is split into its key ranges
SPLIT_KEY, SPLIT_RANGE = "_split_key", "_range"  # columns of the split: a row's joined sort key, its range


def release_freed_memory() -> None:
    """Hand memory the driver freed back to the OS between phases. Python's rows go through glibc's
    malloc, Arrow's buffers through its own pool, DuckDB through its own allocator: memory one of
    them freed stays in the process for that allocator alone, so each phase's peak would sit on top
    of what the earlier phases left (the RSS after a phase stays near that phase's peak)."""
    import ctypes
    import gc

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator returns memory its own way
        pass


def driver_db(temp_directory: str | Path, memory_limit: str = MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection for the driver's sorts and joins: a fixed memory budget that spills to
    ``temp_directory`` instead of growing with the corpus (DuckDB's default is 80% of the RAM).
    DuckDB's cache of external files is off: the driver's files are local (the OS's page cache
    serves a second read), and the cache kept every file read in the process (≈ 4 MB a sorted
    key range, 266 MB after the 10 M-row figures table), on top of the budget's working memory."""
    db = duckdb.connect()
    db.execute(f"SET memory_limit='{memory_limit}'")
    db.execute(f"SET temp_directory='{temp_directory}'")
    db.execute("SET preserve_insertion_order=false")
    db.execute(f"SET threads={THREADS}")
    db.execute("SET enable_external_file_cache=false")
    db.execute(f"SET partitioned_write_flush_threshold={SPLIT_ROWS}")
    return db


class Spool:
    """Append-only Parquet tables in ``root`` (each a file of row groups, ``_ord`` numbering rows in
    the order they came), and a DuckDB connection to query them."""

    def __init__(self, root: str | Path, memory_limit: str = MEMORY_LIMIT) -> None:
        self.root = Path(root)
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "tmp").mkdir(parents=True)
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self._schemas: dict[str, pa.Schema] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = {}
        self.db = driver_db(self.root / "tmp", memory_limit)

    def declare(self, name: str, schema: pa.Schema) -> None:
        self._schemas[name] = schema
        self._buffers.setdefault(name, [])
        self.rows.setdefault(name, 0)

    def add(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        buf = self._buffers[name]
        buf.extend(rows)
        if len(buf) >= FLUSH_ROWS:
            self._flush(name)

    def _flush(self, name: str) -> None:
        rows, self._buffers[name] = self._buffers[name], []
        if not rows and name in self._writers:
            return
        table = to_table(rows, self._schemas[name])
        start = self.rows[name]
        table = table.append_column(ORD, pa.array(range(start, start + len(rows)), pa.int64()))
        if name not in self._writers:
            self._writers[name] = pq.ParquetWriter(self.path(name), table.schema, compression="zstd")
        self._writers[name].write_table(table)
        self.rows[name] = start + len(rows)

    def path(self, name: str) -> Path:
        return self.root / f"{name}.parquet"

    def close(self, *names: str) -> None:
        """Flush and close tables (all by default): they become readable."""
        for name in names or tuple(self._schemas):
            if name in self._buffers:
                self._flush(name)
            writer = self._writers.pop(name, None)
            if writer is not None:
                writer.close()

    def scan(self, name: str) -> str:
        """The table as a DuckDB relation expression."""
        return f"read_parquet('{self.path(name)}')"

    def batches(self, sql: str, params: list[Any] | None = None, size: int = READ_ROWS) -> Iterator[pa.RecordBatch]:
        reader = self.db.execute(sql, params or []).to_arrow_reader(size)
        yield from reader

    def finish(self) -> None:
        self.close()
        self.db.close()
        shutil.rmtree(self.root, ignore_errors=True)


def sorted_batches(spool: Spool, name: str, sort_by: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    """The table's rows in ``write_rows`` order, sorted a key range at a time: DuckDB's sort of a
    whole table of wide rows runs out of its memory budget (1 M figure rows in 512 MB), so a narrow
    sort of the keys alone picks boundaries ``SORT_ROWS`` rows apart, one scan of the spool writes
    each row to its range's file, and each range file is sorted on its own. Ranges compare the sort
    columns joined by NUL (which no manifest text holds: XML cannot), the same order as the columns
    one by one."""
    parts = [f"coalesce(CAST({_quote(c)} AS VARCHAR), '')" for c in sort_by]
    joined = " || chr(0) || ".join(parts)
    order = f"ORDER BY {', '.join(parts)}, {ORD}"
    bounds = _every_nth(spool.batches(f"SELECT {joined} AS k FROM {spool.scan(name)} ORDER BY k"), SORT_ROWS)
    bounds = list(dict.fromkeys(bounds))  # a key's rows stay in one range
    if not bounds:
        yield from spool.batches(f"SELECT * EXCLUDE ({ORD}) FROM {spool.scan(name)} {order}")
        return
    folder = spool.root / "ranges" / name
    try:
        _split(spool, name, joined, bounds, folder)
        for files in _range_files(folder, len(bounds) + 1):
            scan = f"read_parquet('{files}', hive_partitioning=false)"
            yield from spool.batches(f"SELECT * EXCLUDE ({ORD}) FROM {scan} {order}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _split(spool: Spool, name: str, joined: str, bounds: list[str], folder: Path) -> None:
    """Write each row of the table to the file of its key range (``folder/_range=i/``) in one scan:
    sorting each range straight from the spool would scan the whole spool once per range. Every
    range has a file open during the scan, so its row groups are kept small (``RANGE_GROUP_BYTES``)
    for the buffers of all of them to fit DuckDB's budget."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    index, params = _range_index(SPLIT_KEY, bounds)
    spool.db.execute(f"COPY (SELECT * EXCLUDE ({SPLIT_KEY}), {index} AS {SPLIT_RANGE} "
                     f"FROM (SELECT *, {joined} AS {SPLIT_KEY} FROM {spool.scan(name)})) TO '{folder}' (FORMAT parquet, "
                     f"PARTITION_BY ({SPLIT_RANGE}), ROW_GROUP_SIZE_BYTES '{RANGE_GROUP_BYTES}')", params)


def _range_index(key: str, bounds: list[str]) -> tuple[str, list[str]]:
    """SQL for the index of ``key``'s range, the number of ``bounds`` (sorted, distinct) at or below
    it, and its parameters: nested CASEs that halve the bounds at each level, a few comparisons a
    row. An ASOF join against a table of bounds gives the same, but DuckDB buffers its wide side
    (out of memory at 300 k rows of 3 KB)."""
    def search(lo: int, hi: int) -> tuple[str, list[str]]:
        if lo == hi:
            return str(lo), []
        mid = (lo + hi) // 2
        below, below_params = search(lo, mid)
        above, above_params = search(mid + 1, hi)
        return f"CASE WHEN {key} < ? THEN {below} ELSE {above} END", [bounds[mid], *below_params, *above_params]

    return search(0, len(bounds))


def _range_files(folder: Path, ranges: int) -> Iterator[str]:
    """Each range's files as a glob, in range order; a range no row fell in has no folder (the
    first one, when the n-th key is also the smallest)."""
    for i in range(ranges):
        part = folder / f"{SPLIT_RANGE}={i}"
        if part.is_dir():
            yield str(part / "*.parquet")


def _every_nth(batches: Iterable[pa.RecordBatch], n: int) -> list[Any]:
    """The n-th, 2n-th ... value of a sorted column streamed in batches. A window function
    (``row_number() OVER (ORDER BY k)``) would hold every key in memory at once, past DuckDB's
    budget; an ORDER BY spills."""
    out: list[Any] = []
    seen = 0
    for batch in batches:
        column = batch.column(0)
        out.extend(column[i].as_py() for i in range(n - 1 - seen % n, len(column), n))
        seen += len(column)
    return out


def write_sorted(output: Output, rel: str, spool: Spool, name: str, schema: pa.Schema,
                 sort_by: tuple[str, ...], metadata: dict[str, str] | None = None) -> int:
    """Stream a spooled table to ``rel`` sorted, row group by row group; returns its rows."""
    batches = sorted_batches(spool, name, sort_by) if spool.rows.get(name) else iter(())
    return write_stream(output, (rel,), batches, schema, metadata)


def write_stream(output: Output, rels: tuple[str, ...], batches: Iterable[pa.RecordBatch | pa.Table],
                 schema: pa.Schema, metadata: dict[str, str] | None = None) -> int:
    """Write batches already in their final order to each of ``rels``, a row group at a time;
    returns the rows written."""
    target = with_version(schema)
    if metadata:
        target = target.with_metadata({**(target.metadata or {}), **{k.encode(): v.encode() for k, v in metadata.items()}})
    rows = 0
    with ExitStack() as stack:
        writers = [stack.enter_context(pq.ParquetWriter(stack.enter_context(output.staged_file(rel)), target,
                                                        **WRITE_OPTIONS)) for rel in rels]
        for group in _row_groups((b for item in batches for b in _as_batches(item)), target):
            for writer in writers:
                writer.write_table(group, row_group_size=ROW_GROUP)
            rows += group.num_rows
        if not rows:
            for writer in writers:
                writer.write_table(target.empty_table(), row_group_size=ROW_GROUP)
    return rows


def _as_batches(item: pa.RecordBatch | pa.Table) -> list[pa.RecordBatch]:
    return item.to_batches() if isinstance(item, pa.Table) else [item]


def _row_groups(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.Table]:
    """Tables of exactly ``ROW_GROUP`` rows (the last one shorter), cast to ``schema``."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= ROW_GROUP:
            table = pa.Table.from_batches(pending)
            group = _cast(table.slice(0, ROW_GROUP), schema)
            rest = table.slice(ROW_GROUP)
            pending, count = rest.to_batches(), rest.num_rows
            del table, rest  # the group is a copy: its source batches go before it is written
            yield group
    if count:
        yield _cast(pa.Table.from_batches(pending), schema)


def _cast(table: pa.Table, schema: pa.Schema) -> pa.Table:
    return table.select(schema.names).cast(schema).combine_chunks()


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'
