"""Local build throughput against the floor of decoding + re-encoding the same images alone.

Input: the real shared articles, copied until there are at least --figures figures. Each copy gets
its own article id (the DOI in the XML is suffixed with the copy number) so the copies are distinct
samples; that rewrite is the only synthetic part. Floor: the same image files, the same worker
count, each decoded with Pillow, converted to RGB, resized to the same max side with the same filter
(``image.resample``) and saved as JPEG.
Prints figures/s per core for both and their ratio (goals: the foundation, fetch,parse,image, within
1.5x the floor's time; every default stage within 2.0x), and where the pipeline's time went.
Floor and pipeline alternate --repeat times (each pipeline run in a fresh output folder, so nothing
is reused) and the fastest of each counts: a busy machine slows single runs, not the minimum.

    python bench/build_bench.py [--figures 2000] [--workers 2] [--repeat 2] [--profile P] [--stages a,b,c]

--stages runs a subset of the stage graph (e.g. fetch,parse,image: the foundation) to see what each
added stage costs against the same floor. The input repeats articles, so deduplication collapses
their samples by design: figures/s counts every figure processed.
"""
from __future__ import annotations

import argparse
import io
import re
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ARTICLES = REPO.parent / "shared" / "data" / "pmc" / "articles"


def make_input(dest: Path, min_figures: int) -> tuple[int, list[Path]]:
    from medcorpus.pipelines.sources.local import LocalSource
    from medcorpus.transforms.jats import parse_article
    from medcorpus.transforms.resolve import resolve_graphic

    source = LocalSource(str(ARTICLES))
    per_copy, images = 0, []
    for unit in source.list_units():
        pkg = source.open(unit)
        for fig in parse_article(pkg.xml, fallback_id=unit.unit_id).figures:
            per_copy += 1
            g = fig.primary_graphic()
            try:
                images.append(Path(unit.locator) / resolve_graphic(g.href, pkg.media_names))
            except Exception:  # noqa: BLE001 - figures without images count as figures, not images
                pass
    copies = -(-min_figures // per_copy)
    for k in range(copies):
        for folder in sorted(p for p in ARTICLES.iterdir() if p.is_dir()):
            target = dest / f"{folder.name}-r{k}"
            shutil.copytree(folder, target)
            for xml in list(target.rglob("*.xml")) + list(target.rglob("*.nxml")):
                data = xml.read_bytes()
                data = re.sub(rb'(pub-id-type="(?:doi|pmc|publisher-id)"[^>]*>)([^<]+)<',
                              lambda m: m.group(1) + m.group(2) + f".r{k}".encode() + b"<", data)
                xml.write_bytes(data)
    return copies * per_copy, images * copies


FILTERS = {"area": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS}


def floor_one(path: str, max_side: int = 1024, quality: int = 90, resample: str = "area") -> int:
    img = Image.open(path)
    img.load()
    img = img.convert("RGB")
    img.thumbnail((max_side, max_side), FILTERS[resample])
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return len(buf.getvalue())


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children: with one worker the pipeline runs in this
    process and the floor in one child, so their CPU times compare even when other jobs share the
    cores (wall times then measure the machine's load as much as the code)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_floor(images: list[Path], workers: int, profile: str | None) -> tuple[float, float]:
    from functools import partial

    from medcorpus.pipelines.config import load_config

    opts = load_config(REPO / "dataflow.yaml", profile).image
    one = partial(floor_one, max_side=opts.max_side, quality=opts.jpeg_quality, resample=opts.resample)
    t0, c0 = time.perf_counter(), cpu_seconds()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(one, [str(p) for p in images], chunksize=8))
    return time.perf_counter() - t0, cpu_seconds() - c0


def run_pipeline(src: Path, out: Path, workers: int, profile: str | None,
                 stages: tuple[str, ...] | None = None) -> tuple[float, float, int, int, dict[str, float]]:
    from dataclasses import replace

    from medcorpus.pipelines.build import build
    from medcorpus.pipelines.config import load_config
    from medcorpus.pipelines.runners import LocalRunner
    from medcorpus.pipelines.sources.local import LocalSource

    config = load_config(REPO / "dataflow.yaml", profile)
    if stages:
        config = replace(config, stages=stages)
    t0, c0 = time.perf_counter(), cpu_seconds()
    summary = build(config, LocalSource(str(src)), LocalRunner(workers), str(out), progress=False)
    return time.perf_counter() - t0, cpu_seconds() - c0, summary.figures, summary.samples, summary.stage_seconds


def print_breakdown(pipe_s: float, stage_seconds: dict[str, float], workers: int) -> None:
    """Where the fastest pipeline run spent its time: each stage (summed over workers), and with one
    worker the rest of the wall time (worker setup: vocabularies and models; deduplication; shards)."""
    staged = sum(stage_seconds.values())
    rest = f", rest (setup, dedup, shards) {pipe_s - staged:.2f}" if workers == 1 else ""
    print("stage seconds (fastest run, summed over workers): "
          + ", ".join(f"{k} {v:.2f}" for k, v in stage_seconds.items()) + f"; stages {staged:.2f}{rest}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figures", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--stages", default=None, help="comma-separated subset of the stage graph")
    ap.add_argument("--goal", type=float, default=None,
                    help="ratio to meet (default: 1.5 with --stages, 2.0 for every default stage)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        n_figures, images = make_input(src, args.figures)
        print(f"stages: {args.stages or 'all (dataflow.yaml)'}")
        print(f"input: {n_figures} figures ({len(images)} with images) in {len(list(src.iterdir()))} articles; "
              f"workers {args.workers}", flush=True)
        floor_runs, pipe_runs, floor_cpu, pipe_cpu, breakdowns = [], [], [], [], []
        for r in range(args.repeat):
            wall, cpu = run_floor(images, args.workers, args.profile)
            floor_runs.append(wall)
            floor_cpu.append(cpu)
            stages = tuple(args.stages.split(",")) if args.stages else None
            pipe_s, cpu, figures, samples, per_stage = run_pipeline(src, Path(tmp) / f"out{r}", args.workers,
                                                                    args.profile, stages)
            pipe_runs.append(pipe_s)
            pipe_cpu.append(cpu)
            breakdowns.append(per_stage)
            assert figures == n_figures, (figures, n_figures)
        floor_s, pipe_s = min(floor_runs), min(pipe_runs)
        print("runs (s): floor " + " ".join(f"{x:.1f}" for x in floor_runs)
              + " | pipeline " + " ".join(f"{x:.1f}" for x in pipe_runs))
    per_core = lambda n, s: n / s / args.workers  # noqa: E731
    print(f"{'':22}{'seconds':>9}{'figures/s/core':>16}{'images/s/core':>15}")
    print(f"{'floor (decode+encode)':22}{floor_s:9.2f}{'':>16}{per_core(len(images), floor_s):15.1f}")
    print(f"{'pipeline (full build)':22}{pipe_s:9.2f}{per_core(figures, pipe_s):16.1f}{per_core(samples, pipe_s):15.1f}")
    print_breakdown(pipe_s, breakdowns[pipe_runs.index(pipe_s)], args.workers)
    ratio = pipe_s / floor_s
    goal = args.goal or (1.5 if args.stages else 2.0)
    print(f"ratio pipeline/floor: {ratio:.2f}x (goal <= {goal}x) -> {'MET' if ratio <= goal else 'MISSED'}")
    if args.workers == 1:
        print(f"CPU seconds: floor {min(floor_cpu):.2f}, pipeline {min(pipe_cpu):.2f}; "
              f"CPU ratio {min(pipe_cpu) / min(floor_cpu):.2f}x (fastest of each; steadier than wall on a busy machine)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
