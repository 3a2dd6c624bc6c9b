"""CLI: ``medcorpus export OUT --where SQL --out DIR [--shard-size N]`` — a selection of a build as
fresh WebDataset shards (+ ``sizes.json``, manifest, card) for any webdataset trainer."""
from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_cmd(
        out: str = typer.Argument(..., help="a build's output directory or URL; OUT@N reads release N"),
        dest: str = typer.Option(..., "--out", help="an empty folder or URL for the exported shards"),
        where: Optional[str] = typer.Option(None, "--where", help="SQL predicate over samples columns (default: all)"),
        shard_size: int = typer.Option(1000, "--shard-size", min=1, help="samples per shard (the last two are balanced)"),
        allow_incomplete: bool = typer.Option(False, "--allow-incomplete",
                                              help="export from an output whose build did not finish"),
    ) -> None:
        """Export the samples a SQL predicate selects as fresh shards, manifest and sizes.json."""
        from medcorpus.manifests.completion import IncompleteOutput, NotAnOutput
        from medcorpus.manifests.export import ExportError, export
        from medcorpus.manifests.selection import SelectionError

        err = Console(stderr=True)
        try:
            summary = export(out, dest, where, shard_size=shard_size, allow_incomplete=allow_incomplete)
        except (IncompleteOutput, NotAnOutput, SelectionError, ExportError) as exc:
            err.print(f"export: {exc}".splitlines()[0], markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        err.print(f"exported {summary.samples} samples in {summary.shards} shards to {dest}")
