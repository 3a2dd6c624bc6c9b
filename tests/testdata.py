"""Paths of the real shared data used by tests (../shared/data; never the acceptance holdout)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDCORPUS_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"
ARTICLES = DATA / "pmc" / "articles"
BULK = DATA / "pmc" / "pmc_oa_bulk"
ROCO_CAPTIONS = DATA / "evalsets" / "roco_test" / "radiology" / "captions.txt"


def roco_captions(n: int = 600) -> list[str]:
    """The first ``n`` ROCO test captions (real radiology captions, id<TAB>caption per line)."""
    return [line.split("\t", 1)[1] for line in ROCO_CAPTIONS.read_text(encoding="utf-8").splitlines()[:n]]


def copy_articles(dest: Path, names: list[str]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copytree(ARTICLES / name, dest / name)
    return dest


def fault_articles(dest: Path) -> Path:
    """Real articles plus one input that fails in each stage: fetch (a folder without article XML),
    parse (the eLife XML cut in half) and image (pone.0000010 with its figure files' bytes corrupted)."""
    copy_articles(dest, ["elife-43154-v2", "pone.0000010", "plosone-0093988"])
    (dest / "broken-fetch").mkdir()
    (dest / "broken-fetch" / "readme.txt").write_text("no article XML here\n")
    shutil.copytree(ARTICLES / "elife-43154-v2", dest / "broken-parse")
    xml = dest / "broken-parse" / "main.jats.xml"
    data = xml.read_bytes()
    xml.write_bytes(data[: len(data) // 2])
    for img in sorted((dest / "pone.0000010").iterdir()):
        if img.suffix.lower() in (".tif", ".tiff", ".jpg", ".png", ".gif"):
            img.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0garbage" * 64)
    return dest


DICOM = DATA / "dicom"
DICOM_TEST_FILES = DICOM / "pydicom_test_files"
DEID_DATA = DICOM / "deid_data"


def release_dir(out: Path | str) -> Path:
    """The folder of the release ``out`` names (``OUT``: the current one, ``OUT@N``), through the
    same resolver every reader uses (``manifests/layout.py``)."""
    from medcorpus.manifests.layout import resolve

    return Path(resolve(str(out)).url)
