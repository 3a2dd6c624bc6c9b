"""The ``medcorpus`` command."""
from __future__ import annotations

import csv
import json
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from medcorpus import __version__

err = Console(stderr=True)


class _Commands(TyperGroup):
    """Every command's failure as one line and a hint (``pipelines/failures.py``): exit 2 for the
    user's mistakes, 1 otherwise; the traceback only with ``--debug``."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.exceptions.TyperException):  # usage errors: typer prints them
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            from medcorpus.pipelines.failures import explain

            line, hint, code = explain(exc)
            err.print(line, markup=False, highlight=False, soft_wrap=True)
            if hint:
                err.print(f"hint: {hint}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None


app = typer.Typer(cls=_Commands,
                  help="Build medical image-text corpora: PMC figures → WebDataset shards + Parquet manifests.",
                  rich_markup_mode=None,
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", envvar="MEDCORPUS_DEBUG",
                                        help="print the traceback when a command fails")) -> None:
    """Build medical image-text corpora: PMC figures → WebDataset shards + Parquet manifests."""
    import logging

    from rich.logging import RichHandler

    # what a long phase is doing (building the vocabulary, deduplicating ...), as plain lines
    progress = logging.getLogger("medcorpus.progress")
    if not progress.handlers:
        progress.addHandler(RichHandler(console=err, show_time=False, show_level=False, show_path=False,
                                        markup=False, highlighter=None))
        progress.setLevel(logging.INFO)
        progress.propagate = False


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _config_or_exit(path: Optional[str], profile: Optional[str]) -> Any:
    """The validated config; a bad one is one clear line (the key, the value, what is expected), exit 2."""
    import yaml

    from medcorpus.pipelines.config import load_config
    from medcorpus.transforms.options import ConfigError

    try:
        return load_config(path, profile)
    except (ConfigError, OSError, yaml.YAMLError) as exc:
        err.print(f"config error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _ids(value: Optional[str]) -> Optional[frozenset[str]]:
    """A comma-separated list of PMCIDs, or a file with one per line."""
    if not value:
        return None
    from medcorpus.pipelines.sources.base import normalize_ids

    path = Path(value)
    return normalize_ids(path.read_text().split() if path.is_file() else value.split(","))


@app.command()
def build(
    source: str = typer.Option(..., "--source", help="local:PATH | bulk:PATH | pmc-cloud | dicom:PATH | idc | "
                                                  "reports:PATH | dataset:PATH"),
    out: str = typer.Option(..., "--out", help="output directory or fsspec URL (s3://bucket/prefix)"),
    config: Optional[Path] = typer.Option(None, "--config", help="dataflow.yaml (defaults apply without one)"),
    profile: Optional[str] = typer.Option(None, "--profile", help="a profile of the config"),
    runner: Optional[str] = typer.Option(None, "--runner", help="local | ray | beam (default from the config)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=0,
                                          help="worker processes / Ray actors / Beam workers (0 = all cores)"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="ray: an existing cluster (else RAY_ADDRESS, else a local one)"),
    beam_option: Optional[list[str]] = typer.Option(None, "--beam-option",
                                                    help="beam: pipeline option KEY=VALUE, repeatable "
                                                         "(runner=DataflowRunner, project=..., ...)"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="process at most N articles (incremental: the rest of OUT is kept)"),
    pmcids: Optional[str] = typer.Option(None, "--pmcids", help="comma-separated PMCIDs or a file of them (incremental: the rest of OUT is kept)"),
    since: Optional[str] = typer.Option(None, "--since", help="pmc-cloud: only articles updated on/after DATE (incremental: the rest of OUT is kept)"),
    changes_since: Optional[int] = typer.Option(None, "--changes-since", min=1,
                                                help="pmc-cloud: only article versions that changed since release N, from "
                                                     "the bucket's daily inventories (incremental)"),
    work_dir: Optional[str] = typer.Option(None, "--work-dir",
                                           help="staging folder or URL (default OUT/_work); on a multi-node "
                                                "cluster storage every worker reaches (gs://, s3://, NFS)"),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="pmc-cloud, idc: S3/HTTPS endpoint override"),
    transport: str = typer.Option("s3", "--transport", help="pmc-cloud, idc: s3 (anonymous) or https"),
    where: Optional[str] = typer.Option(None, "--where", help="idc: SQL over IDC's index selecting series, e.g. "
                                                               "\"Modality = 'CT' AND collection_id = 'lidc_idri'\""),
    idc_index: Optional[str] = typer.Option(None, "--idc-index", help="idc: an idc_index Parquet file (default: "
                                                                      "the one idc-index-data installs)"),
    bucket: str = typer.Option("pmc-oa-opendata", "--bucket", help="pmc-cloud: bucket name"),
    license_group: Optional[list[str]] = typer.Option(
        None, "--license-group", help="pmc-cloud: oa_comm, oa_noncomm, other (default) and phe_timebound, whose "
                                      "reuse terms expired: only when named"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bars"),
    wait: bool = typer.Option(False, "--wait", help="when another build holds OUT's lock, wait for it "
                                                    "instead of failing"),
    wait_timeout: Optional[float] = typer.Option(None, "--wait-timeout", min=0,
                                                 help="with --wait: give up after this many seconds"),
) -> None:
    """Build shards and a manifest from a source."""
    from medcorpus.files import cache_root
    from medcorpus.pipelines.build import default_work_dir
    from medcorpus.pipelines.sources import Selection

    cfg = _config_or_exit(config, profile)
    wd = work_dir or default_work_dir(out)
    ids = _ids(pmcids)
    # a remote work dir (gs://, s3://: staging shared with Ray/Beam workers) keeps the source cache local
    cache = str(Path(wd) / "source") if "://" not in wd else str(cache_root() / "source")
    src = _open_source(source, cfg, out, cache_dir=cache, bucket=bucket, endpoint_url=endpoint, transport=transport,
                       license_groups=tuple(license_group) if license_group else None, since=since, ids=ids,
                       where=where, idc_index=idc_index)
    if changes_since is not None and source != "pmc-cloud":
        raise typer.BadParameter("--changes-since needs --source pmc-cloud")
    if source == "pmc-cloud" and (changes_since is not None or (ids is None and not since and limit is None)):
        ids = _inventory_ids(src, out, changes_since)  # a full build records its inventory day
    run = _runner(cfg, runner, workers, ray_address, beam_option)
    _run_build(cfg, src, run, out, selection=Selection(limit=limit, ids=ids, since=since), work_dir=wd,
               source_spec=source, progress=not no_progress, wait=wait or wait_timeout is not None,
               wait_timeout_s=wait_timeout, named_ids=pmcids is not None)


def _runner(cfg: Any, runner: Optional[str], workers: Optional[int], ray_address: Optional[str],
            beam_option: Optional[list[str]]) -> Any:
    from medcorpus.pipelines.runners import make_runner, parse_beam_options

    try:
        return make_runner(runner or cfg.runner, workers if workers is not None else cfg.workers, config=cfg,
                           ray_address=ray_address, beam_options=parse_beam_options(beam_option or []))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _open_source(source: str, cfg: Any, out: str, **options: Any) -> Any:
    """The source, checked before any work: a bad spec, descriptor or folder is one line (exit 2)."""
    from medcorpus.pipelines.failures import UserError
    from medcorpus.pipelines.sources import make_source
    from medcorpus.pipelines.sources.dicom import default_secret_file
    from medcorpus.transforms.options import ConfigError

    secret = cfg.dicom.get("secret_file") or default_secret_file(out)
    try:
        src = make_source(source, secret_file=secret, **options)
        if source == "idc":  # the SQL is checked against the index now, before any work
            src.build_index()
    except UserError:
        raise  # one line and its hint (pipelines/failures.py)
    except (ConfigError, FileNotFoundError) as exc:  # a descriptor's key, a missing folder: one line, no work
        err.print(f"source error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return src


def _inventory_ids(src: Any, out: str, changes_since: Optional[int]) -> Any:
    """pmc-cloud: the inventory the build is based on; with --changes-since, the PMCIDs to process."""
    from medcorpus.pipelines.sources.pmc_inventory import InventoryError, prepare

    try:
        prepare(src, out, changes_since)
    except InventoryError as exc:
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    return src.ids


def _run_build(*args: Any, **kwargs: Any) -> None:
    """Run a build and print its summary; a lock or incremental refusal is one line (exit 2), a
    build whose units all failed exits 1."""
    from medcorpus.pipelines.build import build as run_build, summary_lines
    from medcorpus.pipelines.incremental import IncrementalError
    from medcorpus.pipelines.outlock import LockLost, OutputLocked

    try:
        summary = run_build(*args, console=err, **kwargs)
    except (OutputLocked, IncrementalError) as exc:  # nothing was written: say what to do, no traceback
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except LockLost as exc:
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the units that finished are kept
        err.print("interrupted before the build finished: the same command resumes from the units already "
                  "staged", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    for line in summary_lines(summary):
        err.print(line)
    if summary.all_failed:
        raise typer.Exit(1)


@app.command()
def query(
    out: str = typer.Argument(..., help="a build's output directory or URL; OUT@N reads release N"),
    sql: str = typer.Argument(..., help="SQL over views samples, articles, figures, errors, runs, dropped, concepts"),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table, csv or json"),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete",
                                          help="query an output whose build did not finish (no completion record)"),
    allow_path: Optional[list[str]] = typer.Option(None, "--allow-path",
                                                   help="let SQL read this file or folder too (repeatable); "
                                                        "otherwise SQL reaches no file at all"),
) -> None:
    """Run SQL (DuckDB) over a build's manifest, read-only: SQL cannot write files or read outside it."""
    import duckdb

    from medcorpus.manifests.completion import IncompleteOutput, NotAnOutput
    from medcorpus.manifests.query import query as run_query

    try:
        columns, rows = run_query(out, sql, allow_incomplete=allow_incomplete, allow_paths=allow_path or ())
    except (IncompleteOutput, NotAnOutput, duckdb.Error) as exc:
        err.print(f"query: {exc}".splitlines()[0], markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    _print_rows(columns, rows, fmt)


def _print_rows(columns: list[str], rows: list[tuple], fmt: OutputFormat) -> None:
    if fmt is OutputFormat.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif fmt is OutputFormat.json:
        json.dump([dict(zip(columns, r)) for r in rows], sys.stdout, default=str, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        table = Table(*columns)
        for r in rows:
            table.add_row(*("" if v is None else str(v) for v in r))
        Console().print(table)


@app.command()
def verify(out: str = typer.Argument(..., help="a build's output directory or URL; OUT@N reads release N")) -> None:
    """Check the whole output: completion record, shards and manifest parts in pairs, no duplicate
    keys, no tar member outside the manifest, every member's bytes and hash. Exit 1 on any problem."""
    from medcorpus.manifests.completion import RERUN_HINT, NotAnOutput
    from medcorpus.manifests.verify import verify_output

    try:
        problems, checked = verify_output(out)
    except NotAnOutput as exc:
        err.print(f"verify: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for p in problems[:50]:
        err.print(p, style="red", markup=False, highlight=False, soft_wrap=True)
    if len(problems) > 50:
        err.print(f"... and {len(problems) - 50} more")
    err.print(f"checked {checked} samples, {len(problems)} problems")
    if problems:
        err.print(f"the output is incomplete or inconsistent: {RERUN_HINT}", markup=False, soft_wrap=True)
    raise typer.Exit(1 if problems else 0)


@app.command()
def version() -> None:
    """Print the medcorpus version."""
    typer.echo(__version__)


def _register_commands() -> None:
    import importlib
    import pkgutil

    from medcorpus.pipelines import commands

    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"medcorpus.pipelines.commands.{mod}").register(app)


_register_commands()


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    app()


def _interrupt(signum: int, frame: Any) -> None:
    """A scheduler's stop (SIGTERM) unwinds like Ctrl-C: the units running finish, the workers and
    the output's lock are released, and the same command resumes."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
