"""Image+report collections and labelled datasets for the imaging-source tests, laid out from real
shared data.

The report texts are real (Open-i CSV rows, the NegBio raw reports); there are no IU X-ray or
MIMIC-CXR images on disk, so the images are real figures from ../shared/data/compound (PMC7003341,
CC BY) saved under the collections' file names; the identifiers planted in some reports are
synthetic (``PLANTED``), to check that none reaches the output.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

from PIL import Image

from testdata import DATA

IU = DATA / "reports" / "iu_xray_openi"
NEGBIO = DATA / "reports" / "negbio_examples"
FIGURES = sorted((DATA / "compound" / "unlabeled_pmc7003341").glob("*.jpg"))

IU_UIDS = ["3", "4", "7", "9", "16", "3030", "6"]  # 16: no findings or impression; 3030: R2Gen test split
IU_MISSING = "6"  # its images are left out of the folder
PLANTED = {
    "name": "Harriet Whitfield", "date": "03/14/2019", "mrn": "48213977", "phone": "617-555-0143",
    "email": "h.whitfield@example-hospital.org", "accession": "E7744120",
}
PLANTED_TEXT = (f" Discussed with Dr. {PLANTED['name']} on {PLANTED['date']}. MRN: {PLANTED['mrn']}. "
                f"Call {PLANTED['phone']} or {PLANTED['email']}. Accession number {PLANTED['accession']}.")
DICOM_PHI = DATA / "dicom" / "deid_data" / "dicom-cookies" / "image1.dcm"  # fake PHI: PatientName, PatientID ...
DICOM_PHI_VALUES = ["nameless waterfall", "cookie-47", "dry breeze", "lively moon", "fragrant pond", "STANFORD", "20131210"]
MIMIC_IDS = {"patient": "p10000032", "study": "s50414267", "patient2": "p10000764", "study2": "s57375967"}


def _figure(n: int, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(FIGURES[n % len(FIGURES)]) as img:
        img.convert("RGB").save(dest)


def iu_collection(dest: Path, license: str | None = "CC BY-NC-ND 4.0") -> Path:
    """A few real Open-i studies (one with planted identifiers) with images under their IU names."""
    dest.mkdir(parents=True, exist_ok=True)
    with (IU / "indiana_reports.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, [r for r in reader if r["uid"] in IU_UIDS]
    for row in rows:
        if row["uid"] == "7":
            row["findings"] += PLANTED_TEXT
            row["indication"] = f"Preop bariatric surgery, patient {PLANTED['name']}, seen {PLANTED['date']}."
    _write_csv(dest / "indiana_reports.csv", fields, rows)
    with (IU / "indiana_projections.csv").open(encoding="utf-8", newline="") as f:
        projections = [r for r in csv.DictReader(f) if r["uid"] in IU_UIDS]
    _write_csv(dest / "indiana_projections.csv", ["uid", "filename", "projection"], projections)
    for n, row in enumerate(projections):
        if row["uid"] != IU_MISSING:
            _figure(n, dest / "images" / "images_normalized" / row["filename"])
    if license:
        (dest / "dataset.yaml").write_text(f"name: iu-xray\nversion: openi-2017\nmodality: CR\nbody_part: CHEST\n"
                                           f"license: {license}\n")
    return dest


def mimic_collection(dest: Path) -> Path:
    """Two MIMIC-CXR style studies: a raw NegBio report and an Open-i report written as a MIMIC
    report, with planted identifiers, each beside its folder of JPG images, and view positions in
    a MIMIC-CXR-JPG metadata file."""
    ids = MIMIC_IDS
    first = dest / "files" / "p10" / ids["patient"] / f"{ids['study']}.txt"
    first.parent.mkdir(parents=True, exist_ok=True)
    negbio = (NEGBIO / "00000086.txt").read_text(encoding="utf-8")
    first.write_text(negbio.replace("impression: stable chest.", "impression: stable chest." + PLANTED_TEXT), encoding="utf-8")
    with (IU / "indiana_reports.csv").open(encoding="utf-8", newline="") as f:
        rows = {r["uid"]: r for r in csv.DictReader(f) if r["uid"] in ("4", "9")}
    second = dest / "files" / "p10" / ids["patient2"] / f"{ids['study2']}.txt"
    second.parent.mkdir(parents=True, exist_ok=True)
    second.write_text(_mimic_report(rows["4"]), encoding="utf-8")
    meta = []
    for n, (report, dicom_ids) in enumerate(((first, ["a1b2c3-d1", "a1b2c3-d2"]), (second, ["e5f6-d3"]))):
        for k, dicom_id in enumerate(dicom_ids):
            _figure(n * 2 + k + 3, report.with_suffix("") / f"{dicom_id}.jpg")
            meta.append({"dicom_id": dicom_id, "subject_id": report.parent.name[1:], "study_id": report.stem[1:],
                         "ViewPosition": ["PA", "LATERAL"][k]})
    _write_csv(dest / "mimic-cxr-2.0.0-metadata.csv", ["dicom_id", "subject_id", "study_id", "ViewPosition"], meta)
    third = dest / "files" / "p10" / ids["patient2"] / "s59000001.txt"  # a DICOM study: header with fake PHI
    third.write_text(_mimic_report(rows["9"]), encoding="utf-8")
    third.with_suffix("").mkdir()
    shutil.copy(DICOM_PHI, third.with_suffix("") / "0c9d-d5.dcm")
    return dest


def _mimic_report(row: dict[str, str]) -> str:
    """An Open-i report written the way MIMIC-CXR reports are laid out, signed with a planted name."""
    return ("                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n"
            f" INDICATION:  {row['indication']}\n\n TECHNIQUE:  Chest PA and lateral\n\n COMPARISON:  {row['comparison']}\n\n"
            f" FINDINGS: \n\n {row['findings']}\n\n IMPRESSION: \n\n {row['impression']}\n\n"
            f" Dictated by: {PLANTED['name']}, MD\n")


def _write_csv(path: Path, fields: list[str] | None, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields or []))
        writer.writeheader()
        writer.writerows(rows)


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


DATASET_DESCRIPTOR = """name: cxr-demo
version: "1.0"
modality: Chest X-ray
body_part: CHEST
license: CC BY 4.0
labels:
  pneumonia: pneumonia with lobar consolidation
  normal_chest: no acute cardiopulmonary findings
