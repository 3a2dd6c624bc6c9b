"""quality: score and tag every sample, hash it, and drop what fails a filter or appears in an
evaluation set (each drop a ``dropped`` row with its reason). Deduplication, which needs every
sample at once, runs after the stages on these hashes (pipelines/assemble.py).

What depends on the text alone (language identification, the caption's image-type keywords) is
computed once per distinct text per worker (a bounded memo, as the concepts stage's)."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from medcorpus.manifests.evalsets import DecontamOptions
from medcorpus.pipelines.items import DroppedRow
from medcorpus.pipelines.sources.imaging import TEMPLATE_CAPTION_SOURCES
from medcorpus.pipelines.stages.base import Prepared, Stage
from medcorpus.schemas.quality import SAMPLE_FIELDS
from medcorpus.schemas.records import Sample
from medcorpus.transforms.dedup import DedupOptions
from medcorpus.transforms.image_types import ImageTypeOptions
from medcorpus.transforms.quality import FilterOptions

TEXT_MEMO = 8192  # distinct texts a worker remembers


class Quality(Stage):
    name = "quality"
    requires = ("image",)
    sections = {"quality": FilterOptions, "image_types": ImageTypeOptions, "decontam": DecontamOptions,
                "dedup": DedupOptions}
    columns = tuple(SAMPLE_FIELDS)
    needs_pixels = True

    @classmethod
    def prepare(cls, config: Any, work_dir: str, source: Any = None) -> Prepared:
        """The build's eval-set registry (built-in lists, the user's, and the source's own evaluation
        splits: a dataset's test images), written once for the workers."""
        from medcorpus.manifests.evalsets import builtin_entries, read_registry, write_registry

        sources: DecontamOptions = cls.options(config)["decontam"]
        entries = []
        if sources.builtin_data and Path(sources.builtin_data).is_dir():
            entries += builtin_entries(sources.builtin_data)
        if sources.registry:
            entries += read_registry(sources.registry)
        if hasattr(source, "evalset_entries"):
            entries += source.evalset_entries()
        if not entries:
            return Prepared()
        path = Path(work_dir) / "evalsets.jsonl"
        write_registry(path, entries)
        return Prepared(str(path), "-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12])

    def setup(self) -> None:
        from medcorpus.manifests.evalsets import build_index, read_registry
        from medcorpus.transforms.image_types import caption_scores, load_zero_shot
        from medcorpus.transforms.quality_filters import identify_language

        opts = self.options(self.config)
        self.filters: FilterOptions = opts["quality"]
        self.template_filters = replace(self.filters, enabled=tuple(f for f in self.filters.enabled
                                                                    if f != "caption_language"))
        self.types: ImageTypeOptions = opts["image_types"]
        self.zero_shot = load_zero_shot(self.types.model_path, self.types.device) if self.types.model_path else None
        registry = self.env.prepared.get(self.name)
        self.evalsets = build_index(read_registry(registry), opts["decontam"]) if registry else None
        self.language = lru_cache(maxsize=TEXT_MEMO)(identify_language)
        self.caption_scores = lru_cache(maxsize=TEXT_MEMO)(caption_scores)

    def process(self, item: Sample) -> Iterator[Sample | DroppedRow]:
        from medcorpus.schemas.quality import decontam_columns
        from medcorpus.transforms.dedup import hash_image
        from medcorpus.transforms.image_types import tag_image
        from medcorpus.transforms.quality import assess

        image = item.decoded
        filters = self.template_filters if item.source in TEMPLATE_CAPTION_SOURCES else self.filters
        decision = assess(image, item.text, item.article.article_type if item.article else None, filters,
                          self.language)
        modality = " ".join(item.modality)  # concept hints feed the image-type tags
        text = f"{item.text} {modality}".strip()
        tags = tag_image(image, text, self.types, self.zero_shot, self.caption_scores(text))
        hashes = hash_image(image) if image is not None else None
        hits = self._decontaminate(item, hashes.perceptual if hashes else None)
        item.extra.update({**decision.columns(), **tags.columns(), **decontam_columns(hits)})
        if hashes is not None:
            item.extra.update(image_exact_hash=hashes.exact, image_phash=f"{hashes.perceptual:032x}")
        yield self._verdict(item, decision, hits)

    def _decontaminate(self, item: Sample, perceptual: int | None) -> list[Any]:
        from medcorpus.manifests.evalsets import decontaminate

        if self.evalsets is None:
            return []
        article = item.article
        hits = decontaminate({"pmcid": article.pmcid if article else None, "pmid": article.pmid if article else None,
                              "figure_id": item.figure_id, "graphic_file": item.graphic_file,
                              "graphic_href": item.graphic_href, "caption": item.text,
                              "perceptual": perceptual}, self.evalsets)
        return [h for h in hits if not _own_evalset(item, h.evalset)]

    @staticmethod
    def _verdict(item: Sample, decision: Any, hits: list[Any]) -> Sample | DroppedRow:
        from medcorpus.schemas.quality import dropped_row

        ids = {"article_id": item.document_id, "figure_id": item.figure_id}
        if not decision.keep:
            return DroppedRow(dropped_row(item.key, "quality", decision.dropped_by, decision.reason,
                                          scores=decision.scores, **ids))
        if hits:
            evalsets = sorted({h.evalset for h in hits})
            return DroppedRow(dropped_row(item.key, "decontam", ",".join(evalsets),
                                          "; ".join(f"{h.evalset}:{h.kind}:{h.detail}" for h in hits), **ids))
        return item


def _own_evalset(item: Sample, evalset: str) -> bool:
    """A dataset's test or validation image is its own eval set: it stays (with its split), while
    anything else matching it, the dataset's own training images included, is dropped."""
    name, split = item.extra.get("dataset_name"), item.extra.get("dataset_split")
    return bool(name) and split in ("test", "validation") and evalset.startswith(f"dataset:{name}:")
