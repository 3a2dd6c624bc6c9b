"""Parquet files of the manifest, written with fixed settings so equal tables give equal bytes."""
from __future__ import annotations

import io
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from medcorpus.manifests.storage import Output
from medcorpus.schemas.manifest import to_table

SHARD_SHA256 = "medcorpus.shard_sha256"
"""Key of a manifest part's metadata holding its shard's sha256 (hashed by the shard's writer, so
the Croissant file can list every shard's hash without reading the corpus again)."""


ROW_GROUP = 50_000
WRITE_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_statistics": True}
"""How every manifest file is written (``pipelines/spool.py`` streams files with the same settings)."""


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=ROW_GROUP, **WRITE_OPTIONS)
    return buf.getvalue()


def write_rows(output: Output, rel: str, rows: Iterable[dict[str, Any]], schema: pa.Schema,
               sort_by: tuple[str, ...], metadata: dict[str, str] | None = None) -> int:
    """Write the rows sorted by ``sort_by``; ``metadata`` joins the file's key-value metadata."""
    ordered = sorted(rows, key=lambda r: tuple("" if r.get(c) is None else str(r.get(c)) for c in sort_by))
    table = to_table(ordered, schema)
    if metadata:
        table = table.replace_schema_metadata({**table.schema.metadata, **metadata})
    output.write_bytes(rel, table_bytes(table))
    return table.num_rows


def read_table(output: Output, rel: str) -> pa.Table:
    return pq.read_table(io.BytesIO(output.read_bytes(rel)))


def read_columns(output: Output, rel: str, columns: list[str]) -> pa.Table:
    """Only these columns of a Parquet file (reads just their column chunks)."""
    with output.fs.open(output.path(rel), "rb") as f:
        return pq.read_table(f, columns=columns)


def shard_sha256(output: Output, part: str) -> str | None:
    """The sha256 of the shard a manifest part describes, from the part's footer (None for parts
    written before shards were hashed)."""
    with output.fs.open(output.path(part), "rb") as f:
        meta = pq.read_schema(f).metadata or {}
    value = meta.get(SHARD_SHA256.encode())
    return value.decode() if value else None
