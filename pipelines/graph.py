"""The stage graph, described once. Every runner executes exactly these stages in this order.

A stage maps one item to zero or more items. Items of the table types (``ArticleRow``,
``FigureRow``) are side outputs that go to the manifest; every other item flows to the next stage;
what leaves the last stage is a ``Sample``. A stage that raises ``SkipError`` (or anything else)
for an item produces an error record for that item, and the run goes on.

    fetch   UnitRef        -> ArticlePackage              (source I/O)
    parse   ArticlePackage -> ArticleRow, FigureRow, FigureTask
    image   FigureTask     -> Sample                      (resolve href, decode, normalize, encode)
    panels  Sample         -> Sample, panel Samples       (compound figures split, subcaptions paired)
    concepts Sample        -> Sample                      (UMLS concepts of caption and citing paragraphs, hints)
    quality Sample         -> Sample | DroppedRow         (filters, image-type tags, hashes, eval-set decontamination)
    llm     [Sample]       -> [Sample]                    (caption cleaning, LLM/VLM generation, faithfulness gate)

Deduplication needs every sample at once, so it runs between the stages and the shards
(pipelines/assemble.py), as a shuffle on the distributed runners.

A stage marked ``batched`` receives all of a unit's items at once (one batched model call per
article); if the batch fails, its items are retried one by one so one bad record stays one error.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from medcorpus import __version__
from medcorpus.files import cache_root
from medcorpus.pipelines.config import BuildConfig
from medcorpus.pipelines.sources.base import ArticlePackage, Source
from medcorpus.pipelines.staging import StagedSample, UnitResult
from medcorpus.schemas.records import Article, ErrorRecord, Figure, Sample, SkipError, UnitRef
from medcorpus.transforms.images import encode_image, encode_rgb
from medcorpus.transforms.jats import parse_article
from medcorpus.transforms.licenses import license_family
from medcorpus.transforms.resolve import resolve_graphic
from medcorpus.transforms.subfigures import SubfigureOptions, crop_panel, panel_key, split_figure


@dataclass
class Context:
    """What stages share inside one worker: built once per worker, never per record."""

    config: BuildConfig
    source: Source
    work_dir: str | None = None
    evalsets: str | None = None  # the build's eval-set registry (JSON lines), for decontamination
    vocab: str | None = None  # the built vocabulary the concepts stage links with
    stages: tuple[str, ...] | None = None  # the stages this worker runs (None: all configured)
    config_hash: str = ""
    subfigures: SubfigureOptions | None = None
    llm: Any = None
    quality: Any = None
    linker: Any = None
    vocab_id: str | None = None
    # concepts per citing paragraph, for one unit: a paragraph citing several figures is linked once
    paragraph_concepts: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def active(self) -> tuple[str, ...]:
        return self.stages if self.stages is not None else self.config.stages

    def __post_init__(self) -> None:
        self.config_hash = self.config.config_hash()  # of the whole config, whichever stages run here
        if "panels" in self.active:
            self.subfigures = subfigure_options(self.config)
        if "llm" in self.active:
            self.llm = llm_stage(self.config, self.work_dir)
        if "quality" in self.active:
            self.quality = QualityContext.build(self.config, self.evalsets)
        if "concepts" in self.active:
            from medcorpus.pipelines.vocab import vocab_id
            from medcorpus.transforms.concepts import shared_linker

            if not self.vocab:
                raise ValueError("the concepts stage needs concepts.vocab, .ontologies or .umls_dir in the config")
            self.linker = shared_linker(self.vocab, self.config.concepts.get("ner_model"))
            self.vocab_id = vocab_id(self.vocab)


@dataclass
class QualityContext:
    """Filter thresholds, the tagger (and its optional CLIP model) and the eval-set index, once per worker."""

    filters: Any
    types: Any
    zero_shot: Any
    evalset_index: Any

    @classmethod
    def build(cls, config: BuildConfig, evalsets: str | None) -> "QualityContext":
        from medcorpus.manifests.evalsets import build_index, read_registry
        from medcorpus.transforms.image_types import load_zero_shot

        types = config.image_type_options()
        zero_shot = load_zero_shot(types.model_path, types.device) if types.model_path else None
        index = build_index(read_registry(evalsets), config.decontam_options()) if evalsets else None
        return cls(config.filter_options(), types, zero_shot, index)


def llm_stage(config: BuildConfig, work_dir: str | None) -> Any:
    """The LLM stage's backends, request cache and gate, once per worker (models load once)."""
    from dataclasses import replace

    from medcorpus.pipelines.llm.stage import LLMStage

    options = config.llm_options()
    if options.cache_path is None:
        # SQLite needs a local file: a remote work dir (s3://, gs://) keeps its cache on this machine
        local = work_dir if work_dir and "://" not in work_dir else str(cache_root())
        options = replace(options, cache_path=str(Path(local) / "llm_cache.sqlite"))
    return LLMStage(options)


