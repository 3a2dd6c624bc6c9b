"""The llm stage on a local transformers model with 1 and 2 workers: no worker oversubscribes the cores.

Each worker's torch (and BLAS, tokenizers, OpenCV) is sized to its share of the cores
(pipelines/threads.py). Unsized, every worker's torch starts a thread per core and two workers on two
cores ran the llm stage ~10x slower than one (73 s vs 7 s summed over workers). This bench builds the
same articles through ``fetch, parse, image, llm`` (clean, enrich and extract on a random ~0.1 B Llama built
from its config: synthetic weights, real captions) with the local runner and each worker count, each
build with its own request cache (nothing reused), and prints the llm stage's seconds summed over
workers and the wall time. Goal: the summed llm seconds
with 2 workers within ~2x of 1 worker's (two workers on two cores share caches and memory bandwidth;
oversubscription shows as 5-10x).

    python bench/llm_threads_bench.py [--articles 3] [--workers 1,2] [--size small] [--tokens 8]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench import ARTICLES, REPO  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=3, help="how many of the shared articles")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--size", default="small", help="random_models size: tiny | small (~0.1 B)")
    ap.add_argument("--tokens", type=int, default=8, help="max_new_tokens per request")
    args = ap.parse_args()

    from medcorpus.pipelines.build import build
    from medcorpus.pipelines.config import load_config
    from medcorpus.pipelines.llm.random_models import build_text_model
    from medcorpus.pipelines.runners import LocalRunner
    from medcorpus.pipelines.sources.local import LocalSource

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        for folder in sorted(p for p in ARTICLES.iterdir() if p.is_dir())[:args.articles]:
            shutil.copytree(folder, src / folder.name)
        captions = (ARTICLES.parent.parent / "evalsets" / "roco_test" / "radiology" / "captions.txt")
        texts = [line.split("\t", 1)[1] for line in captions.read_text(encoding="utf-8").splitlines()[:400]]
        model = build_text_model(Path(tmp) / "model", texts, size=args.size)
        base = load_config(REPO / "dataflow.yaml")
        print(f"{args.articles} articles, model {args.size}; {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.1f} at start", flush=True)
        rows = []
        for w in (int(x) for x in args.workers.split(",")):
            cfg = replace(base, stages=("fetch", "parse", "image", "llm"), llm={
                "tasks": {"clean": True, "enrich": True, "extract": True},
                "backend": {"kind": "local", "model_path": str(model), "device": "cpu", "batch_size": 4},
                "generation": {"max_new_tokens": args.tokens}, "cache": {"path": f"{tmp}/cache-{w}.sqlite"}})
            t0 = time.perf_counter()
            s = build(cfg, LocalSource(str(src)), LocalRunner(w), f"{tmp}/out-{w}", progress=False)
            wall = time.perf_counter() - t0
            llm = s.stage_seconds.get("llm", 0.0)
            rows.append((w, wall, llm, s.llm_counts.get("llm:requests", 0), s.worker_peak_rss))
            print(f"  workers {w}: wall {wall:6.1f} s  llm stage {llm:6.1f} s summed  "
                  f"requests {rows[-1][3]}  worker peak RSS {s.worker_peak_rss / 2**20:.0f} MiB  "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    if len(rows) > 1:
        print(f"llm seconds summed, {rows[-1][0]} workers vs {rows[0][0]}: {rows[-1][2] / rows[0][2]:.2f}x "
              f"(oversubscribed workers showed ~10x); wall: {rows[0][1] / rows[-1][1]:.2f}x faster")
    print("(shared machine: other jobs run beside this one; compare within one run)")


if __name__ == "__main__":
    main()
