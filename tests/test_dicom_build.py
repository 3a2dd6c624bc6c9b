"""``dicom:PATH`` builds on the real shared DICOM files: nothing identifying reaches the output folder
(staging included), the ultrasound marked BurnedInAnnotation YES is dropped with its reason, and
every file that holds pixel data becomes a sample or is recorded with a reason."""
from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from medcorpus.pipelines.build import build
from medcorpus.pipelines.config import from_dict
from medcorpus.pipelines.runners import LocalRunner
from medcorpus.pipelines.sources import make_source
from medcorpus.pipelines.sources.dicom import DicomSource, load_secret
from medcorpus.transforms.dicom_deid import action_of
from medcorpus.transforms.pseudonyms import pseudonym
from testdata import DEID_DATA, DICOM_TEST_FILES, release_dir

STAGES = ["fetch", "parse", "image", "panels", "quality"]
NOT_PHI = {"YES", "NO", "ISO_IR 100", "ISO_IR 192", "ORIGINAL", "PRIMARY", "DERIVED", "SECONDARY"}


def _elements(ds: Dataset) -> Iterator[DataElement]:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _elements(item)
        else:
            yield elem


def identifying_values(paths: list[Path]) -> set[str]:
    """Every value of the inputs that the confidentiality profile acts on (names, ids, dates,
    institution, UIDs, free text), every person name and every private text value: long enough
    (6+ characters) that finding it in the output cannot be chance."""
    found: set[str] = set()
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for elem in [*_elements(ds.file_meta), *_elements(ds)]:
            if elem.VR in ("OB", "OW", "UN", "OF", "OD", "OL", "OV") or elem.value in (None, ""):
                continue
            if action_of(elem.tag) is None and elem.VR != "PN" and not elem.tag.is_private:
                continue
            values = elem.value if elem.VM > 1 else [elem.value]
            for value in values:
                text = str(value).strip()
                if len(text) >= 6 and text not in NOT_PHI and len(set(text)) > 1:  # "000000" names no one
                    found.add(text)
    return found


def output_texts(out: Path) -> Iterator[tuple[str, bytes]]:
    """Every file under the output folder as bytes, plus Parquet files decoded to text and every tar
    member on its own (values may hide compressed in a column chunk)."""
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = path.relative_to(out).as_posix()
        yield name, path.read_bytes()
        if path.suffix == ".parquet":
            yield name + "#decoded", json.dumps(pq.read_table(path).to_pylist(), default=str, ensure_ascii=False).encode()
        elif path.suffix == ".tar":
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    yield f"{name}#{member.name}", member.name.encode() + tar.extractfile(member).read()  # type: ignore[union-attr]


def _build(source: DicomSource, out: Path, dicom: dict[str, Any] | None = None) -> Any:
    config = from_dict({"stages": STAGES, "defaults": {"dicom": dicom or {}, "dedup": {"kinds": []}}}, None)
    return build(config, source, LocalRunner(1), str(out), progress=False)


