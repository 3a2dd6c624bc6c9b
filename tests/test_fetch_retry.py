"""Transient fetch failures are staged but not final: against the loopback S3 server (moto behind the
fault proxy), a 503 SlowDown outlasting the retries and a 403 are recorded with their own reasons,
the next build fetches those units again, a unit failing on every run becomes permanent after
TRANSIENT_RUNS runs, and a build whose units all failed exits 1."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_s3 import Fault, FaultProxy, SeededPmcBucket

from medcorpus.manifests.query import query
from medcorpus.pipelines.build import BuildSummary, build
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources import Selection, make_source
from medcorpus.pipelines.staging import TRANSIENT_RUNS

CLI = str(Path(sys.executable).with_name("medcorpus"))


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text("stages: [fetch, parse, image]\n")
    return path


def _gets(proxy: FaultProxy, key: str) -> int:
    return len(proxy.requests("GET", contains=key))


def _metadata_get(pmcid: str):  # noqa: ANN202
    return lambda method, path: method == "GET" and path.endswith(f"metadata/{pmcid}.1.json")


def _build(tmp_path: Path, cfg: Path, proxy: FaultProxy, ids: frozenset[str], **source_kw) -> BuildSummary:  # noqa: ANN003
    src = make_source("pmc-cloud", cache_dir=str(tmp_path / "cache"), endpoint_url=proxy.url, transport="https",
                      ids=ids, retry_base_s=0.001, retry_max_s=0.005, seed=0, **source_kw)
    return build(load_config(cfg), src, LocalRunner(1), str(tmp_path / "out"), selection=Selection(ids=ids),
                 progress=False)


def _errors(tmp_path: Path) -> list[tuple[str, str, str]]:
    _, rows = query(str(tmp_path / "out"), "SELECT input, reason, detail FROM errors "
                                           "WHERE reason IN ('fetch_transient', 'forbidden') ORDER BY input")
    return rows


def test_transient_and_forbidden_fetches_are_retried_by_the_next_build(
        tmp_path: Path, cfg: Path, pmc_bucket: SeededPmcBucket, fault_proxy: FaultProxy) -> None:
    slow, denied, fine = (pmc_bucket.cases[c] for c in ("noncomm", "other_license", "ten_versions"))
    ids = frozenset({slow, denied, fine})
    fault_proxy.faults += [Fault("slowdown", 1000, _metadata_get(slow)), Fault("403", 1000, _metadata_get(denied))]

    first = _build(tmp_path, cfg, fault_proxy, ids)
    assert (first.units, first.articles, first.units_failed, first.units_retry) == (3, 1, 2, 2)
    # (the PLOS article in ten_versions has a figure without media: a permanent image_not_found)
    assert first.errors_by_reason == {"fetch_transient": 1, "forbidden": 1, "image_not_found": 1}
    assert not first.all_failed
    (in_s, r_s, d_s), (in_d, r_d, d_d) = _errors(tmp_path)  # PMC9000006, PMC9000007
    assert (in_d, r_d) == (f"pmc-cloud:{denied}", "forbidden") and "403 AccessDenied" in d_d
    assert (in_s, r_s) == (f"pmc-cloud:{slow}", "fetch_transient") and "gave up after 6 attempts" in d_s
    assert d_s.endswith(f"[run 1 of {TRANSIENT_RUNS}; the next build retries it]")
    assert _gets(fault_proxy, f"metadata/{slow}.1.json") == 6 and _gets(fault_proxy, f"metadata/{denied}.1.json") == 1

    fault_proxy.reset()  # the server recovers
    second = _build(tmp_path, cfg, fault_proxy, ids)
    assert (second.units, second.units_reused, second.articles) == (3, 1, 3)
    # the bioRxiv preprint in noncomm has 9 figures and no media at all
    assert second.errors_by_reason == {"image_not_found": 1 + 9} and (second.units_failed, second.units_retry) == (0, 0)
    assert _gets(fault_proxy, f"metadata/{slow}.1.json") == _gets(fault_proxy, f"metadata/{denied}.1.json") == 1
    _, rows = query(str(tmp_path / "out"), "SELECT regexp_extract(source_url, 'PMC[0-9]+') u FROM articles ORDER BY u")
    assert rows == sorted([(slow,), (denied,), (fine,)])

    fault_proxy.reset()
    third = _build(tmp_path, cfg, fault_proxy, ids)
    assert third.units_reused == 3 and third.articles == 3
    assert _gets(fault_proxy, "metadata/") == 0  # done units are not fetched again


def test_a_unit_failing_on_every_run_becomes_permanent_after_the_bound(
        tmp_path: Path, cfg: Path, pmc_bucket: SeededPmcBucket, fault_proxy: FaultProxy) -> None:
    slow = pmc_bucket.cases["noncomm"]
    ids = frozenset({slow})
    fault_proxy.faults.append(Fault("500", 10_000, _metadata_get(slow)))
    for run in range(1, TRANSIENT_RUNS + 1):
        summary = _build(tmp_path, cfg, fault_proxy, ids, max_retries=0)
        assert summary.units_reused == 0 and summary.all_failed
        assert summary.units_retry == (1 if run < TRANSIENT_RUNS else 0)
        [(_, reason, detail)] = _errors(tmp_path)
        assert reason == "fetch_transient" and "500 InternalError" in detail
    assert detail.endswith(f"[failed on {TRANSIENT_RUNS} runs; permanent until the source changes]")
    assert _gets(fault_proxy, f"metadata/{slow}.1.json") == TRANSIENT_RUNS

    fault_proxy.faults.clear()  # even once the server recovers, the permanent error stays (same source)
    summary = _build(tmp_path, cfg, fault_proxy, ids, max_retries=0)
    assert summary.units_reused == 1 and summary.errors_by_reason == {"fetch_transient": 1}
    assert _gets(fault_proxy, f"metadata/{slow}.1.json") == TRANSIENT_RUNS


def test_a_build_whose_units_all_failed_exits_1(tmp_path: Path, cfg: Path, pmc_bucket: SeededPmcBucket,
                                                 fault_proxy: FaultProxy) -> None:
    a, b = pmc_bucket.cases["noncomm"], pmc_bucket.cases["other_license"]
    fault_proxy.faults += [Fault("403", 100, _metadata_get(a)), Fault("403", 100, _metadata_get(b))]
    args = [CLI, "build", "--config", str(cfg), "--source", "pmc-cloud", "--endpoint", fault_proxy.url,
            "--transport", "https", "--pmcids", f"{a},{b}", "--out", str(tmp_path / "out"), "--workers", "1",
            "--no-progress"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert "  forbidden: 2" in lines and "failed units 2 of 2; 2 retried by the next build (5xx, timeouts, 403)" in lines
    assert lines[-1] == "build failed: all 2 units failed (see the errors table)"
    fault_proxy.faults.clear()
    again = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "articles 2 " in again.stderr
