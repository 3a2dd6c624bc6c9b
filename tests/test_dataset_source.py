"""``dataset:PATH`` end to end through ``medcorpus build`` with the default stages: ImageFolder and
CSV layouts of real figures (see imaging_fixtures), labels, splits, template captions, the license
mapping, and a training image that copies a test image dropped by decontamination."""
from __future__ import annotations

from pathlib import Path

import pytest

from imaging_fixtures import csv_dataset, image_folder_dataset
from testdata import release_dir
from medcorpus.pipelines.sources.dataset import DatasetSource
from medcorpus.transforms.label_captions import label_captions, readable
from medcorpus.transforms.options import ConfigError
from test_reports_source import assert_no_phi, build, samples, table


def test_image_folder_dataset(tmp_path: Path) -> None:
    root = image_folder_dataset(tmp_path / "cxr")
    out = tmp_path / "out"
    build(f"dataset:{root}", out)
    rows = samples(out)
    assert sorted((r["dataset_split"], r["labels"][0]) for r in rows) == [
        ("test", "normal_chest"), ("test", "pneumonia"), ("train", "normal_chest"), ("train", "normal_chest"),
        ("train", "pneumonia"), ("train", "pneumonia"), ("validation", "pneumonia")]
    for r in rows:
        assert r["dataset_name"] == "cxr-demo" and r["dataset_version"] == "1.0" and r["image_modality"] == "Chest X-ray"
        assert r["license_code"] == "CC BY" and r["license_family"] == "comm" and r["split_status"] == "not_a_figure"
        label = readable(r["labels"][0]).lower()
        assert label in r["caption"].lower() and len(r["mentions"]) == 2
        assert all(label in m.lower() for m in r["mentions"]) and r["caption"] not in r["mentions"]
    assert len({r["caption"] for r in rows}) > 2  # templates vary by key
    dropped = table(out, "dropped")
    assert [(d["stage"], d["dropped_by"]) for d in dropped] == [("decontam", "dataset:cxr-demo:test")]
    assert dropped[0]["key"].startswith("cxr-demo-train-pneumonia_")
    assert_no_phi(out, ["patient100", "patient2004", "_img.png", "_copy"])


def test_csv_dataset_with_a_license_that_forbids_redistribution(tmp_path: Path) -> None:
    root = csv_dataset(tmp_path / "bone")
    out = tmp_path / "out"
    build(f"dataset:{root}", out)
    rows = samples(out)
    assert sorted((r["dataset_split"], r["labels"][0]) for r in rows) == [
        ("test", "fracture"), ("train", "fracture"), ("train", "fracture"), ("train", "no_fracture"),
        ("validation", "no_fracture")]
    assert {(r["license_code"], r["license_family"]) for r in rows} == {("unknown", "other")}
    assert not (release_dir(out) / "shards" / "comm").exists() and not (release_dir(out) / "shards" / "noncomm").exists()
    assert [(e["stage"], e["reason"]) for e in table(out, "errors")] == [("parse", "image_not_found")]  # missing.jpg


def test_descriptor_errors_name_the_key(tmp_path: Path) -> None:
    root = image_folder_dataset(tmp_path / "bad", descriptor="name: x\ncaptions_per_sample: three\n")
    with pytest.raises(ConfigError, match="captions_per_sample"):
        DatasetSource(str(root))
    (root / "dataset.yaml").write_text("nmae: x\n")
    with pytest.raises(ConfigError, match="did you mean 'name'"):
        DatasetSource(str(root))


def test_captions_are_deterministic_and_name_the_label() -> None:
    one = label_captions("key-1", "pleural_effusion", None, "CT", "CHEST", 3)
    assert one == label_captions("key-1", "pleural_effusion", None, "CT", "CHEST", 3) and len(set(one)) == 3
    assert all("pleural effusion" in c.lower() for c in one)
    described = label_captions("key-2", "PNA", "lobar pneumonia", None, None, 2)
    assert all("PNA" in c and "lobar pneumonia" in c for c in described)


def test_a_pmc_figure_that_is_a_dataset_test_image_is_caught(tmp_path: Path) -> None:
    """The dataset's test split registered for builds of other sources (``evalsets add-dataset``):
    a real PMC figure that is a test image of the dataset matches it, the article's other figures
    do not. (The quality stage drops such a match, as test_image_folder_dataset shows in a build.)"""
    from PIL import Image
    from typer.testing import CliRunner

    from medcorpus.manifests.evalsets import build_index, decontaminate, read_registry
    from medcorpus.pipelines.cli import app
    from medcorpus.transforms.dedup import hash_image
    from testdata import ARTICLES

    article = ARTICLES / "pone.0000010"
    root = csv_dataset(tmp_path / "bone")
    with Image.open(article / "pone.0000010.g002.png") as img:
        img.convert("RGB").save(root / "imgs" / "003.jpg")  # the dataset's test image (fracture, test)
    registry = tmp_path / "evalsets.jsonl"
    result = CliRunner().invoke(app, ["evalsets", "add-dataset", str(root), "--registry", str(registry)])
    assert result.exit_code == 0 and "dataset:bone-demo:test" in result.output, result.output
    index = build_index([e for e in read_registry(registry) if e.evalset.startswith("dataset:")])
    assert {e.evalset for e in read_registry(registry) if e.evalset.startswith("dataset:")} == {
        "dataset:bone-demo:test", "dataset:bone-demo:validation"}

    def hits(name: str) -> set[str]:
        with Image.open(article / name) as img:
            figure = img.convert("RGB").resize((img.width * 2 // 3, img.height * 2 // 3))  # as the image stage stores it
        return {h.evalset for h in decontaminate({"perceptual": hash_image(figure).perceptual}, index)}

    assert hits("pone.0000010.g002.png") == {"dataset:bone-demo:test"}
    assert hits("pone.0000010.g001.png") == hits("pone.0000010.g003.png") == set()


def test_template_captions_are_no_evidence_of_duplicates() -> None:
    """Images of one label share caption templates by design: dedup compares their pixels only."""
    from medcorpus.pipelines.assemble import dedup_record

    row = {"key": "k", "image_phash": "f" * 32, "image_exact_hash": "e", "article_id": "k",
           "caption": "Chest X-ray of the chest showing pneumonia with lobar consolidation."}
    assert dedup_record({**row, "source": "dataset"}).caption_tokens == ()
    assert dedup_record({**row, "source": "local"}).caption_tokens


def test_bad_sources_are_one_line_before_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medcorpus.pipelines.cli import app

    root = image_folder_dataset(tmp_path / "cxr", descriptor="name: x\nlicence: CC BY\n")
    for source, message in ((f"dataset:{root}", "dataset.yaml.licence: unknown key; did you mean 'license'?"),
                            (f"reports:{root}", "holds neither an Open-i reports CSV")):
        result = CliRunner().invoke(app, ["build", "--source", source, "--out", str(tmp_path / "out")])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
        assert not list((tmp_path / "out").rglob("manifest"))
