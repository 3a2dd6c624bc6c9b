"""Faults on every runner: records that raise in any stage become error rows and the run completes;
a Ray worker killed mid-build changes nothing in the output; a build killed mid-way resumes (on Ray
and Beam as on the local runner, tests/test_archives_resume.py) without duplicate or missing samples."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import staged_units, tree_bytes
from testdata import ARTICLES, REPO, fault_articles

from medcorpus.manifests.query import query
from medcorpus.manifests.verify import verify_output
from medcorpus.pipelines.build import build
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.runners import make_runner
from medcorpus.pipelines.sources.local import LocalSource

CFG = REPO / "dataflow.yaml"


def test_a_record_that_raises_in_any_stage_is_an_error_row_on_every_runner(tmp_path: Path, ray_cluster) -> None:
    src = fault_articles(tmp_path / "in")
    cfg = load_config(CFG)
    outs = {}
    for name, workers in (("local", 1), ("ray", 2), ("beam", 1)):
        outs[name] = tmp_path / name
        summary = build(cfg, LocalSource(str(src)), make_runner(name, workers, config=cfg), str(outs[name]),
                        progress=False)
        assert summary.units == 5 and summary.samples > 0, name
        _, rows = query(str(outs[name]), "SELECT stage, reason, count(*) FROM errors GROUP BY ALL ORDER BY ALL")
        assert rows == [("fetch", "xml_not_found", 1), ("image", "image_undecodable", 3),
                        ("parse", "xml_malformed", 1)], name
        assert verify_output(str(outs[name]))[0] == []
    assert tree_bytes(outs["ray"]) == tree_bytes(outs["local"])
    assert tree_bytes(outs["beam"]) == tree_bytes(outs["local"])


def test_killing_a_ray_worker_mid_build_still_gives_the_local_output(tmp_path: Path, ray_cluster,
                                                                     sample_build: Path) -> None:
    out = tmp_path / "out"
    staged = out / "_work" / "staging"
    cfg = load_config(CFG)
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["summary"] = build(cfg, LocalSource(str(ARTICLES)), make_runner("ray", 2, config=cfg), str(out),
                                      progress=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    killed, staged_at_kill = None, -1
    deadline = time.time() + 180
    while thread.is_alive() and time.time() < deadline and killed is None:
        workers = ray_cluster.worker_pids("ray::UnitWorker")
        n = staged_units(staged)
        if workers and n >= 1:
            os.kill(workers[0], signal.SIGKILL)
            killed, staged_at_kill = workers[0], n
        time.sleep(0.02)
    thread.join(300)
    assert "error" not in result, result.get("error")
    assert killed is not None and staged_at_kill < 18, "a worker should have been killed while units were left"
    assert tree_bytes(out) == tree_bytes(sample_build)
    assert result["summary"].samples == len(query(str(out), "SELECT key FROM samples")[1])


@pytest.mark.parametrize("runner_name,workers", [("ray", 2), ("beam", 1)])
def test_a_killed_build_resumes_without_duplicates_or_gaps(runner_name: str, workers: int, tmp_path: Path,
                                                           ray_cluster, sample_build: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "medcorpus.pipelines.cli", "build", "--config", str(CFG), "--source",
           f"local:{ARTICLES}", "--runner", runner_name, "--workers", str(workers), "--no-progress", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "RAY_ADDRESS": ray_cluster.address}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    staged = out / "_work" / "staging"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and staged_units(staged) < 3:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, and Beam's SDK worker processes with it
    proc.wait()
    done_before = staged_units(staged)
    assert 3 <= done_before < 18, "the build should have been killed part-way"
    assert not (out / "current.json").exists()  # the killed build published nothing
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reused = int(resumed.stderr.split(" reused")[0].rsplit("(", 1)[1])
    assert reused >= done_before  # units staged before the kill are not processed again
    assert tree_bytes(out) == tree_bytes(sample_build)
    _, [(n, distinct)] = query(str(out), "SELECT count(*), count(DISTINCT key) FROM samples")
    assert n == distinct == len(query(str(sample_build), "SELECT key FROM samples")[1])