def subfigure_options(config: BuildConfig) -> SubfigureOptions:
    sub = config.subfigures
    detector = None
    if sub.detector:
        from medcorpus.transforms.panel_detector import LearnedPanelDetector

        detector = LearnedPanelDetector(sub.detector)  # loaded once per worker
    return SubfigureOptions(ocr=sub.ocr, keep_whole_figure=sub.keep_whole_figure,  # type: ignore[arg-type]
                            split_unlabeled=sub.split_unlabeled, max_panels=sub.max_panels, detector=detector)


@dataclass
class ArticleRow:
    article: Article


@dataclass
class FigureRow:
    figure: Figure
    article_id: str
    has_media: bool


@dataclass
class DroppedRow:
    """A sample a filter, decontamination or dedup removed: listed in ``dropped``, never in a shard."""

    row: dict[str, Any]


@dataclass
class FigureTask:
    package: ArticlePackage
    article: Article
    figure: Figure


def fetch(unit: UnitRef, ctx: Context) -> Iterator[ArticlePackage]:
    yield ctx.source.open(unit)


def parse(pkg: ArticlePackage, ctx: Context) -> Iterator[Any]:
    parsed = parse_article(pkg.xml, fallback_id=pkg.unit.unit_id, version=pkg.version,
                           metadata_license=pkg.license_code, pmcid=pkg.unit.meta_dict().get("pmcid"))
    article = parsed.article
    article.license_family = license_family(article.license_code, ctx.config.licenses)
    article.source, article.source_url, article.source_md5 = ctx.source.name, pkg.source_url, pkg.source_md5
    yield ArticleRow(article)
    for fig in parsed.figures:
        yield FigureRow(fig, article.article_id, has_media=not pkg.no_media)
        if not pkg.no_media:
            yield FigureTask(pkg, article, fig)


def image(task: FigureTask, ctx: Context) -> Iterator[Sample]:
    fig = task.figure
    graphic = fig.primary_graphic()
    if graphic is None:
        raise SkipError("no_graphic", "the <fig> has no <graphic> with an href")
    name = resolve_graphic(graphic.href, task.package.media_names)
    enc = encode_image(task.package.read_media(name), ctx.config.image, keep_decoded=ctx.subfigures is not None)
    yield Sample(
        key=fig.key, article=task.article, figure=fig, image=enc.data, image_format=enc.extension,
        width=enc.width, height=enc.height, orig_width=enc.orig_width, orig_height=enc.orig_height,
        image_sha256=enc.sha256, graphic_href=graphic.href, graphic_file=name,
        source_url=task.package.source_url, source_md5=task.package.source_md5, decoded=enc.decoded,
    )


