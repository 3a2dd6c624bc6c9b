"""Modality hints on ROCO captions (``shared/data/evalsets/roco_test``): filled where the caption says so?

- radiology: share of ROCO's radiology captions with a radiology modality hint (CT, MRI ...), from the
  caption's modality names or, where it names none, the signs of ``modality_evidence`` (goal >= 0.95);
  ``radiology_any`` also counts the coarse ``radiology`` value (imaging planes, or the learned word model of
  ``modality_model`` where nothing else speaks), ``radiology_any_no_model`` the same without that model;
  ``named_radiology`` is the share naming one; ``no_evidence`` the share left with no hint at all
  (captions such as "Normal right coronary artery." carry nothing to read the modality from);
- evidence agreement: on the captions that name a radiology modality, the share whose signs alone (the
  evidence table, names ignored) point to a named modality, per tier (``evidence_tier1``: signal,
  density, echo words ...; ``evidence_tier2``: the weaker anatomy and finding priors) with how many
  captions each tier decided (``..._n``);
- agreement: against the modality concepts QuickUMLS found in each caption (ROCO's ``cuis.txt``, an
  independent silver standard that misses most abbreviations such as CT or MRI): share of captions
  with a reference modality whose hints include it, per modality;
- non-radiology: the same shares on ROCO's non-radiology captions (lower is better).

Captions are split by a hash of their id: a quarter aside (looked at only at the end), the rest tune. The
word model was trained on tune captions (``bench/modality_words_table.py``), so its tune numbers are
in-sample; that script prints their cross-validated values.
Run: ``python bench/modality_eval.py [--aside]``.
"""
from __future__ import annotations

import sys
import zlib
from collections import Counter
from pathlib import Path

from medcorpus.transforms.concept_hints import RADIOLOGY, RADIOLOGY_MODALITIES, caption_modalities, named_modalities
from medcorpus.transforms.modality_evidence import TIERS, indirect_modalities

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


def evidence_agreement(texts: list[str]) -> dict[str, float]:
    """Per tier: of the captions naming a radiology modality and decided by that tier's signs, the share
    whose signs point to a named one."""
    hit, n = Counter(), Counter()
    for text in texts:
        named = named_modalities(text) & RADIOLOGY_MODALITIES
        if not named:
            continue
        for tier in TIERS:
            got, decided = indirect_modalities(text, max_tier=tier)
            if decided == tier:
                n[tier] += 1
                hit[tier] += bool(got & named)
    out: dict[str, float] = {}
    for tier in TIERS:
        out[f"evidence_tier{tier}"] = hit[tier] / n[tier] if n[tier] else 0.0
        out[f"evidence_tier{tier}_n"] = n[tier]
    return out


def evaluate(kind: str = "radiology") -> dict[str, dict[str, float]]:
    captions = {k: " ".join(v) for k, v in _read(ROCO / kind / "captions.txt").items()}
    cuis = _read(ROCO / kind / "cuis.txt")
    out: dict[str, dict[str, float]] = {}
    for split in ("tune", "aside"):
        ids = [i for i in captions if split_of(i) == split]
        hints = {i: caption_modalities(captions[i]) for i in ids}
        named = {i: named_modalities(captions[i]) & RADIOLOGY_MODALITIES for i in ids}
        words_only = {i: caption_modalities(captions[i], learned=False) for i in ids}
        row = {"captions": len(ids),
               "radiology_modality": sum(bool(hints[i] & RADIOLOGY_MODALITIES) for i in ids) / len(ids),
               "radiology_any": sum(bool(hints[i] & RADIOLOGY) for i in ids) / len(ids),
               "radiology_any_no_model": sum(bool(words_only[i] & RADIOLOGY) for i in ids) / len(ids),
               "named_radiology": sum(bool(named[i]) for i in ids) / len(ids),
               "no_evidence": sum(not h for h in hints.values()) / len(ids)}
        row.update(evidence_agreement([captions[i] for i in ids]))
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
            if split == "aside" and "--aside" not in sys.argv:  # looked at only at the end
                continue
            print(kind, split, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in row.items()))


if __name__ == "__main__":
    main()
