"""Runner selection, settings and the Dataflow packaging, without starting any engine."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from testdata import ARTICLES, REPO, release_dir

from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.runners import Job, LocalRunner, chunks, make_runner, parse_beam_options, peak_rss
from medcorpus.pipelines.sources.local import LocalSource
from medcorpus.pipelines.staging import unit_token


def test_make_runner_knows_local_ray_and_beam() -> None:
    cfg = load_config(REPO / "dataflow.yaml")
    assert isinstance(make_runner("local", 2, config=cfg), LocalRunner)
    ray_runner = make_runner("ray", 3, config=cfg, ray_address="127.0.0.1:1234")
    assert (ray_runner.name, ray_runner.workers, ray_runner.address) == ("ray", 3, "127.0.0.1:1234")
    assert ray_runner.settings["units"] == {"num_cpus": 1, "num_gpus": 0}
    beam_runner = make_runner("beam", 2, config=cfg, beam_options={"runner": "FlinkRunner", "flink_master": "h:8081"})
    assert beam_runner.name == "beam" and beam_runner.options == {"runner": "FlinkRunner", "flink_master": "h:8081"}
    with pytest.raises(ValueError, match="known: local, ray, beam"):
        make_runner("spark", 1)


def test_units_travel_in_batches_that_keep_every_worker_busy() -> None:
    """Ray pays per task: units go in batches, in order, about 8 per worker, never more than 32 units."""
    units = list(range(126))
    for workers, size in ((1, 16), (2, 8), (8, 2), (64, 1)):
        batches = chunks(units, workers)
        assert [u for b in batches for u in b] == units and {len(b) for b in batches[:-1]} == {size}
    assert len(chunks(list(range(10_000)), 2)[0]) == 32
    assert chunks(list(range(3)), 2) == [[0], [1], [2]] and chunks([], 2) == []


def test_pool_workers_report_their_own_peak_memory(tmp_path: Path) -> None:
    """Every worker reports its process's peak RSS (the build summary's ``worker peak memory`` is the
    largest): the kernel's high-water mark of the process, in bytes."""
    cfg = load_config(REPO / "dataflow.yaml")
    runner = LocalRunner(2)
    job = Job(type(cfg)(stages=("fetch", "parse", "image")), None, str(tmp_path / "s"), str(tmp_path / "o"))  # type: ignore[arg-type]
    try:
        reported = list(runner._map(job, peak_rss, [(), ()]))
    finally:
        runner.close()
    assert len(reported) == 2 and all(20 * 2**20 < rss < 1.5 * 2**30 for rss in reported)
    high_water = int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())[1]) * 1024
    assert abs(peak_rss() - high_water) < 16 * 2**20


def test_the_local_pool_holds_a_few_calls_per_worker_not_the_whole_list(tmp_path: Path) -> None:
    """6 M units of PMC must not sit in the driver as 6 M queued calls: calls are submitted as earlier
    ones finish, at most ``IN_FLIGHT`` per worker ahead of the results handed back."""
    from medcorpus.pipelines import runners

    cfg = load_config(REPO / "dataflow.yaml")
    runner = LocalRunner(2)
    job = Job(type(cfg)(stages=("fetch", "parse")), None, str(tmp_path / "s"), str(tmp_path / "o"))  # type: ignore[arg-type]
    class Counting:
        def __init__(self, pool: Any) -> None:
            self.pool, self.submitted = pool, 0

        def submit(self, *args: Any) -> Any:
            self.submitted += 1
            return self.pool.submit(*args)

    pool = Counting(runner._executor(job))
    runner._executor = lambda _job: pool  # type: ignore[method-assign]
    try:
        ahead = [pool.submitted - i for i, _ in enumerate(runner._map(job, peak_rss, [()] * 40), 1)]
    finally:
        runner.close()
    assert pool.submitted == 40 and max(ahead) <= 2 * runners.IN_FLIGHT * 2  # a window, and one refilled


def test_ray_settings_merge_per_step_and_reject_unknown_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from medcorpus.pipelines.runner_ray import RayRunner

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    r = RayRunner(2, settings={"units": {"num_gpus": 1}, "address": "auto"})
    assert r.settings["units"] == {"num_cpus": 1, "num_gpus": 1} and r.address == "10.0.0.1:6379"
    assert RayRunner(2, address="127.0.0.1:1", settings={}).address == "127.0.0.1:1"  # --ray-address wins
    with pytest.raises(ValueError, match="unknown ray settings"):
        RayRunner(1, settings={"gpus": 1})


