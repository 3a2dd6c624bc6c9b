"""CLI: ``medcorpus evalsets list|add|init`` — the evaluation-set registry used for decontamination.

The registry is a JSON-lines file (default ``evalsets.jsonl``; ``--registry`` or $MEDCORPUS_EVALSETS).
``init`` loads the shared eval lists (../shared/data, see manifests.evalsets.builtin_entries).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from medcorpus.manifests.evalsets import (add_entries, builtin_entries, entries_from_captions, entries_from_ids,
                                          entries_from_images, read_registry, summarize)

__all__ = ["register"]


DEFAULT_DATA = Path(os.environ.get("MEDCORPUS_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "data"


def _registry(path: Optional[Path], data: Optional[Path] = None) -> Path:
    """The registry file; a new one is pre-loaded from the shared eval lists when they are there."""
    reg = path or Path(os.environ.get("MEDCORPUS_EVALSETS", "evalsets.jsonl"))
    src = data or DEFAULT_DATA
    if not reg.exists() and src.is_dir():
        add_entries(reg, builtin_entries(src))
    return reg


sub = typer.Typer(help="Evaluation-set registry for decontamination.", no_args_is_help=True, rich_markup_mode=None)

@sub.command("list")
def list_cmd(
    registry: Optional[Path] = typer.Option(None, "--registry", help="registry JSON-lines file"),
    data: Optional[Path] = typer.Option(None, "--data", help="shared data folder that pre-loads a new registry"),
) -> None:
    """Eval sets in the registry with their entry counts per kind (JSON)."""
    typer.echo(json.dumps(summarize(read_registry(_registry(registry, data))), indent=1))

@sub.command("init")
def init_cmd(
    data: Path = typer.Option(..., "--data", help="the shared data folder (../shared/data)"),
    registry: Optional[Path] = typer.Option(None, "--registry"),
) -> None:
    """Load the shared eval lists (ROCO test/validation, SLAKE, IU X-ray, ImageCLEF, MedICaT, MedMentions)."""
    reg = registry or Path(os.environ.get("MEDCORPUS_EVALSETS", "evalsets.jsonl"))
    n = add_entries(reg, builtin_entries(data))
    typer.echo(f"{n} entries in {reg}")

@sub.command("add")
def add_cmd(
    name: str = typer.Argument(..., help="eval set name"),
    ids: Optional[Path] = typer.Option(None, "--ids", help="file of PMCID[:figure] or PMID, one per line"),
    images: Optional[list[Path]] = typer.Option(None, "--image", help="image file (repeatable)"),
    captions: Optional[Path] = typer.Option(None, "--captions", help="file of captions, one per line"),
    registry: Optional[Path] = typer.Option(None, "--registry"),
    data: Optional[Path] = typer.Option(None, "--data", help="shared data folder that pre-loads a new registry"),
) -> None:
    """Add a user's eval set as ids, images (perceptual hashes) and/or captions."""
    entries = []
    if ids:
        entries += entries_from_ids(name, ids.read_text(encoding="utf-8").splitlines())
    if images:
        entries += entries_from_images(name, images)
    if captions:
        entries += entries_from_captions(name, captions.read_text(encoding="utf-8").splitlines())
    if not entries:
        raise typer.BadParameter("give --ids, --image or --captions")
    reg = _registry(registry, data)
    n = add_entries(reg, entries)
    typer.echo(f"added {len(entries)} entries to {name!r}; {n} entries in {reg}")

@sub.command("add-dataset")
def add_dataset_cmd(
    path: Path = typer.Argument(..., help="a labelled dataset folder (what dataset:PATH reads)"),
    registry: Optional[Path] = typer.Option(None, "--registry"),
    data: Optional[Path] = typer.Option(None, "--data", help="shared data folder that pre-loads a new registry"),
) -> None:
    """Add a dataset's test and validation images (eval sets dataset:NAME:SPLIT, perceptual
    hashes), so builds of other sources drop their copies; a build of the dataset itself
    registers them on its own."""
    from medcorpus.pipelines.sources.dataset import DatasetSource

    entries = DatasetSource(str(path)).evalset_entries()  # ids of the images need no secret
    if not entries:
        raise typer.BadParameter(f"{path} has no test or validation images")
    reg = _registry(registry, data)
    n = add_entries(reg, entries)
    typer.echo(f"added {len(entries)} entries of {sorted({e.evalset for e in entries})}; {n} entries in {reg}")


def register(app: typer.Typer) -> None:
    """Add the ``evalsets`` sub-app to ``app``."""
    app.add_typer(sub, name="evalsets")
