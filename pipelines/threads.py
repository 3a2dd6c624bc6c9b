"""One worker, its share of the cores: every threaded library in a worker is sized to it.

Each worker of a build is a process; left alone, each one's torch, BLAS (numpy/scipy), OpenMP,
tokenizers and OpenCV start a thread per core, so N workers on N cores run N² threads that fight
for the caches (a local transformers model ran ~10x slower with 2 workers than with 1 on 2 cores).
Runners call ``limit_threads`` once per worker, before its stages load their models.
"""
from __future__ import annotations

import os

_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "RAYON_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS")


def share(workers: int, cores: int | None = None) -> int:
    """Threads per worker when ``workers`` share this machine's cores (at least one)."""
    from medcorpus.pipelines.runners import default_workers

    return max(1, (cores or default_workers()) // max(1, workers))


def limit_threads(threads: int) -> None:
    """Size every threaded library of this process to ``threads`` (0 leaves them as they are):
    environment for libraries not loaded yet, the live pools for those already loaded."""
    if threads <= 0:
        return
    for name in _ENV:
        os.environ[name] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)  # BLAS and OpenMP pools already loaded (numpy, scipy)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass


def thread_counts() -> dict[str, int]:
    """The threads each library of this process would use now (for a worker's log, and its tests)."""
    from threadpoolctl import threadpool_info

    counts = {f"{p['internal_api']}": int(p["num_threads"]) for p in threadpool_info()}
    try:
        import torch

        counts["torch"] = torch.get_num_threads()
    except ImportError:
        pass
    return counts