def test_beam_options_pass_through_and_local_runs_never_use_prism() -> None:
    from medcorpus.pipelines.runner_beam import pipeline_options

    assert parse_beam_options(["runner=SparkRunner", "--spark_master_url=spark://h:7077",
                               "experiments=a", "experiments=b"]) == {
        "runner": "SparkRunner", "spark_master_url": "spark://h:7077", "experiments": ["a", "b"]}
    assert parse_beam_options(["no_auth", "dry_run=True"]) == {"no_auth": True, "dry_run": "True"}
    with pytest.raises(ValueError):
        parse_beam_options(["=x"])
    local = pipeline_options({"runner": "DirectRunner"}, 2).get_all_options()
    assert local["runner"] is None  # the runner object is FnApiRunner, chosen in BeamRunner.pipeline
    assert (local["direct_num_workers"], local["direct_running_mode"]) == (2, "multi_processing")
    flink = pipeline_options({"runner": "FlinkRunner", "flink_master": "h:8081", "parallelism": 4}, 2).get_all_options()
    assert (flink["runner"], flink["flink_master"], flink["parallelism"]) == ("FlinkRunner", "h:8081", 4)


def test_runner_settings_do_not_change_the_config_hash() -> None:
    base = load_config(REPO / "dataflow.yaml")
    dataflow = load_config(REPO / "dataflow.yaml", "dataflow")
    assert dataflow.runner == "beam" and dataflow.beam["options"]["runner"] == "DataflowRunner"
    assert dataflow.config_hash() == base.config_hash()


