"""Ray runner: the parallel steps of a build on long-lived Ray actors.

A thin adapter over the same functions the local runner calls (``runners.init_worker``,
``stage_one``, ``shard_one``): one ``UnitWorker`` actor per worker (``num_cpus`` / ``num_gpus`` /
custom ``resources`` of the step from the ``ray:`` settings) builds its context once (its models
on its first unit) and then receives batches (``runners.chunks``), two in flight per actor so none
waits between batches; results are consumed as they finish (progress per batch).

* ``stage_units``: batches of units → ``UnitWorker.stage``.
* ``write_shards``: batches of shard plans → ``UnitWorker.shards``, on the same actors when the
  step's resources are the same (the default): no second start-up.
* a stage that declares a ``step`` of its own (the ``llm`` stage) runs after the others over the
  staged units, on actors with that step's resources (``ray.llm``: e.g. GPUs).
* ``shuffle``: a hash shuffle on the same actors, one map call per Parquet part (items → one
  partition per worker) and one reduce call per partition (group by key, reduce); the partitions
  move between nodes through the object store: what deduplication's bucket → verify runs on
  (pipelines/dedup.py).

Results travel through the staging directory (atomic writes), never through the object store, so
only small rows (unit id, counters) come back. A killed actor is restarted and its calls retried
(``max_restarts`` / ``max_task_retries`` = -1): a retried batch rewrites the same staged units or
shards under temporary names and renames them: same bytes, no duplicates. The staging directory and
the output must be reachable from every node: a local path on a single machine or shared
filesystem, or an fsspec URL (``gs://``, ``s3://``) on a real cluster.

Cluster: ``address`` (``--ray-address``), else ``RAY_ADDRESS``, else an existing ``ray.init`` in
this process, else a local cluster started for the build and shut down with the runner.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator, Sequence

from medcorpus.manifests.shards import ShardPlan
from medcorpus.pipelines.runners import (Job, UnitDone, _subset, chunks, init_worker, partition, pre_token,
                                         reduce_partition, shard_one, split_step, stage_one, step_one)
from medcorpus.pipelines.staging import Staging
from medcorpus.schemas.records import UnitRef

# ray: settings in dataflow.yaml (all optional)
DEFAULTS: dict[str, Any] = {
    "address": None,  # "auto", "ray://host:10001", "host:6379"; RAY_ADDRESS and --ray-address win
    # resources of one worker (actor) of each step: num_cpus, num_gpus, memory, resources, accelerator_type
    "units": {"num_cpus": 1, "num_gpus": 0},  # stage_units: the whole stage graph per unit
    "shards": {"num_cpus": 1, "num_gpus": 0},  # write_shards
    # a stage with a step of its own (the llm stage) runs after the others on actors with its
    # step's resources (e.g. llm: {"num_gpus": 1}); concurrency = workers
    "llm": {"num_cpus": 1, "num_gpus": 0},
    "init": {},  # extra ray.init keyword arguments for a cluster started here (object_store_memory, ...)
    "runtime_env": None,  # ray.init runtime_env (e.g. {"working_dir": "."} for a remote cluster)
}


class UnitWorker:
    """One worker (a Ray actor): the worker context is built once, then batches of units, shard
    plans and shuffle partitions run on it."""

    def __init__(self, job: Job) -> None:
        init_worker(job)

    def stage(self, items: list[tuple[UnitRef, str]]) -> list[str]:
        return [_row(stage_one(*item)) for item in items]

    def step(self, tokens: list[str]) -> list[str]:
        return [_row(step_one(token)) for token in tokens]

    def shards(self, items: list[tuple[ShardPlan, dict[str, str]]]) -> list[str]:
        return [json.dumps(shard_one(*item)) for item in items]

    def partition(self, part: str, read: Callable[[str], Iterable[Any]], keys: Callable[[Any], Iterable[str]],
                  n: int) -> Any:
        pieces = partition(part, read, keys, n)
        return tuple(pieces) if n > 1 else pieces[0]

    def reduce(self, reduce: Callable[[str, list[Any]], Iterable[Any]], *pieces: Any) -> list[Any]:
        """Its pieces arrive as separate arguments, so Ray fetches each one from its map call."""
        return reduce_partition(reduce, pieces)


def _row(done: UnitDone) -> str:
    return json.dumps([done.unit_id, done.token, done.counters, done.samples, done.errors, done.rss])


def _checkout_root() -> str | None:
    """The folder medcorpus is imported from when it is a checkout (editable install, PYTHONPATH)."""
    import medcorpus

    root = os.path.dirname(os.path.dirname(os.path.abspath(medcorpus.__file__)))
    return root if os.path.isdir(os.path.join(root, "pipelines")) else None


class RayRunner:
    name = "ray"

    def __init__(self, workers: int = 0, address: str | None = None, settings: dict[str, Any] | None = None) -> None:
        given = settings or {}
        self.settings = {k: ({**v, **(given.get(k) or {})} if isinstance(v, dict) else given.get(k, v))
                         for k, v in DEFAULTS.items()}
        unknown = set(given) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown ray settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.address = address or os.environ.get("RAY_ADDRESS") or self.settings["address"]
        self._requested = workers
        self.workers = workers
        self._started = False
        self._actors: list[Any] = []
        self._pool_of: tuple[Job, str] | None = None  # the job and resources the actors were started with

    # -- cluster -------------------------------------------------------------------------------
    def _connect(self) -> Any:
        # no usage reporting: a build talks to its cluster only. Set before Ray reads it; the environment wins.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
            runtime_env = self.settings["runtime_env"]
            if runtime_env is None and (root := _checkout_root()):
                # workers import the same medcorpus code as this driver (shared filesystem)
                path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
                runtime_env = {"env_vars": {"PYTHONPATH": path}}
            if runtime_env:
                kwargs["runtime_env"] = runtime_env
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                init = {"num_cpus": self._requested or None, "include_dashboard": False, **self.settings["init"]}
                ray.init(**init, **kwargs)
            self._started = True
        if not self.workers:
            cpus = ray.cluster_resources().get("CPU", 1)
            self.workers = max(1, int(cpus // (self.settings["units"].get("num_cpus") or 1)))
        return ray

    def _pool(self, job: Job, step: str) -> list[Any]:
        """The step's actors: the running ones when they were started for this job with the same
        resources, else new ones (the old ones are ended first: they hold their CPUs)."""
        ray = self._connect()
        res = self.settings.get(step) or self.settings["units"]
        resources = json.dumps(res, sort_keys=True, default=str)
        if self._actors and self._pool_of and self._pool_of[0] is job and self._pool_of[1] == resources:
            return self._actors  # the same job object (identity: a Job's fields are large to compare)
        self._end_actors()
        opts = {"num_cpus": res.get("num_cpus", 1), "num_gpus": res.get("num_gpus") or None,
                "memory": res.get("memory"), "resources": res.get("resources") or None,
                "accelerator_type": res.get("accelerator_type")}
        actor = ray.remote(UnitWorker).options(max_restarts=-1, max_task_retries=-1,
                                               **{k: v for k, v in opts.items() if v is not None})
        worker_job = replace(job, threads=max(1, int(res.get("num_cpus") or 1)))  # an actor's threads: its CPUs
        self._actors = [actor.remote(worker_job) for _ in range(max(1, self.workers))]
        self._pool_of = (job, resources)
        return self._actors

    def _run(self, job: Job, step: str, method: str, items: list[Any]) -> Iterator[str]:
        """``items`` in batches over the step's actors, two batches in flight per actor."""
        if not items:
            return
        import ray

        actors = self._pool(job, step)
        batches = iter(chunks(items, len(actors)))
        pending: dict[Any, Any] = {}

        def submit(actor: Any) -> None:
            batch = next(batches, None)
            if batch is not None:
                pending[getattr(actor, method).remote(batch)] = actor

        for actor in actors * 2:
            submit(actor)
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            actor = pending.pop(ready)
            yield from ray.get(ready)
            submit(actor)

    # -- the Runner protocol -------------------------------------------------------------------
    def stage_units(self, job: Job, units: Sequence[tuple[UnitRef, str]]) -> Iterator[UnitDone]:
        """All stages per unit; with a stage that declares a step of its own, every other stage
        first, then that stage over the staged units (its step's resources, e.g. ``ray.llm``: GPU
        actors that load the model once, batch per unit)."""
        split = split_step(job)
        if split is None:
            yield from self._done(self._run(job, "units", "stage", list(units)))
            return
        pre_job, step_job, step = split
        staging = Staging(job.staging_root)
        pending = [(u, pre_token(t)) for u, t in units if not staging.done(pre_token(t))]
        for _ in self._run(pre_job, "units", "stage", pending):
            pass
        yield from self._done(self._run(step_job, step, "step", [t for _, t in units]))

    @staticmethod
    def _done(raws: Iterator[str]) -> Iterator[UnitDone]:
        for raw in raws:
            yield UnitDone(*json.loads(raw))

    def write_shards(self, job: Job, plans: Sequence[ShardPlan], tokens: dict[str, str]) -> Iterator[int]:
        for raw in self._run(job, "shards", "shards", [(p, _subset(tokens, p)) for p in plans]):
            yield json.loads(raw)

    def shuffle(self, job: Job, parts: Sequence[str], read: Callable[[str], Iterable[Any]],
                keys: Callable[[Any], Iterable[str]], reduce: Callable[[str, list[Any]], Iterable[Any]],
                name: str = "shuffle") -> list[Any]:
        """A hash shuffle on the running actors (the build's own, no start-up): one map call per
        part splits its items into one partition per actor (``runners.partition``), one reduce call
        per partition groups and reduces (``runners.reduce_partition``); only the reduce outputs
        come back."""
        if not parts:
            return []
        import ray

        actors = self._actors or self._pool(job, "units")
        n = len(actors)
        maps = [actors[i % n].partition.options(num_returns=n).remote(part, read, keys, n)
                for i, part in enumerate(parts)]
        maps = [m if n > 1 else [m] for m in maps]
        outs = ray.get([actors[p].reduce.remote(reduce, *[m[p] for m in maps]) for p in range(n)])
        return [o for out in outs for o in out]

    def _end_actors(self) -> None:
        if self._actors:
            import ray

            for actor in self._actors:
                ray.kill(actor)
        self._actors, self._pool_of = [], None

    def close(self) -> None:
        self._end_actors()
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
