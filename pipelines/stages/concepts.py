"""concepts: UMLS concepts of the caption and of the paragraphs citing the figure, and the anatomy
and modality hints derived from them (which the quality stage's image-type tags read)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from medcorpus.pipelines.stages.base import Prepared, Stage
from medcorpus.schemas.manifest import CONCEPT_FIELDS
from medcorpus.schemas.records import Sample
from medcorpus.transforms.options import ConfigError

NO_VOCAB = "concepts: the concepts stage needs concepts.vocab, .ontologies or .umls_dir"


@dataclass(frozen=True)
class ConceptsConfig:
    """dataflow.yaml ``concepts:``: where the vocabulary comes from, and how to link."""

    vocab: str | None = None                 # a vocabulary built by ``medcorpus vocab build`` ...
    ontologies: tuple[str, ...] = ()         # ... or its sources (open ontologies; built once, cached)
    umls_dir: str | None = None              # ... or a UMLS release directory
    mesh: bool = True                        # add MeSH genes, chemicals, procedures, devices to ontologies
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
            path = cached_vocab(c.ontologies, c.umls_dir, ann=c.ann, mesh=c.mesh)
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
        self.paragraphs: dict[str, list[Any]] = {}  # a paragraph citing several figures is linked once per unit

    def process(self, item: Sample) -> Iterator[Sample]:
        from medcorpus.schemas.concepts import concept_dicts
        from medcorpus.transforms.concepts import concept_hints

        caption = self.linker.link(item.text)
        context = []
        if self.opts.context:
            for paragraph in item.context:
                if paragraph not in self.paragraphs:
                    self.paragraphs[paragraph] = self.linker.link(paragraph)
                context.extend(self.paragraphs[paragraph])
        hints = concept_hints(caption, item.text)
        item.anatomy, item.modality = hints["anatomy"], hints["modality"]
        item.extra.update(concepts=concept_dicts(caption), context_concepts=concept_dicts(context),
                          anatomy=item.anatomy, modality=item.modality, concept_vocab=self.vocab_id)
        yield item

    def end_unit(self) -> None:
        self.paragraphs.clear()
