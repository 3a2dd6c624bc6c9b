"""Concept vocabularies for the ``concepts`` stage: built from sources, cached by content.

A vocabulary index takes a minute or more to build (the TF-IDF + ANN part), so a corpus build that
names its sources (``concepts.ontologies`` / ``umls_dir``) builds it once per machine into a
content-addressed cache: the same files and options always give the same directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from medcorpus.files import cache_root
from medcorpus.pipelines.failures import MissingPath
from medcorpus.transforms.vocab_genes import CELL_LINES_FILE, GENES_FILE
from medcorpus.transforms.vocab_ontology import mesh_crosswalk, mesh_lite_csv, mesh_records, open_vocab_concepts
from medcorpus.transforms.vocab_records import ConceptRecord, merge_by_cui

progress = logging.getLogger("medcorpus.progress")
RECIPE = 2  # part of the cache key: raise it when the same files and options build a different vocabulary


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_info(path: Path) -> dict[str, Any]:
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": _sha256(path)}


def build_vocab(out: Path, *, umls_dir: Path | None = None, ontologies: Iterable[Path] = (), mesh: bool = False,
                genes: bool = False, langs: Iterable[str] = ("ENG",), sabs: Iterable[str] = (),
                keep_suppressed: bool = False, semantic: Iterable[str] = (),
                synonym_scopes: Iterable[str] = ("EXACT",), ann: bool = True, ann_m: int = 24,
                ann_ef_construction: int = 200) -> dict[str, Any]:
    """Build a vocabulary index from exactly one kind of source; returns its ``vocab.json``."""
    from medcorpus import __version__
    from medcorpus.transforms.semantic_types import load_semantic_network
    from medcorpus.transforms.vocab_index import AnnParams, build_index

    ontologies = [Path(p) for p in ontologies]
    kinds = sum([umls_dir is not None, bool(ontologies), mesh and not ontologies])
    if kinds != 1:
        raise ValueError("give exactly one of --umls-dir, --ontology FILE... (optionally with --mesh), --mesh")
    tuis = frozenset(load_semantic_network().expand(semantic)) if list(semantic) else None
    params = AnnParams(m=ann_m, ef_construction=ann_ef_construction)
    prov: dict[str, Any] = {"medcorpus": __version__,
                            "filters": {"semantic": sorted(semantic), "tuis": sorted(tuis) if tuis else None}}
    if umls_dir is not None:
        from medcorpus.transforms.vocab_umls import UmlsFilters, iter_umls_concepts, release_info

        filters = UmlsFilters(langs=frozenset(langs), sabs=frozenset(sabs) if sabs else None,
                              drop_suppressed=not keep_suppressed, tuis=tuis)
        prov.update(kind="umls", release=release_info(Path(umls_dir)))
        prov["filters"].update(langs=sorted(filters.langs), sabs=sorted(sabs) or None,
                               drop_suppressed=filters.drop_suppressed)
        return build_index(iter_umls_concepts(Path(umls_dir), filters), out, prov, ann=ann, ann_params=params)
    if ontologies:
        records = list(open_vocab_concepts(ontologies, frozenset(s.upper() for s in synonym_scopes)).values())
        files = [_file_info(p) for p in ontologies]
        if mesh:
            records = list(merge_by_cui([*records, *mesh_gap_records(records, mesh_crosswalk(ontologies))]).values())
            files.append(_file_info(mesh_lite_csv()))
        if genes:
            records += gene_gap_records(records)
            files += [_file_info(GENES_FILE), _file_info(CELL_LINES_FILE)]
        if tuis is not None:
            records = [r for r in records if tuis.intersection(r.tuis)]
        prov.update(kind="ontology", files=files, synonym_scopes=sorted(synonym_scopes), mesh=mesh, genes=genes)
        return build_index(records, out, prov, tuis_inferred=True, ann=ann, ann_params=params)
    csv_path = mesh_lite_csv()
    prov.update(kind="mesh", files=[_file_info(csv_path)])
    return build_index(mesh_records(csv_path), out, prov, id_space="MSH", ann=ann, ann_params=params)


def mesh_gap_records(records: Iterable[ConceptRecord], crosswalk: dict[str, str] | None = None
                     ) -> list[ConceptRecord]:
    """The typed MeSH descriptors (genes, chemicals, procedures, devices, cell lines) whose names the
    given records lack (``vocab_mesh``), under the UMLS CUI ``crosswalk`` gives a descriptor (merge them
    by CUI: a mapped heading becomes a name of the ontologies' concept)."""
    from medcorpus.transforms.text_norm import norm_key
    from medcorpus.transforms.vocab_mesh import fill_gaps, mesh_concepts, umls_ids

    return list(umls_ids(fill_gaps(mesh_concepts(), _known_keys(records), norm_key), crosswalk or {}))


def gene_gap_records(records: Iterable[ConceptRecord]) -> list[ConceptRecord]:
    """HGNC's genes and EFO's cell lines (``vocab_genes``) under the names the given records lack."""
    from medcorpus.transforms.text_norm import norm_key
    from medcorpus.transforms.vocab_genes import gene_and_cell_line_gaps

    return gene_and_cell_line_gaps(_known_keys(records), norm_key)


def _known_keys(records: Iterable[ConceptRecord]) -> set[str]:
    """The lookup keys of every name the records may be matched by: what a gap-filling source must not take."""
    from medcorpus.transforms.text_norm import norm_key

    return {norm_key(a) for r in records if r.matchable for a in (r.name, *r.aliases)}


def source_files(paths: Iterable[str | Path]) -> list[Path]:
    """Ontology files named directly or found under named folders (sorted: the order is part of the key)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.endswith((".txt", ".md"))))
        elif p.is_file():
            out.append(p)
        else:
            raise MissingPath(f"concepts.ontologies: no ontology file or folder at {p}",
                              "fix the path in the config, or set concepts.vocab to a built vocabulary")
    return out


def cached_vocab(ontologies: Iterable[str | Path] = (), umls_dir: str | Path | None = None, ann: bool = True,
                 cache: Path | None = None, mesh: bool = False, genes: bool = False) -> Path:
    """The vocabulary built from these sources: from the cache (default ``cache_root()/vocab``), or
    built into it (a whole directory renamed into place, so a reader never sees half of one). ``mesh``
    adds MeSH's genes, chemicals, procedures and devices to open ontologies (a UMLS release has MeSH),
    ``genes`` HGNC's gene symbols and EFO's cell lines."""
    cache = Path(cache) if cache else cache_root() / "vocab"
    from medcorpus import __version__

    mesh, genes = mesh and not umls_dir, genes and not umls_dir
    files = source_files(ontologies) if not umls_dir else sorted(Path(umls_dir).glob("MR*.RRF*"))
    hashed = files + ([mesh_lite_csv()] if mesh else []) + ([GENES_FILE, CELL_LINES_FILE] if genes else [])
    key = hashlib.sha256(json.dumps({"files": [_sha256(f) for f in hashed], "umls": bool(umls_dir), "ann": ann,
                                     "recipe": RECIPE, "medcorpus": __version__}, sort_keys=True).encode()).hexdigest()[:20]
    target = cache / key
    if (target / "vocab.json").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
    progress.info("building the concept vocabulary from %s (once per machine, a minute or two; cached in %s)",
                  umls_dir or f"{len(files)} ontology files", target)
    t0 = time.perf_counter()
    try:
        build_vocab(tmp, umls_dir=Path(umls_dir) if umls_dir else None,
                    ontologies=[] if umls_dir else files, mesh=mesh, genes=genes, ann=ann)
        os.replace(tmp, target)
        progress.info("concept vocabulary built in %.0f s", time.perf_counter() - t0)
    except OSError:
        if not (target / "vocab.json").exists():  # a concurrent build that lost the race is fine
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def vocab_id(path: str | Path) -> str:
    """A short content id of a built vocabulary (its vocab.json), for provenance and staging keys."""
    return hashlib.sha256((Path(path) / "vocab.json").read_bytes()).hexdigest()[:16]
