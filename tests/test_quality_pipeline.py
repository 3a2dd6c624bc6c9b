"""Quality, decontamination and deduplication inside a build, on real articles.

The edits made to the real files are synthetic and stated where they are made: a second version of
an article (an <article-version> added) and a figure whose caption is a ROCO test caption.
"""
from __future__ import annotations

import csv
import json
import re
import tarfile
from pathlib import Path

from testdata import REPO, ROCO_CAPTIONS, copy_articles, release_dir

from medcorpus.manifests.query import query
from medcorpus.pipelines.build import build
from medcorpus.pipelines.config import load_config
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources.local import LocalSource


def _roco_caption() -> str:
    """A ROCO test caption long enough to be evidence (>= 12 words)."""
    for line in ROCO_CAPTIONS.read_text(encoding="utf-8").splitlines():
        caption = line.split("\t", 1)[1].strip()
        if len(caption.split()) >= 12:
            return caption
    raise AssertionError("no long ROCO caption")


def test_eval_set_figure_is_removed_and_reported(tmp_path: Path) -> None:
    src = copy_articles(tmp_path / "in", ["elife-19405", "elife-46472-v3"])
    xml = src / "elife-19405" / "elife-19405.xml"
    leaked = _roco_caption()
    text = xml.read_text(encoding="utf-8")
    xml.write_text(re.sub(r"<caption>.*?</caption>", f"<caption><p>{leaked}</p></caption>", text, count=1, flags=re.S),
                   encoding="utf-8")
    out = tmp_path / "out"
    build(load_config(REPO / "dataflow.yaml"), LocalSource(str(src)), LocalRunner(1), str(out), progress=False)
    _, dropped = query(str(out), "SELECT key, stage, dropped_by, reason FROM dropped WHERE stage = 'decontam'")
    assert [(k.endswith("_fig1"), stage, by) for k, stage, by, _ in dropped] == [(True, "decontam", "roco-test")]
    assert "caption" in dropped[0][3]
    _, captions = query(str(out), "SELECT caption FROM samples")
    assert not any(leaked[:40] in c for (c,) in captions)
    with open(release_dir(out) / "manifest" / "decontam_report.csv", encoding="utf-8") as f:
        report = list(csv.DictReader(f))
    assert [(r["evalset"], r["samples_removed"]) for r in report] == [("roco-test", "1")]


def test_a_newer_version_replaces_the_older_one_as_canonical(tmp_path: Path) -> None:
    src = copy_articles(tmp_path / "in", ["elife-46472-v3"])
    v2 = src / "elife-46472-v3-version2"
    v2.mkdir()
    for f in (src / "elife-46472-v3").iterdir():
        data = f.read_bytes()
        if f.suffix == ".xml":  # synthetic: the same article, as its version 2
            data = data.replace(b"<article-meta>", b"<article-meta><article-version>2</article-version>", 1)
        (v2 / f.name).write_bytes(data)
    out = tmp_path / "out"
    summary = build(load_config(REPO / "dataflow.yaml"), LocalSource(str(src)), LocalRunner(2), str(out),
                    progress=False)
    _, dropped = query(str(out), "SELECT key, duplicate_of, dropped_by FROM dropped WHERE stage = 'dedup' ORDER BY key")
    # every sample of version 1 gives way to the same sample of version 2, and nothing else goes
    assert dropped and all("_v1_" in k and dup == k.replace("_v1_", "_v2_") for k, dup, _ in dropped)
    assert all("exact" in by.split(",") for _, _, by in dropped)  # the same pixels
    _, rows = query(str(out), "SELECT count(*) FILTER (WHERE version = 1), count(*) FILTER (WHERE dedup_cluster IS NOT NULL), count(*) FROM samples")
    (v1_left, clustered, total) = rows[0]
    assert v1_left == 0 and clustered == total == summary.samples
    # the sidecar in the shard carries the dedup cluster too
    _, [(shard, key)] = query(str(out), "SELECT shard, key FROM samples ORDER BY key LIMIT 1")
    with tarfile.open(release_dir(out) / shard) as tar:
        meta = json.loads(tar.extractfile(f"{key}.json").read())
    assert meta["dedup_cluster"] and meta["duplicate_of"] is None


def test_scores_tags_and_attribution_on_the_sample_build(sample_build: Path) -> None:
    _, rows = query(str(sample_build), """
        SELECT count(*), count(*) FILTER (WHERE image_type IS NOT NULL AND image_type_confidence > 0),
               count(*) FILTER (WHERE map_from_entries(quality_scores)['caption_chars'] IS NOT NULL AND image_phash IS NOT NULL)
        FROM samples""")
    n, tagged, scored = rows[0]
    assert n == tagged == scored
    _, types = query(str(sample_build), "SELECT DISTINCT image_type FROM samples WHERE parent_key IS NULL")
    assert {"chart", "diagram"} <= {t for (t,) in types}
    _, drops = query(str(sample_build), "SELECT stage, dropped_by, reason FROM dropped WHERE stage = 'quality'")
    assert drops and all(reason for _, _, reason in drops)
    with open(release_dir(sample_build) / "attribution.csv", encoding="utf-8") as f:
        attribution = list(csv.DictReader(f))
    assert len(attribution) == n
    cc0 = [r for r in attribution if r["license_code"] == "CC0"]
    assert cc0 and all("publicdomain/zero" in r["license_url"] and r["citation"] for r in cc0)


def test_concepts_per_sample_and_the_flat_view(sample_build: Path) -> None:
    _, [(n, with_vocab, linked)] = query(str(sample_build), """
        SELECT count(*), count(*) FILTER (WHERE concept_vocab IS NOT NULL),
               count(*) FILTER (WHERE len(concepts) + len(context_concepts) > 0) FROM samples""")
    assert n == with_vocab and linked > n // 3
    # "all samples with this CUI in this semantic group", as the flat view answers it
    _, [(cui, group)] = query(str(sample_build), """
        SELECT cui, "group" FROM concepts WHERE field = 'caption' GROUP BY ALL ORDER BY count(*) DESC, cui LIMIT 1""")
    _, keys = query(str(sample_build), f"SELECT DISTINCT key FROM concepts WHERE cui = '{cui}' AND \"group\" = '{group}'")
    _, spans = query(str(sample_build), f"""
        SELECT s.caption, c.mention, c."start", c."end" FROM samples s, UNNEST(s.concepts) AS t(c)
        WHERE c.cui = '{cui}'""")
    assert keys and spans
    for caption, mention, start, end in spans:  # character spans point at the mention in the caption
        assert caption[start:end].lower() == mention.lower()
