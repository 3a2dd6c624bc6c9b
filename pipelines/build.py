"""One corpus build, start to end: list → stage (parallel) → plan shards → write (parallel) → tables.

This is the whole flow; runners only decide where the two parallel steps execute.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from medcorpus import __version__
from medcorpus.files import cache_root, remove_temp_files
from medcorpus.manifests import card, completion, layout, releases
from medcorpus.manifests.shards import write_sizes
from medcorpus.manifests.storage import Output
from medcorpus.pipelines import assemble, incremental, publish
from medcorpus.pipelines.config import BuildConfig
from medcorpus.pipelines.dedup import dedup
from medcorpus.pipelines.failures import UserError, phase
from medcorpus.pipelines.outlock import OutputLock
from medcorpus.pipelines.runners import Job, Runner
from medcorpus.pipelines.spool import release_freed_memory
from medcorpus.pipelines.sources.base import Selection, Source, select
from medcorpus.pipelines.staging import Staging, UnitResult, unit_token
from medcorpus.schemas.records import DELIBERATE_SKIPS, LLM_FAILED


@dataclass
class BuildSummary:
    units: int = 0
    units_reused: int = 0
    units_failed: int = 0  # units that gave no article and recorded a failure (not a policy skip)
    units_retry: int = 0  # units with transient fetch errors that the next build fetches again
    articles: int = 0
    figures: int = 0
    samples: int = 0
    shards: int = 0
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    llm_counts: dict[str, int] = field(default_factory=dict)  # requests, tokens, cache hits (this run)
    mode: str = incremental.SNAPSHOT  # snapshot | incremental (see pipelines/incremental.py)
    units_kept: int = 0  # incremental: units of the previous build carried over
    images_processed: int = 0  # images this run decoded (reused units count none)
    worker_peak_rss: int = 0  # bytes: the largest peak resident memory of a worker that staged units
    llm_samples: int = 0  # samples the llm stage handled
    llm_failed: int = 0  # ... whose requests failed (``llm_failed`` errors; the next build retries them)
    release: int = 0  # the release this build published (manifests/releases.py)
    changes: dict[str, int] = field(default_factory=dict)  # added / removed / updated since the previous one
    removed_releases: list[int] = field(default_factory=list)  # older releases removed on publishing (keep_releases)
    composition: dict[str, str] = field(default_factory=dict)  # the release's samples_by_* columns of runs (JSON)
    out: str = ""

    @property
    def errors(self) -> int:
        return sum(self.errors_by_reason.values())

    @property
    def all_failed(self) -> bool:
        """Every unit failed, or the llm stage failed for every sample: the build says so with its
        exit code."""
        return (self.units > 0 and self.units_failed == self.units) or 0 < self.llm_samples <= self.llm_failed


def default_work_dir(out: str) -> str:
    output = Output(out)
    if output.is_local:
        return str(Path(output.root) / "_work")
    return str(cache_root() / hashlib.sha1(out.encode()).hexdigest()[:16])


def _join(base: str, name: str) -> str:
    """A folder inside a local work dir or an fsspec URL (``gs://bucket/work``)."""
    return f"{base.rstrip('/')}/{name}" if "://" in base else str(Path(base) / name)


def build(config: BuildConfig, source: Source, runner: Runner, out: str, *, selection: Selection = Selection(),
          work_dir: str | None = None, source_spec: str = "", console: Console | None = None,
          progress: bool = True, wait: bool = False, wait_timeout_s: float | None = None,
          named_ids: bool = False) -> BuildSummary:
    """Build ``out`` holding its write lock (``pipelines/outlock.py``) from before the first write
    to the end, so two builds never interleave. Raises ``OutputLocked`` when another build holds it
    (after waiting for it with ``wait``, up to ``wait_timeout_s``). ``named_ids``: the selection's ids
    are the user's (``--pmcids``), so those the source lacks are named (none found: ``UserError``)."""
    console = console or Console(stderr=True)
    lock = OutputLock(out, wait=wait, timeout_s=wait_timeout_s, notify=console.print)
    try:
        lock.acquire()
    except BaseException:
        runner.close()
        raise
    try:
        return _build(config, source, runner, out, selection=selection, work_dir=work_dir,
                      source_spec=source_spec, console=console, progress=progress, named_ids=named_ids)
    finally:
        lock.release()


def _build(config: BuildConfig, source: Source, runner: Runner, out: str, *, selection: Selection,
           work_dir: str | None, source_spec: str, console: Console, progress: bool,
           named_ids: bool = False) -> BuildSummary:
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    root = Output(out)
    work = work_dir or default_work_dir(out)
    local_work = work if "://" not in work else default_work_dir(out)
    for folder in {root.root, local_work} if root.is_local else {local_work}:
        remove_temp_files(folder)  # what killed writers left (this build holds OUT's lock)
    with phase("preparing the stages", local_work):
        staging = Staging(_join(work, "staging"))
        prepared, prepared_hash = prepare_stages(config, local_work, source)
    baseline = releases.start(out)  # the current release: read, never written
    config_hash = config.config_hash() + prepared_hash  # staged units depend on what was prepared too

    listed = [(u, unit_token(u, config_hash, __version__)) for u in select(source.list_units(), selection)]
    if named_ids:
        _missing_ids(selection, [u for u, _ in listed], console)
    todo = [(u, t) for u, t in listed if not staging.done(t)]
    summary = BuildSummary(units=len(listed), units_reused=len(listed) - len(todo))
    units = _plan_units(summary, source, selection, listed, baseline.output, staging, config_hash)

    with phase("starting the release folder", out):
        output = releases.begin(out, baseline)  # the new release's own folder (manifests/layout.py)
    job = Job(config, source, staging.url, output.url, prepared,
              previous_url=baseline.output.url if baseline.output is not None else "")
    try:
        asm = _run(config, runner, job, staging, units, todo, summary, console, progress,
                   str(Path(local_work) / "assemble"))
    finally:
        runner.close()
    with phase("writing the manifest tables", out):
        release_freed_memory()
        assemble.write_tables(asm, output)
        write_sizes(output, asm.plans)
        incremental.write_units(output, units)
        assemble.remove_stale(asm, output)
        assemble.write_attribution(output)
        card.write_card(output)  # before the Croissant file, which points to it
        summary.release, summary.out = baseline.release + 1, out
        release_freed_memory()
        summary.changes = publish.write_release_files(output, baseline, summary.release, config, source, source_spec)
    summary.composition = publish.composition(output)
    asm.spool.finish()

    summary.articles, summary.figures, summary.shards = asm.count("articles"), asm.count("figures"), len(asm.plans)
    summary.errors_by_reason = asm.errors_by_reason
    summary.llm_samples, summary.llm_failed = asm.counters.get("in:llm", 0), summary.errors_by_reason.get(LLM_FAILED, 0)
    summary.seconds = time.perf_counter() - t0
    run = _run_row(summary, config, runner, source_spec, started)
    with phase("writing the completion record", out):
        assemble.append_run(output, run)
        completion.write_record(output, run["run_id"], run["finished_at"], summary.samples,
                                release=summary.release)  # the last write into the release folder
    with phase("publishing the release", out):
        summary.removed_releases = releases.publish(out, summary.release, config.output.keep_releases)
    return summary


def _missing_ids(selection: Selection, units: list[Any], console: Console) -> None:
    """Say which ``--pmcids`` the source does not have; none at all is the user's mistake."""
    if not selection.ids or selection.limit is not None:
        return
    found = {u.unit_id for u in units} | {u.meta_dict().get("pmcid") for u in units}
    missing = sorted(selection.ids - found)
    if missing and len(missing) == len(selection.ids):
        raise UserError(f"--pmcids: none of the {len(missing)} ids is in the source ({', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''})", "check the ids, or the --source they come from")
    if missing:
        console.print(f"--pmcids: {len(missing)} of {len(selection.ids)} ids are not in the source, skipped: "
                      f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}",
                      markup=False, highlight=False, soft_wrap=True)


