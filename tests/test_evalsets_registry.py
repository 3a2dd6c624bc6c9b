"""Eval-set registry on the real shared lists: loading, matching by id / image / caption, report, CLI."""
from __future__ import annotations

import json
import re

import pytest
import typer
from PIL import Image
from testdata import DATA
from typer.testing import CliRunner

from medcorpus.manifests.attribution import write_attribution
from medcorpus.manifests.evalsets import (builtin_entries, build_index, decontaminate, entries_from_ids, read_registry,
                                          report)
from medcorpus.pipelines.commands.evalsets import register
from medcorpus.transforms.dedup import hash_image

ROCO = DATA / "evalsets" / "roco_test" / "radiology"
MEDICAT = DATA / "compound" / "medicat_sample"


@pytest.fixture(scope="module")
def index():  # noqa: ANN201
    return build_index(builtin_entries(DATA))


def _roco(n: int) -> tuple[str, str, str, str]:
    cap_line = (ROCO / "captions.txt").read_text().splitlines()[n]
    link_line = (ROCO / "dlinks.txt").read_text().splitlines()[n]
    rid, _, caption = cap_line.partition("\t")
    _, pkg, fname = link_line.split("\t")
    return rid, caption.strip(), re.search(r"PMC\d+", pkg).group(0), fname.strip()


def test_builtin_lists_loaded() -> None:
    entries = builtin_entries(DATA)
    sets = {e.evalset for e in entries}
    assert {"roco-test", "roco-validation", "slake-test", "iu-xray-test", "imageclef2016-figsep-test",
            "medicat-sample"} <= sets
    n_roco = sum(1 for _ in open(ROCO / "dlinks.txt")) + sum(1 for _ in open(ROCO.parent / "non-radiology" / "dlinks.txt"))
    assert sum(1 for e in entries if e.evalset == "roco-test" and e.kind == "pmcid_figure") == n_roco


def test_roco_caption_caught_by_ngrams_but_not_a_generic_one(index) -> None:  # noqa: ANN001
    rid, caption, _, _ = _roco(2)
    edited = "Figure 3. " + caption.replace("reveals", "shows") + " Images courtesy of the authors."
    hits = decontaminate({"caption": edited}, index)
    assert any(h.evalset == "roco-test" and h.kind == "caption" and rid in h.detail for h in hits)
    generic = "Axial contrast-enhanced CT of the abdomen shows a hypodense lesion in the right lobe of the liver."
    assert not [h for h in decontaminate({"caption": generic}, index) if h.kind == "caption"]


def test_id_and_image_hits(index) -> None:  # noqa: ANN001
    rid, _, pmcid, fname = _roco(0)
    hits = decontaminate({"pmcid": pmcid, "graphic_file": fname.replace(".jpg", ".tif")}, index)
    assert [h.evalset for h in hits if h.kind == "id"] == ["roco-test"]
    assert not decontaminate({"pmcid": pmcid, "graphic_file": "other-figure.jpg"}, index)
    fig = next((MEDICAT / "figures").iterdir())
    img = Image.open(fig).convert("RGB")
    img = img.resize((img.width * 2 // 3, img.height * 2 // 3))
    hits = decontaminate({"perceptual": hash_image(img).perceptual}, index)
    assert any(h.evalset == "medicat-sample" and h.kind == "phash" and fig.name in h.detail for h in hits)


def test_report_per_evalset(index) -> None:  # noqa: ANN001
    _, caption, pmcid, fname = _roco(1)
    hits = {"k1": decontaminate({"caption": caption, "pmcid": pmcid, "graphic_file": fname}, index), "k2": []}
    rows = report(hits)
    assert rows[0]["evalset"] == "roco-test" and rows[0]["samples_removed"] == 1
    assert rows[0]["by_kind"] == {"caption": 1, "id": 1} and rows[0]["keys"] == ["k1"]


def test_user_ids() -> None:
    e = entries_from_ids("mine", ["PMC123", "PMC123:Fig2.tif", "31415"])
    assert [x.value for x in e] == ["PMC123:*", "PMC123:fig2", "31415"]
    with pytest.raises(ValueError):
        entries_from_ids("mine", ["not-an-id"])
    idx = build_index(e)
    assert decontaminate({"pmcid": "PMC123", "graphic_file": "x.jpg"}, idx)  # whole article listed


def test_cli_round_trip(tmp_path) -> None:  # noqa: ANN001
    app = typer.Typer()
    register(app)
    reg = tmp_path / "reg.jsonl"
    ids = tmp_path / "ids.txt"
    ids.write_text("PMC999:fig1\nPMC998\n")
    caps = tmp_path / "caps.txt"
    caps.write_text("A private test caption describing a sagittal MRI of the lumbar spine with disc herniation.\n")
    img = next((MEDICAT / "figures").iterdir())
    runner = CliRunner()
    r = runner.invoke(app, ["evalsets", "add", "private", "--ids", str(ids), "--captions", str(caps),
                            "--image", str(img), "--registry", str(reg), "--data", str(DATA)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["evalsets", "list", "--registry", str(reg)])
    assert r.exit_code == 0, r.output
    listing = json.loads(r.output)
    assert listing["private"] == {"caption": 1, "image_hash": 1, "pmcid_figure": 2}
    assert "roco-test" in listing  # a new registry starts from the shared lists
    assert len(read_registry(reg)) == sum(sum(v.values()) for v in listing.values())


def test_attribution_file(tmp_path) -> None:  # noqa: ANN001
    rows = [{"key": "b", "title": "A study.", "journal": "eLife", "year": 2019, "doi": "10.7554/eLife.46793",
             "pmcid": "PMC6000001", "license_code": "CC BY", "license_url": None, "source_url": "s3://x/y.tar.gz"},
            {"key": "a", "title": None, "journal": None, "year": None, "doi": None, "pmcid": None,
             "article_id": "art-1", "license_code": "unknown", "license_url": None, "source_url": None}]
    out = tmp_path / "attribution.jsonl"
    assert write_attribution(rows, out) == 2
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert [g["key"] for g in got] == ["a", "b"]
    assert got[1]["citation"] == "A study. eLife (2019). doi:10.7554/eLife.46793. PMCID: PMC6000001."
    assert got[1]["license_url"].startswith("https://creativecommons.org/licenses/by/")
    assert got[1]["article_url"] == "https://pmc.ncbi.nlm.nih.gov/articles/PMC6000001/"
    assert got[0]["citation"] == "art-1" and got[0]["license_url"] is None