def panels(sample: Sample, ctx: Context) -> Iterator[Sample]:
    """A compound figure gives one sample per panel (cropped image, subcaption + shared text)."""
    assert ctx.subfigures is not None and sample.decoded is not None
    result = split_figure(sample.decoded, sample.figure.caption, ctx.subfigures)
    sub = ctx.config.subfigures
    pairs = [p for p in result.panels if p.confidence >= sub.min_confidence]
    if len(pairs) < len(result.panels):
        pairs = []
    status = "split" if pairs else (result.kept_whole_reason or "single_panel")
    if sub.keep_whole_figure or not pairs:
        sample.extra.update(n_panels=len(pairs), split_status=status)
        yield sample
    for index, pair in enumerate(pairs):
        crop = crop_panel(sample.decoded, pair.box)
        data = encode_rgb(crop, ctx.config.image)
        yield Sample(
            key=panel_key(sample.key, pair, index), article=sample.article, figure=sample.figure, image=data,
            image_format="jpg", width=crop.width, height=crop.height, orig_width=sample.orig_width,
            orig_height=sample.orig_height, image_sha256=hashlib.sha256(data).hexdigest(),
            graphic_href=sample.graphic_href, graphic_file=sample.graphic_file, source_url=sample.source_url,
            source_md5=sample.source_md5, caption=pair.subcaption, decoded=crop,
            extra={"parent_key": sample.key, "panel_index": index, "panel_box": list(pair.box),
                   "panel_label": pair.label, "panel_confidence": round(pair.confidence, 6), "split_status": "split"},
        )


Stage = Callable[[Any, Context], Iterable[Any]]
def concepts(sample: Sample, ctx: Context) -> Iterator[Sample]:
    """UMLS concepts of the caption and of the paragraphs that cite the figure (each linked once per article)."""
    from medcorpus.schemas.concepts import concept_dicts
    from medcorpus.transforms.concepts import concept_hints

    caption = ctx.linker.link(sample.text)
    context = []
    if ctx.config.concepts.get("context", True):
        for paragraph in sample.figure.mentions:
            if paragraph not in ctx.paragraph_concepts:
                ctx.paragraph_concepts[paragraph] = ctx.linker.link(paragraph)
            context.extend(ctx.paragraph_concepts[paragraph])
    hints = concept_hints(caption)
    sample.extra.update(concepts=concept_dicts(caption), context_concepts=concept_dicts(context),
                        anatomy=hints["anatomy"], modality=hints["modality"], concept_vocab=ctx.vocab_id)
    yield sample


def quality(sample: Sample, ctx: Context) -> Iterator[Sample | DroppedRow]:
    """Score and tag every sample; drop what fails a filter or appears in an evaluation set."""
    from medcorpus.manifests.evalsets import decontaminate
    from medcorpus.schemas.quality import decontam_columns, dropped_row
    from medcorpus.transforms.dedup import hash_image
    from medcorpus.transforms.image_types import tag_image
    from medcorpus.transforms.quality import assess

    q = ctx.quality
    image = sample.decoded
    decision = assess(image, sample.text, sample.article.article_type, q.filters)
    modality = " ".join(sample.extra.get("modality") or ())  # concept hints feed the image-type tags
    tags = tag_image(image, f"{sample.text} {modality}".strip(), q.types, q.zero_shot)
    hashes = hash_image(image) if image is not None else None
    hits = []
    if q.evalset_index is not None:
        hits = decontaminate({"pmcid": sample.article.pmcid, "pmid": sample.article.pmid,
                              "figure_id": sample.figure.figure_id, "graphic_file": sample.graphic_file,
                              "graphic_href": sample.graphic_href, "caption": sample.text,
                              "perceptual": hashes.perceptual if hashes else None}, q.evalset_index)
    sample.extra.update({**decision.columns(), **tags.columns(), **decontam_columns(hits)})
    if hashes is not None:
        sample.extra.update(image_exact_hash=hashes.exact, image_phash=f"{hashes.perceptual:032x}")
    ids = {"article_id": sample.article.article_id, "figure_id": sample.figure.figure_id}
    if not decision.keep:
        yield DroppedRow(dropped_row(sample.key, "quality", decision.dropped_by, decision.reason,
                                     scores=decision.scores, **ids))
    elif hits:
        evalsets = sorted({h.evalset for h in hits})
        yield DroppedRow(dropped_row(sample.key, "decontam", ",".join(evalsets),
                                     "; ".join(f"{h.evalset}:{h.kind}:{h.detail}" for h in hits), **ids))
    else:
        yield sample


def generate(texts: list[str], mentions: list[list[str]], images: list[bytes | None],
             ctx: Context) -> list[tuple[dict[str, Any], str]]:
    """The llm stage's work: per sample, the generated columns and the caption it should carry."""
    from medcorpus.schemas.llm import to_arrow_row

    outputs = ctx.llm.process([{"caption": t, "mentions": m} for t, m in zip(texts, mentions)], images)
    return [(to_arrow_row(out), out.get("caption_llm") or out.get("caption_clean") or text)
            for text, out in zip(texts, outputs)]


