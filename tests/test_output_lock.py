"""The output folder's write lock: concurrent CLI builds into one --out, --wait, a SIGKILLed holder,
and the lease object on an s3:// output (a real S3 server, moto, on loopback)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest
from testdata import REPO, copy_articles

from medcorpus.manifests.query import query
from medcorpus.manifests.verify import verify_output
from medcorpus.pipelines.build import build
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.outlock import LOCK_NAME, Holder, OutputLock, OutputLocked
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources.local import LocalSource

CLI = str(Path(sys.executable).with_name("medcorpus"))
ARTICLES = ["pone.0000010", "elife-43154-v2"]  # 2 articles, 6 figures, all with images
SAMPLES = 6


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    """Two real articles and a config without the model stages (a build takes about a second)."""
    cfg = tmp_path / "small.yaml"
    cfg.write_text("stages: [fetch, parse, image]\n")
    return copy_articles(tmp_path / "in", ARTICLES), cfg


def _cli(src: Path, cfg: Path, out: Path, *extra: str) -> list[str]:
    return [CLI, "build", "--config", str(cfg), "--source", f"local:{src}", "--out", str(out),
            "--workers", "1", "--no-progress", *extra]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True)


def _wait_until(pred, what: str, timeout: float = 60.0) -> None:  # noqa: ANN001
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _holder_pid(out: Path) -> int | None:
    try:
        holder = Holder.parse((out / LOCK_NAME).read_bytes())
    except FileNotFoundError:
        return None
    return holder.pid if holder else None


def _complete(out: Path) -> None:
    problems, checked = verify_output(str(out))
    assert problems == [] and checked == SAMPLES
    _, [(articles, keys)] = query(str(out), "SELECT (SELECT count(*) FROM articles), count(DISTINCT key) FROM samples")
    assert (articles, keys) == (2, SAMPLES)


def _first_build_paused(small: tuple[Path, Path], out: Path, tmp_path: Path) -> subprocess.Popen:
    """Build A, stopped (SIGSTOP) right after it took the lock: a build that holds OUT for as long as
    the test needs, without timing guesses."""
    src, cfg = small
    a = _start(_cli(src, cfg, out), tmp_path / "a.log")
    _wait_until(lambda: _holder_pid(out) == a.pid or a.poll() is not None, "build A to take the lock")
    assert a.poll() is None, (tmp_path / "a.log").read_text()
    os.kill(a.pid, signal.SIGSTOP)
    return a


def test_a_second_build_into_the_same_out_fails_at_once_naming_the_holder(small, tmp_path: Path) -> None:
    src, cfg = small
    out = tmp_path / "out"
    a = _first_build_paused(small, out, tmp_path)
    try:
        b = subprocess.run(_cli(src, cfg, out), capture_output=True, text=True, timeout=120)
        assert b.returncode == 2
        lines = b.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in b.stderr
        assert f"is locked by another build (pid {a.pid} on " in lines[0] and "--wait" in lines[0]
        assert str(out) in lines[0] and "medcorpus build" in lines[0]
        assert not list(out.rglob("manifest"))  # B wrote nothing
        t = subprocess.run(_cli(src, cfg, out, "--wait-timeout", "0.5"), capture_output=True, text=True, timeout=120)
        assert t.returncode == 2 and "still locked after waiting" in t.stderr and "Traceback" not in t.stderr
    finally:
        os.kill(a.pid, signal.SIGCONT)
    assert a.wait(timeout=120) == 0, (tmp_path / "a.log").read_text()
    _complete(out)
    assert (out / LOCK_NAME).read_bytes() == b""  # released


def test_wait_makes_the_second_build_wait_then_succeed(small, tmp_path: Path) -> None:
    src, cfg = small
    out = tmp_path / "out"
    a = _first_build_paused(small, out, tmp_path)
    b_log = tmp_path / "b.log"
    try:
        b = _start(_cli(src, cfg, out, "--wait"), b_log)
        _wait_until(lambda: "waiting for it" in b_log.read_text() or b.poll() is not None, "build B to wait")
        assert b.poll() is None and f"pid {a.pid}" in b_log.read_text()
    finally:
        os.kill(a.pid, signal.SIGCONT)
    assert a.wait(timeout=120) == 0
    assert b.wait(timeout=120) == 0, b_log.read_text()
    assert "units 2 (2 reused from earlier runs)" in b_log.read_text()  # B ran after A, on A's staged units
    _complete(out)


def test_the_lock_of_a_sigkilled_build_is_taken_over(small, tmp_path: Path) -> None:
    src, cfg = small
    out = tmp_path / "out"
    a = _first_build_paused(small, out, tmp_path)
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(timeout=30)
    assert _holder_pid(out) == a.pid  # the file still names the dead build; its flock is gone
    b = subprocess.run(_cli(src, cfg, out), capture_output=True, text=True, timeout=120)
    assert b.returncode == 0, b.stderr
    said = f"took over the stale lock of {out} left by pid {a.pid} on "
    assert "".join(said.split()) in "".join(b.stderr.split())  # the console wraps lines, at a space or mid-path
    _complete(out)


def test_lock_in_process_blocks_a_build_and_is_released(small, tmp_path: Path) -> None:
    src, cfg = small
    out = tmp_path / "out"
    with OutputLock(str(out), command="test holder") as held:
        with pytest.raises(OutputLocked, match=f"pid {os.getpid()} on .*test holder") as info:
            build(load_config(cfg), LocalSource(str(src)), LocalRunner(1), str(out), progress=False)
        assert info.value.holder == held.holder
    build(load_config(cfg), LocalSource(str(src)), LocalRunner(1), str(out), progress=False)
    _complete(out)


# --- object stores: the lease object ---------------------------------------------------------------


def test_lease_on_s3_blocks_refreshes_and_expires(small, tmp_path: Path, s3_output_bucket) -> None:  # noqa: ANN001
    src, cfg = small
    url = f"{s3_output_bucket.url}/corpus"
    fs = fsspec.filesystem("s3", **s3_output_bucket.storage_options)
    lease_key = f"{s3_output_bucket.name}/corpus/{LOCK_NAME}"
    held = OutputLock(url, command="holder one", lease_s=1.2)
    held.acquire()
    doc = json.loads(fs.cat_file(lease_key))
    assert doc["pid"] == os.getpid() and doc["command"] == "holder one" and doc["expires"] > time.time()
    time.sleep(2.0)  # longer than the lease: only the refresh thread keeps it
    with pytest.raises(OutputLocked, match="holder one"):
        build(load_config(cfg), LocalSource(str(src)), LocalRunner(1), url, work_dir=str(tmp_path / "w"),
              progress=False)
    held.release()
    assert not fs.exists(lease_key)

    # a lease left by a killed build (no refresh) is taken over once it has expired
    stale = Holder("gone-host", 4242, "2026-01-01T00:00:00+00:00", "medcorpus build (killed)", "t0", time.time() - 1)
    fs.pipe_file(lease_key, stale.to_bytes())
    notes: list[str] = []
    with OutputLock(url, notify=notes.append):
        assert json.loads(fs.cat_file(lease_key))["pid"] == os.getpid()
    assert notes == [f"took over the stale lock of {url} left by {stale.describe()} (that build is gone)"]

    # a build into the bucket holds the lease while it runs and removes it at the end
    summary = build(load_config(cfg), LocalSource(str(src)), LocalRunner(1), url, work_dir=str(tmp_path / "w"),
                    progress=False)
    assert summary.samples == SAMPLES and not fs.exists(lease_key)
    assert verify_output(url) == ([], SAMPLES)


def test_two_lease_takers_on_s3_cannot_both_win(s3_output_bucket) -> None:  # noqa: ANN001
    url = f"{s3_output_bucket.url}/race"
    first, second = OutputLock(url, command="first"), OutputLock(url, command="second")
    # both saw no lease object; the conditional create lets only one of them in
    assert first._impl._put(first._impl._mine(), if_none_match=True)
    assert not second._impl._put(second._impl._mine(), if_none_match=True)
    # a takeover conditioned on an old ETag loses to a writer that came first
    found = first._impl._read()
    assert found is not None and found[0].command == "first"
    assert first._impl._put(first._impl._mine(), if_match=found[1])
    assert not second._impl._put(second._impl._mine(), if_match=found[1])
