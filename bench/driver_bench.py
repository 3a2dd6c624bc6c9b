"""The driver after staging: peak memory and wall time of everything a build does once every unit
is staged (collect, dedup, plan, write the shards and the tables, publish), by corpus size.

The staged records are **synthetic** (no images: each sample's members are a few bytes, its row a
real staged row of the shared articles with a new key, article, caption and hashes), so only the
driver's work grows. Each corpus: ``--per-unit`` samples per unit (an article), 1% exact copies
and 1% near copies (5 of 128 hash bits flipped) of earlier samples in other articles, same caption.
``--rebuild`` measures a second build over the same staged units too (release 2: a scheduled
rebuild in which nothing changed, so the change list compares two full releases). ``--cluster N``
adds a corpus of N samples that are one image (and one caption) in N articles: the
placeholder-image case, linear with copies following one lead. ``--dedup-records N`` measures the
dedup step alone (``pipelines.dedup.dedup`` on the local runner) over N synthetic dedup records of
the same mix written straight into a spool, with peak RSS and seconds by step. ``--tables-rows N``
measures the tables phase's sorted write alone (``spool.write_sorted``) over N figure rows spooled
as ``collect`` spools them.

    python bench/driver_bench.py --samples 100000 300000 1000000 --cluster 100000
    python bench/driver_bench.py --samples 100000 --python /work/main/.venv/bin/python   # main's code
    python bench/driver_bench.py --samples --dedup-records 1000000 3000000
    python bench/driver_bench.py --samples --tables-rows 1000000 10000000
    python bench/driver_bench.py --samples 1000000 --rebuild

The staged units are written straight into the staging folder (the ``.data`` and ``.meta`` files a
worker leaves; no stage runs), so 1 M samples stage in minutes; ``--keep`` keeps them for the next
run. Each build runs in a fresh process (``--workers`` shard writers beside it), so its peak RSS
(``resource.getrusage``) is the driver's own; ``floor`` is the same process's RSS before the build
(imports, config); ``phases`` has the peak RSS and seconds of each build phase (``PhaseRSS``).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent
WORDS = ("tumor cell image scale bar shows sections stained patient left right arrow panel control mice "
         "expression level protein signal axial ct scan lesion mri contrast week dose group mean error "
         "fluorescence microscopy tissue sample wild type mutant growth curve time response "
         "representative images of the lung liver kidney heart brain during treatment with").split()
STAGES = "[fetch, parse, image, quality]"


class SyntheticSource:
    """Units ``u00000000`` ... whose results are already staged (never opened)."""

    name = "synthetic"
    parser = "jats"

    def __init__(self, units: int) -> None:
        self.units = units

    def list_units(self) -> Iterator[Any]:
        from medcorpus.schemas.records import UnitRef

        for i in range(self.units):
            yield UnitRef("synthetic", f"u{i:08d}", f"synthetic/u{i:08d}", "fp1")

    def open(self, unit: Any) -> Any:
        raise RuntimeError("synthetic units are staged, never fetched")

    read_media = open


def config_file(work: Path) -> Path:
    text = (REPO / "dataflow.yaml").read_text()
    text = text.replace("stages: [fetch, parse, image, panels, concepts, quality]", f"stages: {STAGES}")
    text = text.replace("builtin_data: ../shared/data", f"builtin_data: {REPO.parent / 'shared' / 'data'}")
    path = work / "dataflow.yaml"
    path.write_text(text)
    return path


def template() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A real staged sample row, figure row and article row of the shared articles."""
    from medcorpus.pipelines.build import build
    from medcorpus.pipelines.config import load_config
    from medcorpus.pipelines.runners import LocalRunner
    from medcorpus.pipelines.sources.local import LocalSource

    cache = Path("/tmp/driver-bench-template.pkl")
    if not cache.exists():
        out = Path("/tmp/driver-bench-template")
        shutil.rmtree(out, ignore_errors=True)
        cfg = config_file(Path("/tmp"))
        build(load_config(cfg), LocalSource(str(REPO.parent / "shared/data/pmc/articles")), LocalRunner(1), str(out),
              progress=False)
        meta = next(p for p in sorted((out / "_work" / "staging").rglob("*.meta")))
        result = pickle.loads(meta.read_bytes())
        cache.write_bytes(pickle.dumps((result.samples[0].row, result.figures[0], result.articles[0])))
    return pickle.loads(cache.read_bytes())


def _short_strings(row: dict[str, Any]) -> dict[str, Any]:
    """The template row with each string cut to 200 characters (lists, the mentions, stay whole)."""
    return {k: (v[:200] if isinstance(v, str) else v) for k, v in row.items()}


