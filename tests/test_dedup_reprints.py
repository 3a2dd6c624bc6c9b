"""Deduplication of a reprinted article never loses a distinct sample.

Three real shared articles plus a reprint of elife-46793-v1: the same article under new ids with
every figure resized to 0.8x and saved as JPEG quality 60 (the reprint is synthetic; see
bench/reprints.py). Built with the default dataflow.yaml. Duplicates must point at their own
counterpart, no sample of the original articles may go, and look-alike panels (fig9s1) stay.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from testdata import ARTICLES, REPO

from bench.reprints import SCENARIOS, counterpart, is_panel_key, make_reprint, panel_counterparts
from medcorpus.manifests.query import query
from medcorpus.manifests.verify import verify_output
from medcorpus.pipelines import assemble
from medcorpus.pipelines import dedup as dedup_module
from medcorpus.pipelines.build import build
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.dedup import dedup
from medcorpus.pipelines.runners import Job, LocalRunner, make_runner
from medcorpus.pipelines.sources.local import LocalSource
from medcorpus.pipelines.staging import Staging
from medcorpus.transforms.dedup_clusters import dedup_local, merged

ORIGINALS = ["elife-46793-v1", "elife-52882-v2", "elife-43154-v2"]
REPRINT = next(s for s in SCENARIOS if s.name == "reprint_0.8_q60")


@pytest.fixture(scope="module")
def reprint_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reprint")
    src = root / "in"
    src.mkdir()
    for name in ORIGINALS:
        (src / name).symlink_to(ARTICLES / name)
    make_reprint(ARTICLES / "elife-46793-v1", src / "reprint-elife-46793-v1", REPRINT)
    out = root / "out"
    build(load_config(REPO / "dataflow.yaml"), LocalSource(str(src)), LocalRunner(2), str(out), progress=False)
    return out


def _dedup_drops(out: Path) -> dict[str, str]:
    _, rows = query(str(out), "SELECT key, duplicate_of FROM dropped WHERE stage = 'dedup'")
    return dict(rows)


def test_every_duplicate_points_at_its_own_counterpart(reprint_build: Path) -> None:
    drops = _dedup_drops(reprint_build)
    _, kept = query(str(reprint_build), "SELECT key FROM samples")
    kept_keys = {k for (k,) in kept}
    same_region = panel_counterparts(reprint_build)
    truth = {k: same_region.get(k) if is_panel_key(k) else counterpart(k) for k in kept_keys | set(drops)}
    wrong = {k: v for k, v in drops.items() if v != truth[k]}
    lost = [k for k in drops if not k.startswith("reprint-")]
    assert wrong == {} and lost == []
    with_counterpart = [k for k in sorted(truth) if k.startswith("reprint-") and truth[k] in kept_keys]
    joined = {k for k in with_counterpart if drops.get(k) == truth[k]}
    figures = [k for k in with_counterpart if not is_panel_key(k)]
    panels = [k for k in with_counterpart if k not in figures]
    relabelled = [k for k in panels if truth[k] != counterpart(k)]
    # measured: every figure, and 81 of the 98 panels that the resized figures were cut into alike,
    # each carrying its original's label (a grid lettered down its columns, fig9-figsupp2, is
    # labelled by the letters read on the reprint, not in row-major order). The rest stay: a
    # resized figure is sometimes cut a little differently (a label inside or outside a panel), and
    # such crops stay rather than risk a distinct panel.
    assert (len(joined & set(figures)), len(figures)) == (19, 19)
    assert relabelled == []
    assert len(panels) >= 30 and len(joined & set(panels)) >= 0.8 * len(panels)
    assert verify_output(str(reprint_build))[0] == []


def test_look_alike_panels_of_one_figure_stay(reprint_build: Path) -> None:
    _, rows = query(str(reprint_build), "SELECT key FROM samples WHERE key LIKE '10-7554-eLife-46793_v1_fig9s1%'")
    keys = {k for (k,) in rows}
    assert len(keys) > 4 and "10-7554-eLife-46793_v1_fig9s1" in keys  # the figure and its panels, all kept
    _, evidence = query(str(reprint_build), """
        SELECT dropped_by, match_hamming, match_via FROM dropped
        WHERE stage = 'dedup' AND key LIKE 'reprint-%fig9s1_p%'""")
    assert evidence and all(by.endswith("panel") and via.endswith("_fig9s1") and h is not None
                            for by, h, via in evidence)


@pytest.mark.parametrize("runner_name", ["ray", "beam"])
def test_distributed_dedup_gives_the_same_removals(reprint_build: Path, runner_name: str, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    if runner_name == "ray":
        request.getfixturevalue("ray_cluster")
    cfg = load_config(REPO / "dataflow.yaml")
    staging = Staging(reprint_build / "_work" / "staging")
    tokens = sorted(p.stem for p in (reprint_build / "_work" / "staging").rglob("*.meta"))
    asm = assemble.collect(((t, staging.read_meta(t)) for t in tokens), cfg, tmp_path / "spool")
    records = assemble.read_records(asm)
    options = cfg.dedup_options()
    job = Job(cfg, None, str(tmp_path / "staging"), str(tmp_path / "out"))  # type: ignore[arg-type]
    expected = dedup_local(records, options)  # in memory, one process
    spooled = merged(r for r, _ in dedup(LocalRunner(1), job, asm))  # the build's spooled path
    assert spooled.matches == expected.matches
    runner = make_runner(runner_name, 2, config=cfg)
    try:
        got = merged(r for r, _ in dedup(runner, job, asm))
    finally:
        runner.close()
    assert got.matches == expected.matches and got.cluster_of == expected.cluster_of
    assert set(expected.matches) == set(_dedup_drops(reprint_build))


def test_clusters_decided_a_few_at_a_time_give_the_same_removals(reprint_build: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver hands ``finish`` whole connected components a batch at a time; one component
    per batch must remove what one call over every record removes, with the same evidence. And
    pairs stream through DuckDB a few at a time while the buckets stream out: every batch counts (a
    statement run while a result streams on the same connection used to end it after the first batch);
    and the exact and caption bucket keys, cut in many hash partitions, find the same pairs."""
    cfg = load_config(REPO / "dataflow.yaml")
    staging = Staging(reprint_build / "_work" / "staging")
    tokens = sorted(p.stem for p in (reprint_build / "_work" / "staging").rglob("*.meta"))
    asm = assemble.collect(((t, staging.read_meta(t)) for t in tokens), cfg, tmp_path / "spool")
    job = Job(cfg, None, str(tmp_path / "staging"), str(tmp_path / "out"))  # type: ignore[arg-type]
    whole = list(dedup(LocalRunner(1), job, asm))
    monkeypatch.setattr(dedup_module, "FINISH_RECORDS", 1)
    monkeypatch.setattr(dedup_module, "BATCH", 7)
    monkeypatch.setattr(dedup_module, "BAND_PART_ROWS", 500)
    parts, buckets = [], dedup_module._shared_buckets
    monkeypatch.setattr(dedup_module, "_shared_buckets", lambda db, ps: parts.extend(ps) or buckets(db, ps))
    one_each = list(dedup(LocalRunner(1), job, asm))
    assert len(whole) == 1 and len(one_each) >= 10  # measured: 18 (a reprinted figure with its panels is one)
    assert len(parts) >= 5
    got, expected = merged(r for r, _ in one_each), merged(r for r, _ in whole)
    assert got.matches == expected.matches and got.cluster_of == expected.cluster_of
    assert got.matches == dedup_local(assemble.read_records(asm), cfg.dedup_options()).matches
    assert sum("caption" in m.kinds for m in got.matches.values()) >= 10
    assert {k: a for _, arts in one_each for k, a in arts.items()} == whole[0][1]


