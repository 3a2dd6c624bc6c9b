"""What a collection says about itself: the descriptor (``dataset.yaml`` or ``dataset.json``) of
a labelled dataset or an image+report collection, validated strictly like the build config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from medcorpus.transforms.licenses import license_family, normalize_code
from medcorpus.transforms.options import PositiveInt, validated

EVAL_SPLITS = {"test": "test", "testing": "test", "val": "validation", "valid": "validation",
               "validation": "validation", "dev": "validation"}
"""Split names that mark evaluation data (their images are registered for decontamination)."""
SPLITS = {"train": "train", "training": "train", **EVAL_SPLITS}


@dataclass(frozen=True)
class DatasetInfo:
    """``name`` names keys and eval sets; ``license`` is a license code or name (``CC BY 4.0``,
    ``cc-by-nc-nd``): one that is not a Creative Commons or public-domain code is ``unknown``,
    which the license mapping puts in the ``other`` family. ``labels`` maps a label (folder name
    or CSV value) to the words a caption uses for it; ``csv`` names a (path, label[, split])
    table instead of the folder layout; ``captions_per_sample`` template captions per image."""

    name: str
    version: str | None = None
    modality: str | None = None
    body_part: str | None = None
    license: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    csv: str | None = None
    captions_per_sample: PositiveInt = 3

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], path: str) -> DatasetInfo:
        return validated(cls, values, path)

    def license_code(self) -> str:
        return normalize_code(self.license) or "unknown"

    def family(self, families: Mapping[str, Any] | None) -> str:
        return license_family(self.license_code(), families)


def split_name(raw: str | None) -> str | None:
    """``val``/``valid``/``dev`` → ``validation``, ``testing`` → ``test`` ...; unknown names stay."""
    if raw is None or not str(raw).strip():
        return None
    return SPLITS.get(str(raw).strip().lower(), str(raw).strip().lower())