def _plan_units(summary: BuildSummary, source: Source, selection: Selection, listed: list[tuple[Any, str]],
                previous: Output | None, staging: Staging, config_hash: str) -> list[tuple[Any, str]]:
    """Every unit of this build: the listed ones, plus (incremental) the previous build's others."""
    mode = incremental.build_mode(source, selection)
    plan = incremental.plan_units(mode, listed, previous, staging,
                                  lambda u: unit_token(u, config_hash, __version__))
    summary.mode, summary.units_kept = plan.mode, plan.kept
    return plan.units


def _run(config: BuildConfig, runner: Runner, job: Job, staging: Staging, units: list[tuple[Any, str]],
         todo: list[tuple[Any, str]], summary: BuildSummary, console: Console, progress: bool,
         spool_root: str) -> assemble.Assembly:
    """The two parallel steps, with a progress bar per stage."""
    columns = (TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
        stage_tasks = {name: bar.add_task(name, total=None) for name in config.stages}
        units_task = bar.add_task("units", total=len(todo))
        with phase("staging units", staging.url):
            for done in runner.stage_units(job, todo):
                _count(summary, done.counters)
                summary.worker_peak_rss = max(summary.worker_peak_rss, done.rss)
                for name, task in stage_tasks.items():
                    bar.advance(task, done.counters.get(f"in:{name}", 0))
                bar.advance(units_task)
        collect_task = bar.add_task("collect", total=len(units))  # the phases after staging show too
        asm = assemble.collect(_tally(_advancing(staging.read_metas(t for _, t in units), bar, collect_task),
                                      summary), config, spool_root)
        after_staging(asm, runner, job, staging, summary, bar)
    return asm


def after_staging(asm: assemble.Assembly, runner: Runner, job: Job, staging: Staging, summary: BuildSummary,
                  bar: Progress | None = None) -> None:
    """Dedup, plan and write the shards from the collected assembly."""
    bar = bar or Progress(disable=True)
    release_freed_memory()
    if asm.records:
        dedup_task = bar.add_task("dedup", total=asm.records)
        assemble.apply_dedup(asm, dedup(runner, job, asm))
        bar.update(dedup_task, completed=asm.records)
        release_freed_memory()
    assemble.plan(asm, job.config, staging)
    shard_task = bar.add_task("shards", total=len(asm.plans))
    with phase("writing shards", job.output_url, asm.planned_bytes):
        for n in runner.write_shards(job, asm.plans, {}):
            summary.samples += n
            bar.advance(shard_task)


def _advancing(items: Iterable[Any], bar: Progress, task: Any) -> Iterator[Any]:
    for item in items:
        yield item
        bar.advance(task)


def _count(summary: BuildSummary, counters: dict[str, int]) -> None:
    """This run's work: LLM requests and tokens, seconds per stage, images processed."""
    for k, v in counters.items():
        if k.startswith("llm:"):
            summary.llm_counts[k] = summary.llm_counts.get(k, 0) + v
        elif k.startswith("us:"):
            summary.stage_seconds[k[3:]] = summary.stage_seconds.get(k[3:], 0.0) + v / 1e6
    summary.images_processed += counters.get("in:image", 0)


def _tally(staged: Iterable[tuple[str, UnitResult]], summary: BuildSummary) -> Iterator[tuple[str, UnitResult]]:
    """Pass the staged units through, counting failed units and units to retry on the way."""
    for token, result in staged:
        summary.units_retry += result.retry
        if not result.articles and not result.samples and any(e.get("reason") not in DELIBERATE_SKIPS for e in result.errors):
            summary.units_failed += 1
        yield token, result


def prepare_stages(config: BuildConfig, work: str, source: Source | None = None) -> tuple[dict[str, Any], str]:
    """Each configured stage's driver-side preparation (an eval-set registry, a vocabulary), done
    once before the workers start: the values for the workers, and the hash staged units depend on."""
    from medcorpus.pipelines.stages import stage_class

    Path(work).mkdir(parents=True, exist_ok=True)
    prepared, hashes = {}, ""
    for name in config.stages:
        done = stage_class(name, getattr(source, "parser", "jats")).prepare(config, work, source)
        if done.value is not None:
            prepared[name] = done.value
        hashes += done.hash
    return prepared, hashes


def _run_row(summary: BuildSummary, config: BuildConfig, runner: Runner, source_spec: str,
             started: dt.datetime) -> dict[str, Any]:
    return {
        "run_id": uuid.uuid4().hex, "started_at": started, "finished_at": dt.datetime.now(dt.timezone.utc),
        "host": socket.gethostname(), "runner": runner.name, "workers": runner.workers,
        "source_spec": source_spec, "medcorpus_version": __version__, "config_hash": config.config_hash(),
        "units": summary.units, "units_reused": summary.units_reused, "articles": summary.articles,
        "figures": summary.figures, "samples": summary.samples, "errors": summary.errors,
        "shards": summary.shards, "seconds": summary.seconds,
        "errors_by_reason": assemble.reasons_json(summary.errors_by_reason), "mode": summary.mode, "units_kept": summary.units_kept,
        "release": summary.release, **summary.composition,
    }


def summary_lines(summary: BuildSummary) -> list[str]:
    rate = summary.images_processed / summary.seconds if summary.seconds else 0.0
    kept = f", {summary.units_kept} kept from the previous build" if summary.mode == incremental.INCREMENTAL else ""
    changed = ", ".join(f"{k} {v}" for k, v in summary.changes.items())
    lines = [
        f"mode: {summary.mode}",
        f"release {summary.release}: {changed or 'no changes'} since release {summary.release - 1}",
        f"units {summary.units} ({summary.units_reused} reused from earlier runs){kept}",
        f"articles {summary.articles}  figures {summary.figures}  samples {summary.samples}  shards {summary.shards}",
        f"skipped {summary.errors}" + "".join(f"\n  {r}: {n}" for r, n in summary.errors_by_reason.items()),
        f"time {summary.seconds:.1f} s  " + (f"({summary.images_processed} images processed this run, {rate:.1f}/s)"
                                             if summary.units_reused < summary.units else "(every unit reused)"),
    ]
    llm = {k[4:]: v for k, v in summary.llm_counts.items() if v}
    if llm:
        lines.append("llm: " + ", ".join(f"{k} {v}" for k, v in sorted(llm.items())))
    if summary.stage_seconds:
        lines.append("stage seconds (summed over workers, units processed this run): " + ", ".join(f"{k} {v:.2f}" for k, v in summary.stage_seconds.items()))
    if summary.worker_peak_rss:
        lines.append(f"worker peak memory (RSS): {summary.worker_peak_rss / 2**20:.0f} MiB")
    if summary.units_failed or summary.units_retry:
        lines.append(f"failed units {summary.units_failed} of {summary.units}; "
                     f"{summary.units_retry} retried by the next build (5xx, timeouts, 403"
                     + (", failed LLM requests)" if summary.llm_failed else ")"))
    if summary.llm_failed:
        lines.append(f"llm requests failed for {summary.llm_failed} of {summary.llm_samples} samples "
                     "(errors, reason llm_failed); the next build retries them")
    if summary.out:
        removed = f"; removed release {', '.join(map(str, summary.removed_releases))}" if summary.removed_releases else ""
        lines.append(f"published: {layout.join(summary.out, layout.release_rel(summary.release))} is current "
                     f"(read an older release as {summary.out}@N){removed}")
        lines.append(f"report: medcorpus report {summary.out}  (changes: medcorpus diff {summary.out})")
    if summary.all_failed:
        what = (f"all {summary.units} units failed" if summary.units_failed == summary.units else
                f"the llm stage failed for all {summary.llm_samples} samples")
        lines.append(f"build failed: {what} (see the errors table)")
    return lines

