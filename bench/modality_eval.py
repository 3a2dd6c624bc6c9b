"""Modality hints on ROCO captions (``shared/data/evalsets/roco_test``): filled where the caption says so?

- radiology: share of ROCO's radiology captions with a named radiology modality hint (CT, MRI ...),
  and with that or the coarse ``radiology`` hint (planes, projections, radiological signs: "Axial
  image showing ..."); goal >= 0.95; captions that name no modality at all count as misses;
- agreement: against the modality concepts QuickUMLS found in each caption (ROCO's ``cuis.txt``, an
  independent silver standard that misses most abbreviations such as CT or MRI): share of captions
  with a reference modality whose hints include it, per modality;
- non-radiology: share of ROCO's non-radiology captions given a radiology modality (lower is better).

Captions are split by a hash of their id: a quarter aside (looked at only at the end), the rest tune.
Run: ``python bench/modality_eval.py``.
"""
from __future__ import annotations

import zlib
from collections import Counter
from pathlib import Path

from medcorpus.transforms.concept_hints import RADIOLOGY, RADIOLOGY_MODALITIES, caption_modalities

ROCO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "evalsets" / "roco_test"
# ROCO's QuickUMLS CUIs of modality concepts -> hint tag
REFERENCE = {"C0040405": "ct", "C0041618": "ultrasound", "C0013516": "ultrasound", "C0412555": "ultrasound",
             "C1306645": "xray", "C0043299": "xray", "C1962945": "xray", "C1548003": "xray",
             "C0002978": "angiography", "C0032743": "pet", "C0024671": "mammography", "C0016356": "fluoroscopy",
             "C0231881": "mri"}


def split_of(rid: str) -> str:
    return "aside" if zlib.crc32(rid.encode()) % 4 == 0 else "tune"


def _read(path: Path) -> dict[str, list[str]]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        rid, _, rest = line.partition("\t")
        out[rid] = [x for x in rest.split("\t") if x.strip()]
    return out


def evaluate(kind: str = "radiology") -> dict[str, dict[str, float]]:
    captions = {k: " ".join(v) for k, v in _read(ROCO / kind / "captions.txt").items()}
    cuis = _read(ROCO / kind / "cuis.txt")
    out: dict[str, dict[str, float]] = {}
    for split in ("tune", "aside"):
        ids = [i for i in captions if split_of(i) == split]
        hints = {i: caption_modalities(captions[i]) for i in ids}
        radiology = sum(bool(hints[i] & RADIOLOGY_MODALITIES) for i in ids)
        row = {"captions": len(ids), "any_modality": sum(bool(h) for h in hints.values()) / len(ids),
               "radiology_modality": radiology / len(ids),
               "radiology_or_named": sum(bool(hints[i] & RADIOLOGY) for i in ids) / len(ids)}
        hit, total = Counter(), Counter()
        for i in ids:
            for tag in {REFERENCE[c] for c in cuis.get(i, []) if c in REFERENCE}:
                total[tag] += 1
                hit[tag] += tag in hints[i]
        if total:
            row["agreement"] = sum(hit.values()) / sum(total.values())
            row.update({f"agreement_{t}": hit[t] / total[t] for t in sorted(total)})
        out[split] = row
    return out


def main() -> None:
    for kind in ("radiology", "non-radiology"):
        for split, row in evaluate(kind).items():
            print(kind, split, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in row.items()))


if __name__ == "__main__":
    main()
