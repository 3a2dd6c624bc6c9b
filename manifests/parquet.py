"""Parquet files of the manifest, written with fixed settings so equal tables give equal bytes."""
from __future__ import annotations

import io
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from medcorpus.manifests.storage import Output
from medcorpus.schemas.manifest import to_table


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=50_000, write_statistics=True)
    return buf.getvalue()


def write_rows(output: Output, rel: str, rows: Iterable[dict[str, Any]], schema: pa.Schema,
               sort_by: tuple[str, ...]) -> int:
    ordered = sorted(rows, key=lambda r: tuple("" if r.get(c) is None else str(r.get(c)) for c in sort_by))
    table = to_table(ordered, schema)
    output.write_bytes(rel, table_bytes(table))
    return table.num_rows


def read_table(output: Output, rel: str) -> pa.Table:
    return pq.read_table(io.BytesIO(output.read_bytes(rel)))
