"""Figures/s of one build on each runner (local, ray, beam) with 1 and 2 workers, on the same input.

Input: the shared articles copied until there are at least --figures figures (as in build_bench.py:
each copy's ids are suffixed so the copies are distinct samples). Every build starts from an empty
output and work dir, so nothing is reused. Ray runs on one local cluster started once for the run
(--ray-address to use an existing one; the cluster start is reported, not counted in the builds);
Beam runs on its FnApiRunner, whose worker start-up is part of every build. Prints figures/s, the
2-vs-1-worker scaling ratio of each runner and each runner's overhead against the local runner with
the same number of workers, the largest peak resident memory (RSS) of a worker in each build, and
checks that all builds wrote byte-identical output. Each build runs in a fresh process of its own
(as a `medcorpus build` does): in one process, a runner that works in-process (local or Beam with
one worker) would reuse the imports and models an earlier build loaded, and look 20-25 % faster.

    python bench/runners_bench.py [--figures 300] [--runners local,ray,beam] [--workers 1,2]
                                  [--stages fetch,parse,image] [--ray-address HOST:PORT | --ray-loopback]

A quick subset: ``--runners ray --workers 1 --figures 100``. With ``--ray-address`` Ray's workers
run where that cluster puts them; ``--ray-loopback`` starts the two-node loopback cluster of
tests/raycluster.py with each node (its raylet and its one worker) pinned to a core of its own, so
two Ray workers never share a core. Each build also prints its steps' wall times (``Traced``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench import REPO, make_input  # noqa: E402


def digest(out: Path) -> str:
    h = hashlib.sha256()
    files = sorted((out / "manifest").rglob("*.parquet")) + sorted((out / "shards").rglob("*.tar"))
    for f in files:
        if f.name != "runs.parquet":
            h.update(f.relative_to(out).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


class Traced:
    """A runner with the wall time of each of its steps recorded: ``start`` (from the step's call to
    its first result: workers starting, models loading), the whole step, and the dedup image bands
    (the runner's shuffle)."""

    def __init__(self, runner: Any) -> None:
        self.runner, self.seconds = runner, {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)

    def _timed(self, step: str, results: Any) -> Any:
        t0 = time.perf_counter()
        for i, r in enumerate(results):
            if i == 0:
                self.seconds[f"{step} start"] = self.seconds.get(f"{step} start", 0) + time.perf_counter() - t0
            yield r
        self.seconds[step] = self.seconds.get(step, 0) + time.perf_counter() - t0

    def stage_units(self, job: Any, units: Any) -> Any:
        return self._timed("staging", self.runner.stage_units(job, units))

    def write_shards(self, job: Any, plans: Any, tokens: Any) -> Any:
        return self._timed("shards", self.runner.write_shards(job, plans, tokens))

    def shuffle(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = self.runner.shuffle(*args, **kwargs)
        self.seconds["dedup image bands"] = time.perf_counter() - t0
        return out


def run_one(name: str, workers: int, src: Path, out: Path, ray_address: str | None,
            stages: tuple[str, ...] | None) -> tuple[float, Any, dict[str, float]]:
    from dataclasses import replace

    from medcorpus.pipelines.build import build
    from medcorpus.pipelines.config import load_config
    from medcorpus.pipelines.runners import make_runner
    from medcorpus.pipelines.sources.local import LocalSource

    cfg = load_config(REPO / "dataflow.yaml")
    if stages:
        cfg = replace(cfg, stages=stages)
    runner = Traced(make_runner(name, workers, config=cfg, ray_address=ray_address))
    t0 = time.perf_counter()
    summary = build(cfg, LocalSource(str(src)), runner, str(out), progress=False)
    seconds = time.perf_counter() - t0
    return seconds, summary, {**runner.seconds, "rest": seconds - sum(v for k, v in runner.seconds.items()
                                                                       if not k.endswith(" start"))}


def run_child(name: str, workers: int, src: Path, out: Path, ray_address: str | None,
              stages: tuple[str, ...] | None) -> dict[str, Any]:
    """One build in a process of its own, so none finds the imports, models and vocabularies an
    earlier build of the run loaded (an in-process runner would, and gain a few seconds)."""
    cmd = [sys.executable, __file__, "--one", f"{name},{workers}", "--src", str(src), "--out", str(out)]
    cmd += ["--ray-address", ray_address] if ray_address else []
    cmd += ["--stages", ",".join(stages)] if stages else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} with {workers} workers failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_build(spec: str, src: Path, out: Path, ray_address: str | None, stages: tuple[str, ...] | None) -> None:
    """``--one NAME,WORKERS``: build once and print the result as one JSON line."""
    name, workers = spec.split(",")
    seconds, summary, steps = run_one(name, int(workers), src, out, ray_address, stages)
    print(json.dumps({"seconds": seconds, "figures": summary.figures, "rss": summary.worker_peak_rss,
                      "stage_seconds": summary.stage_seconds, "steps": steps, "digest": digest(out)}))


def print_table(runners: list[str], worker_counts: list[int], results: dict[tuple[str, int], float],
                rss: dict[tuple[str, int], int], n_figures: int) -> None:
    """Seconds, rates, 2/1 scaling and overhead against local, one row per build."""
    print()
    print(f"{'runner':8}{'workers':>8}{'seconds':>9}{'figures/s':>11}{'fig/s/worker':>14}{'scaling 2/1':>13}"
          f"{'overhead vs local':>19}{'worker RSS MiB':>16}")
    for name in runners:
        for w in worker_counts:
            s = results[(name, w)]
            scaling = (f"{results[(name, 1)] / results[(name, 2)]:.2f}x"
                       if w == 2 and (name, 1) in results else "")
            overhead = (f"{(s / results[('local', w)] - 1) * 100:+.0f}%"
                        if name != "local" and ("local", w) in results else "")
            print(f"{name:8}{w:>8}{s:>9.2f}{n_figures / s:>11.1f}{n_figures / s / w:>14.1f}{scaling:>13}{overhead:>19}"
                  f"{rss[(name, w)] / 2**20:>16.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figures", type=int, default=300)
    ap.add_argument("--runners", default="local,ray,beam")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--ray-address", default=None, help="an existing Ray cluster (else one is started here)")
    ap.add_argument("--ray-loopback", action="store_true",
                    help="run Ray on the two-node loopback cluster of tests/raycluster.py, one CPU per node, "
                         "each node pinned to a core of its own (taskset)")
    ap.add_argument("--stages", default=None, help="a subset of the stage graph (default: dataflow.yaml's)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child: NAME,WORKERS
    ap.add_argument("--src", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    stages = tuple(args.stages.split(",")) if args.stages else None
    if args.one:
        return one_build(args.one, args.src, args.out, args.ray_address, stages)
    runners = args.runners.split(",")
    worker_counts = [int(w) for w in args.workers.split(",")]
    started_ray = False
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        n_figures, images = make_input(src, args.figures)
        print(f"input: {n_figures} figures ({len(images)} with images) in {len(list(src.iterdir()))} articles; "
              f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start", flush=True)
        cluster = None
        if "ray" in runners and args.ray_loopback:
            sys.path.insert(0, str(REPO / "tests"))
            from raycluster import LoopbackCluster

            t0 = time.perf_counter()
            cluster = LoopbackCluster(pin=True).start()
            args.ray_address = cluster.address
            print(f"ray: two-node loopback cluster, nodes pinned to cores, started in {time.perf_counter() - t0:.1f} s "
                  "(not counted below)", flush=True)
        elif "ray" in runners and not args.ray_address:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=max(worker_counts), object_store_memory=200_000_000, include_dashboard=False,
                     logging_level="WARNING", log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
            started_ray = True
            args.ray_address = ray.get_runtime_context().gcs_address  # the builds connect to it
            print(f"ray: local cluster with {max(worker_counts)} CPUs started in {time.perf_counter() - t0:.1f} s "
                  "(not counted below)", flush=True)
        results: dict[tuple[str, int], float] = {}
        rss: dict[tuple[str, int], int] = {}
        digests = set()
        try:
            for name in runners:
                for w in worker_counts:
                    out = Path(tmp) / f"out-{name}-{w}"
                    got = run_child(name, w, src, out, args.ray_address, stages)
                    assert got["figures"] == n_figures, (name, w, got["figures"], n_figures)
                    seconds = results[(name, w)] = got["seconds"]
                    rss[(name, w)] = got["rss"]
                    digests.add(got["digest"])
                    staged = ", ".join(f"{k} {v:.1f}" for k, v in got["stage_seconds"].items())
                    print(f"  {name:6} workers {w}: {seconds:7.2f} s  {n_figures / seconds:7.1f} figures/s  "
                          f"worker peak RSS {got['rss'] / 2**20:.0f} MiB  load {os.getloadavg()[0]:.1f}  "
                          f"(stage seconds: {staged})", flush=True)
                    print("          steps, s: " + ", ".join(f"{k} {v:.1f}" for k, v in got["steps"].items()),
                          flush=True)
        finally:
            if cluster is not None:
                cluster.stop()
            if started_ray:
                import ray

                ray.shutdown()
    print_table(runners, worker_counts, results, rss, n_figures)
    print(f"outputs byte-identical across all builds: {'yes' if len(digests) == 1 else 'NO'}")
    print("(shared machine: other jobs run beside this one; compare within one run)")


if __name__ == "__main__":
    main()
