"""The `subcaptions` and `panels` commands: JSON shapes, through the plain functions and typer."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from medcorpus.pipelines.commands.subfigures import panels_record, register, subcaptions_stream

DATA = Path(os.environ.get("MEDCORPUS_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")) / "data"
FIG = DATA / "compound/exsclaim_nature/images/s41467-018-06211-3_fig3.jpg"


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_subcaptions_stream_shape() -> None:
    lines = ['{"id": "f1", "caption": "CT. (A) Axial. (B) Coronal."}', "", "not json", '{"id": 2, "caption": ""}']
    out = list(subcaptions_stream(lines))
    assert out[0] == {"id": "f1", "shared": "CT.", "subcaptions": [{"label": "a", "text": "CT. Axial."},
                                                                  {"label": "b", "text": "CT. Coronal."}]}
    assert out[1]["id"] is None and "error" in out[1]
    assert out[2] == {"id": 2, "shared": "", "subcaptions": []}


def test_cli_subcaptions(app: typer.Typer) -> None:
    stdin = json.dumps({"id": "x", "caption": "Knee. a) MRI b) CT"}) + "\n"
    result = CliRunner().invoke(app, ["subcaptions"], input=stdin)
    assert result.exit_code == 0, result.output
    rec = json.loads(result.output.strip())
    assert [s["label"] for s in rec["subcaptions"]] == ["a", "b"]
    assert rec["subcaptions"][1]["text"] == "Knee. CT"


def test_cli_panels_json(app: typer.Typer, tmp_path: Path) -> None:
    if not FIG.exists():
        pytest.skip("shared data missing")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    result = CliRunner().invoke(app, ["panels", str(FIG), str(bad), "--format", "json", "--ocr", "never"])
    assert result.exit_code == 0, result.output
    first, second = [json.loads(line) for line in result.output.strip().splitlines()]
    assert first["image"] == str(FIG) and first["compound"] is True
    assert len(first["panels"]) == 4
    for p in first["panels"]:
        assert set(p) == {"box", "label", "confidence"}
        x1, y1, x2, y2 = p["box"]
        assert 0 <= x1 < x2 <= 685 and 0 <= y1 < y2 <= 507
    assert second["panels"] == [] and "error" in second


def test_cli_help_and_bad_format(app: typer.Typer) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["panels", "--help"]).exit_code == 0
    assert runner.invoke(app, ["subcaptions", "--help"]).exit_code == 0
    assert runner.invoke(app, ["panels", str(FIG), "--format", "xml"]).exit_code != 0


def test_panels_record_function() -> None:
    if not FIG.exists():
        pytest.skip("shared data missing")
    rec = panels_record(FIG)
    assert rec["compound"] and all(len(p["box"]) == 4 for p in rec["panels"])
