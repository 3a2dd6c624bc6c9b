"""A reader in a process of its own, looping over an output while builds publish into it: the
``query`` and ``verify`` commands, the loader (every image checked against its row's hash) and DuckDB
on the folder ``current`` names. One JSON line per read, for ``tests/test_publication.py``.

    python tests/publication_reader.py OUT STOP_FILE LOG
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from medcorpus.manifests.loader import ManifestDataset
from medcorpus.pipelines.cli import app

SQL = ("SELECT (SELECT count(*) FROM samples) n, (SELECT list(DISTINCT shard ORDER BY shard) FROM samples) shards, "
       "(SELECT max(\"release\") FROM runs) \"release\"")


def _query(out: str) -> dict:
    result = CliRunner().invoke(app, ["query", out, SQL, "--format", "json"])
    if result.exit_code:
        return {"ok": False, "error": result.output[-500:]}
    row = json.loads(result.output)[0]
    return {"ok": True, "n": row["n"], "shards": row["shards"], "release": row["release"]}


def _verify(out: str) -> dict:
    result = CliRunner().invoke(app, ["verify", out])
    checked = re.search(r"checked (\d+) samples, (\d+) problems", result.output)
    return {"ok": result.exit_code == 0, "n": int(checked[1]) if checked else None, "error": result.output[-500:]}


def _loader(out: str) -> dict:
    ds = ManifestDataset(out, decode="bytes", shuffle=False)
    keys, ok = [], True
    for item in ds:
        keys.append(item["key"])
        ok &= hashlib.sha256(item["image"]).hexdigest() == item["row"]["image_sha256"]
        ok &= item["caption"] == item["row"]["caption"]
    return {"ok": ok and len(keys) == len(ds), "n": len(keys), "keys": sorted(keys)}


def _duckdb(out: str) -> dict:
    release = os.path.realpath(os.path.join(out, "current"))  # resolved once, as the README says
    n = duckdb.sql(f"SELECT count(*) FROM '{release}/manifest/samples/*.parquet'").fetchone()[0]
    return {"ok": True, "n": n}


def main(out: str, stop: Path, log: Path) -> None:
    readers = {"query": _query, "verify": _verify, "loader": _loader, "duckdb": _duckdb}
    with log.open("w") as f:
        while not stop.exists():
            for kind, read in readers.items():
                t0 = time.time()
                try:
                    found = read(out)
                except Exception as exc:  # noqa: BLE001 - a failed read is a finding for the test
                    found = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                f.write(json.dumps({"kind": kind, "t0": t0, "t1": time.time(), **found}) + "\n")
                f.flush()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
