"""The medcorpus command as users and scripts call it."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from typer.testing import CliRunner

from medcorpus.pipelines.cli import app

runner = CliRunner()


def test_every_command_has_help() -> None:
    import click
    import typer

    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    root = typer.main.get_command(app)
    assert {"build", "query", "verify"} <= set(root.commands)

    def paths(group: click.Group, prefix: list[str]) -> list[list[str]]:
        out = []
        for name, cmd in group.commands.items():
            out.append(prefix + [name])
            if isinstance(cmd, click.Group):
                out.extend(paths(cmd, prefix + [name]))
        return out

    for path in paths(root, []):
        sub = runner.invoke(app, [*path, "--help"])
        assert sub.exit_code == 0, path
        assert "Usage" in sub.output and path[-1] in result.output + sub.output


def test_query_formats(sample_build: Path) -> None:
    sql = "SELECT license_family, count(*) AS n FROM samples GROUP BY 1 ORDER BY 1"
    as_json = runner.invoke(app, ["query", str(sample_build), sql, "--format", "json"])
    assert as_json.exit_code == 0
    rows = json.loads(as_json.stdout)
    assert rows == [{"license_family": "comm", "n": 84}, {"license_family": "other", "n": 5}]
    as_csv = runner.invoke(app, ["query", str(sample_build), sql, "--format", "csv"])
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [["license_family", "n"], ["comm", "84"], ["other", "5"]]
    as_table = runner.invoke(app, ["query", str(sample_build), sql])
    assert "comm" in as_table.stdout and "84" in as_table.stdout


def test_build_command_end_to_end(tmp_path: Path) -> None:
    from testdata import REPO, copy_articles

    src = copy_articles(tmp_path / "in", ["elife-30274-v1"])
    out = tmp_path / "out"
    result = runner.invoke(app, ["build", "--config", str(REPO / "dataflow.yaml"), "--profile", "dev",
                                 "--source", f"local:{src}", "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "samples 5" in result.output
    verify = runner.invoke(app, ["verify", str(out)])
    assert verify.exit_code == 0 and "checked 5 samples, 0 problems" in verify.output


def test_bad_profile_and_source_are_clear_errors(tmp_path: Path) -> None:
    from testdata import REPO

    result = runner.invoke(app, ["build", "--config", str(REPO / "dataflow.yaml"), "--profile", "nope",
                                 "--source", "local:/nonexistent", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "profile 'nope'" in str(result.exception)
    result = runner.invoke(app, ["build", "--source", "ftp:x", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "unknown source" in str(result.exception)
