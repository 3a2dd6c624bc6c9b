"""concepts: UMLS concepts of the caption and of the paragraphs citing the figure, and the anatomy
and modality hints derived from them (which the quality stage's image-type tags read).

Linking is a pure function of the text, so each worker links a distinct text once: a panel's
subcaption shared with other panels, a paragraph citing several figures, a caption reprinted in
another article or version all reuse the first result (a bounded memo, per worker and build).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from medcorpus.pipelines.stages.base import Prepared, Stage
from medcorpus.schemas.manifest import CONCEPT_FIELDS
from medcorpus.schemas.records import Sample
from medcorpus.transforms.options import ConfigError

NO_VOCAB = "concepts: the concepts stage needs concepts.vocab, .ontologies or .umls_dir"
TEXT_MEMO = 8192  # distinct texts a worker remembers (captions, subcaptions, paragraphs): tens of MB


@dataclass(frozen=True)
class ConceptsConfig:
    """dataflow.yaml ``concepts:``: where the vocabulary comes from, and how to link."""

    vocab: str | None = None                 # a vocabulary built by ``medcorpus vocab build`` ...
    ontologies: tuple[str, ...] = ()         # ... or its sources (open ontologies; built once, cached)
    umls_dir: str | None = None              # ... or a UMLS release directory
    mesh: bool = True                        # add MeSH genes, chemicals, procedures, devices to ontologies
    genes: bool = True                       # add HGNC gene symbols and EFO cell lines to ontologies
    ann: bool = True                         # the TF-IDF + ANN candidate index
    ner_model: str | None = None             # a local scispacy NER pipeline for mentions
    context: bool = True                     # link the citing paragraphs too


class Concepts(Stage):
    name = "concepts"
    requires = ("image",)
    sections = {"concepts": ConceptsConfig}
    columns = tuple(CONCEPT_FIELDS)

    @classmethod
    def prepare(cls, config: Any, work_dir: str, source: Any = None) -> Prepared:
        """The vocabulary: the configured one, or one built (once per machine, cached) from its sources."""
        from medcorpus.pipelines.vocab import cached_vocab, vocab_id

        c: ConceptsConfig = cls.options(config)["concepts"]
        if c.vocab:
            path = Path(c.vocab)
        elif c.ontologies or c.umls_dir:
            path = cached_vocab(c.ontologies, c.umls_dir, ann=c.ann, mesh=c.mesh, genes=c.genes)
        else:
            raise ConfigError(NO_VOCAB)
        return Prepared(str(path), "-" + vocab_id(path))

    def setup(self) -> None:
        from medcorpus.pipelines.vocab import vocab_id
        from medcorpus.transforms.concepts import shared_linker

        self.opts: ConceptsConfig = self.options(self.config)["concepts"]
        vocab = self.env.prepared.get(self.name)
        if not vocab:
            raise ConfigError(NO_VOCAB)
        self.linker = shared_linker(vocab, self.opts.ner_model)
        self.vocab_id = vocab_id(vocab)
        self.caption = lru_cache(maxsize=TEXT_MEMO)(self._caption)
        self.paragraph = lru_cache(maxsize=TEXT_MEMO)(self._paragraph)

    def _caption(self, text: str) -> tuple[list[dict[str, Any]], tuple[str, ...], tuple[str, ...]]:
        """A caption's concepts (as manifest dicts), anatomy and modality hints."""
        from medcorpus.schemas.concepts import concept_dicts
        from medcorpus.transforms.concepts import concept_hints

        concepts = self.linker.link(text)
        hints = concept_hints(concepts, text)
        return concept_dicts(concepts), tuple(hints["anatomy"]), tuple(hints["modality"])

    def _paragraph(self, text: str) -> list[dict[str, Any]]:
        from medcorpus.schemas.concepts import concept_dicts

        return concept_dicts(self.linker.link(text))

    def process(self, item: Sample) -> Iterator[Sample]:
        caption, anatomy, modality = self.caption(item.text)
        context = [c for p in item.context for c in self.paragraph(p)] if self.opts.context else []
        item.anatomy, item.modality = list(anatomy), list(modality)
        item.extra.update(concepts=_copies(caption), context_concepts=_copies(context), anatomy=item.anatomy,
                          modality=item.modality, concept_vocab=self.vocab_id)
        yield item


def _copies(concepts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each sample its own dicts: the memo's stay as linked whatever a later stage does to a row."""
    return [{**c, "tuis": list(c["tuis"])} for c in concepts]
