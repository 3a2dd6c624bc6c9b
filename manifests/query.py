"""DuckDB over a build's manifest: views ``samples``, ``articles``, ``figures``, ``errors``, ``runs``, ``dropped``,
and ``concepts`` (one row per linked concept of a sample).

The connection is read-only and confined: the tables reach DuckDB as Arrow datasets that Python
opens (a local folder, or any fsspec URL such as ``s3://``), and DuckDB itself gets no file system
at all (``enable_external_access = false``, configuration locked), so SQL cannot write files
(``COPY ... TO``), read files outside the output (``read_text``), load extensions or turn the
settings back. A caller may open extra paths for reading explicitly (``allow_paths``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from medcorpus.manifests.completion import require_complete
from medcorpus.manifests.storage import Output

VIEWS = {
    "samples": "manifest/samples",
    "articles": "manifest/articles.parquet",
    "figures": "manifest/figures.parquet",
    "errors": "manifest/errors.parquet",
    "runs": "manifest/runs.parquet",
    "dropped": "manifest/dropped.parquet",
    "changes": "manifest/changes.parquet",
}


def part_paths(output: Output, rel: str) -> list[str]:
    """The Parquet files of one view: a folder's parts, or a single table file."""
    if rel.endswith(".parquet"):
        return [output.path(rel)] if output.exists(rel) else []
    return [output.path(r) for r in output.list(rel) if r.endswith(".parquet")]


def _dataset(output: Output, paths: Sequence[str]) -> ds.Dataset:
    """One Arrow dataset over the files, with the union of their columns (parts written by
    different schema versions read together; a column a part lacks is null there)."""
    schemas = []
    for path in paths:
        with output.fs.open(path, "rb") as f:
            schemas.append(pq.read_schema(f))
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    return ds.dataset(list(paths), schema=schema, format="parquet",
                      filesystem=None if output.is_local else output.fs)


def open_dataset(output: Output, rel: str) -> ds.Dataset | None:
    """An Arrow dataset over one table's files (a folder's parts, or one file); None without any."""
    paths = part_paths(output, rel)
    return _dataset(output, paths) if paths else None


def _confine(con: duckdb.DuckDBPyConnection, allow_paths: Iterable[str]) -> None:
    """No file system for SQL except the paths the caller allowed, and no way to change that back."""
    files, folders = [], []
    for p in allow_paths:
        path = Path(p).expanduser().resolve()
        (folders if path.is_dir() else files).append(str(path) + ("/" if path.is_dir() else ""))
    if folders:
        con.execute("SET allowed_directories = ?", [folders])
    if files:
        con.execute("SET allowed_paths = ?", [files])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def connect(out: str, *, allow_incomplete: bool = False, allow_paths: Iterable[str] = ()) -> duckdb.DuckDBPyConnection:
    """A confined DuckDB connection with the manifest's views. Raises ``NotAnOutput`` for a folder
    without a manifest and ``IncompleteOutput`` for one without a completion record (unless
    ``allow_incomplete``): a half-written output would answer with wrong counts."""
    output = require_complete(out, allow_incomplete)
    con = duckdb.connect(config={"python_enable_replacements": False})
    views = []
    for view, rel in VIEWS.items():
        paths = part_paths(output, rel)
        if paths:
            con.register(view, _dataset(output, paths))
            views.append(view)
    if "samples" in views:
        con.execute(CONCEPTS_VIEW)
    _confine(con, allow_paths)
    return con


# one row per linked concept: "all samples with C0024109 in group DISO" is a plain WHERE
CONCEPTS_VIEW = """
CREATE VIEW concepts AS
SELECT key, 'caption' AS field, UNNEST(concepts, recursive := true) FROM samples WHERE len(concepts) > 0
UNION ALL
SELECT key, 'context' AS field, UNNEST(context_concepts, recursive := true) FROM samples WHERE len(context_concepts) > 0
"""


def query(out: str, sql: str, *, allow_incomplete: bool = False,
          allow_paths: Iterable[str] = ()) -> tuple[list[str], list[tuple]]:
    """Run one SQL statement over the manifest: its column names and rows."""
    con = connect(out, allow_incomplete=allow_incomplete, allow_paths=allow_paths)
    try:
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description] if cur.description else []
        return columns, cur.fetchall()
    finally:
        con.close()
