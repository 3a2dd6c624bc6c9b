"""Runners: how the two parallel steps of a build (stage units, write shards) are executed.

The embedded local runner uses a process pool: each worker builds its stage context once
(``init_worker``) and then processes units. The Ray and Beam runners (``runner_ray.py``,
``runner_beam.py``) implement the same two methods with the same three functions (``init_worker``,
``stage_one``, ``shard_one``), and their shuffles split and group with the same two
(``partition``, ``reduce_partition``); they are imported only when chosen, so a local build never
imports Ray or Beam.
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import resource
import select
import sys
import threading
import time
import zlib
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from medcorpus.manifests.shards import ShardPlan
from medcorpus.manifests.storage import Output
from medcorpus.pipelines.assemble import add_caption_bands, write_shard
from medcorpus.pipelines.config import BuildConfig
from medcorpus.pipelines.graph import Pipeline, process_unit
from medcorpus.pipelines.sources.base import Source
from medcorpus.pipelines.stages import WorkerEnv
from medcorpus.pipelines.threads import limit_threads, share
from medcorpus.pipelines.staging import Staging
from medcorpus.schemas.records import UnitRef


@dataclass
class UnitDone:
    unit_id: str
    token: str
    counters: dict[str, int]
    samples: int
    errors: int
    rss: int = 0  # peak resident memory of the worker process that staged it, bytes (``peak_rss``)


@dataclass
class Job:
    """Everything a worker needs; picklable."""

    config: BuildConfig
    source: Source
    staging_root: str
    output_url: str
    prepared: dict[str, Any] = field(default_factory=dict)  # stage name -> what the driver prepared for it
    stages: tuple[str, ...] | None = None  # run only these of the configured stages (see split_step)
    threads: int = 0  # threads per worker for threaded libraries (pipelines/threads.py); 0 = leave them
    previous_url: str = ""  # the previous release's folder: shards it holds unchanged are linked, not rewritten


class Runner(Protocol):
    name: str
    workers: int

    def stage_units(self, job: Job, units: Sequence[tuple[UnitRef, str]]) -> Iterator[UnitDone]: ...

    def write_shards(self, job: Job, plans: Sequence[ShardPlan], tokens: dict[str, str]) -> Iterator[int]: ...

    def shuffle(self, job: Job, parts: Sequence[str], read: Callable[[str], Iterable[Any]],
                keys: Callable[[Any], Iterable[str]], reduce: Callable[[str, list[Any]], Iterable[Any]],
                name: str = "shuffle") -> list[Any]:
        """The items ``read(part)`` yields for every part (a file the workers reach), grouped by each
        of their keys, every group reduced: the one all-to-all step a runner provides (deduplication
        is built on it, pipelines/dedup.py). The items never pass through the driver; the outputs
        come back to it (they must be few), in any order."""

    def close(self) -> None: ...


_WORKER: dict[str, Any] = {}


def init_worker(job: Job) -> None:
    """A worker's context for ``job``: its threads first (before any model loads), then storage.
    The stages (models, vocabularies) are set up on the first unit, so a worker that only writes
    shards never loads them."""
    limit_threads(job.threads)
    gc.unfreeze()  # an earlier build's stages (frozen below) become collectable again
    _WORKER.clear()
    _WORKER.update(storage(job), job=job)


def storage(job: Job) -> dict[str, Any]:
    """The staging, output and previous-release handles a worker reads and writes."""
    return {"staging": Staging(job.staging_root), "output": Output(job.output_url),
            "previous": Output(job.previous_url) if job.previous_url else None}


def _pipeline() -> Pipeline:
    """This worker's stage graph, each stage set up once."""
    if "pipeline" not in _WORKER:
        job: Job = _WORKER["job"]
        env = WorkerEnv(job.source, work_dir=os.path.dirname(job.staging_root), prepared=job.prepared)
        _WORKER["pipeline"] = Pipeline(job.config, env, job.stages)
        # The vocabularies and models (about a million objects) live as long as the worker: out of
        # every garbage collection, so a full one walks only what the units create.
        gc.freeze()
    return _WORKER["pipeline"]


