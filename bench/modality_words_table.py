"""Trains ``transforms/data/radiology_words.tsv``: radiology vs non-radiology from a caption's words.

Data: the *tune* split of ``shared/data/evalsets/roco_test`` (``modality_eval.split_of``; the aside
quarter is never read here), radiology = 1, non-radiology = 0, captions under CC BY, CC BY-SA or CC0 only
(``licences.txt``; non-commercial, no-derivatives and non-CC captions are skipped, as for the fluency
table). Model: scikit-learn logistic regression over binary word features (``modality_model.words``),
classes weighted to balance (ROCO is 93% radiology; PMC at large is not).

The threshold: 5-fold cross-validated probabilities on the same captions, applied as ``caption_modalities``
does (only to captions that name inner anatomy but no modality word or sign); the lowest threshold whose
added non-radiology captions stay within ``MAX_FP_RISE`` of the share without the model. Prints that
curve, so the cost of each coverage is on record. Rebuilds the table byte-identically (fixed folds, lbfgs).
Run: ``python bench/modality_words_table.py``.
"""
from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from medcorpus.transforms import modality_model
from medcorpus.transforms.concept_hints import RADIOLOGY, caption_modalities, names_inner_anatomy
from modality_eval import ROCO, _read, split_of

FREE = {"CC BY", "CC BY-SA", "CC0"}
C = 1.0
MAX_FP_RISE = 0.03  # the most non-radiology captions (share) the model may newly call radiology
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


def licences(kind: str) -> dict[str, str]:
    rows = (ROCO / kind / "licences.txt").read_text(encoding="utf-8").splitlines()[1:]
    return {r.split(",")[0]: r.split(",")[-1] for r in rows}


def tune_captions() -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for kind, label in (("radiology", 1), ("non-radiology", 0)):
        lic = licences(kind)
        for rid, parts in _read(ROCO / kind / "captions.txt").items():
            if split_of(rid) == "tune" and lic.get(rid) in FREE:
                texts.append(" ".join(parts))
                labels.append(label)
    return texts, np.array(labels)


def choose_threshold(texts: list[str], y: np.ndarray, proba: np.ndarray) -> float:
    """The lowest threshold (widest coverage) whose non-radiology cost stays within ``MAX_FP_RISE``."""
    tags = [caption_modalities(t, learned=False) for t in texts]
    base = np.array([bool(t & RADIOLOGY) for t in tags])
    empty = np.array([not t and names_inner_anatomy(x) for t, x in zip(tags, texts)])
    print(f"without the model: radiology {base[y == 1].mean():.3f}, non-radiology {base[y == 0].mean():.3f}")
    chosen = 1.0
    for th in sorted(THRESHOLDS, reverse=True):
        got = base | (empty & (proba >= th))
        rise = got[y == 0].mean() - base[y == 0].mean()
        print(f"threshold {th}: radiology {got[y == 1].mean():.3f}, non-radiology {got[y == 0].mean():.3f}")
        if rise <= MAX_FP_RISE:
            chosen = th
    return chosen


def main() -> None:
    texts, y = tune_captions()
    print(f"{len(texts)} tune captions ({int(y.sum())} radiology), free licences only")
    vec = CountVectorizer(analyzer=modality_model.words, binary=True, min_df=2)
    x = vec.fit_transform(texts)
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=3000)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    proba = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    threshold = choose_threshold(texts, y, proba)
    model.fit(x, y)
    weights = dict(zip(vec.get_feature_names_out(), model.coef_[0]))
    modality_model.write_table(modality_model.TABLE, weights, float(model.intercept_[0]), threshold)
    print(f"threshold {threshold}; {len(weights)} words -> {modality_model.TABLE}")


if __name__ == "__main__":
    main()
