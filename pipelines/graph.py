"""The stage graph, described once, and how one unit runs through it.

The stages are classes registered by name (pipelines/stages/; ``dataflow.yaml`` lists them in
order). A stage maps one item to zero or more items. Items of the table types (``ArticleRow``,
``FigureRow``, ``DroppedRow``) are side outputs that go to the manifest; every other item flows to
the next stage; what leaves the last stage is a ``Sample``. A stage that raises ``SkipError`` (or
anything else) for an item produces an error record for that item, and the run goes on.

    fetch    UnitRef        -> ArticlePackage              (source I/O)
    parse    ArticlePackage -> ArticleRow, FigureRow, FigureTask   (the source's own parser: JATS here)
    image    FigureTask | ImageTask -> Sample              (resolve href, decode, normalize, encode)
    panels   Sample         -> Sample, panel Samples       (compound figures split, subcaptions paired)
    concepts Sample         -> Sample                      (UMLS concepts of caption and citing paragraphs, hints)
    quality  Sample         -> Sample | DroppedRow         (filters, image-type tags, hashes, eval-set decontamination)
    llm      [Sample]       -> [Sample]                    (caption cleaning, LLM/VLM generation, faithfulness gate)

Deduplication needs every sample at once, so it runs between the stages and the shards
(pipelines/assemble.py), as a shuffle on the distributed runners.

A ``batched`` stage receives all of a unit's items at once (one batched model call per article);
if the batch fails, its items are retried one by one so one bad record stays one error.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pyarrow as pa

from medcorpus import __version__
from medcorpus.pipelines.config import BuildConfig
from medcorpus.pipelines.items import ArticleRow, DroppedRow, FigureRow, FigureTask, ImageTask
from medcorpus.pipelines.sources.base import ArticlePackage
from medcorpus.pipelines.stages import Stage, WorkerEnv, stage_class
from medcorpus.pipelines.staging import StagedSample, UnitResult
from medcorpus.schemas.manifest import SIDECAR
from medcorpus.schemas.records import Article, ErrorRecord, Figure, Sample, SkipError, UnitRef


class Pipeline:
    """The configured stages of one worker, each set up once (models, vocabularies, indexes)."""

    def __init__(self, config: BuildConfig, env: WorkerEnv, stages: tuple[str, ...] | None = None) -> None:
        self.config = config
        self.config_hash = config.config_hash()  # of the whole config, whichever stages run here
        parser = getattr(env.source, "parser", "jats")
        self.stages: list[Stage] = [stage_class(name, parser)(config, env) for name in (stages or config.stages)]
        for stage in self.stages:
            stage.setup()

    def summary(self) -> dict[str, int]:
        """Every stage's counters, each under its stage's name (``llm:requests``, ``parse:deid:instances``)."""
        totals: Counter[str] = Counter()
        for stage in self.stages:
            totals.update({f"{stage.name}:{k}": v for k, v in stage.summary().items()})
        return dict(totals)


def describe(item: Any) -> tuple[str, str | None, str | None]:
    """(input, article_id, figure_id) of an item, for error records. Before parsing, the article is
    named by the PMCID its source listed, else by the unit's id."""
    if isinstance(item, UnitRef):
        return f"{item.source}:{item.unit_id}", item.meta_dict().get("pmcid") or item.unit_id, None
    if isinstance(item, ArticlePackage):
        unit = item.unit
        return f"{unit.source}:{unit.unit_id}", unit.meta_dict().get("pmcid") or unit.unit_id, None
    if isinstance(item, FigureTask):
        href = g.href if (g := item.figure.primary_graphic()) else ""
        return f"{item.package.unit.source}:{item.package.unit.unit_id}#{href}", item.article.article_id, item.figure.figure_id
    if isinstance(item, Sample):
        return item.key, item.document_id, item.figure_id
    if isinstance(item, ImageTask):
        return item.key, item.document_id, None
    if isinstance(getattr(item, "error_input", None), str):  # an item that says how errors may name it
        return item.error_input, None, None
    return repr(item)[:200], None, None


def run_stage(stage: Stage, item: Any) -> tuple[list[Any], ErrorRecord | None]:
    return _guarded(stage, stage.process, item)


def run_batched(stage: Stage, items: list[Any]) -> list[tuple[list[Any], ErrorRecord | None]]:
    """A batched stage's outputs, one (outputs, error) per input item, like ``run_stage``'s."""
    if not items:
        return []
    outputs, error = _guarded(stage, stage.process_batch, items)
    if error is None and len(outputs) == len(items):
        return [([out], None) for out in outputs]
    return [_guarded(stage, lambda one: stage.process_batch([one]), item) for item in items]


def _guarded(stage: Stage, call: Any, item: Any) -> tuple[list[Any], ErrorRecord | None]:
    try:
        return list(call(item)), None
    except SkipError as exc:
        reason, detail = exc.reason, exc.detail
    except Exception as exc:  # noqa: BLE001 - one bad record must never stop a corpus build
        reason, detail = "exception", f"{type(exc).__name__}: {exc}"
    inp, article_id, figure_id = describe(item)
    return [], ErrorRecord(inp, stage.name, reason, detail, article_id, figure_id)


def sample_row(sample: Sample, config_hash: str) -> dict[str, Any]:
    """The sample's manifest row (without the shard columns): common columns, then the article and
    figure columns of journal-article samples (null for other sources)."""
    return {
        "key": sample.key, "image_sha256": sample.image_sha256, "image_format": sample.image_format,
        "width": sample.width, "height": sample.height,
        "orig_width": sample.orig_width, "orig_height": sample.orig_height,
        "caption": sample.text, "mentions": list(sample.context), **figure_columns(sample.figure),
        "graphic_href": sample.graphic_href, "graphic_file": sample.graphic_file,
        **(article_columns(sample.article) if sample.article else {**dict.fromkeys(article_columns(Article("")), None),
           "article_id": sample.document_id, "license_code": sample.license_code,
           "license_family": sample.license_family}),
        "source": sample.source, "source_url": sample.source_url, "source_md5": sample.source_md5,
        "medcorpus_version": __version__, "config_hash": config_hash,
        **sample.extra,
    }


