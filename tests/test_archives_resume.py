"""Legacy per-article packages, hostile archives, and a build killed half-way."""
from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from conftest import staged_units, tree_bytes
from testdata import ARTICLES, REPO

from medcorpus.manifests.query import query
from medcorpus.manifests.verify import verify_output
from medcorpus.pipelines.build import build
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources.bulk import BulkSource


def _package(dest: Path, pmcid: str, folder: str) -> Path:
    """A per-article PMC<id>.tar.gz (legacy oa_package layout) made from a real shared article."""
    path = dest / f"{pmcid}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for f in sorted((ARTICLES / folder).iterdir()):
            tar.add(f, arcname=f"{pmcid}/{f.name}")
    return path


def _add(tar: tarfile.TarFile, name: str, data: bytes, **kw) -> None:  # noqa: ANN003
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


def test_per_article_packages_and_hostile_bulk_archive(tmp_path: Path) -> None:
    pkgs = tmp_path / "in"
    pkgs.mkdir()
    _package(pkgs, "PMC1000001", "elife-46472-v3")
    _package(pkgs, "PMC1000002", "pone.0000010")
    real_xml = (ARTICLES / "elife-19405" / "elife-19405.xml").read_bytes()
    # a synthetic hostile bulk package: traversal, absolute path, a link, an oversized member
    with tarfile.open(pkgs / "oa_hostile_xml.incr.2026-01-01.tar.gz", "w:gz") as tar:
        _add(tar, "PMC010xxxxxx/PMC1000003.xml", real_xml)
        _add(tar, "../../PMC1000004.xml", real_xml)
        _add(tar, "/etc/PMC1000005.xml", real_xml)
        _add(tar, "PMC010xxxxxx/PMC1000006.xml", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _add(tar, "PMC010xxxxxx/PMC1000007.xml", b"<article>" + b" " * 300_000 + b"</article>")
    # a gzip bomb: a tiny compressed package that inflates far beyond the member cap
    with tarfile.open(pkgs / "PMC1000008.tar.gz", "w:gz") as tar:
        _add(tar, "PMC1000008/PMC1000008.nxml", real_xml)
        _add(tar, "PMC1000008/fig1.jpg", b"\0" * 50_000_000)
    assert (pkgs / "PMC1000008.tar.gz").stat().st_size < 200_000
    source = BulkSource(str(pkgs), cache_dir=str(tmp_path / "cache"), max_member_bytes=250_000)
    out = tmp_path / "out"
    summary = build(load_config(REPO / "dataflow.yaml"), source, LocalRunner(2), str(out), progress=False)
    _, errors = query(str(out), "SELECT input, reason FROM errors ORDER BY input")
    reasons = {inp.split(":", 1)[1]: reason for inp, reason in errors}
    assert reasons["PMC1000004"] == reasons["PMC1000005"] == "archive_unsafe_member"
    assert reasons["PMC1000006"] == "archive_unsafe_member"
    assert reasons["PMC1000007"] == "archive_member_too_large"
    assert reasons["PMC1000008"] == "archive_member_too_large"
    assert not any(p.name == "PMC1000004.xml" for p in tmp_path.rglob("*") if "cache" not in str(p.parent))
    # the real packages still give all their figures (eLife 8, PLOS 3)
    _, [(whole,)] = query(str(out), "SELECT count(*) FROM samples WHERE parent_key IS NULL")
    assert whole == 8 + 3 and summary.samples >= whole
    _, figs = query(str(out), "SELECT count(*) FROM figures WHERE NOT has_media")
    assert figs == [(1,)]  # PMC1000003 came from the bulk XML: a text-only figure record
    assert verify_output(str(out))[0] == []


def test_killed_build_resumes_to_identical_output(tmp_path: Path) -> None:
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    cmd = [sys.executable, "-m", "medcorpus.pipelines.cli", "build", "--config", str(REPO / "dataflow.yaml"),
           "--profile", "release", "--source", f"local:{ARTICLES}", "--workers", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([*cmd, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    staged = out / "_work" / "staging"
    deadline = time.time() + 120
    while time.time() < deadline and staged_units(staged) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = staged_units(staged)
    assert 3 <= done_before < 18, "the build should have been killed part-way"
    assert not (out / "current.json").exists()  # the killed build published nothing
    resumed = subprocess.run([*cmd, "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({done_before} reused" in resumed.stderr, resumed.stderr
    subprocess.run([*cmd, "--out", str(fresh)], env=env, check=True, capture_output=True, timeout=300)
    assert tree_bytes(out) == tree_bytes(fresh)
    assert verify_output(str(out))[0] == []
