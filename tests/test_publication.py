"""Atomic publication of releases, with real builds of shared articles: readers in another process
looping over ``query``, ``verify``, the loader and DuckDB while a rebuild changes the corpus, and
while rebuilds are SIGKILLed at random points, see exactly one release (the previous or the new);
``OUT@N`` reads an older release; ``output.keep_releases`` removes the oldest; an output from
before release folders reads as it is and moves to them on its next build without losing samples."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from testdata import copy_articles, release_dir

from medcorpus.manifests.layout import resolve
from medcorpus.manifests.query import query
from medcorpus.manifests.releases import publish
from medcorpus.manifests.verify import verify_output
from medcorpus.pipelines.build import build, summary_lines
from medcorpus.pipelines.config import from_dict
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources.base import Selection
from medcorpus.pipelines.sources.local import LocalSource

FIRST, SECOND = "pone.0000010", "elife-43154-v2"
CONFIG = {"stages": ["fetch", "parse", "image"], "defaults": {"shards": {"max_samples": 3}, "output": {"keep_releases": 2}}}
READER = Path(__file__).with_name("publication_reader.py")


def _state(out: Path | str) -> dict[str, Any]:
    """What a reader of the release ``out`` names must see: sample count, shard list, keys."""
    _, [(n, shards, keys)] = query(str(out), "SELECT count(*), list(DISTINCT shard ORDER BY shard), "
                                            "list(key ORDER BY key) FROM samples")
    return {"n": n, "shards": shards, "keys": keys}


def _build(src: Path, out: Path, **kwargs: Any) -> Any:
    return build(from_dict(CONFIG), LocalSource(str(src)), LocalRunner(1), str(out), progress=False, **kwargs)


@pytest.fixture(scope="module")
def first_release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Release 1 of one article, with the second article's folder beside it for the rebuilds."""
    root = tmp_path_factory.mktemp("publication")
    src = copy_articles(root / "in", [FIRST])
    copy_articles(root / "later", [SECOND])
    _build(src, root / "out")
    return {"src": src, "later": root / "later" / SECOND, "out": root / "out"}


def _copy(first_release: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of release 1 (with its staged units) and of its source."""
    src, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(first_release["src"], src)
    shutil.copytree(first_release["out"], out, symlinks=True)
    return src, out


def _reader(out: Path, tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    stop, log = tmp_path / "stop", tmp_path / "reads.jsonl"
    proc = subprocess.Popen([sys.executable, str(READER), str(out), str(stop), str(log)],
                            stderr=(tmp_path / "reader.err").open("w"))
    return proc, stop, log


def _reads(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _wait_for_reads(log: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while len(_reads(log)) < n and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)


def _check_reads(reads: list[dict[str, Any]], states: dict[int, dict[str, Any]]) -> dict[str, set[int]]:
    """Every read saw one whole release of ``states``; which releases each kind of reader saw."""
    seen: dict[str, set[int]] = {}
    for r in reads:
        assert r["ok"], r
        if r["kind"] == "query":
            release = r["release"]
            assert (r["n"], r["shards"]) == (states[release]["n"], states[release]["shards"]), r
        elif r["kind"] == "loader":
            release = next((n for n, s in states.items() if s["keys"] == r["keys"]), None)
        else:  # verify, duckdb: the count tells the release (the two releases differ in size)
            release = next((n for n, s in states.items() if s["n"] == r["n"]), None)
        assert release in states, r
        seen.setdefault(r["kind"], set()).add(release)
    return seen


def test_readers_see_one_release_while_a_rebuild_publishes(first_release: dict[str, Path], tmp_path: Path) -> None:
    src, out = _copy(first_release, tmp_path)
    states = {1: _state(out)}
    proc, stop, log = _reader(out, tmp_path)
    try:
        _wait_for_reads(log, 4, proc)
        shutil.copytree(first_release["later"], src / SECOND)  # the rebuild adds an article
        started = time.time()
        summary = _build(src, out)
        published = time.time()
        _wait_for_reads(log, len(_reads(log)) + 8, proc)  # every kind of reader once more, after
        flips = _flip(out, proc, log)
    finally:
        stop.touch()
        proc.wait(timeout=60)
    assert summary.release == 2 and proc.returncode == 0, (tmp_path / "reader.err").read_text()
    states[2] = _state(out)
    assert states[2]["n"] > states[1]["n"] and states[2]["shards"] != states[1]["shards"]
    reads = _reads(log)
    seen = _check_reads(reads, states)
    assert all(seen[kind] == {1, 2} for kind in ("query", "verify", "loader", "duckdb")), seen
    during = [r for r in reads if r["t1"] > started and r["t0"] < published]
    assert during and flips > 20, "the reader read while the rebuild ran and while the pointer flipped"
    assert _state(f"{out}@1") == states[1] and verify_output(f"{out}@1") == ([], states[1]["n"])


def _flip(out: Path, proc: subprocess.Popen, log: Path) -> int:
    """Publish releases 1 and 2 in turn, as fast as publication goes, until every kind of reader has
    read a few more times: many swaps of the pointer in the middle of reads. Returns the swaps."""
    flips, target = 0, len(_reads(log)) + 12
    while len(_reads(log)) < target and proc.poll() is None:
        publish(str(out), 1 + flips % 2)
        flips += 1
    publish(str(out), 2)
    return flips


def _kill_at_random(cmd: list[str], out: Path, rng: random.Random, log: Path) -> str:
    """Start a build and SIGKILL it a random time after it began release 2's folder (or on its
    way there); what it had done when it died."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True)
    folder, delay = out / "releases" / "000002", rng.uniform(0.0, 1.0)
    while proc.poll() is None and not folder.exists():
        time.sleep(0.002)
    time.sleep(delay)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    if proc.returncode == 0:
        return "finished"
    done = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
    state = "published" if resolve(str(out)).number == 2 else "complete, unpublished" if "_complete.json" in done else ""
    return f"killed {delay:.2f} s in, {len(done)} files written" + (f" ({state})" if state else "")


