"""Apache Beam runner: the parallel steps of a build (stage units, dedup shuffle, write shards)
as Beam pipelines.

A thin adapter over the same functions the local runner calls (``runners.init_worker``,
``stage_one``, ``shard_one``): ``beam.Create`` of the units (or shard plans) → ``Reshuffle`` (so
Dataflow/Flink/Spark spread them over workers) → ``ParDo`` with a DoFn whose ``setup()`` builds the
worker context once per DoFn instance. Results travel through the staging directory (atomic writes):
after the pipeline finishes the driver reads each unit's staged counters, so progress is reported at
the end of the step. A retried bundle rewrites the same staged unit or shard: same bytes.

Where it runs is chosen by Beam pipeline options (``beam.options`` in dataflow.yaml, ``--beam-option
KEY=VALUE`` on the command line), passed through unchanged: ``runner: DataflowRunner`` (with
project, region, temp_location, extra_packages ...), ``FlinkRunner``, ``SparkRunner``,
``PrismRunner``. With no runner, or ``DirectRunner``, it runs locally on Beam's ``FnApiRunner``
(``multi_processing`` with one SDK worker process per worker, ``in_memory`` for one; a step never
gets more workers than it has items, and the shard step's workers are threads of this process,
``multi_threading``: writing shards is I/O, not worth an SDK worker start): never the Prism runner
that a plain ``DirectRunner`` would try to download first.

On a remote runner the staging directory (``--work-dir``) and the output must be storage that both
this driver and the workers reach: ``gs://`` / ``s3://`` URLs (``Staging`` and ``Output`` speak fsspec).
"""
from __future__ import annotations

import pickle
import uuid
from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator, Sequence

import apache_beam as beam  # this module is imported only when the beam runner is chosen

from medcorpus.manifests.shards import ShardPlan
from medcorpus.pipelines.runners import (Job, UnitDone, _subset, init_worker, partition, reduce_partition, shard_one,
                                         stage_one, storage)
from medcorpus.pipelines.staging import Staging
from medcorpus.schemas.records import UnitRef

LOCAL_RUNNERS = {None, "", "DirectRunner", "FnApiRunner", "local"}
RSS_METRIC = "worker_peak_rss_bytes"  # a distribution: its max is the largest worker's peak


def pipeline_options(options: dict[str, Any], workers: int, job_step: str = "", threads: bool = False) -> Any:
    """Beam ``PipelineOptions`` from a mapping; local runs get FnApiRunner worker settings: one SDK
    worker process per worker, or with ``threads`` one thread per worker in this process."""
    from apache_beam.options.pipeline_options import PipelineOptions

    opts = {k: v for k, v in options.items() if v is not None}
    if opts.get("runner") in LOCAL_RUNNERS:
        opts.pop("runner", None)
        n = workers or _cores()
        opts.setdefault("direct_num_workers", n)
        opts.setdefault("direct_running_mode", "in_memory" if n == 1 else "multi_threading" if threads
                        else "multi_processing")
    if job_step and opts.get("job_name"):
        opts["job_name"] = f"{opts['job_name']}-{job_step}"
    return PipelineOptions.from_dictionary(opts)


def _cores() -> int:
    from medcorpus.pipelines.runners import default_workers

    return default_workers()


class _Step(beam.DoFn):
    """The worker context is built once per DoFn instance (``setup``), then one call per element."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def setup(self) -> None:
        init_worker(self.job)


class StageUnits(_Step):
    def setup(self) -> None:
        super().setup()
        self.rss = beam.metrics.Metrics.distribution("medcorpus", RSS_METRIC)

    def process(self, blob: bytes) -> Iterator[str]:
        unit, token = pickle.loads(blob)
        self.rss.update(stage_one(unit, token).rss)
        yield token


class WriteShards(beam.DoFn):
    """Shard plans → tars. Writing a shard is I/O, so locally its workers are threads of the
    driver's process (no SDK worker process to start); each DoFn instance keeps storage handles of
    its own (``runners.storage``), not the process-wide worker context the threads would share."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def setup(self) -> None:
        self.handles = storage(self.job)

    def process(self, blob: bytes) -> Iterator[int]:
        plan, tokens = pickle.loads(blob)
        yield shard_one(plan, tokens, self.handles)


STEPS = {"units": StageUnits, "shards": WriteShards}


def _peak_rss(result: Any) -> int:
    """The largest peak RSS any worker of a finished pipeline reported (0 if the runner keeps no metrics)."""
    from apache_beam.metrics.metric import MetricsFilter

    if result is None:
        return 0
    try:
        found = result.metrics().query(MetricsFilter().with_name(RSS_METRIC))["distributions"]
    except (NotImplementedError, KeyError):
        return 0
    return max((int(m.committed.max) for m in found if m.committed and m.committed.count), default=0)


