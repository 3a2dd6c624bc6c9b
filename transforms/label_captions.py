"""Captions for images that come with a class label only (classification datasets).

Several templates per sample, chosen deterministically by the sample key (the same sample gets the
same captions in every rebuild, and a dataset does not repeat one sentence for every image); every
caption names the label, with the descriptor's description of it when there is one."""
from __future__ import annotations

import hashlib

TEMPLATES = (
    "{modality} of the {body_part} showing {finding}.",
    "{finding}, seen on a {modality} of the {body_part}.",
    "{finding} on {modality} of the {body_part}.",
    "{modality}, {body_part}. Finding: {finding}.",
    "This {body_part} {modality} shows {finding}.",
    "Image labelled {label}: {modality} of the {body_part} with {finding}.",
    "{modality} ({body_part}) demonstrating {finding}.",
    "An example of {finding} ({modality}, {body_part}).",
)


def readable(label: str) -> str:
    """``pleural_effusion`` → ``pleural effusion``."""
    return " ".join(label.replace("_", " ").replace("-", " ").split())


def label_captions(key: str, label: str, description: str | None, modality: str | None, body_part: str | None,
                   count: int = 3) -> list[str]:
    """``count`` distinct captions of one labelled image (the first is its caption)."""
    name = readable(label)
    finding = description if description and name.lower() in description.lower() else (
        f"{name} ({description})" if description else name)
    values = {"label": name, "finding": finding, "modality": modality or "medical image",
              "body_part": (body_part or "body").lower()}
    start = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16)
    picked = [TEMPLATES[(start + 3 * i) % len(TEMPLATES)] for i in range(min(count, len(TEMPLATES)))]
    return [_sentence(t.format(**values)) for t in picked]


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]