def test_a_rebuild_killed_at_random_points_leaves_the_previous_release(first_release: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    src, out = _copy(first_release, tmp_path)
    before = _state(out)
    shutil.copytree(first_release["later"], src / SECOND)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(CONFIG))
    cmd = [sys.executable, "-m", "medcorpus.pipelines.cli", "build", "--config", str(cfg), "--source", f"local:{src}",
           "--out", str(out), "--workers", "1", "--no-progress"]
    seed = random.randrange(1 << 30)
    rng, outcomes = random.Random(seed), []
    for attempt in range(2):
        outcomes.append(_kill_at_random(cmd, out, rng, tmp_path / f"build{attempt}.log"))
        current = resolve(str(out)).number
        if outcomes[-1] == "finished" or current == 2:
            break
        assert current == 1, (seed, outcomes)  # the killed build published nothing
        assert _state(out) == before and verify_output(str(out)) == ([], before["n"]), (seed, outcomes)
    print(f"seed {seed}: {outcomes}")  # shown with -s, and with a failure below
    assert _build(src, out).release in (2, 3)  # the rerun publishes (3 when a kill landed after publishing 2)
    after = _state(out)
    assert after["n"] > before["n"] and verify_output(str(out)) == ([], after["n"]), (seed, outcomes)
    older = resolve(str(out)).number - 1  # kept (keep_releases: 2), and what it was when it was current
    assert _state(f"{out}@{older}") == (before if older == 1 else after), (seed, outcomes)


def _flatten(out: Path) -> None:
    """Rewrite ``out`` as an output from before release folders: release 1's files at its top."""
    release = release_dir(out)
    for item in release.iterdir():
        shutil.move(str(item), out / item.name)
    for name in ("current", "current.json", "release_log.jsonl"):
        (out / name).unlink()
    shutil.rmtree(out / "releases")


def test_a_flat_output_migrates_and_keep_releases_removes_the_oldest(first_release: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    src, out = _copy(first_release, tmp_path)
    _flatten(out)
    flat = _state(out)
    assert resolve(str(out)).flat and verify_output(str(out)) == ([], flat["n"])
    shutil.copytree(first_release["later"], src / SECOND)
    # an incremental build of the new article alone: the flat release's units are carried on
    second = _build(src, out, selection=Selection(ids=frozenset({SECOND})))
    assert second.release == 2 and second.mode == "incremental"
    assert set(flat["keys"]) < set(_state(out)["keys"]) and verify_output(str(out))[0] == []
    assert resolve(f"{out}@1").flat and _state(f"{out}@1") == flat  # the flat release, still readable
    third = _build(src, out)  # nothing changed: every shard is release 2's file, linked
    assert third.release == 3 and third.removed_releases == [1]  # keep_releases: 2
    assert f"published: {out}/releases/000003 is current" in "\n".join(summary_lines(third))
    assert "removed release 1" in "\n".join(summary_lines(third))
    two, three = release_dir(f"{out}@2"), release_dir(out)
    for tar in three.glob("shards/*/*.tar"):
        assert tar.stat().st_ino == (two / tar.relative_to(three)).stat().st_ino
    assert not (out / "manifest").exists() and not (out / "shards").exists() and not (out / "_complete.json").exists()
    assert _state(f"{out}@2") == _state(out)
    assert resolve(str(out / "current")).url == str(three)  # pinned: not a path through the symlink
    with pytest.raises(Exception, match="holds no release 1 \\(releases kept: 2, 3\\)"):
        query(f"{out}@1", "SELECT 1")
    log = [json.loads(line) for line in (out / "release_log.jsonl").read_text().splitlines()]
    assert [entry["release"] for entry in log] == [2, 3]
    assert log[-1]["removed"] == [{"release": 1, "reason": "older than the 2 releases kept (output.keep_releases)"}]
