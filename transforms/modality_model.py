"""Learned evidence that a caption describes a radiology image, for captions with no modality word and no sign.

A logistic regression over the caption's words (binary bag of words), trained by
``bench/modality_words_table.py`` on the tune split of ROCO's radiology and non-radiology captions (free
licences only). Shipped as a table of word weights (``data/radiology_words.tsv``): no scikit-learn at
run time. ``radiology_probability`` is the model's probability; ``is_radiology`` applies the threshold the
training chose on cross-validated tune predictions (the widest coverage whose cost in non-radiology
captions stays within its bound). A caption that passes gets the coarse ``radiology`` value, the top of
ImageCLEF's modality hierarchy (an image of the body's inside of an unnamed technique), never a guessed
CT or MRI.
"""
from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path

TABLE = Path(__file__).with_name("data") / "radiology_words.tsv"
WORD = re.compile(r"[a-z][a-z0-9-]+")


def words(text: str) -> list[str]:
    """The caption's features: lower-cased words of two or more characters starting with a letter."""
    return WORD.findall(text.lower())


@cache
def load_table(path: Path = TABLE) -> tuple[dict[str, float], float, float]:
    """(word weights, intercept, threshold) of a table written by ``write_table``."""
    weights: dict[str, float] = {}
    meta: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("\t")
        if key.startswith("#"):
            meta[key.lstrip("# ")] = float(value)
        else:
            weights[key] = float(value)
    return weights, meta["intercept"], meta["threshold"]


def write_table(path: Path, weights: dict[str, float], intercept: float, threshold: float) -> None:
    lines = [f"# intercept\t{intercept:.6f}", f"# threshold\t{threshold:.4f}"]
    lines += [f"{w}\t{v:.6f}" for w, v in sorted(weights.items()) if abs(v) >= 1e-4]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def radiology_probability(text: str, path: Path = TABLE) -> float:
    weights, intercept, _ = load_table(path)
    z = intercept + sum(weights.get(w, 0.0) for w in set(words(text)))
    return 1.0 / (1.0 + math.exp(-z))


def is_radiology(text: str, path: Path = TABLE) -> bool:
    return radiology_probability(text, path) >= load_table(path)[2]
