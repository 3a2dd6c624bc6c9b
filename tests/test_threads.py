"""Every worker sizes its threaded libraries to its share of the cores, so N workers never run N
threads each (the oversubscription that made a local model ~10x slower with 2 workers on 2 cores)."""
from __future__ import annotations

import subprocess
import sys

from testdata import REPO

from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.runners import Job, LocalRunner
from medcorpus.pipelines.threads import share, thread_counts


def test_limit_threads_sizes_torch_and_blas() -> None:
    code = ("import numpy, torch; from medcorpus.pipelines.threads import limit_threads, thread_counts; "
            "limit_threads(1); print(sorted(set(thread_counts().values())))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[1]"


def test_pool_workers_get_their_share_of_the_cores(tmp_path) -> None:  # noqa: ANN001
    cfg = load_config(REPO / "dataflow.yaml")
    cfg = type(cfg)(stages=("fetch", "parse", "image"))
    runner = LocalRunner(2)
    job = Job(cfg, None, str(tmp_path / "staging"), str(tmp_path / "out"))  # type: ignore[arg-type]
    try:
        counts = list(runner._map(job, thread_counts, [(), ()]))
    finally:
        runner.close()
    assert share(2) == max(1, share(1) // 2)
    assert all(c.get("torch", share(2)) == share(2) for c in counts)
    assert all(set(c.values()) == {share(2)} for c in counts)