def peak_rss() -> int:
    """This process's peak resident set size in bytes (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def _done(unit_id: str, token: str, result: Any) -> UnitDone:
    return UnitDone(unit_id, token, result.counters, len(result.samples), len(result.errors), peak_rss())


def stage_one(unit: UnitRef, token: str) -> UnitDone:
    result = add_caption_bands(process_unit(unit, _pipeline()), _WORKER["job"].config)
    _WORKER["staging"].write(token, result)
    return _done(unit.unit_id, token, result)


def split_step(job: Job) -> tuple[Job, Job, str] | None:
    """Jobs for the two parts of a build whose last stage declares a ``step`` of its own (workers and
    resources of its own: GPUs, batching): every other stage per unit, then that stage over the
    staged units; and the step's name. None when no stage declares one."""
    from medcorpus.pipelines.stages import REGISTRY

    stages = job.config.stages
    step = REGISTRY[stages[-1]].step if stages else None
    if step is None:
        return None
    return replace(job, stages=stages[:-1]), replace(job, stages=stages[-1:]), step


def pre_token(token: str) -> str:
    """Where a unit's result waits, staged without its step stage, for that step."""
    return token + "-pre"


def step_one(token: str) -> UnitDone:
    staging: Staging = _WORKER["staging"]
    stage = _pipeline().stages[0]
    result = stage.process_staged(staging.read_meta(pre_token(token)), staging.read_members(pre_token(token)))
    staging.write(token, add_caption_bands(result, _WORKER["job"].config))
    return _done(result.unit_id, token, result)


def shard_one(plan: ShardPlan, tokens: dict[str, str], handles: dict[str, Any] | None = None) -> int:
    """One shard, with this worker's storage (``init_worker``) or the given ``handles`` (``storage``)."""
    ctx = handles or _WORKER
    return write_shard(plan, tokens, ctx["staging"], ctx["output"], previous=ctx["previous"])