def llm(samples: list[Sample], ctx: Context) -> Iterator[Sample]:
    """Generated fields with provenance; the best accepted caption becomes the sample's text."""
    results = generate([s.text for s in samples], [s.figure.mentions for s in samples], [s.image for s in samples], ctx)
    for sample, (columns, caption) in zip(samples, results):
        sample.extra.update(columns)
        sample.caption = caption
        yield sample


def llm_on_staged(result: UnitResult, members: dict[str, dict[str, bytes]], ctx: Context) -> UnitResult:
    """The llm stage over a unit already staged by the other stages: how runners give it its own
    workers (GPUs) and batches. Same output as running it in the unit's chain."""
    before = ctx.llm.summary()
    t0 = time.perf_counter()
    rows = [s.row for s in result.samples]
    images = [members[r["key"]][r["image_format"]] for r in rows]
    done = generate([r["caption"] for r in rows], [r["mentions"] or [] for r in rows], images, ctx)
    for staged, (columns, caption) in zip(result.samples, done):
        staged.row.update(columns, caption=caption)
        members[staged.key]["txt"] = caption.encode("utf-8")
        staged.size = sum(len(v) for v in members[staged.key].values()) + len(sidecar_json(staged.row))
    after = ctx.llm.summary()
    result.counters = {**result.counters, "in:llm": len(rows), "us:llm": int((time.perf_counter() - t0) * 1e6),
                       **{f"llm:{k}": v - before.get(k, 0) for k, v in after.items()}}
    result.members = members
    return result


llm.batched = True  # type: ignore[attr-defined]

STAGES: dict[str, Stage] = {"fetch": fetch, "parse": parse, "image": image, "panels": panels, "concepts": concepts,
                            "quality": quality, "llm": llm}


def stage_chain(stages: tuple[str, ...]) -> list[tuple[str, Stage]]:
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stages in config: {unknown}; known: {list(STAGES)}")
    return [(name, STAGES[name]) for name in stages]


def describe(item: Any) -> tuple[str, str | None, str | None]:
    """(input, article_id, figure_id) of an item, for error records."""
    if isinstance(item, UnitRef):
        return f"{item.source}:{item.unit_id}", None, None
    if isinstance(item, ArticlePackage):
        return f"{item.unit.source}:{item.unit.unit_id}", None, None
    if isinstance(item, FigureTask):
        href = g.href if (g := item.figure.primary_graphic()) else ""
        return f"{item.package.unit.source}:{item.package.unit.unit_id}#{href}", item.article.article_id, item.figure.figure_id
    if isinstance(item, Sample):
        return item.key, item.article.article_id, item.figure.figure_id
    return repr(item)[:200], None, None


def run_stage(name: str, stage: Stage, item: Any, ctx: Context) -> tuple[list[Any], ErrorRecord | None]:
    try:
        return list(stage(item, ctx)), None
    except SkipError as exc:
        reason, detail = exc.reason, exc.detail
    except Exception as exc:  # noqa: BLE001 - one bad record must never stop a corpus build
        reason, detail = "exception", f"{type(exc).__name__}: {exc}"
    inp, article_id, figure_id = describe(item)
    return [], ErrorRecord(inp, name, reason, detail, article_id, figure_id)


def run_batched(name: str, stage: Stage, items: list[Any], ctx: Context) -> list[tuple[list[Any], ErrorRecord | None]]:
    """A batched stage's outputs, one (outputs, error) per input item, like ``run_stage``'s."""
    if not items:
        return []
    outputs, error = run_stage(name, stage, items, ctx)
    if error is None and len(outputs) == len(items):
        return [([out], None) for out in outputs]
    return [run_stage(name, lambda one, c: stage([one], c), item, ctx) for item in items]


