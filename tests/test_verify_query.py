"""The completion record, a verify that checks the whole output folder, and a confined, read-only
query: real builds of two shared articles (stages fetch, parse, image: about a second each), each
damaged the way a kill, a full disk or an interrupted rebuild leaves it, then rebuilt."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import duckdb
import fsspec
import pyarrow.parquet as pq
import pytest
from testdata import copy_articles, release_dir
from typer.testing import CliRunner

from medcorpus import __version__
from medcorpus.manifests.completion import RECORD, IncompleteOutput, NotAnOutput
from medcorpus.manifests.query import query
from medcorpus.manifests.reader import iter_samples
from medcorpus.manifests.verify import verify_output
from medcorpus.pipelines.build import build
from medcorpus.pipelines.cli import app
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources.local import LocalSource
from medcorpus.schemas.manifest import SCHEMA_VERSION

CLI = str(Path(sys.executable).with_name("medcorpus"))
ARTICLES = ["pone.0000010", "elife-43154-v2"]  # 6 samples; 3 per shard gives two shards
SAMPLES = 6
RERUN = "rerun the same build command: it resumes"
cli = CliRunner()


def _config(path: Path, max_samples: int) -> Path:
    path.write_text(f"stages: [fetch, parse, image]\ndefaults:\n  shards: {{max_samples: {max_samples}}}\n")
    return path


def _build_args(src: Path, cfg: Path, out: Path) -> list[str]:
    return ["build", "--config", str(cfg), "--source", f"local:{src}", "--out", str(out), "--workers", "1",
            "--no-progress"]


def _cli_build(src: Path, cfg: Path, out: Path) -> None:
    result = cli.invoke(app, _build_args(src, cfg, out))
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good build (two shards of 3), and the same samples cut into shards of 4 (to make the
    stale-shard state an interrupted rebuild with other shard boundaries leaves)."""
    root = tmp_path_factory.mktemp("verify")
    src = copy_articles(root / "in", ARTICLES)
    cfg, cfg6 = _config(root / "cfg.yaml", 3), _config(root / "cfg6.yaml", 6)
    _cli_build(src, cfg, root / "good")
    _cli_build(src, cfg6, root / "good6")
    return {"src": src, "cfg": cfg, "good": root / "good", "good6": root / "good6", "root": root}


def _verify_cli(out: Path) -> tuple[int, str]:
    result = cli.invoke(app, ["verify", str(out)])
    return result.exit_code, result.output


def test_good_build_has_a_complete_record_and_verifies(built: dict[str, Path]) -> None:
    out = release_dir(built["good"])
    assert out == built["good"] / "releases" / "000001"
    record = json.loads((out / RECORD).read_text())
    _, runs = query(str(out), "SELECT run_id FROM runs")
    assert record["run_id"] == runs[-1][0]
    assert (record["medcorpus_version"], record["schema_version"], record["samples"]) == (__version__, SCHEMA_VERSION, SAMPLES)
    files = {f["path"]: f for f in record["files"]}
    published = [p for d in ("shards", "manifest") for p in (out / d).rglob("*") if p.is_file()]
    assert set(files) == {p.relative_to(out).as_posix() for p in published} | {"attribution.csv", "README.md", "croissant.json"}
    assert {"shards/comm/comm-000000.tar", "shards/comm/comm-000001.tar", "manifest/samples/comm-000001.parquet",
            "manifest/runs.parquet"} <= set(files)
    for rel, entry in files.items():
        assert entry["size"] == (out / rel).stat().st_size
        assert (entry["sha256"] is None) == rel.startswith("shards/")
    assert verify_output(str(out)) == ([], SAMPLES)
    assert _verify_cli(out) == (0, f"checked {SAMPLES} samples, 0 problems\n")


def _rm(rel: str) -> Callable[[Path, dict[str, Path]], None]:
    return lambda out, _built: (out / rel).unlink()


def _stale_rebuild_shard(out: Path, built: dict[str, Path]) -> None:
    """A rebuild with other shard boundaries, killed after its first shard: the new shard 0 (all 6
    samples) beside the old shard 1, so its 3 samples are listed twice."""
    for rel in ("shards/comm/comm-000000.tar", "manifest/samples/comm-000000.parquet"):
        shutil.copyfile(release_dir(built["good6"]) / rel, out / rel)


