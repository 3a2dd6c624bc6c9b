"""Paths of the real shared data used by tests (../shared/data; never ../shared/holdout)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDCORPUS_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"
ARTICLES = DATA / "pmc" / "articles"
BULK = DATA / "pmc" / "pmc_oa_bulk"


def copy_articles(dest: Path, names: list[str]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copytree(ARTICLES / name, dest / name)
    return dest