def test_caption_bands_come_from_the_staging_workers(reprint_build: Path, tmp_path: Path) -> None:
    """Each staged sample carries its caption's MinHash bands, computed by the worker that staged
    it, so the driver only scans them; a unit staged without them (by an earlier version) gets the
    same records from the driver."""
    from medcorpus.transforms.dedup import caption_bands

    cfg = load_config(REPO / "dataflow.yaml")
    options = cfg.dedup_options()
    staging = Staging(reprint_build / "_work" / "staging")
    metas = [(t, staging.read_meta(t)) for t in sorted(p.stem for p in staging.root.rglob("*.meta"))]
    samples = [s for _, r in metas for s in r.samples if s.row.get("image_phash")]
    banded = [s for s in samples if s.caption_bands]
    assert samples and all(s.caption_bands is not None for s in samples)
    assert len(banded) > len(samples) // 2 and all(len(s.caption_bands) == options.caption_bands for s in banded)
    panel = next(s for s in banded if s.row.get("parent_key"))  # a panel's subcaption, not its figure's caption
    figure = next(s for s in samples if s.key == panel.row["parent_key"])
    assert panel.caption_bands == caption_bands(assemble.dedup_record(panel.row).caption_tokens, options)
    assert panel.caption_bands != figure.caption_bands
    from_workers = assemble.read_records(assemble.collect(iter(metas), cfg, tmp_path / "workers"))
    for _, result in metas:
        for s in result.samples:
            s.caption_bands = None
    from_driver = assemble.read_records(assemble.collect(iter(metas), cfg, tmp_path / "driver"))
    assert from_driver == from_workers and sum(bool(r.bands) for r in from_workers) == len(banded)
