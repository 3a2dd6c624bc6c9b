"""A local build stopped from outside: its pool workers end with it, and the same command resumes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from conftest import staged_units, tree_bytes
from testdata import ARTICLES, REPO

CMD = [sys.executable, "-m", "medcorpus.pipelines.cli", "build", "--config", str(REPO / "dataflow.yaml"),
       "--source", f"local:{ARTICLES}", "--workers", "2", "--no-progress"]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _start_and_stop_part_way(out: Path, sig: int) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """Start a build, wait until some units are staged, note its processes, then send ``sig``."""
    proc = subprocess.Popen([*CMD, "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    staged = out / "_work" / "staging"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and staged_units(staged) < 2:
        time.sleep(0.01)
    assert proc.poll() is None, "the build ended before it could be stopped"
    spawned = psutil.Process(proc.pid).children(recursive=True)  # forkserver, its workers, resource tracker
    assert len(spawned) >= 3
    proc.send_signal(sig)
    return proc, spawned


def _wait_gone(procs: list[psutil.Process], timeout: float = 20) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_a_build_killed_with_sigkill_leaves_no_worker_behind(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc, spawned = _start_and_stop_part_way(out, signal.SIGKILL)
    proc.wait()
    left = _wait_gone(spawned)
    for p in left:
        p.kill()
    assert left == [], "pool workers outlived the build they belonged to"


def test_sigterm_stops_a_build_cleanly_and_the_same_command_resumes(tmp_path: Path, sample_build: Path) -> None:
    out = tmp_path / "out"
    proc, spawned = _start_and_stop_part_way(out, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert _wait_gone(spawned, timeout=5) == []
    assert not (out / "current.json").exists()  # nothing was published
    done_before = staged_units(out / "_work" / "staging")
    resumed = subprocess.run([*CMD, "--out", str(out)], env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"({done_before} reused" in resumed.stderr
    assert tree_bytes(out) == tree_bytes(sample_build)