"""


def image_folder_dataset(dest: Path, descriptor: str | None = DATASET_DESCRIPTOR) -> Path:
    """``split/label/*.png`` of real figures; one training image is a resized copy of a test image
    (a planted leak for decontamination)."""
    layout = {("train", "pneumonia"): [0, 1], ("train", "normal_chest"): [2, 3], ("test", "pneumonia"): [4],
              ("test", "normal_chest"): [5], ("val", "pneumonia"): [6]}
    for (split, label), figures in layout.items():
        for n in figures:
            _figure(n, dest / split / label / f"patient{1000 + n}_img.png")
    with Image.open(dest / "test" / "pneumonia" / "patient1004_img.png") as img:
        img.resize((img.width * 3 // 4, img.height * 3 // 4)).save(dest / "train" / "pneumonia" / "patient2004_copy.jpg")
    if descriptor:
        (dest / "dataset.yaml").write_text(descriptor)
    return dest


def csv_dataset(dest: Path, license: str = "research use only") -> Path:
    """A CSV (path, label, split) over real figures in one flat folder, with a JSON descriptor."""
    rows = []
    for n, (label, split) in enumerate([("fracture", "train"), ("fracture", "train"), ("no_fracture", "train"),
                                        ("fracture", "test"), ("no_fracture", "validation")]):
        _figure(n + 2, dest / "imgs" / f"{n:03d}.jpg")
        rows.append({"path": f"imgs/{n:03d}.jpg", "label": label, "split": split})
    rows.append({"path": "imgs/missing.jpg", "label": "fracture", "split": "train"})
    _write_csv(dest / "labels.csv", ["path", "label", "split"], rows)
    (dest / "dataset.json").write_text(
        '{"name": "bone-demo", "modality": "Radiograph", "body_part": "WRIST", "license": "%s", "csv": "labels.csv"}'
        % license)
    return dest