def stage(work: Path, samples: int, per_unit: int, cluster: bool, seed: int = 0) -> int:
    """Write the synthetic staged results straight into the staging folder (the files a worker
    writes: ``.data`` members, then ``.meta`` rows; no images); returns the number of units."""
    from medcorpus import __version__
    from medcorpus.pipelines.assemble import add_caption_bands
    from medcorpus.pipelines.build import prepare_stages
    from medcorpus.pipelines.config import load_config
    from medcorpus.pipelines.staging import StagedSample, Staging, UnitResult, unit_token

    row, figure, article = template()
    row = {**row, "mentions": [], "caption_title": None, "title": "Synthetic article of the driver benchmark"}
    figure = _short_strings(figure)
    base_size = len(json.dumps(row, default=str)) + 16
    config = load_config(config_file(work))
    units = -(-samples // per_unit)
    source = SyntheticSource(units)
    _, prepared_hash = prepare_stages(config, str(work / "out" / "_work"), source)
    config_hash = config.config_hash() + prepared_hash
    staging = Staging(work / "out" / "_work" / "staging")
    rng = random.Random(seed)
    earlier: list[tuple[str, str, str]] = []  # (exact, phash, caption) of samples so far (copies come from them)
    jpg = b"\xff\xd8synthetic\xff\xd9"
    n = 0
    for unit in source.list_units():
        result = UnitResult(unit.unit_id)
        art = f"10.5555/synthetic.{unit.unit_id}"
        result.articles.append({**article, "article_id": art, "doi": art})
        for j in range(min(per_unit, samples - n)):
            exact, phash, caption = _hashes(rng, earlier, cluster)
            key = f"{unit.unit_id}_f{j:03d}"
            sample = {**row, "key": key, "article_id": art, "doi": art, "figure_id": f"f{j}", "caption": caption,
                      "image_exact_hash": exact, "image_phash": phash}
            result.samples.append(StagedSample(key, "comm", sample, base_size + 2 * len(caption)))
            result.members[key] = {"jpg": jpg, "txt": caption.encode()}
            result.figures.append({**figure, "key": key, "article_id": art, "figure_id": f"f{j}", "caption": caption})
            n += 1
        add_caption_bands(result, config)  # what the staging worker computes
        _write_staged(staging, unit_token(unit, config_hash, __version__), result)
    return units


def _write_staged(staging: Any, token: str, result: Any) -> None:
    """What ``Staging.write`` leaves for a final result, without its temporary names (nothing else
    reads the folder while the benchmark writes it)."""
    meta = staging._path(token, "meta")
    meta.parent.mkdir(exist_ok=True)
    members, result.members = result.members, {}
    staging._path(token, "data").write_bytes(pickle.dumps(members, protocol=5))
    meta.write_bytes(pickle.dumps(result, protocol=5))


def _hashes(rng: random.Random, earlier: list[tuple[str, str, str]], cluster: bool) -> tuple[str, str, str]:
    if cluster:
        return "c" * 64, "0f" * 16, "Placeholder image reused in every article of this corpus for the benchmark run"
    roll = rng.random()
    if earlier and roll < 0.01:  # an exact copy
        return rng.choice(earlier)
    if earlier and roll < 0.02:  # a near copy
        exact, phash, caption = rng.choice(earlier)
        value = int(phash, 16)
        for bit in rng.sample(range(128), 5):
            value ^= 1 << bit
        return f"{rng.getrandbits(256):064x}", f"{value:032x}", caption
    entry = (f"{rng.getrandbits(256):064x}", f"{rng.getrandbits(128):032x}",
             " ".join(rng.choices(WORDS, k=rng.randint(8, 40))))
    if len(earlier) < 100_000:
        earlier.append(entry)
    else:
        earlier[rng.randrange(len(earlier))] = entry
    return entry


PHASES = (("collect", "medcorpus.pipelines.assemble", "collect"), ("dedup", "medcorpus.pipelines.build", "dedup"),
          ("plan", "medcorpus.pipelines.assemble", "plan"), ("tables", "medcorpus.pipelines.assemble", "write_tables"),
          ("attribution", "medcorpus.pipelines.assemble", "write_attribution"),
          ("changes", "medcorpus.pipelines.publish", "write_release_files"),
          ("composition", "medcorpus.pipelines.publish", "composition"),
          ("publish", "medcorpus.manifests.releases", "publish"))
AFTER = {"plan": "shards", "attribution": "card"}  # what runs between a phase and the next one wrapped


class PhaseRSS:
    """RSS at the start, peak RSS and seconds by build phase: a thread samples ``/proc/self/statm`` every 20 ms
    under the name of the phase last entered (each phase function in ``PHASES`` is wrapped)."""

    def __init__(self) -> None:
        import threading

        self.phase, self.peak, self.seconds, self.start = "setup", {}, {}, {}
        self._since, self._page = time.perf_counter(), os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        with open("/proc/self/statm") as statm:
            while not self._stop.wait(0.02):
                statm.seek(0)
                mb = int(statm.read().split()[1]) * self._page / 2**20
                self.start.setdefault(self.phase, mb)
                self.peak[self.phase] = max(self.peak.get(self.phase, 0.0), mb)

    def enter(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[self.phase] = self.seconds.get(self.phase, 0.0) + now - self._since
        self.phase, self._since = name, now

    def wrap(self) -> None:
        import importlib

        for name, module, attr in PHASES:
            mod = importlib.import_module(module)
            setattr(mod, attr, self._wrapped(name, getattr(mod, attr)))

    def _wrapped(self, name: str, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            self.enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.enter(AFTER.get(name, f"after {name}"))
        return run

    def report(self) -> dict[str, Any]:
        self.enter("end")
        self._stop.set()
        self._thread.join()
        return {name: {"s": round(self.seconds.get(name, 0.0), 1), "start_mb": round(self.start.get(name, 0.0)),
                       "peak_mb": round(self.peak.get(name, 0.0))}
                for name in self.seconds if name != "end"}


def measure(work: Path, units: int, runner: str, workers: int) -> dict[str, Any]:
    """In this (fresh) process: build over the staged units; wall time, peak RSS, and both by phase."""
    from medcorpus.pipelines.build import build
    from medcorpus.pipelines.config import load_config
    from medcorpus.pipelines.runners import make_runner

    config = load_config(config_file(work))
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    phases = PhaseRSS()
    phases.wrap()
    t0 = time.perf_counter()
    summary = build(config, SyntheticSource(units), make_runner(runner, workers, config=config), str(work / "out"),
                    progress=False)
    return {"seconds": round(time.perf_counter() - t0, 1), "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "floor_mb": round(floor), "samples": summary.samples, "shards": summary.shards,
            "dropped": summary.changes, "units_reused": summary.units_reused, "units": summary.units,
            "phases": phases.report()}


def measure_dedup(copies: int) -> dict[str, Any]:
    """In this (fresh) process: ``dedup_local`` over one image (and caption) in ``copies`` articles."""
    from medcorpus.transforms.dedup import ImageHashes, make_record
    from medcorpus.transforms.dedup_clusters import dedup_local

    caption = "Placeholder image reused in every article of this corpus for the benchmark run"
    records = [make_record(f"k{i:07d}", ImageHashes("c" * 64, 0x0F0F0F0F0F0F0F0F, 0x0F0F0F0F0F0F0F0F), caption,
                           f"A{i}", 1, "CC BY", 100) for i in range(copies)]
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    result = dedup_local(records)
    return {"corpus": "dedup_cluster", "copies": copies, "seconds": round(time.perf_counter() - t0, 2),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "floor_mb": round(floor),
            "dropped": len(result.matches), "pairs": len(result.pairs)}


DEDUP_STEPS = {"_twins_table": "copies", "_image_pairs": "image bands", "_band_table": "caption bands",
               "_insert_pairs": "caption buckets", "_involved": "involved", "_components": "components",
               "finish": "finish"}


def write_dedup_records(path: Path, n: int, seed: int = 0) -> None:
    """``n`` synthetic dedup records (the corpus's mix, ``_hashes``; 8 figures an article) as a
    spool's records file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medcorpus.pipelines.assemble import DEDUP_RECORDS
    from medcorpus.transforms.dedup import DedupOptions, caption_bands

    rng, earlier, options = random.Random(seed), [], DedupOptions()
    with pq.ParquetWriter(path, DEDUP_RECORDS) as writer:
        for start in range(0, n, 100_000):
            rows = []
            for i in range(start, min(n, start + 100_000)):
                exact, phash, caption = _hashes(rng, earlier, False)
                value, key = int(phash, 16), f"u{i // 8:08d}_f{i % 8:03d}"
                rows.append({"key": key, "article_id": f"10.5555/synthetic.u{i // 8:08d}", "version": 1,
                             "license_code": "CC BY", "pixels": 1_000_000, "exact": exact, "hi": value >> 64,
                             "lo": value & (2**64 - 1), "caption": caption, "group": key, "label": "", "box": [],
                             "width": 800, "height": 600, "sample": i,
                             "bands": list(caption_bands(caption.split(), options))})  # the workers' part
            writer.write_table(pa.Table.from_pylist(rows, schema=DEDUP_RECORDS))


def write_figure_rows(path: Path, n: int, seed: int = 0) -> None:
    """``n`` figure rows (the staged corpus's: the template's, with a key, article and caption of
    their own; 8 an article) spooled as ``collect`` spools them, in unit order."""
    from medcorpus.pipelines.spool import Spool
    from medcorpus.schemas import manifest as schema

    _, figure, _ = template()
    figure = _short_strings(figure)
    rng = random.Random(seed)
    spool = Spool(path.parent / "gen")
    spool.declare("figures", schema.FIGURES)
    for unit in range(-(-n // 8)):
        art = f"10.5555/synthetic.u{unit:08d}"
        spool.add("figures", [{**figure, "key": f"u{unit:08d}_f{j:03d}", "article_id": art, "figure_id": f"f{j}",
                               "caption": " ".join(rng.choices(WORDS, k=rng.randint(8, 40)))}
                              for j in range(min(8, n - unit * 8))])
    spool.close()
    spool.path("figures").rename(path)
    spool.finish()


def measure_tables(work: Path, n: int) -> dict[str, Any]:
    """In this (fresh) process: the tables phase's sorted write of ``n`` spooled figure rows alone."""
    from medcorpus.manifests.storage import Output
    from medcorpus.pipelines.spool import Spool, write_sorted
    from medcorpus.schemas import manifest as schema

    shutil.rmtree(work / "out", ignore_errors=True)
    spool = Spool(work / "spool")
    os.link(work / "figures.parquet", spool.path("figures"))  # read only: not declared, so never rewritten
    spool.rows["figures"] = n
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    rows = write_sorted(Output(str(work / "out")), "manifest/figures.parquet", spool, "figures", schema.FIGURES,
                        ("key",))
    seconds = time.perf_counter() - t0
    cached = spool.db.execute("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
                              "WHERE tag = 'EXTERNAL_FILE_CACHE'").fetchone()[0]
    spool.finish()
    return {"corpus": "figure_rows", "rows": rows, "seconds": round(seconds, 1), "floor_mb": round(floor),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "duckdb_file_cache_mb": round(cached / 2**20)}


def measure_dedup_step(work: Path, n: int, workers: int) -> dict[str, Any]:
    """In this (fresh) process: the dedup step over the spooled records on the local runner with
    ``workers`` processes (the default dedup options), peak RSS and seconds by step."""
    from dataclasses import replace

    from medcorpus.pipelines import dedup
    from medcorpus.pipelines.assemble import Assembly
    from medcorpus.pipelines.config import load_config
    from medcorpus.pipelines.runners import Job, LocalRunner
    from medcorpus.pipelines.spool import Spool

    spool = Spool(work / "spool")
    shutil.copy(work / "records.parquet", spool.root / "records.parquet")
    asm = Assembly(spool, ("comm",), records=n)
    config = load_config(REPO / "dataflow.yaml")
    config = replace(config, dedup={})  # the default options, which the records were written with
    job = Job(config, None, str(work / "staging"), str(work / "out"))  # type: ignore[arg-type]
    runner = LocalRunner(workers)
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    phases = PhaseRSS()
    for name, label in DEDUP_STEPS.items():
        setattr(dedup, name, phases._wrapped(label, getattr(dedup, name)))
    t0 = time.perf_counter()
    dropped = clustered = 0
    try:
        for result, _ in dedup.dedup(runner, job, asm):
            dropped, clustered = dropped + len(result.matches), clustered + len(result.cluster_of)
    finally:
        runner.close()
    seconds = time.perf_counter() - t0
    spool.finish()
    return {"corpus": "dedup_records", "records": n, "seconds": round(seconds, 1), "floor_mb": round(floor),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "dropped": dropped,
            "clustered": clustered, "steps": {k: v for k, v in phases.report().items() if not k.startswith("after")}}


def _env() -> dict[str, str]:
    """The measured interpreter imports its own medcorpus: never this checkout's through PYTHONPATH
    (the repository root holds a ``medcorpus`` link)."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "HF_HUB_OFFLINE": "1"}


def _measure_input(args: argparse.Namespace, name: str, file: str, n: int, write: Any, measure: list[str]) -> None:
    """Write an input of ``n`` rows once (``--keep`` reuses an earlier one), then measure it in a
    fresh process with each interpreter: ``measure`` WORK N."""
    work = Path(args.work) / name
    if not (args.keep and (work / file).exists()):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        write(work / file, n)
    for python in args.python:
        done = subprocess.run([python, __file__, *measure, str(work), str(n)], capture_output=True, text=True,
                              cwd="/", env=_env())
        print(done.stdout.strip().splitlines()[-1] if done.returncode == 0 else done.stderr[-3000:], python,
              flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, nargs="*", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--cluster", type=int, default=0, help="also a corpus of N copies of one image")
    ap.add_argument("--per-unit", type=int, default=8)
    ap.add_argument("--runner", nargs="+", default=["local"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default="/tmp/driver-bench")
    ap.add_argument("--keep", action="store_true", help="keep the staged units (and reuse those of an earlier run)")
    ap.add_argument("--rebuild", action="store_true",
                    help="then build again over the same units: the scheduled rebuild, release 2 beside release 1")
    ap.add_argument("--python", nargs="+", default=[sys.executable],
                    help="interpreters (and so the medcorpus each imports) to measure on the same staged units")
    ap.add_argument("--dedup-cluster", type=int, nargs="*", default=[],
                    help="copies of one image: time and memory of the dedup step alone (in memory, no staging)")
    ap.add_argument("--dedup-records", type=int, nargs="*", default=[],
                    help="synthetic dedup records: time and memory of the dedup step alone, by step")
    ap.add_argument("--tables-rows", type=int, nargs="*", default=[],
                    help="spooled figure rows: time and memory of the tables phase's sorted write alone")
    ap.add_argument("--measure-tables", nargs=2, metavar=("WORK", "ROWS"), help=argparse.SUPPRESS)
    ap.add_argument("--measure-dedup", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--measure-dedup-step", nargs=2, metavar=("WORK", "RECORDS"), help=argparse.SUPPRESS)
    ap.add_argument("--measure", nargs=3, metavar=("WORK", "UNITS", "RUNNER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), int(args.measure[1]), args.measure[2], args.workers)))
        return
    if args.measure_tables:
        print(json.dumps(measure_tables(Path(args.measure_tables[0]), int(args.measure_tables[1]))))
        return
    if args.measure_dedup:
        print(json.dumps(measure_dedup(args.measure_dedup)))
        return
    if args.measure_dedup_step:
        print(json.dumps(measure_dedup_step(Path(args.measure_dedup_step[0]), int(args.measure_dedup_step[1]),
                                            args.workers)))
        return
    for n in args.dedup_records:
        _measure_input(args, f"dedup-records-{n}", "records.parquet", n, write_dedup_records,
                       ["--workers", str(args.workers), "--measure-dedup-step"])
    for n in args.tables_rows:
        _measure_input(args, f"figure-rows-{n}", "figures.parquet", n, write_figure_rows, ["--measure-tables"])
    for copies, python in ((c, p) for c in args.dedup_cluster for p in args.python):
        done = subprocess.run([python, __file__, "--measure-dedup", str(copies)], capture_output=True, text=True,
                              cwd="/", env=_env(), timeout=1800)
        print(done.stdout.strip().splitlines()[-1] if done.returncode == 0 else done.stderr[-2000:], python, flush=True)
    corpora = [(n, False) for n in args.samples] + ([(args.cluster, True)] if args.cluster else [])
    for samples, cluster in corpora:
        work = Path(args.work) / f"{'cluster' if cluster else 'corpus'}-{samples}"
        per_unit = 1 if cluster else args.per_unit
        units, staged_s = -(-samples // per_unit), 0.0
        if not (args.keep and (work / "staged.json").exists()):
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            t0 = time.perf_counter()
            stage(work, samples, per_unit, cluster)
            staged_s = time.perf_counter() - t0
            (work / "staged.json").write_text(json.dumps({"units": units, "seconds": staged_s}))
        for runner, python in ((r, p) for r in args.runner for p in args.python):
            for path in (work / "out").iterdir():  # every build starts without a release
                if path.name != "_work":
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            cmd = [python, __file__, "--workers", str(args.workers), "--measure", str(work), str(units), runner]
            for release in range(1, 3 if args.rebuild else 2):
                done = subprocess.run(cmd, capture_output=True, text=True, cwd="/", env=_env())
                if done.returncode:
                    print(done.stderr[-3000:], file=sys.stderr)
                    break
                result = json.loads(done.stdout.strip().splitlines()[-1])
                print(json.dumps({"corpus": "cluster" if cluster else "corpus", "staged_samples": samples,
                                  "runner": runner, "python": python, "release": release,
                                  "staging_s": round(staged_s, 1), **result}), flush=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
