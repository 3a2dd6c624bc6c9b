"""Human genes (HGNC) and cell lines (EFO) as an open vocabulary: the symbols captions of molecular
biology name (TOP1, HT1080) that neither the UMLS-linked ontologies nor MeSH's headings carry.

Sources, cut by ``bench/gene_tables.py`` into ``transforms/data``: the approved HGNC symbols and names of
protein-coding genes, long non-coding and micro RNAs (CC0), and the cell lines of the Experimental Factor
Ontology (Apache-2.0). Ids stay in their own space (``HGNC:11986``, ``EFO:0002059``), never a made-up CUI.

What a record may be matched by is narrower than what the tables hold, because a symbol alone is
ambiguous: a letter with one or two digits (C3, F10, T10: vertebrae, factors, panel names), symbols under
three characters, cell-line names that are not symbol-shaped (the matcher would read "Jurkat"-like
words as plain text), and a spelling two records share are left out. The matcher then links the
digit and mixed-case symbols only in a molecular context (``concept_matcher.MOLECULAR_CONTEXT``).
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator

from medcorpus.transforms.vocab_ontology import open_text
from medcorpus.transforms.vocab_records import ConceptRecord

DATA = Path(__file__).resolve().parent / "data"
GENES_FILE = DATA / "hgnc_genes.tsv.gz"
CELL_LINES_FILE = DATA / "efo_cell_lines.tsv"
GENE_TUI, CELL_TUI = "T028", "T025"  # Gene or Genome, Cell
_LETTER_NUMBER = re.compile(r"^[A-Za-z]\d{1,2}$")
_CELL_LINE = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9-]{3,12}$|^[A-Z][a-z]+[A-Z][A-Za-z0-9-]*$")


def _rows(path: Path) -> Iterator[list[str]]:
    with open_text(path) as fh:
        next(fh)
        for line in fh:
            yield line.rstrip("\n").split("\t")


def usable_symbol(symbol: str) -> bool:
    """A symbol a caption's mention may be matched by: three characters or more, and not one letter
    with one or two digits (A375 and K562 are cell lines; C3 and T10 are vertebrae first)."""
    return len(symbol) >= 3 and not _LETTER_NUMBER.match(symbol)


def gene_concepts(path: Path = GENES_FILE) -> Iterator[ConceptRecord]:
    """One record per approved gene: its symbol (where usable) and its approved name."""
    for hgnc_id, symbol, name, _locus in _rows(path):
        names = [symbol] if usable_symbol(symbol) else []
        yield ConceptRecord(cui=hgnc_id, name=symbol, aliases=[*names, name], tuis=[GENE_TUI], sources=["HGNC"])


def cell_line_concepts(path: Path = CELL_LINES_FILE) -> Iterator[ConceptRecord]:
    """One record per EFO cell line, named by its symbol-shaped names (HT1080, HeLa, MDA-MB-231)."""
    for efo_id, name, synonyms, _rrid in _rows(path):
        names = [n for n in [name, *filter(None, synonyms.split("|"))] if _CELL_LINE.match(n) and usable_symbol(n)]
        if names:
            yield ConceptRecord(cui=efo_id, name=name, aliases=names, tuis=[CELL_TUI], sources=["EFO"])


def gene_and_cell_line_gaps(known_keys: set[str], norm: Callable[[str], str],
                            records: Iterable[ConceptRecord] | None = None) -> list[ConceptRecord]:
    """The gene and cell-line records less every name another vocabulary already has (``known_keys``,
    normalised by ``norm``: BRCA1 stays MeSH's) or another of these records shares; a record left with
    no name is dropped, and one whose own name went is named by the first name it keeps."""
    records = list(records if records is not None else [*gene_concepts(), *cell_line_concepts()])
    shared = Counter(k for r in records for k in {norm(a) for a in r.aliases})
    out = []
    for rec in records:
        rec.aliases = [a for a in dict.fromkeys(rec.aliases) if norm(a) not in known_keys and shared[norm(a)] == 1]
        if rec.aliases:
            if rec.name not in rec.aliases:
                rec.name = rec.aliases[0]
            out.append(rec)
    return out