def _rows(out: Path, table: str) -> list[dict[str, Any]]:
    if table == "samples":
        return [r for p in sorted((release_dir(out) / "manifest" / "samples").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return pq.read_table(release_dir(out) / "manifest" / f"{table}.parquet").to_pylist()


@pytest.fixture(scope="module")
def deid_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    root = tmp_path_factory.mktemp("deid")
    secret = load_secret(str(root / "secret.key"))  # outside the output folder
    out = root / "out"
    _build(DicomSource(str(DEID_DATA), secret), out)
    return out, secret


def test_no_identifying_value_reaches_the_output(deid_build: tuple[Path, bytes]) -> None:
    out, _ = deid_build
    phi = identifying_values(sorted(DEID_DATA.rglob("*.dcm")))
    assert len(phi) > 100 and any("^" in v for v in phi)  # the inputs do carry names, ids, dates ...
    files = list(output_texts(out))
    assert any("_work/staging" in n for n, _ in files) and any(n.endswith(".tar") for n, _ in files)
    leaks = {(name, value) for name, blob in files for value in phi if value.encode() in blob}
    assert not leaks, sorted(leaks)[:20]
    names = {p.name for p in DEID_DATA.rglob("*.dcm")} | {p.stem for p in DEID_DATA.rglob("*.dcm")}
    assert not [(n, f) for n, blob in files for f in names if len(f) > 5 and f.encode() in blob]


def test_burned_in_annotation_and_text_are_dropped_with_reasons(deid_build: tuple[Path, bytes]) -> None:
    out, secret = deid_build
    dropped = {r["dropped_by"]: r for r in _rows(out, "dropped") if r["stage"] == "parse"}
    greyscale = pydicom.dcmread(DEID_DATA / "ultrasounds" / "GREYSCALE_IMAGE.dcm", stop_before_pixels=True)
    assert greyscale.BurnedInAnnotation == "YES"
    row = dropped["burned_in_annotation"]
    assert pseudonym(secret, "instance", greyscale.SOPInstanceUID) in row["key"] and "BurnedInAnnotation" in row["reason"]
    assert "burned_in_text" in dropped and "OCR" in dropped["burned_in_text"]["reason"]
    report = json.loads((release_dir(out) / "manifest" / "deid_report.json").read_text())
    assert report["instances"] == 10 and report["dropped"]["burned_in_annotation"] == 1
    assert report["removed"]["InstitutionName"] >= 1 and report["removed"]["private"] >= 1
    assert report["replaced"]["StudyInstanceUID"] >= 1 and report["emptied"]["PatientName"] >= 1
    samples = _rows(out, "samples")
    assert samples and all(r["patient_identity_removed"] and r["deid_method"] == ["113100", "113107"] for r in samples)
    assert all(r["caption"] and r["split_status"] == "not_a_figure" for r in samples)


def test_pseudonyms_stay_across_rebuilds_and_change_with_the_secret(deid_build: tuple[Path, bytes], tmp_path: Path) -> None:
    out, secret = deid_build
    source = DicomSource(str(DEID_DATA / "dicom-cookies"), secret)
    again = [u.unit_id for u in source.list_units()]
    assert set(again) <= {r["unit_id"] for r in _rows(out, "units")}
    other = [u.unit_id for u in DicomSource(str(DEID_DATA / "dicom-cookies"), b"another corpus").list_units()]
    assert not set(again) & set(other)


def test_every_file_with_pixels_is_a_sample_or_recorded(tmp_path: Path) -> None:
    files = sorted(DICOM_TEST_FILES.glob("*.dcm"))
    src = tmp_path / "in"  # a folder tree and an archive of DICOM: the source reads both
    (src / "tree").mkdir(parents=True)
    for f in files[: len(files) // 2]:
        shutil.copy(f, src / "tree" / f.name)
    with zipfile.ZipFile(src / "rest.zip", "w") as z:
        for f in files[len(files) // 2:]:
            z.write(f, f"series/{f.name}")
    secret = b"test secret"
    summary = _build(DicomSource(str(src), secret), tmp_path / "out", {"slices": "all", "ocr": "never"})
    assert summary.samples + len(_rows(tmp_path / "out", "dropped")) > 40  # small test images fail min_side
    recorded = " ".join(r["key"] for r in _rows(tmp_path / "out", "samples") + _rows(tmp_path / "out", "dropped"))
    errors = _rows(tmp_path / "out", "errors")
    recorded += " " + " ".join(e["input"] for e in errors)
    assert all(e["reason"] and e["detail"] for e in errors)
    missing = []
    for f in files:
        ds = pydicom.dcmread(f, force=True, stop_before_pixels=False)
        if "PixelData" in ds and pseudonym(secret, "instance", str(ds.get("SOPInstanceUID"))) not in recorded:
            if hashlib.sha256(f.read_bytes()).hexdigest()[:16] not in recorded:  # unreadable: named by content
                missing.append(f.name)
    assert not missing
    reasons = {e["reason"] for e in errors}
    assert "dicom_decode" in reasons and "exception" not in reasons


def test_make_source_and_bad_config() -> None:
    from medcorpus.transforms.options import ConfigError

    with pytest.raises(ValueError, match="secret"):
        make_source("dicom:x", cache_dir="/tmp")
    with pytest.raises(ConfigError, match="dicom.frames"):
        from_dict({"defaults": {"dicom": {"frames": "every:0"}}}, None)
    with pytest.raises(ConfigError, match="dicom.windows"):
        from_dict({"defaults": {"dicom": {"windows": {"CT": "lungs"}}}}, None)
