"""``reports:PATH`` end to end through ``medcorpus build`` with the default stages: real Open-i and
NegBio report texts (images: real figures under the collections' file names, see
imaging_fixtures), one sample per image with findings + impression, sections, view positions,
labels, the R2Gen test split decontaminated, and no planted identifier anywhere in the output."""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from imaging_fixtures import DICOM_PHI_VALUES, MIMIC_IDS, PLANTED, iu_collection, mimic_collection
from medcorpus.pipelines.cli import app
from medcorpus.pipelines.sources.reports import ReportsSource
from medcorpus.transforms.deid_text import scrub
from medcorpus.transforms.report_sections import parse_sections
from testdata import DATA, REPO, release_dir

def build(source: str, out: Path) -> None:
    result = CliRunner().invoke(app, ["build", "--config", str(REPO / "dataflow.yaml"), "--source", source,
                                      "--out", str(out), "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output


def samples(out: Path) -> list[dict]:
    return [r for p in sorted((release_dir(out) / "manifest" / "samples").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def table(out: Path, name: str) -> list[dict]:
    return pq.read_table(release_dir(out) / "manifest" / f"{name}.parquet").to_pylist()


def assert_no_phi(out: Path, identifiers: list[str]) -> None:
    """No planted identifier (nor the source's own ids) in any file under the output, shards included."""
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for value in identifiers:
            assert value.encode() not in data, f"{value!r} in {path.relative_to(out)}"


@pytest.fixture(scope="module")
def iu_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = iu_collection(tmp_path_factory.mktemp("iu"))
    out = tmp_path_factory.mktemp("iu_out")
    build(f"reports:{root}", out)
    return out


def test_iu_studies_become_one_sample_per_image(iu_build: Path) -> None:
    rows = samples(iu_build)
    by_study: dict[str, list[dict]] = {}
    for r in rows:
        by_study.setdefault(r["study_pseudo_id"], []).append(r)
    assert len(by_study) == 4 and all(len(v) == 2 for v in by_study.values())  # 3, 4, 7, 9: frontal + lateral
    for r in rows:
        assert r["caption"].startswith(("Findings: ", "Impression: "))
        assert r["report"]["impression"] and r["report"]["impression"] in r["caption"]
        assert r["view_position"] in ("FRONTAL", "LATERAL") and r["split_status"] == "not_a_figure"
        assert r["dataset_name"] == "iu-xray" and r["license_code"] == "CC BY-NC-ND" and r["license_family"] == "noncomm"
        assert r["patient_identity_removed"] and r["labels"] and r["concepts"]  # concepts linked on report text
        assert re.fullmatch(r"iu-xray-[0-9a-f]{20}-[01]", r["key"]) and r["source_url"] is None
    assert {tuple(sorted(r["view_position"] for r in v)) for v in by_study.values()} == {("FRONTAL", "LATERAL")}
    uid4 = next(v for v in by_study.values() if "bullous emphysema" in v[0]["caption"].lower())
    assert "Pulmonary Fibrosis" in uid4[0]["labels"] and uid4[0]["report"]["comparison"] == "None available"
    negated = {c["name"].lower() for c in uid4[0]["concepts"] if c["negated"]}  # "no pneumothorax or ... effusion"
    assert {"pneumothorax", "pleural effusion"} <= negated


def test_iu_empty_reports_missing_images_and_test_split_are_recorded(iu_build: Path) -> None:
    errors = table(iu_build, "errors")
    assert sorted((e["stage"], e["reason"]) for e in errors) == [  # uid 6 (its 2 images), uid 16
        ("parse", "image_not_found"), ("parse", "image_not_found"), ("parse", "report_empty")]
    dropped = table(iu_build, "dropped")
    assert {d["stage"] for d in dropped} == {"decontam"} and {d["dropped_by"] for d in dropped} == {"iu-xray-test"}
    assert len(dropped) == 2 and "CXR3030" in dropped[0]["reason"]  # the R2Gen test study: both images
    articles = table(iu_build, "articles")
    assert len(articles) == 6 and all(a["article_id"].startswith("iu-xray-") for a in articles)


def test_iu_output_holds_no_planted_identifier(iu_build: Path) -> None:
    phi = next(r for r in samples(iu_build) if "[NAME]" in (r["report"]["findings"] or ""))
    assert "[DATE]" in phi["report"]["indication"] and "[PHONE]" in phi["caption"] and "[EMAIL]" in phi["caption"]
    assert_no_phi(iu_build, [*PLANTED.values(), "Whitfield", "indiana_", ".dcm.png", "images_normalized"])


def test_mimic_layout(tmp_path: Path) -> None:
    root = mimic_collection(tmp_path / "mimic")
    out = tmp_path / "out"
    build(f"reports:{root}", out)
    rows = samples(out)
    assert len(rows) == 4 and len({r["patient_pseudo_id"] for r in rows}) == 2 and len({r["study_pseudo_id"] for r in rows}) == 3
    dicom = next(r for r in rows if r["window"])  # the DICOM study, rendered (YBR to RGB)
    assert dicom["window"] == "color" and (dicom["orig_width"], dicom["orig_height"]) == (2048, 1536)
    rows.remove(dicom)
    assert sorted(r["view_position"] for r in rows) == ["LATERAL", "PA", "PA"]
    negbio = [r for r in rows if r["report"]["findings"].startswith("pa and lat cxr")]
    assert len(negbio) == 2 and negbio[0]["report"]["impression"].startswith("stable chest.")
    rebuilt = next(r for r in rows if r not in negbio and r["view_position"])["report"]
    assert rebuilt["indication"] == "XXXX-year-old XXXX with XXXX." and rebuilt["comparison"] == "None available"
    assert "Chest PA and lateral" not in str(rebuilt) and "Dictated" not in str(rebuilt)  # technique, sign-off
    assert all(r["license_family"] == "other" for r in rows)  # no descriptor: unknown license
    assert_no_phi(out, [*PLANTED.values(), "Whitfield", *MIMIC_IDS.values(), "10000032", "50414267", "a1b2c3",
                        *DICOM_PHI_VALUES])


def test_pseudonyms_depend_on_the_secret(tmp_path: Path) -> None:
    root = iu_collection(tmp_path / "iu")

    def unit_ids(secret: bytes) -> list[str]:
        return [u.unit_id for u in ReportsSource(str(root), secret).list_units()]

    one, again, two = unit_ids(b"one"), unit_ids(b"one"), unit_ids(b"two")
    assert len(one) == 7 and one == again and not set(one) & set(two)


def test_sections_and_scrubbing_of_the_raw_negbio_reports() -> None:
    text = (DATA / "reports" / "negbio_examples" / "00019248.txt").read_text(encoding="utf-8")
    sections = parse_sections(text)
    assert sections.findings.startswith("chest: four images: right picc") and sections.impression is None
    assert scrub(sections.findings) == sections.findings  # nothing to scrub in a de-identified report
    mimic_style = "INDICATION:  ___ M with cough.\n\nFINDINGS: Discussed with Dr. Lee on 3/4/2019, pager 12345."
    parsed = parse_sections(mimic_style)
    assert scrub(parsed.indication) == "___ M with cough."
    assert scrub(parsed.findings) == "Discussed with Dr. [NAME] on [DATE], pager [PHONE]."


def test_dicom_images_of_a_report_collection() -> None:
    """Rendered by the DICOM renderer, image facts from the header; declared burned-in text refused."""
    from medcorpus.pipelines.stages.parse_reports import render_dicom
    from medcorpus.schemas.records import SkipError

    image, header = render_dicom((DATA / "dicom" / "pydicom_test_files" / "CT_small.dcm").read_bytes())
    assert image.size == (128, 128) and header["image_modality"] == "CT" and len(header["pixel_spacing"]) == 2
    with pytest.raises(SkipError, match="burned_in_annotation"):
        render_dicom((DATA / "dicom" / "deid_data" / "ultrasounds" / "GREYSCALE_IMAGE.dcm").read_bytes())
