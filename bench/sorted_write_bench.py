"""The sorted write of a spooled table (``spool.write_sorted``): wall time and peak RSS by table size,
and a hash of the Parquet file it writes, so that two versions of the code can be compared.

The table is **synthetic**: ``--row-kb`` KB rows (a key and a stage to sort by, a caption of random
words, an article id, a position, a list of mentions), keys drawn from half as many values as rows
(ties keep append order) and None in 2% of the keys and 10% of the stages. It is written straight
into the spool's file format (``_ord`` numbering the rows, row groups of ``FLUSH_ROWS``), once per
size and reused. Each write runs in a fresh process that imports the code under ``--code`` (a
checkout: its ``pipelines/spool.py`` is the one measured); ``peak_rss_mb`` is that process's RSS
sampled every 20 ms during the write, ``floor_rss_mb`` its RSS before it (``getrusage``'s peak
would not do: a forked child starts from its parent's, and the parent built the table), and
``after_rss_mb`` its RSS after it, once freed memory is handed back (what the phases after the
tables start from).

    python bench/sorted_write_bench.py --rows 300000 1000000 --code /work/main .   # before, after
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NAME = "wide"
SORT_BY = ("key", "stage")
WORDS = ("tumor cell image scale bar shows sections stained patient left right arrow panel control mice "
         "expression level protein signal axial ct scan lesion mri contrast week dose group mean error "
         "fluorescence microscopy tissue sample wild type mutant growth curve time response").split()


def schema() -> Any:
    import pyarrow as pa

    return pa.schema([("key", pa.string()), ("stage", pa.string()), ("article_id", pa.string()),
                      ("position", pa.int32()), ("caption", pa.string()), ("mentions", pa.list_(pa.string()))])


def build_spool_file(path: Path, rows: int, row_kb: float, seed: int = 1) -> None:
    """``rows`` synthetic rows in the spool's layout (the table's columns, then ``_ord``)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medcorpus.pipelines.spool import FLUSH_ROWS, ORD

    rng = np.random.default_rng(seed)
    text = " ".join(rng.choice(WORDS, size=4_000_000))
    width = int(row_kb * 1024)
    target = schema().append(pa.field(ORD, pa.int64()))
    tmp = path.with_suffix(".partial")
    with pq.ParquetWriter(tmp, target, compression="zstd") as writer:
        for start in range(0, rows, FLUSH_ROWS):
            n = min(FLUSH_ROWS, rows - start)
            keys = rng.integers(0, max(rows // 2, 1), n)
            offsets = rng.integers(0, len(text) - width, n)
            stages = rng.choice(["parse", "image", "quality", "Zeta", ""], n)
            table = pa.table({
                "key": [None if rng.random() < 0.02 else f"k{k:09x}" for k in keys],
                "stage": [None if rng.random() < 0.1 else s for s in stages],
                "article_id": [f"PMC{start + i:08d}" for i in range(n)],
                "position": pa.array(rng.integers(0, 20, n), pa.int32()),
                "caption": [text[o:o + width] for o in offsets],
                "mentions": [[f"fig {k % 7}", f"panel {k % 3}"] for k in keys],
                ORD: pa.array(range(start, start + n), pa.int64()),
            }, schema=target)
            writer.write_table(table)
    tmp.rename(path)


class PeakRSS:
    """The process's resident set, sampled from /proc every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def measure(source: Path, rows: int, work: Path) -> dict[str, Any]:
    """One sorted write of the spooled table at ``source``, in this process."""
    import pyarrow.parquet as pq

    from medcorpus.manifests.storage import Output
    from medcorpus.pipelines import spool as spool_module
    from medcorpus.pipelines.spool import Spool, write_sorted

    spool = Spool(work / "spool")
    os.link(source, spool.path(NAME))
    spool.rows[NAME] = rows
    output = Output(str(work / "out"))
    floor = PeakRSS.now()
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        written = write_sorted(output, "wide.parquet", spool, NAME, schema(), SORT_BY)
        seconds = time.perf_counter() - t0
    spool_module.release_freed_memory()
    after = PeakRSS.now()  # what the write leaves to the phases after it
    left = sorted(str(p.relative_to(spool.root)) for p in spool.root.rglob("*") if p.is_file())
    spool.finish()
    path = Path(output.path("wide.parquet"))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    meta = pq.ParquetFile(path).metadata
    return {"rows": rows, "written": written, "seconds": round(seconds, 2), "peak_rss_mb": rss.peak >> 20,
            "floor_rss_mb": floor >> 20, "after_rss_mb": after >> 20, "row_groups": meta.num_row_groups, "output_mb": path.stat().st_size >> 20,
            "sha256": digest, "spool_files_left": left, "code": spool_module.__file__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[300_000, 1_000_000])
    ap.add_argument("--row-kb", type=float, default=3.0)
    ap.add_argument("--code", nargs="+", default=[str(REPO)], help="checkouts whose code is measured, in turn")
    ap.add_argument("--work", default="/tmp/sorted-write-bench")
    ap.add_argument("--out", help="also write the results here (a JSON list)")
    ap.add_argument("--measure", nargs=3, metavar=("SOURCE", "ROWS", "WORK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), int(args.measure[1]), Path(args.measure[2]))))
        return

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for rows in args.rows:
        source = work / f"spool-{rows}-{args.row_kb:g}kb.parquet"
        if not source.exists():
            t0 = time.perf_counter()
            build_spool_file(source, rows, args.row_kb)
            print(f"built {source} ({source.stat().st_size >> 20} MB) in {time.perf_counter() - t0:.0f} s", flush=True)
        for code in args.code:
            env = {**os.environ, "PYTHONPATH": os.path.abspath(code)}
            cmd = [sys.executable, __file__, "--measure", str(source), str(rows), str(work / "run")]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                continue
            result = {"code_root": os.path.abspath(code), "row_kb": args.row_kb,
                      **json.loads(done.stdout.strip().splitlines()[-1])}
            results.append(result)
            print(json.dumps(result), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
