"""What releases add to a build: computing the change list against the previous release's folder,
against a floor measured in the same run (reading the samples manifest once with pyarrow).

    python bench/releases_bench.py OUT [--copies 256] [--changed 0.01]

takes a finished build's manifest parts, replicates their rows ``--copies`` times under new keys
(a larger manifest with real column contents) as release 1's folder, copies it as release 2's with
the fingerprint of a fraction of the samples changed, and computes the changes between the two.
"""
from __future__ import annotations

import argparse
import glob
import json
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def _replicate(src: str, dest: Path, copies: int) -> int:
    table = pa.concat_tables([pq.read_table(p) for p in sorted(glob.glob(f"{src}/manifest/samples/*.parquet"))])
    parts = [table.set_column(0, "key", pc.binary_join_element_wise(table["key"], pa.scalar(f"_{i}"), ""))
             for i in range(copies)]
    big = pa.concat_tables(parts)
    (dest / "manifest" / "samples").mkdir(parents=True)
    pq.write_table(big, dest / "manifest/samples/comm-000000.parquet", compression="zstd")
    (dest / "_complete.json").write_text(json.dumps({"files": [], "release": 1}))
    return big.num_rows


def _touch(dest: Path, changed: float) -> int:
    """Give a fraction of the samples another fingerprint (as a rebuild that changed them would)."""
    path = dest / "manifest/samples/comm-000000.parquet"
    table = pq.read_table(path)
    n = int(table.num_rows * changed)
    fingerprints = table["json_sha256"].to_pylist()
    fingerprints[:n] = [f"changed-{i}" for i in range(n)]
    pq.write_table(table.set_column(table.schema.get_field_index("json_sha256"), "json_sha256",
                                    pa.array(fingerprints, pa.string())), path, compression="zstd")
    return n


def main() -> None:
    from medcorpus.manifests import changes, releases
    from medcorpus.manifests.layout import resolve
    from medcorpus.manifests.storage import Output

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--copies", type=int, default=256)
    parser.add_argument("--changed", type=float, default=0.01)
    args = parser.parse_args()
    src = resolve(args.out).url
    with tempfile.TemporaryDirectory(prefix="releases-bench-") as tmp:
        old, new = Path(tmp) / "old", Path(tmp) / "new"
        rows = _replicate(src, old, args.copies)
        shutil.copytree(old, new)
        t0 = time.perf_counter()
        pq.read_table(old / "manifest/samples/comm-000000.parquet")
        floor = time.perf_counter() - t0
        n = _touch(new, args.changed)
        baseline = releases.Baseline(1, Output(str(old)))
        t0 = time.perf_counter()
        found = changes.write_changes(baseline, Output(str(new)), 2, ("comm", "noncomm", "other"), "bench")
        compare = time.perf_counter() - t0
    assert sum(found.values()) == n, (sum(found.values()), n)
    print(f"{rows} samples, {n} changed")
    print(f"floor (read the manifest once): {floor:.2f} s")
    print(f"compute the changes: {compare:.2f} s ({compare / floor:.2f}x the floor)")


if __name__ == "__main__":
    main()
