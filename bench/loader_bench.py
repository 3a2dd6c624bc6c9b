"""Training-loader throughput: samples/s per DataLoader worker, each sample delivered as a decoded,
224-px-resized float tensor with its caption, for

    (a) ManifestDataset over the whole corpus (shuffled, as for training),
    (b) ManifestDataset over a 10% SQL selection scattered across every shard,
    (c) plain ``webdataset`` reading the same shards sequentially (the floor),

in one run on one corpus, with the same decode function everywhere. Goals: (a) >= 1.0x (c);
(b) >= 0.7x (c) per delivered sample; every loader >= 250 samples/s per worker.

Corpus: the real shared articles copied under new ids until there are at least --figures figures
(bench/build_bench.py's ``make_input``; the id rewrite is the only synthetic part), built with
fetch, parse, image and panels (no dedup, which would collapse the copies) into shards of
--shard-size samples. ``--corpus DIR`` reuses a corpus built earlier. Each loader runs --repeat
times, alternating, and its fastest run counts (a busy machine slows single runs, not the minimum).

    python bench/loader_bench.py [--figures 1200] [--workers 2] [--batch-size 32] [--repeat 3] [--corpus DIR]

CPU only: the GPU part of a training input pipeline (host-to-device copy) is not measured.
"""
from __future__ import annotations

import argparse
import io
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SIDE = 224


def to_tensor(data: bytes) -> torch.Tensor:
    """Image bytes → 3x224x224 uint8 tensor (normalized on the GPU, as usual): draft-mode decode
    (JPEG DCT scaling to the smallest size still >= 224), then a bilinear resize."""
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (SIDE, SIDE))
    img = img.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


def build_corpus(dest: Path, figures: int, shard_size: int, workers: int) -> Path:
    from dataclasses import replace

    from bench.build_bench import make_input
    from medcorpus.pipelines.build import build
    from medcorpus.pipelines.config import load_config
    from medcorpus.pipelines.runners import LocalRunner
    from medcorpus.pipelines.sources.local import LocalSource

    src = dest / "in"
    make_input(src, figures)
    config = load_config(REPO / "dataflow.yaml")
    config = replace(config, stages=("fetch", "parse", "image", "panels"),
                     shards=replace(config.shards, max_samples=shard_size))
    build(config, LocalSource(str(src)), LocalRunner(workers), str(dest / "out"), progress=False)
    shutil.rmtree(src)
    return dest / "out"


def time_loader(loader: torch.utils.data.DataLoader) -> tuple[int, float, float]:
    """Samples delivered, wall seconds, and CPU seconds of the worker processes (counted once they
    exit, at the end of the pass: a shared machine stretches wall time, much less CPU time)."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch["image"] if isinstance(batch, dict) else batch[0])
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return n, wall, (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)


def manifest_loader(out: Path, where: str | None, workers: int, batch_size: int) -> torch.utils.data.DataLoader:
    from medcorpus.manifests.loader import ManifestDataset

    ds = ManifestDataset(str(out), where, decode=to_tensor, batch_size=batch_size, seed=0)
    return ds.dataloader(num_workers=workers)


def webdataset_loader(out: Path, workers: int, batch_size: int) -> torch.utils.data.DataLoader:
    import webdataset as wds

    from medcorpus.manifests.layout import resolve

    shards = sorted(str(p) for p in Path(resolve(str(out)).url).glob("shards/*/*.tar"))  # the current release
    pipeline = wds.WebDataset(shards, shardshuffle=False, empty_check=False, workersplitter=wds.split_by_worker,
                              nodesplitter=None)
    pipeline = pipeline.to_tuple("jpg;png", "txt").map_tuple(to_tensor, lambda b: b.decode("utf-8"))
    return torch.utils.data.DataLoader(pipeline.batched(batch_size, partial=True), batch_size=None, num_workers=workers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figures", type=int, default=1200)
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus", type=Path, default=None, help="a corpus built by an earlier run (its out/ folder)")
    ap.add_argument("--keep", type=Path, default=None, help="build the corpus here and keep it")
    args = ap.parse_args()

    from medcorpus.manifests.query import query

    tmp = None
    out = args.corpus
    if out is None:
        root = args.keep or Path(tmp := tempfile.mkdtemp(prefix="loader-bench-"))
        out = build_corpus(root, args.figures, args.shard_size, args.workers)
    total = query(str(out), "SELECT count(*) FROM samples")[1][0][0]
    shards = query(str(out), "SELECT count(DISTINCT shard) FROM samples")[1][0][0]
    tenth = "hash(key) % 10 = 3"  # a 10% selection scattered over every shard
    picked, touched = query(str(out), f"SELECT count(*), count(DISTINCT shard) FROM samples WHERE {tenth}")[1][0]
    print(f"corpus: {total} samples in {shards} shards; selection: {picked} samples in {touched} shards; "
          f"{args.workers} workers, batch {args.batch_size}, {torch.get_num_threads()} torch threads")
    loaders = {
        "(c) webdataset, sequential": lambda: webdataset_loader(out, args.workers, args.batch_size),
        "(a) ManifestDataset, all": lambda: manifest_loader(out, None, args.workers, args.batch_size),
        "(b) ManifestDataset, 10% SQL": lambda: manifest_loader(out, tenth, args.workers, args.batch_size),
    }
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, make in loaders.items():
            n, seconds, cpu_seconds = time_loader(make())
            wall[name] = max(wall.get(name, 0.0), n / seconds / args.workers)
            cpu[name] = max(cpu.get(name, 0.0), n / cpu_seconds if cpu_seconds else 0.0)
    floor, cpu_floor = wall["(c) webdataset, sequential"], cpu["(c) webdataset, sequential"]
    print(f"{'loader':<30} {'samples/s/worker':>17} {'vs (c)':>7} {'samples/worker-CPU-s':>21} {'vs (c)':>7}")
    for name in loaders:
        print(f"{name:<30} {wall[name]:>17.1f} {wall[name] / floor:>6.2f}x {cpu[name]:>21.1f} {cpu[name] / cpu_floor:>6.2f}x")
    print("goals: (a) >= 1.0x (c), (b) >= 0.7x (c), each >= 250 samples/s/worker")
    if tmp:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
