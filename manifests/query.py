"""DuckDB over a build's manifest: views ``samples``, ``articles``, ``figures``, ``errors``, ``runs``, ``dropped``.

Remote outputs (``s3://...``) are queried from a local copy of their (small) manifest folder.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import duckdb

from medcorpus.manifests.storage import Output

VIEWS = {
    "samples": "manifest/samples/*.parquet",
    "articles": "manifest/articles.parquet",
    "figures": "manifest/figures.parquet",
    "errors": "manifest/errors.parquet",
    "runs": "manifest/runs.parquet",
    "dropped": "manifest/dropped.parquet",
}


def _local_root(out: str) -> Path:
    output = Output(out)
    if output.is_local:
        return Path(output.root)
    cache = Path(tempfile.gettempdir()) / "medcorpus-manifests" / hashlib.sha1(out.encode()).hexdigest()[:16]
    for rel in output.list("manifest"):
        dest = cache / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(output.read_bytes(rel))
    return cache


def connect(out: str) -> duckdb.DuckDBPyConnection:
    root = _local_root(out)
    if not (root / "manifest").is_dir():
        raise FileNotFoundError(f"{out} has no manifest/ folder: is it a medcorpus build output?")
    con = duckdb.connect()
    for view, pattern in VIEWS.items():
        if list(root.glob(pattern)):
            path = str(root / pattern).replace("'", "''")
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{path}', union_by_name=true)")
    return con


def query(out: str, sql: str) -> tuple[list[str], list[tuple]]:
    con = connect(out)
    try:
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description] if cur.description else []
        return columns, cur.fetchall()
    finally:
        con.close()