def _extra_member(out: Path, _built: dict[str, Path]) -> None:
    import io
    import tarfile

    with tarfile.open(out / "shards/comm/comm-000001.tar", "a") as tar:
        info = tarfile.TarInfo("zz_stray.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"stray"))


def _corrupt_byte(out: Path, _built: dict[str, Path]) -> None:
    row = pq.read_table(out / "manifest/samples/comm-000000.parquet").to_pylist()[0]
    with open(out / row["shard"], "r+b") as f:
        f.seek(row["image_offset"] + 100)
        byte = f.read(1)
        f.seek(row["image_offset"] + 100)
        f.write(bytes([byte[0] ^ 0xFF]))


DAMAGE = {
    "no completion record": (_rm(RECORD), ["no completion record (_complete.json)"]),
    "shard without its part": (_rm("manifest/samples/comm-000001.parquet"),
                               ["shards/comm/comm-000001.tar: shard without its manifest part",
                                "shards/comm/comm-000001.tar: 9 tar members, none of them in the manifest"]),
    "part without its shard": (_rm("shards/comm/comm-000001.tar"),
                               ["manifest/samples/comm-000001.parquet: manifest part without its shard",
                                "shards/comm/comm-000001.tar: listed in _complete.json but missing"]),
    "duplicate key in two parts": (_stale_rebuild_shard, ["duplicate key, 2 rows (in manifest/samples/comm-000000.parquet, "
                                                          "manifest/samples/comm-000001.parquet)",
                                                          "_complete.json says 6 samples, the manifest parts hold 9"]),
    "tar member not in the manifest": (_extra_member, ["shards/comm/comm-000001.tar: tar member zz_stray.txt is not in the manifest"]),
    "corrupted image byte": (_corrupt_byte, ["do not hash to image_sha256"]),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_verify_finds_damage_and_a_rerun_repairs_it(built: dict[str, Path], case: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(built["good"], out, symlinks=True)  # with its _work/, as the damaged build would have it
    damage, expected = DAMAGE[case]
    damage(release_dir(out), built)
    code, output = _verify_cli(out)
    assert code == 1, output
    for line in expected:
        assert line in output
    assert RERUN in output
    _cli_build(built["src"], built["cfg"], out)  # the same build command
    assert _verify_cli(out) == (0, f"checked {SAMPLES} samples, 0 problems\n")


def _kill_rebuild(built: dict[str, Path], out: Path, log: Path) -> bool:
    """Start the same build again and SIGKILL it once it has begun release 2's folder; False when
    the build published before the kill landed."""
    proc = subprocess.Popen([CLI, *_build_args(built["src"], built["cfg"], out)], stdout=subprocess.DEVNULL,
                            stderr=log.open("w"), start_new_session=True)
    started = out / "releases" / "000002" / "manifest"
    while not started.exists() and proc.poll() is None:
        time.sleep(0.001)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=60) == -signal.SIGKILL and json.loads((out / "current.json").read_text())["release"] == 1


def test_a_killed_rebuild_leaves_the_previous_release_and_its_own_is_refused(built: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(built["good"], out, symlinks=True)
    assert any(_kill_rebuild(built, out, tmp_path / "build.log") for _ in range(5)), (tmp_path / "build.log").read_text()
    assert _verify_cli(out) == (0, f"checked {SAMPLES} samples, 0 problems\n")  # release 1, untouched
    assert query(str(out), "SELECT count(*) FROM samples")[1] == [(SAMPLES,)]
    code, output = _verify_cli(Path(f"{out}@2"))
    assert code == 1 and "no completion record" in output and RERUN in output
    refused = cli.invoke(app, ["query", f"{out}@2", "SELECT count(*) FROM samples"])
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "--allow-incomplete" in refused.output and RERUN in refused.output
    with pytest.raises(IncompleteOutput):
        next(iter_samples(f"{out}@2"))
    assert query(f"{out}@2", "SELECT 1", allow_incomplete=True)[1] == [(1,)]  # read as it is when asked
    _cli_build(built["src"], built["cfg"], out)
    assert _verify_cli(out)[0] == 0 and len(list(iter_samples(str(out)))) == SAMPLES
    assert json.loads((out / "current.json").read_text())["release"] == 2


def test_not_an_output_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for args in (["verify", str(missing)], ["query", str(missing), "SELECT 1"]):
        result = cli.invoke(app, args)
        assert result.exit_code == 2 and result.output.count("\n") == 1 and "not a medcorpus build output" in result.output
    assert not missing.exists()  # looking did not create it
    with pytest.raises(NotAnOutput):
        verify_output(str(missing))


def _manifest_bytes(out: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "_work" not in p.parts}


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1 AS a) TO '{out}/manifest/articles.parquet'",
    "COPY (SELECT 1 AS a) TO '{out}/manifest/articles.parquet' (FORMAT parquet)",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_parquet('{out}/manifest/articles.parquet')",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "SET allowed_directories = ['/']",
    "ATTACH '{out}/manifest/x.duckdb' AS x",
    "INSTALL httpfs",
])
def test_query_cannot_write_read_outside_or_unlock(built: dict[str, Path], sql: str) -> None:
    out = built["good"]
    before = _manifest_bytes(out)
    with pytest.raises((duckdb.PermissionException, duckdb.InvalidInputException)):
        query(str(out), sql.format(out=release_dir(out)))
    assert _manifest_bytes(out) == before
    result = cli.invoke(app, ["query", str(out), sql.format(out=release_dir(out))])
    assert result.exit_code == 2 and result.output.startswith("query: ") and result.output.count("\n") == 1


