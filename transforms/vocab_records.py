"""The one record every vocabulary source produces: a concept with its names and semantic types.

Builders (UMLS RRF, open ontologies, MeSH names) yield these; ``vocab_index`` writes them to disk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass
class ConceptRecord:
    cui: str
    name: str
    aliases: list[str] = field(default_factory=list)
    tuis: list[str] = field(default_factory=list)
    definition: str | None = None
    sources: list[str] = field(default_factory=list)
    matchable: bool = True  # False: the concept is known (types, name) but its names link elsewhere

    def add_alias(self, alias: str) -> None:
        alias = " ".join(alias.split())
        if alias and alias not in self.aliases:
            self.aliases.append(alias)

    def absorb(self, other: "ConceptRecord") -> None:
        """Merge another source's record of the same CUI: union of names, types and sources."""
        if other.matchable:
            for a in [other.name, *other.aliases]:
                self.add_alias(a)
        for t in other.tuis:
            if t not in self.tuis:
                self.tuis.append(t)
        for s in other.sources:
            if s not in self.sources:
                self.sources.append(s)
        if other.matchable and not self.matchable:
            self.name, self.matchable = other.name, True
        if not self.definition and other.definition:
            self.definition = other.definition


def merge_by_cui(records: Iterable[ConceptRecord]) -> dict[str, ConceptRecord]:
    """Records of the same CUI from several sources become one; the first source's name stays preferred."""
    out: dict[str, ConceptRecord] = {}
    for r in records:
        if r.cui in out:
            out[r.cui].absorb(r)
        else:
            if r.matchable:
                r.add_alias(r.name)
            out[r.cui] = r
    return out
