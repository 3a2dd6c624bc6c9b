"""CLI: ``medcorpus subcaptions`` and ``medcorpus panels`` (compound-figure splitting).

The main CLI calls ``register(app)``. The plain functions (``subcaption_record``,
``subcaptions_stream``, ``panels_record``) do the work so tests and other tools need no CLI.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

import typer

from medcorpus.pipelines.jsonl import map_json_lines
from PIL import Image

from medcorpus.transforms.subcaptions import split_caption
from medcorpus.transforms.subfigures import SubfigureOptions, find_panels

__all__ = ["register", "subcaption_record", "subcaptions_stream", "panels_record"]


def subcaption_record(record: dict[str, Any]) -> dict[str, Any]:
    """``{"id", "caption"}`` -> ``{"id", "shared", "subcaptions": [{"label", "text"}]}``;
    ``text`` is the shared text plus the panel's own text."""
    split = split_caption(str(record.get("caption") or ""))
    return {
        "id": record.get("id"),
        "shared": split.shared,
        "subcaptions": [{"label": lab, "text": split.text_for(lab)} for lab in split.labels],
    }


def subcaptions_stream(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """One output record per non-blank JSON line; a bad line yields ``{"id": null, "error": ...}``."""
    return map_json_lines(lines, subcaption_record)


def panels_record(path: str | Path, options: SubfigureOptions | None = None) -> dict[str, Any]:
    """``{"image", "compound", "panels": [{"box": [x1, y1, x2, y2], "label", "confidence"}]}``."""
    try:
        with Image.open(path) as im:
            image = im.convert("RGB")
    except (OSError, ValueError) as exc:
        return {"image": str(path), "compound": False, "panels": [], "error": str(exc)}
    pairs = find_panels(image, options)
    return {
        "image": str(path),
        "compound": len(pairs) >= 2,
        "panels": [{"box": list(p.box), "label": p.label, "confidence": p.confidence} for p in pairs],
    }


def _write(out: TextIO, record: dict[str, Any]) -> None:
    out.write(json.dumps(record, ensure_ascii=False) + "\n")


def register(app: typer.Typer) -> None:
    """Add the ``subcaptions`` and ``panels`` commands to ``app``."""

    @app.command("subcaptions")
    def subcaptions_cmd() -> None:
        """Split captions per panel label: JSON lines {"id", "caption"} on stdin -> {"id", "shared", "subcaptions"}."""
        for record in subcaptions_stream(sys.stdin):
            _write(sys.stdout, record)

    @app.command("panels")
    def panels_cmd(
        images: list[Path] = typer.Argument(..., help="Figure image files."),
        format: str = typer.Option("json", "--format", help="Output format (json lines)."),
        ocr: str = typer.Option("auto", "--ocr", help="never | auto | always: read panel labels with tesseract."),
    ) -> None:
        """Detect the panels of figure images; prints one JSON object per image."""
        if format != "json":
            raise typer.BadParameter("only --format json is supported", param_hint="--format")
        if ocr not in ("never", "auto", "always"):
            raise typer.BadParameter("never | auto | always", param_hint="--ocr")
        options = SubfigureOptions(ocr=ocr)  # type: ignore[arg-type]
        for path in images:
            _write(sys.stdout, panels_record(path, options))