def figure_columns(f: Figure | None) -> dict[str, Any]:
    if f is None:
        return dict.fromkeys(("caption_title", "figure_id", "figure_label", "parent_figure_id"))
    return {"caption_title": f.caption_title, "figure_id": f.figure_id, "figure_label": f.label,
            "parent_figure_id": f.parent_figure_id}


def article_columns(a: Article) -> dict[str, Any]:
    return {
        "article_id": a.article_id, "pmcid": a.pmcid, "pmid": a.pmid, "doi": a.doi, "version": a.version,
        "journal": a.journal, "year": a.year, "title": a.title, "article_type": a.article_type,
        "license_code": a.license_code, "license_url": a.license_url, "license_family": a.license_family,
    }


def stage_sample(sample: Sample, config_hash: str) -> tuple[StagedSample, dict[str, bytes]]:
    """The row and the image and caption members; the JSON sidecar is made with the shard (it
    carries columns decided later, such as the dedup cluster)."""
    row = sample_row(sample, config_hash)
    members = {sample.image_format: sample.image, "txt": sample.text.encode("utf-8")}
    size = sum(len(v) for v in members.values()) + sidecar_size(row)
    return StagedSample(sample.key, sample.license_family, row, size), members


def sidecar_size(row: dict[str, Any]) -> int:
    """About the bytes of the row's JSON member, for shard planning (which counts no tar headers
    either): the typed member is made once per shard, in ``sidecar_jsons``, not per sample here."""
    return len(json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8"))


def sidecar_jsons(rows: list[dict[str, Any]]) -> list[bytes]:
    """The samples' JSON members: every sidecar column (null where a row has none), each value cast
    to its column's type, so readers that infer or declare one schema (Hugging Face ``datasets``)
    see the same keys and types on every sample. One Arrow conversion for all rows."""
    table = pa.Table.from_pylist([{n: row.get(n) for n in SIDECAR.names} for row in rows], schema=SIDECAR)
    return [json.dumps(typed, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            for typed in table.to_pylist()]


def process_unit(unit: UnitRef, pipeline: Pipeline) -> UnitResult:
    """Run the whole chain for one unit, depth-first, collecting samples and side outputs."""
    result = UnitResult(unit_id=unit.unit_id)
    counters: Counter[str] = Counter()
    articles: dict[str, Article] = {}
    before = pipeline.summary()
    frontier: list[Any] = [unit]
    for stage in pipeline.stages:
        counters[f"in:{stage.name}"] += len(frontier)
        t0 = time.perf_counter()
        results = run_batched(stage, frontier) if stage.batched else (run_stage(stage, item) for item in frontier)
        frontier = _route(results, result, articles)
        counters[f"us:{stage.name}"] += int((time.perf_counter() - t0) * 1e6)
    _stage_samples(frontier, result, articles, pipeline.config_hash)
    for stage in pipeline.stages:
        stage.end_unit()  # articles never span units
    after = pipeline.summary()
    result.counters = {**counters, **{k: v - before.get(k, 0) for k, v in after.items()}}
    return result


def _route(results: Any, result: UnitResult, articles: dict[str, Article]) -> list[Any]:
    """Side outputs to the unit's tables and errors; the rest flows to the next stage."""
    produced: list[Any] = []
    for outputs, error in results:
        if error:
            result.errors.append(error.to_dict())
        for out in outputs:
            if isinstance(out, ArticleRow):
                articles[out.article.article_id] = out.article
            elif isinstance(out, FigureRow):
                result.figures.append(figure_row(out))
            elif isinstance(out, DroppedRow):
                result.dropped.append(out.row)
            elif isinstance(out, ErrorRecord):  # one part of the item failed, the rest went on
                result.errors.append(out.to_dict())
            else:
                produced.append(out)
    return produced


def _stage_samples(samples: list[Sample], result: UnitResult, articles: dict[str, Article], config_hash: str) -> None:
    """The unit's samples (rows + members) and its article rows with their sample counts."""
    per_article: Counter[str] = Counter()
    for sample in samples:
        result.errors.extend(e.to_dict() for e in sample.errors)
        staged, members = stage_sample(sample, config_hash)
        if staged.key in result.members:
            result.errors.append(ErrorRecord(staged.key, "stage", "duplicate_key", "two samples share one key",
                                             sample.document_id, sample.figure_id).to_dict())
            continue
        result.samples.append(staged)
        result.members[staged.key] = members
        per_article[sample.document_id] += 1
    for article in articles.values():
        result.articles.append({
            **article_columns(article), "keywords": article.keywords, "n_figures": article.n_figures,
            "n_samples": per_article[article.article_id], "source": article.source,
            "source_url": article.source_url, "source_md5": article.source_md5,
            "medcorpus_version": __version__, "config_hash": config_hash,
        })


def figure_row(row: FigureRow) -> dict[str, Any]:
    f = row.figure
    return {
        "key": f.key, "article_id": row.article_id, "figure_id": f.figure_id, "figure_label": f.label,
        "parent_figure_id": f.parent_figure_id, "position": f.position, "caption_title": f.caption_title,
        "caption": f.caption, "mentions": list(f.mentions), "graphics": [g.href for g in f.graphics],
        "has_media": row.has_media,
    }