def chunks(items: list[Any], workers: int, per_worker: int = 8, most: int = 32) -> list[list[Any]]:
    """Items in batches for runners that pay per task (a Ray task: scheduling and a round trip
    through the object store): a unit each is too many; ``per_worker`` batches per worker keep every
    worker busy to the end of the step, and ``most`` items per batch keep progress and retries fine."""
    size = max(1, min(most, -(-len(items) // (max(1, workers) * per_worker))))
    return [items[i:i + size] for i in range(0, len(items), size)]


def partition(part: str, read: Callable[[str], Iterable[Any]], keys: Callable[[Any], Iterable[str]],
              n: int) -> list[tuple[list[Any], list[tuple[str, int]]]]:
    """Map side of a hash shuffle: the items of ``part`` into ``n`` partitions by each of their keys
    (CRC-32: the same partition in every process). Each partition holds its items once and
    ``(key, index)`` per key, so an item with many keys is not copied for each."""
    out: list[tuple[list[Any], list[tuple[str, int]]]] = [([], []) for _ in range(n)]
    for item in read(part):
        placed: dict[int, int] = {}
        for key in keys(item):
            p = zlib.crc32(key.encode()) % n
            items, index = out[p]
            if p not in placed:
                placed[p] = len(items)
                items.append(item)
            index.append((key, placed[p]))
    return out


def reduce_partition(reduce: Callable[[str, list[Any]], Iterable[Any]],
                     pieces: Sequence[tuple[list[Any], list[tuple[str, int]]]]) -> list[Any]:
    """Reduce side: one partition's pieces (one per map task) grouped by key, each group reduced."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for items, index in pieces:
        for key, i in index:
            groups[key].append(items[i])
    return [out for key in sorted(groups) for out in reduce(key, groups[key])]


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


IN_FLIGHT = 4  # calls per local worker submitted ahead: enough to keep it busy, bounded memory


class LocalRunner:
    """Processes on this machine; ``workers=1`` runs in-process (no pool), handy for debugging.

    One pool serves both steps of a build. Workers fork from a forkserver that has already
    imported the pipeline (safe while the progress display's thread runs, and no per-worker
    import cost).
    """

    name = "local"
    _PRELOAD = ["medcorpus.pipelines.runners", "lxml.etree", "PIL.Image", "pyarrow.parquet", "webdataset"]

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers or default_workers()
        self._pool: ProcessPoolExecutor | None = None
        self._job: Job | None = None

    def _executor(self, job: Job) -> ProcessPoolExecutor:
        if self._pool is None or self._job is not job:
            self.close()
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(self._PRELOAD)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_local_worker,
                                             initargs=(replace(job, threads=share(self.workers)), dict(os.environ),
                                                       os.getpid()))
            self._job = job
        return self._pool

    def _map(self, job: Job, fn: Any, calls: list[tuple[Any, ...]]) -> Iterator[Any]:
        if self.workers == 1 or len(calls) <= 1:
            if _WORKER.get("job") is not job:  # in-process: build the stage context once per build
                init_worker(job)
            for args in calls:
                yield fn(*args)
            return
        pool = self._executor(job)
        queued = iter(calls)
        running = {pool.submit(fn, *args) for args in islice(queued, IN_FLIGHT * self.workers)}
        while running:  # a few calls per worker in flight, never the whole list (6 M units of PMC)
            done, running = wait(running, return_when=FIRST_COMPLETED)
            running |= {pool.submit(fn, *args) for args in islice(queued, len(done))}
            for fut in done:
                yield fut.result()

    def stage_units(self, job: Job, units: Sequence[tuple[UnitRef, str]]) -> Iterator[UnitDone]:
        return self._map(job, stage_one, list(units))

    def write_shards(self, job: Job, plans: Sequence[ShardPlan], tokens: dict[str, str]) -> Iterator[int]:
        return self._map(job, shard_one, [(plan, _subset(tokens, plan)) for plan in plans])

    def shuffle(self, job: Job, parts: Sequence[str], read: Callable[[str], Iterable[Any]],
                keys: Callable[[Any], Iterable[str]], reduce: Callable[[str, list[Any]], Iterable[Any]],
                name: str = "shuffle") -> list[Any]:
        """The map calls on the pool (in this process with one worker), the reduce here."""
        return reduce_partition(reduce, [pieces[0] for pieces in self._map(job, partition,
                                                                           [(part, read, keys, 1) for part in parts])])

    def close(self) -> None:
        """Units already running finish (their staged files are whole); queued ones are dropped, so
        an interrupted build stops after its workers' current units."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool, self._job = None, None


def _init_local_worker(job: Job, env: dict[str, str], build_pid: int) -> None:
    """Workers fork from a long-lived forkserver: give them the environment the build sees now
    (credentials, endpoints), not the one the forkserver started with."""
    os.environ.clear()
    os.environ.update(env)
    exit_with(build_pid)
    init_worker(job)


def exit_with(pid: int) -> None:
    """End this worker as soon as process ``pid`` (the build) ends in any way, SIGKILL included.
    The forkserver's workers are not the build's children and would otherwise wait on the task
    queue forever, holding their memory and finishing units into an output that a rerun has
    taken over."""
    threading.Thread(target=_exit_after, args=(pid,), name="medcorpus-exit-with-build", daemon=True).start()


def _exit_after(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)  # readable once the process has ended; immune to pid reuse
    except (AttributeError, OSError):  # not Linux >= 5.3: poll
        while _alive(pid):
            time.sleep(1.0)
    else:
        select.select([fd], [], [])
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _subset(tokens: dict[str, str], plan: ShardPlan) -> dict[str, str]:
    return {k: tokens[k] for k in plan.keys}


RUNNERS = ("local", "ray", "beam")


def parse_beam_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--beam-option``) → an options mapping, read as Beam reads its own command
    line: the value stays a string, a bare ``KEY`` is a switch (``no_auth``), a repeated key a list."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().lstrip("-")
        if not key or " " in key:
            raise ValueError(f"beam option {pair!r} is not KEY=VALUE or KEY")
        value: Any = raw if sep else True
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


def make_runner(name: str, workers: int = 0, *, config: BuildConfig | None = None, ray_address: str | None = None,
                beam_options: dict[str, Any] | None = None) -> Runner:
    """A runner by name. ``config`` supplies the ``ray:``/``beam:`` settings of its profile;
    ``ray_address`` and ``beam_options`` (command-line) override them."""
    settings = config or BuildConfig()
    if name == "local":
        return LocalRunner(workers)
    if name == "ray":
        from medcorpus.pipelines.runner_ray import RayRunner

        return RayRunner(workers, address=ray_address, settings=settings.ray)
    if name == "beam":
        from medcorpus.pipelines.runner_beam import BeamRunner

        return BeamRunner(workers, options={**(settings.beam.get("options") or {}), **(beam_options or {})})
    raise ValueError(f"unknown runner {name!r} (known: {', '.join(RUNNERS)})")
