"""Stream a UMLS Metathesaurus release (``MRCONSO.RRF``, ``MRSTY.RRF``, optional ``MRDEF.RRF``) into concepts.

A full release has ~16M MRCONSO rows (several GB), so nothing here holds the file: MRCONSO is read line by
line and grouped by CUI (releases are sorted by CUI); only the CUI -> types map of MRSTY and the kept
definitions stay in memory. Filters mirror what users of a licensed release choose: languages, source
vocabularies (SAB), suppressed names, semantic types or groups.
"""
from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

from medcorpus.transforms.vocab_records import ConceptRecord

SUPPRESSED = frozenset({"O", "E", "Y"})  # obsolete, editor-suppressed, source-suppressible (UMLS docs)


@dataclass(frozen=True)
class UmlsFilters:
    langs: frozenset[str] = frozenset({"ENG"})
    sabs: frozenset[str] | None = None  # None = every source vocabulary
    drop_suppressed: bool = True
    tuis: frozenset[str] | None = None  # None = every semantic type


@dataclass(frozen=True)
class ConsoRow:
    cui: str
    lat: str
    ts: str
    stt: str
    ispref: str
    sab: str
    tty: str
    name: str
    suppress: str

    @property
    def is_preferred(self) -> bool:
        return self.ts == "P" and self.stt == "PF" and self.ispref == "Y"


def find_rrf(umls_dir: Path, name: str) -> Path | None:
    """A release keeps its RRF files in ``META/`` (or the directory itself), optionally gzipped."""
    for d in (umls_dir, umls_dir / "META"):
        for cand in (d / name, d / f"{name}.gz"):
            if cand.is_file():
                return cand
    return None


def open_rrf(path: Path) -> IO[str]:
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="\n")


def iter_rrf(path: Path) -> Iterator[list[str]]:
    """Rows of a pipe-delimited RRF file (each line ends with a trailing ``|``)."""
    with open_rrf(path) as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if line:
                yield line.split("|")


def iter_mrconso(path: Path, filters: UmlsFilters) -> Iterator[ConsoRow]:
    """MRCONSO rows passing the language, source and suppression filters."""
    for f in iter_rrf(path):
        if len(f) < 17:
            continue
        if f[1] not in filters.langs:
            continue
        if filters.sabs is not None and f[11] not in filters.sabs:
            continue
        if filters.drop_suppressed and f[16] in SUPPRESSED:
            continue
        yield ConsoRow(f[0], f[1], f[2], f[4], f[6], f[11], f[12], f[14], f[16])


def read_mrsty(path: Path, tuis: frozenset[str] | None = None) -> dict[str, tuple[str, ...]]:
    """CUI -> its TUIs; with ``tuis`` only concepts having at least one selected type are kept."""
    out: dict[str, tuple[str, ...]] = {}
    interned: dict[str, str] = {}
    for f in iter_rrf(path):
        cui, tui = f[0], interned.setdefault(f[1], f[1])
        prev = out.get(cui, ())
        if tui not in prev:
            out[cui] = prev + (tui,)
    if tuis is not None:
        out = {c: ts for c, ts in out.items() if tuis.intersection(ts)}
    return out


def read_mrdef(path: Path, keep: set[str] | dict[str, object], sabs: frozenset[str] | None = None,
               drop_suppressed: bool = True) -> dict[str, str]:
    """First definition per kept CUI (MRDEF: CUI|AUI|ATUI|SATUI|SAB|DEF|SUPPRESS|CVF)."""
    out: dict[str, str] = {}
    for f in iter_rrf(path):
        if len(f) < 7 or f[0] in out or f[0] not in keep:
            continue
        if sabs is not None and f[4] not in sabs:
            continue
        if drop_suppressed and f[6] in SUPPRESSED:
            continue
        out[f[0]] = f[5]
    return out


def group_by_cui(rows: Iterable[ConsoRow]) -> Iterator[list[ConsoRow]]:
    """Consecutive rows of one CUI (MRCONSO is sorted by CUI; unsorted input yields a CUI more than once)."""
    batch: list[ConsoRow] = []
    for r in rows:
        if batch and r.cui != batch[0].cui:
            yield batch
            batch = []
        batch.append(r)
    if batch:
        yield batch


def concept_from_rows(rows: list[ConsoRow], tuis: tuple[str, ...], definition: str | None) -> ConceptRecord:
    """The preferred name is the TS=P, STT=PF, ISPREF=Y atom (UMLS's own rule), else the first name."""
    pref = next((r for r in rows if r.is_preferred), rows[0])
    rec = ConceptRecord(cui=pref.cui, name=pref.name, tuis=list(tuis), definition=definition,
                        sources=sorted({r.sab for r in rows}))
    rec.add_alias(pref.name)
    for r in rows:
        rec.add_alias(r.name)
    return rec


def iter_umls_concepts(umls_dir: Path, filters: UmlsFilters = UmlsFilters(),
                       with_definitions: bool = True) -> Iterator[ConceptRecord]:
    """Concepts of a release directory, streamed; concepts without a kept name or type are skipped."""
    conso = find_rrf(umls_dir, "MRCONSO.RRF")
    sty = find_rrf(umls_dir, "MRSTY.RRF")
    if conso is None or sty is None:
        raise FileNotFoundError(f"{umls_dir}: MRCONSO.RRF and MRSTY.RRF are required")
    cui_tuis = read_mrsty(sty, filters.tuis)
    mrdef = find_rrf(umls_dir, "MRDEF.RRF") if with_definitions else None
    defs = read_mrdef(mrdef, cui_tuis, filters.sabs, filters.drop_suppressed) if mrdef else {}
    for rows in group_by_cui(iter_mrconso(conso, filters)):
        tuis = cui_tuis.get(rows[0].cui)
        if tuis is None:
            continue
        yield concept_from_rows(rows, tuis, defs.get(rows[0].cui))


def release_info(umls_dir: Path) -> dict[str, object]:
    """Provenance of a release: its version (``release.dat`` when present) and the files' sizes."""
    info: dict[str, object] = {"path": str(umls_dir)}
    for name in ("release.dat", "META/release.dat"):
        p = umls_dir / name
        if p.is_file():
            info["release"] = p.read_text(errors="replace").strip().splitlines()[:5]
    files = {}
    for name in ("MRCONSO.RRF", "MRSTY.RRF", "MRDEF.RRF"):
        p = find_rrf(umls_dir, name)
        if p is not None:
            files[name] = {"file": p.name, "bytes": p.stat().st_size}
    info["files"] = files
    return info