def sample_row(sample: Sample, ctx: Context) -> dict[str, Any]:
    a, f = sample.article, sample.figure
    return {
        "key": sample.key, "image_sha256": sample.image_sha256, "image_format": sample.image_format,
        "width": sample.width, "height": sample.height,
        "orig_width": sample.orig_width, "orig_height": sample.orig_height,
        "caption": sample.text, "caption_title": f.caption_title, "mentions": list(f.mentions),
        "figure_id": f.figure_id, "figure_label": f.label, "parent_figure_id": f.parent_figure_id,
        "graphic_href": sample.graphic_href, "graphic_file": sample.graphic_file,
        **article_columns(a),
        "source": a.source, "source_url": sample.source_url, "source_md5": sample.source_md5,
        "medcorpus_version": __version__, "config_hash": ctx.config_hash,
        **sample.extra,
    }


def article_columns(a: Article) -> dict[str, Any]:
    return {
        "article_id": a.article_id, "pmcid": a.pmcid, "pmid": a.pmid, "doi": a.doi, "version": a.version,
        "journal": a.journal, "year": a.year, "title": a.title, "article_type": a.article_type,
        "license_code": a.license_code, "license_url": a.license_url, "license_family": a.license_family,
    }


def stage_sample(sample: Sample, ctx: Context) -> tuple[StagedSample, dict[str, bytes]]:
    """The row and the image and caption members; the JSON sidecar is made with the shard (it
    carries columns decided later, such as the dedup cluster)."""
    row = sample_row(sample, ctx)
    members = {sample.image_format: sample.image, "txt": sample.text.encode("utf-8")}
    size = sum(len(v) for v in members.values()) + len(sidecar_json(row))
    return StagedSample(sample.key, sample.article.license_family, row, size), members


def sidecar_json(row: dict[str, Any]) -> bytes:
    return json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def process_unit(unit: UnitRef, ctx: Context) -> UnitResult:
    """Run the whole chain for one unit, depth-first, collecting samples and side outputs."""
    result = UnitResult(unit_id=unit.unit_id)
    counters: Counter[str] = Counter()
    timings: Counter[str] = Counter()
    articles: dict[str, Article] = {}
    samples_per_article: Counter[str] = Counter()
    frontier: list[Any] = [unit]
    llm_before = ctx.llm.summary() if ctx.llm else {}
    for name, stage in stage_chain(ctx.active):
        produced: list[Any] = []
        counters[name] += len(frontier)
        t0 = time.perf_counter()
        results = run_batched(name, stage, frontier, ctx) if getattr(stage, "batched", False) else (
            run_stage(name, stage, item, ctx) for item in frontier)
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
                else:
                    produced.append(out)
        timings[name] += int((time.perf_counter() - t0) * 1e6)
        frontier = produced
    for sample in frontier:
        staged, members = stage_sample(sample, ctx)
        if staged.key in result.members:
            result.errors.append(ErrorRecord(staged.key, "stage", "duplicate_key", "two figures share one key",
                                             sample.article.article_id, sample.figure.figure_id).to_dict())
            continue
        result.samples.append(staged)
        result.members[staged.key] = members
        samples_per_article[sample.article.article_id] += 1
    for article in articles.values():
        result.articles.append({
            **article_columns(article), "keywords": article.keywords, "n_figures": article.n_figures,
            "n_samples": samples_per_article[article.article_id], "source": article.source,
            "source_url": article.source_url, "source_md5": article.source_md5,
            "medcorpus_version": __version__, "config_hash": ctx.config_hash,
        })
    ctx.paragraph_concepts.clear()  # articles never span units
    llm_after = ctx.llm.summary() if ctx.llm else {}
    result.counters = {**{f"in:{k}": v for k, v in counters.items()},
                       **{f"us:{k}": v for k, v in timings.items()},
                       **{f"llm:{k}": v - llm_before.get(k, 0) for k, v in llm_after.items()}}
    return result


def figure_row(row: FigureRow) -> dict[str, Any]:
    f = row.figure
    return {
        "key": f.key, "article_id": row.article_id, "figure_id": f.figure_id, "figure_label": f.label,
        "parent_figure_id": f.parent_figure_id, "position": f.position, "caption_title": f.caption_title,
        "caption": f.caption, "mentions": list(f.mentions), "graphics": [g.href for g in f.graphics],
        "has_media": row.has_media,
    }