def test_a_local_build_never_imports_ray_or_beam(tmp_path: Path) -> None:
    code = ("import sys\nfrom medcorpus.pipelines.cli import main\nsys.argv = ['medcorpus', 'build', '--source', "
            f"'local:{ARTICLES}', '--out', {str(tmp_path / 'out')!r}, '--limit', '1', '--workers', '1', "
            "'--no-progress']\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'apache_beam')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert (release_dir(tmp_path / "out") / "manifest" / "samples").is_dir()


def test_the_cli_takes_runner_options(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medcorpus.pipelines.cli import app

    result = CliRunner().invoke(app, ["build", "--help"], terminal_width=200)
    for option in ("--runner", "--ray-address", "--beam-option"):
        assert option in result.output
    bad = CliRunner().invoke(app, ["build", "--source", f"local:{ARTICLES}", "--out", str(tmp_path), "--runner", "x"])
    assert bad.exit_code != 0


@pytest.fixture(scope="module")
def worker_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel Dataflow workers install, built the way the README says, from a clean copy of the
    tracked files (the checkout stays untouched)."""
    tmp = tmp_path_factory.mktemp("wheel")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    src = tmp / "src"
    for rel in filter(None, files.decode().split("\0")):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                    "--disable-pip-version-check", "-w", str(tmp / "dist")], cwd=src, check=True, timeout=300)
    [wheel] = (tmp / "dist").glob("medcorpus-*.whl")
    return wheel


def test_the_worker_wheel_holds_the_whole_package(worker_wheel: Path, tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(worker_wheel).namelist())
    for rel in ("medcorpus/__init__.py", "medcorpus/transforms/jats.py", "medcorpus/transforms/images.py",
                "medcorpus/pipelines/graph.py", "medcorpus/pipelines/runners.py", "medcorpus/pipelines/runner_beam.py",
                "medcorpus/pipelines/runner_ray.py", "medcorpus/pipelines/sources/local.py",
                "medcorpus/schemas/manifest.py", "medcorpus/manifests/shards.py"):
        assert rel in names, rel
    # every module of the checkout is in it, under medcorpus/<folder>/
    for folder in ("transforms", "pipelines", "schemas", "manifests"):
        for py in (REPO / folder).rglob("*.py"):
            assert f"medcorpus/{py.relative_to(REPO).as_posix()}" in names, py
    for data in (REPO / "transforms" / "data").glob("*"):  # package data the transforms read at run time
        if data.suffix in (".tsv", ".txt", ".md"):
            assert f"medcorpus/transforms/data/{data.name}" in names, data
    assert not any(n.startswith(("tests/", "bench/", "transforms/")) for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = zipfile.ZipFile(worker_wheel).read(meta).decode()
    assert "Requires-Dist: pyarrow" in requires and "Requires-Dist: webdataset" in requires
    # installed on its own (as on a worker), the package imports and runs a stage without the checkout
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--disable-pip-version-check",
                    "--target", str(target), str(worker_wheel)], check=True, timeout=300)
    code = ("import sys; sys.path = [p for p in sys.path if 'wt-' not in p and p not in ('', '.')]\n"
            f"sys.path.insert(0, {str(target)!r})\n"
            "import medcorpus.pipelines.graph as g, medcorpus.pipelines.runners as r\n"
            "from medcorpus.transforms.jats import parse_article\n"
            "print(g.__file__); print(r.__file__)")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert all(line.startswith(str(target)) for line in out.stdout.split()), out.stdout


def test_a_dataflow_pipeline_builds_its_graph_without_reaching_google(worker_wheel: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The dataflow profile's options, with the wheel as extra package, through DataflowRunner in dry-run
    mode: the job graph and the worker environment are built; nothing is submitted. Any connection off
    loopback fails at once instead of waiting on a network that is not there."""
    real_connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: object) -> object:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not str(address[0]).startswith(("127.", "::1")):
            raise OSError(f"test: no network ({address})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    cfg = load_config(REPO / "dataflow.yaml", "dataflow")
    runner = make_runner(cfg.runner, cfg.workers, config=cfg, beam_options=parse_beam_options([
        "project=medcorpus-test", "temp_location=gs://medcorpus-test/tmp",
        "staging_location=gs://medcorpus-test/staging", f"extra_packages={worker_wheel}",
        "dry_run=True", "no_auth", "sdk_location=container"]))
    source = LocalSource(str(ARTICLES))
    job = Job(cfg, source, "gs://medcorpus-test/work/staging", "gs://medcorpus-test/out")
    units = [(u, unit_token(u, cfg.config_hash(), "test")) for u in source.list_units()]
    pipeline = runner.pipeline(job, "units", units)
    opts = pipeline.options.get_all_options()
    assert (opts["runner"], opts["project"], opts["region"]) == ("DataflowRunner", "medcorpus-test", "us-central1")
    assert (opts["machine_type"], opts["max_num_workers"]) == ("n2-standard-8", 100)
    assert opts["extra_packages"] == [str(worker_wheel)] and opts["job_name"] == "medcorpus-build-units"
    result = pipeline.run()
    result.wait_until_finish()
    proto = pipeline.runner.proto_pipeline
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert {"units/list", "units/spread", "units/run"} <= names
    staged = [a for env in proto.components.environments.values() for a in env.dependencies]
    assert any(worker_wheel.name in str(a.role_payload) for a in staged), "the wheel is a worker dependency"
    assert result.job.proto.name == "medcorpus-build-units"


def test_staging_on_an_fsspec_url_gives_the_same_output(tmp_path: Path, sample_build: Path) -> None:
    """Staging at a URL (here fsspec's in-memory filesystem; gs:// or s3:// on a real cluster, where
    workers share no disk) stages, resumes and assembles exactly as in a local folder."""
    import fsspec
    from conftest import tree_bytes

    from medcorpus.pipelines.build import build

    cfg = load_config(REPO / "dataflow.yaml")
    work = f"memory://medcorpus-test-{os.getpid()}/work"
    first = build(cfg, LocalSource(str(ARTICLES)), LocalRunner(1), str(tmp_path / "out"), work_dir=work, progress=False)
    fs = fsspec.filesystem("memory")
    assert len(fs.glob(f"{work[len('memory://'):]}/staging/*/*.meta")) == first.units == 18
    assert not (tmp_path / "out" / "_work" / "staging").exists()
    assert tree_bytes(tmp_path / "out") == tree_bytes(sample_build)
    again = build(cfg, LocalSource(str(ARTICLES)), LocalRunner(1), str(tmp_path / "out"), work_dir=work, progress=False)
    assert again.units_reused == 18 and tree_bytes(tmp_path / "out") == tree_bytes(sample_build)
    fs.rm(work[len("memory://"):], recursive=True)