README_QUERIES = [
    "SELECT license_family, license_code, count(*) n FROM samples GROUP BY ALL ORDER BY n DESC",
    "SELECT article_id, reason, count(*) FROM errors GROUP BY ALL ORDER BY 3 DESC",
    "SELECT key, shard, image_offset, image_size FROM samples WHERE license_code = 'CC BY' AND year >= 2019 AND width >= 1000",
    "SELECT key, duplicate_of, dropped_by, match_hamming, match_jaccard, match_via FROM dropped WHERE stage = 'dedup'",
    "SELECT DISTINCT key FROM concepts WHERE cui = 'C0032326' AND \"group\" = 'DISO'",
]


def test_readme_queries_still_work(built: dict[str, Path]) -> None:
    out = str(built["good"])
    assert query(out, README_QUERIES[0])[1] == [("comm", "CC BY", SAMPLES)]
    _, rows = query(out, "SELECT key, shard, image_offset FROM samples ORDER BY key")
    assert len(rows) == SAMPLES and {r[1] for r in rows} == {"shards/comm/comm-000000.tar", "shards/comm/comm-000001.tar"}
    for sql in README_QUERIES[1:]:
        columns, _ = query(out, sql)
        assert columns, sql
    assert query(out, "SELECT count(*) FROM runs")[1] == [(1,)]
    assert cli.invoke(app, ["query", out, README_QUERIES[2], "--format", "csv"]).exit_code == 0


def test_allow_path_opens_one_extra_file_for_reading(built: dict[str, Path], tmp_path: Path) -> None:
    keys = tmp_path / "keys.csv"
    _, rows = query(str(built["good"]), "SELECT key FROM samples ORDER BY key LIMIT 2")
    keys.write_text("key\n" + "\n".join(r[0] for r in rows) + "\n")
    sql = f"SELECT count(*) FROM samples WHERE key IN (SELECT key FROM read_csv('{keys}'))"
    with pytest.raises(duckdb.PermissionException):
        query(str(built["good"]), sql)
    assert query(str(built["good"]), sql, allow_paths=[str(keys)])[1] == [(2,)]
    result = cli.invoke(app, ["query", str(built["good"]), sql, "--allow-path", str(keys), "--format", "csv"])
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "2"
    with pytest.raises(duckdb.PermissionException):  # the allowance is that file, not its neighbours
        query(str(built["good"]), "SELECT * FROM read_text('/etc/hostname')", allow_paths=[str(keys)])


def test_s3_output_record_verify_and_refusal(built: dict[str, Path], s3_output_bucket, tmp_path: Path) -> None:  # noqa: ANN001
    url = f"{s3_output_bucket.url}/complete"
    summary = build(load_config(built["cfg"]), LocalSource(str(built["src"])), LocalRunner(1), url,
                    work_dir=str(tmp_path / "work"), progress=False)
    fs = fsspec.filesystem("s3", **s3_output_bucket.storage_options)
    base = f"{s3_output_bucket.name}/complete/releases/000001"
    record = json.loads(fs.cat_file(f"{base}/{RECORD}"))
    assert record["samples"] == summary.samples == SAMPLES
    assert {"shards/comm/comm-000000.tar", "manifest/samples/comm-000000.parquet"} <= {f["path"] for f in record["files"]}
    assert verify_output(url) == ([], SAMPLES)
    assert query(url, "SELECT count(*) FROM samples")[1] == [(SAMPLES,)]
    fs.pipe_file(f"{base}/shards/comm/comm-000009.tar", fs.cat_file(f"{base}/shards/comm/comm-000001.tar"))
    problems, _ = verify_output(url)
    assert "shards/comm/comm-000009.tar: shard without its manifest part manifest/samples/comm-000009.parquet" in problems
    fs.rm(f"{base}/{RECORD}")
    assert any(p.startswith("no completion record") for p in verify_output(url)[0])
    with pytest.raises(IncompleteOutput):
        query(url, "SELECT 1")
    build(load_config(built["cfg"]), LocalSource(str(built["src"])), LocalRunner(1), url,
          work_dir=str(tmp_path / "work"), progress=False)
    assert verify_output(url) == ([], SAMPLES)
