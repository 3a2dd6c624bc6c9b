"""Ray runner: the two parallel steps of a build as Ray Data pipelines.

A thin adapter over the same functions the local runner calls (``runners.init_worker``,
``stage_one``, ``shard_one``):

* ``stage_units``: units → ``ray.data.from_items`` → ``map_batches`` with a callable class whose
  constructor runs ``init_worker`` once per actor; ``concurrency`` = workers, ``num_cpus`` /
  ``num_gpus`` / custom ``resources`` per step from the ``ray:`` settings. Execution is streaming
  with Ray Data's backpressure; results are consumed as they finish (progress per unit).
* ``write_shards``: shard plans → the same, calling ``shard_one``.
* a stage that declares a ``step`` of its own (the ``llm`` stage) runs after the others over the
  staged units, on actors with that step's resources (``ray.llm``: e.g. GPUs).
* ``shuffle``: plain Ray tasks, one map task per Parquet part (items → one hash partition per
  worker) and one reduce task per partition (group by key, reduce): what deduplication's bucket →
  verify runs on (pipelines/dedup.py).

Results travel through the staging directory (atomic writes), never through the object store, so
only small rows (unit id, counters) come back. A retried task (a killed worker, a lost node) rewrites
the same staged unit or the same shard under a temporary name and renames it: same bytes, no
duplicates. The staging directory and the output must be reachable from every node: a local path
on a single machine or shared filesystem, or an fsspec URL (``gs://``, ``s3://``) on a real cluster.

Cluster: ``address`` (``--ray-address``), else ``RAY_ADDRESS``, else an existing ``ray.init`` in
this process, else a local cluster started for the build and shut down with the runner.
"""
from __future__ import annotations

import json
import os
import pickle
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


class _Step:
    """A Ray Data callable class: the worker context is built once per actor (its models on its
    first unit), then one call per batch of items (a row holds a pickled list of items)."""

    def __init__(self, job: Job) -> None:
        init_worker(job)

    def __call__(self, batch: Any) -> dict[str, Any]:
        import numpy as np

        rows = [self.one(item) for blob in batch.column("items").to_pylist() for item in pickle.loads(blob)]
        return {"result": np.array(rows, dtype=object)}

    def one(self, item: Any) -> str:
        raise NotImplementedError


class _StageUnits(_Step):
    def one(self, item: tuple[UnitRef, str]) -> str:
        return _row(stage_one(*item))


class _StageStep(_Step):
    def one(self, item: str) -> str:
        return _row(step_one(item))


def _row(done: UnitDone) -> str:
    return json.dumps([done.unit_id, done.token, done.counters, done.samples, done.errors, done.rss])


class _WriteShards(_Step):
    def one(self, item: tuple[ShardPlan, dict[str, str]]) -> str:
        return json.dumps(shard_one(*item))


def _reduce(reduce: Callable[[str, list[Any]], Iterable[Any]], *pieces: Any) -> list[Any]:
    """A reduce task: its pieces arrive as separate arguments, so Ray fetches each one from its map task."""
    return reduce_partition(reduce, pieces)


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

    # -- cluster -------------------------------------------------------------------------------
    def _connect(self) -> Any:
        # no usage reporting and no metrics polling (Ray Data polls a Prometheus at localhost:9090):
        # a build talks to its cluster only. Set here, before Ray reads them; the environment wins.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")
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
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        if not self.workers:
            cpus = ray.cluster_resources().get("CPU", 1)
            self.workers = max(1, int(cpus // (self.settings["units"].get("num_cpus") or 1)))
        return ray

    def _run(self, job: Job, step: str, fn: type, items: list[Any]) -> Iterator[str]:
        if not items:
            return
        ray = self._connect()
        res = self.settings.get(step) or self.settings["units"]
        batches = chunks(items, self.workers)
        ds = ray.data.from_items([{"items": pickle.dumps(b, protocol=5)} for b in batches],
                                 override_num_blocks=len(batches))
        # Ray Data restarts a dead actor and retries its task (max_restarts / max_task_retries = -1);
        # one batch runs and one waits on each actor: no idle actor between tasks, and at the end of
        # the step no actor holds a queue of batches while another has none
        job = replace(job, threads=max(1, int(res.get("num_cpus") or 1)))  # an actor's threads: its CPUs
        pool = ray.data.ActorPoolStrategy(size=max(1, min(self.workers, len(batches))), max_tasks_in_flight_per_actor=2)
        ds = ds.map_batches(fn, fn_constructor_args=(job,), batch_size=1, batch_format="pyarrow", compute=pool,
                            num_cpus=res.get("num_cpus", 1), num_gpus=res.get("num_gpus") or None,
                            memory=res.get("memory"), resources=res.get("resources") or None,
                            accelerator_type=res.get("accelerator_type"))
        for row in ds.iter_rows():
            yield row["result"]

    # -- the Runner protocol -------------------------------------------------------------------
    def stage_units(self, job: Job, units: Sequence[tuple[UnitRef, str]]) -> Iterator[UnitDone]:
        """All stages per unit; with a stage that declares a step of its own, every other stage
        first, then that stage over the staged units (its step's resources, e.g. ``ray.llm``: GPU
        actors that load the model once, batch per unit)."""
        split = split_step(job)
        if split is None:
            yield from self._done(self._run(job, "units", _StageUnits, list(units)))
            return
        pre_job, step_job, step = split
        staging = Staging(job.staging_root)
        pending = [(u, pre_token(t)) for u, t in units if not staging.done(pre_token(t))]
        for _ in self._run(pre_job, "units", _StageUnits, pending):
            pass
        yield from self._done(self._run(step_job, step, _StageStep, [t for _, t in units]))

    @staticmethod
    def _done(raws: Iterator[str]) -> Iterator[UnitDone]:
        for raw in raws:
            yield UnitDone(*json.loads(raw))

    def write_shards(self, job: Job, plans: Sequence[ShardPlan], tokens: dict[str, str]) -> Iterator[int]:
        for raw in self._run(job, "shards", _WriteShards, [(p, _subset(tokens, p)) for p in plans]):
            yield json.loads(raw)

    def shuffle(self, job: Job, parts: Sequence[str], read: Callable[[str], Iterable[Any]],
                keys: Callable[[Any], Iterable[str]], reduce: Callable[[str, list[Any]], Iterable[Any]],
                name: str = "shuffle") -> list[Any]:
        """A hash shuffle of plain Ray tasks: one map task per part reads its items and splits them
        into one partition per worker (``runners.partition``), one reduce task per partition
        groups and reduces (``runners.reduce_partition``); the partitions move between nodes
        through the object store, only the reduce outputs come back. No dataset planning, so a
        small shuffle costs a few task round trips."""
        if not parts:
            return []
        ray = self._connect()
        n = max(1, self.workers)
        cpus = self.settings["units"].get("num_cpus") or 1
        mapper = ray.remote(partition).options(num_returns=n, num_cpus=cpus, name=f"{name}-map")
        reducer = ray.remote(_reduce).options(num_cpus=cpus, name=f"{name}-reduce")
        maps = [mapper.remote(part, read, keys, n) for part in parts]
        maps = [m if n > 1 else [m] for m in maps]
        outs = ray.get([reducer.remote(reduce, *[m[p] for m in maps]) for p in range(n)])
        return [o for out in outs for o in out]

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False
