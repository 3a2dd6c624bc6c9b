"""The medcorpus command as users and scripts call it."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from typer.testing import CliRunner

from medcorpus.pipelines.cli import app

runner = CliRunner()


def test_every_command_has_help() -> None:
    """Through the installed entry point, as a terminal renders it (CliRunner skips rich rendering)."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    import typer

    root = typer.main.get_command(app)
    assert {"build", "query", "verify", "subcaptions", "panels", "vocab", "link", "evalsets",
            "faithfulness", "serve-llm"} <= set(root.commands)

    def paths(group, prefix: list[str]) -> list[list[str]]:  # noqa: ANN001 - typer vendors its own click
        out = []
        for name, cmd in group.commands.items():
            out.append(prefix + [name])
            if hasattr(cmd, "commands"):
                out.extend(paths(cmd, prefix + [name]))
        return out

    def help_of(path: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "medcorpus.pipelines.cli", *path, "--help"],
                              capture_output=True, text=True, timeout=120, env={**__import__("os").environ,
                                                                                  "COLUMNS": "100", "TERM": "xterm"})

    all_paths = [[]] + paths(root, [])
    assert ["vocab", "build"] in all_paths and ["evalsets", "add"] in all_paths
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(help_of, all_paths))
    for path, result in zip(all_paths, results):
        assert result.returncode == 0, (path, result.stderr[-2000:])
        assert "Usage" in result.stdout, path


def test_query_formats(sample_build: Path) -> None:
    sql = "SELECT license_family, count(*) AS n FROM samples WHERE parent_key IS NULL GROUP BY 1 ORDER BY 1"
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
    n = int(re.search(r"samples (\d+)", result.output).group(1))
    assert n >= 5  # 5 figures, plus their panels
    verify = runner.invoke(app, ["verify", str(out)])
    assert verify.exit_code == 0 and f"checked {n} samples, 0 problems" in verify.output


def test_bad_profile_and_source_are_clear_errors(tmp_path: Path) -> None:
    from testdata import REPO

    result = runner.invoke(app, ["build", "--config", str(REPO / "dataflow.yaml"), "--profile", "nope",
                                 "--source", "local:/nonexistent", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--profile nope: not in the config" in result.output  # one line, no traceback
    assert result.exception is None or isinstance(result.exception, SystemExit)
    result = runner.invoke(app, ["build", "--source", "ftp:x", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown source" in result.output  # a usage error: one line, no traceback
