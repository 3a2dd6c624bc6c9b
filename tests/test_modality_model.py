"""The learned coarse ``radiology`` value: real ROCO tune captions with no modality word or sign, real
shared-article captions outside radiology, the shipped word table and the training split."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from medcorpus.transforms.concept_hints import caption_modalities
from medcorpus.transforms.modality_model import TABLE, load_table, radiology_probability, write_table

BENCH = Path(__file__).resolve().parents[1] / "bench"

# ROCO test radiology, tune split: no modality named, no sign (ROCO_02208, ROCO_64835)
HILAR = "Right hilar mass noted with multiple pulmonary nodules scattered throughout the lung parenchyma."
THYMIC = "Thymic cyst located in the superior mediastinum"
# shared/data/pmc/articles (a genomics figure, a ROCO-trained model alone scores it 0.93) and ecology
G4 = ("Strategy identifying genetic vulnerabilities involved with G4 biology. Strategy identifying genetic "
      "vulnerabilities involved with G4 biology")
DBH = ("Relationships between the mean diameter at breast height (DBH) and (A) seed length and (B) seed "
       "weight of the eight sampled populations")
DBH_PANEL = "Relationships between the mean diameter at breast height (DBH) and seed length and"  # its subcaption


def test_inner_anatomy_without_modality_words_is_radiology() -> None:
    assert caption_modalities(HILAR, learned=False) == set()
    assert caption_modalities(HILAR) == {"radiology"}


def test_below_the_threshold_stays_empty() -> None:
    """The model leans radiology here (p ~ 0.7) but not past the threshold the tune split chose: no hint."""
    assert 0.5 < radiology_probability(THYMIC) < load_table()[2]
    assert caption_modalities(THYMIC) == set()


@pytest.mark.parametrize("caption", [G4, DBH, DBH_PANEL])
def test_captions_outside_radiology_get_nothing(caption: str) -> None:
    """Genomics and ecology captions name no inner anatomy (a forest's "breast height" is none), so the model
    is never asked."""
    assert caption_modalities(caption) == set()


def test_named_and_signed_modalities_are_never_replaced() -> None:
    assert caption_modalities("Axial CT of the chest showing a hilar mass.") == {"ct"}
    assert caption_modalities("Photograph of the resected lung specimen.") == {"photograph"}


def test_table_round_trip(tmp_path: Path) -> None:
    weights, intercept, threshold = load_table()
    assert 0.5 <= threshold < 1 and len(weights) > 1000 and weights["ct"] > 0
    out = tmp_path / "t.tsv"
    write_table(out, {"lung": 1.25, "gel": -1.5}, -0.25, 0.8)
    assert load_table(out) == ({"gel": -1.5, "lung": 1.25}, -0.25, 0.8)
    assert TABLE.name == "radiology_words.tsv"


def test_training_reads_tune_captions_only() -> None:
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(BENCH))
    try:
        from modality_eval import ROCO, _read, split_of
        from modality_words_table import tune_captions
    finally:
        sys.path.remove(str(BENCH))
    texts, labels = tune_captions()
    tune = [" ".join(v) for kind in ("radiology", "non-radiology")
            for rid, v in _read(ROCO / kind / "captions.txt").items() if split_of(rid) == "tune"]
    assert texts and set(texts) <= set(tune) and len(texts) < len(tune)  # tune only, free licences only
    assert 0 < labels.mean() < 1