class BeamRunner:
    name = "beam"

    def __init__(self, workers: int = 0, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self.workers = workers

    @property
    def is_local(self) -> bool:
        return self.options.get("runner") in LOCAL_RUNNERS

    def pipeline(self, job: Job, step: str, items: list[Any]) -> Any:
        """The Beam pipeline of one step (``units`` or ``shards``), built but not run."""
        workers = self._step_workers(len(items))
        opts = pipeline_options(self.options, workers, step, threads=step == "shards")
        if self.is_local:
            from apache_beam.runners.portability.fn_api_runner import FnApiRunner

            p = beam.Pipeline(runner=FnApiRunner(), options=opts)
        else:
            p = beam.Pipeline(options=opts)
        blobs = [pickle.dumps(i, protocol=5) for i in items]
        (p
         | f"{step}/list" >> beam.Create(blobs, reshuffle=False)
         | f"{step}/spread" >> beam.Reshuffle()
         | f"{step}/run" >> beam.ParDo(STEPS[step](self._worker_job(job, workers))))
        return p

    def _step_workers(self, items: int) -> int:
        """SDK workers of one local step: no more than its items (bundles). One runs in this
        process (``in_memory``): a step of one shard plan or one shuffle part starts no worker."""
        return max(1, min(self.workers or _cores(), items)) if self.is_local else self.workers

    def _worker_job(self, job: Job, workers: int) -> Job:
        """Local workers share this machine's cores; a remote runner's machines size themselves."""
        if not self.is_local:
            return job
        from medcorpus.pipelines.threads import share

        return replace(job, threads=share(workers))

    def _run(self, job: Job, step: str, items: list[Any]) -> Any:
        if not items:
            return None
        result = self.pipeline(job, step, items).run()
        result.wait_until_finish()
        state = str(getattr(result, "state", "DONE"))
        if "DONE" not in state:
            raise RuntimeError(f"beam pipeline ({step}) ended in state {state}")
        return result

    def stage_units(self, job: Job, units: Sequence[tuple[UnitRef, str]]) -> Iterator[UnitDone]:
        units = list(units)
        rss = _peak_rss(self._run(job, "units", units))
        staged = Staging(job.staging_root).read_metas(token for _, token in units)
        for (unit, _), (token, r) in zip(units, staged):
            yield UnitDone(unit.unit_id, token, r.counters, len(r.samples), len(r.errors), rss)

    def write_shards(self, job: Job, plans: Sequence[ShardPlan], tokens: dict[str, str]) -> Iterator[int]:
        self._run(job, "shards", [(p, _subset(tokens, p)) for p in plans])
        for plan in plans:
            yield plan.samples

    def shuffle(self, job: Job, parts: Sequence[str], read: Callable[[str], Iterable[Any]],
                keys: Callable[[Any], Iterable[str]], reduce: Callable[[str, list[Any]], Iterable[Any]],
                name: str = "shuffle") -> list[Any]:
        """The hash shuffle the Ray runner runs, as a pipeline: parts → ``runners.partition`` (one
        piece per partition, each item once) → GroupByKey on the partition → ``runners.
        reduce_partition``; few elements cross the GroupByKey (parts × partitions, not items ×
        keys). The outputs are written to the staging folder and read back (they must be few)."""
        import base64

        import fsspec

        if not parts:
            return []
        prefix = f"{job.staging_root.rstrip('/')}/{name}/{uuid.uuid4().hex}/out"
        workers = self._step_workers(len(parts))
        n = max(1, workers or len(parts))  # partitions: one per worker
        opts = pipeline_options(self.options, workers, name)
        p = beam.Pipeline(runner=self._local_runner(), options=opts) if self.is_local else beam.Pipeline(options=opts)
        (p
         | f"{name}/parts" >> beam.Create(list(parts), reshuffle=False)
         | f"{name}/spread" >> beam.Reshuffle()
         | f"{name}/map" >> beam.FlatMap(lambda part: [(i, piece) for i, piece in
                                                       enumerate(partition(part, read, keys, n)) if piece[1]])
         | f"{name}/group" >> beam.GroupByKey()
         | f"{name}/reduce" >> beam.FlatMap(lambda kv: reduce_partition(reduce, list(kv[1])))
         | f"{name}/encode" >> beam.Map(lambda out: base64.b64encode(pickle.dumps(out, protocol=5)).decode())
         | f"{name}/write" >> beam.io.WriteToText(prefix, file_name_suffix=".b64"))
        p.run().wait_until_finish()
        fs, path = fsspec.core.url_to_fs(prefix)
        outputs = []
        for file in sorted(fs.glob(path + "*.b64")):
            with fs.open(file, "rt") as f:
                outputs.extend(pickle.loads(base64.b64decode(line)) for line in f if line.strip())
        fs.rm(path.rsplit("/", 1)[0], recursive=True)
        return outputs

    @staticmethod
    def _local_runner() -> Any:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()

    def close(self) -> None:
        pass
