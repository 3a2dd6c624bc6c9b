"""DICOM de-identification: the Basic Application Level Confidentiality Profile (PS3.15 Annex E).

The action of every attribute comes from Table E.1-1 as ``dicom-anonymizer`` ships it, generated
from the standard (release 2026c); its own engine is not used because it acts on the top level only
(Annex E applies at every nesting level) and replaces UIDs with random ones (a rebuild must give the
same pseudonyms). Here, at every level of every sequence:

* X (and every action that allows X: X/Z, X/D, X/Z/D) removes the attribute, Z empties it (its
  presence stays: a Contrast/Bolus module says contrast was given without saying which), D removes
  it unless it is a date the dates option shifts; U (and X/Z/U* on a UI) replaces the UID by a keyed
  hash (``2.25.<int>``): the same study keeps its pseudonym across rebuilds and nobody without the
  corpus secret can recompute it;
* private attributes, overlays and curves are removed; any remaining person name is emptied;
* dates: ``shift`` moves every date (DA, and the date of DT) back by a keyed per-patient number of
  days (CID 7050 113107, Retain Longitudinal Temporal Information with Modified Dates), ``remove``
  treats dates like any other attribute of the table.

``pseudo_uid`` (and ``pseudonyms.pseudonym``) give the keyed identifiers that leave the module (unit ids, keys,
pseudo-id columns). The CID 7050 codes a sample records are in ``method_codes``.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from pydicom.dataset import Dataset
from pydicom.dataelem import DataElement
from pydicom.tag import BaseTag

from medcorpus.transforms.options import PositiveInt
from medcorpus.transforms.pseudonyms import keyed_digest, pseudonym

BASIC_PROFILE = "113100"
MODIFIED_DATES = "113107"
# Table E.1-1 categories (dicom-anonymizer's names) → the action taken here
_CATEGORY_ACTION = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z", "X_Z_TAGS": "X",
                    "X_D_TAGS": "X", "X_Z_D_TAGS": "X", "X_Z_U_STAR_TAGS": "XU"}
TABLE_RELEASE = "dicomfields_2026c"


@dataclass(frozen=True)
class DeidOptions:
    dates: Literal["shift", "remove"] = "shift"
    max_shift_days: PositiveInt = 3650  # a patient's dates move back by 1..max_shift_days days


@dataclass
class DeidStats:
    """What de-identifying one instance did, by attribute keyword (for the build's report)."""

    removed: Counter[str] = field(default_factory=Counter)
    emptied: Counter[str] = field(default_factory=Counter)
    replaced: Counter[str] = field(default_factory=Counter)  # UIDs hashed, dates shifted


def pseudo_uid(secret: bytes, uid: str) -> str:
    """A valid DICOM UID for ``uid`` (the 2.25 root: a 128-bit integer) from the keyed hash."""
    digest = keyed_digest(secret, "uid", uid.strip())
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def patient_key(ds: Dataset) -> str:
    """Who the patient is, as the header says it (before de-identification): id, issuer, name."""
    return "\x1f".join(str(ds.get(k) or "") for k in ("PatientID", "IssuerOfPatientID", "PatientName"))


def method_codes(options: DeidOptions) -> list[str]:
    return [BASIC_PROFILE, MODIFIED_DATES] if options.dates == "shift" else [BASIC_PROFILE]


@lru_cache(maxsize=1)
def _table() -> tuple[dict[int, str], tuple[tuple[int, int, int, int, str], ...]]:
    """Tag → action for the listed attributes, and (group, element, masks, action) for repeating groups."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    tables = dicom_anonymization_database_selector(TABLE_RELEASE)
    exact: dict[int, str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for category, action in _CATEGORY_ACTION.items():
        for tag in tables[category]:
            if len(tag) == 2:
                exact[(tag[0] << 16) | tag[1]] = action
            else:
                masked.append((tag[0], tag[1], tag[2], tag[3], action))
    return exact, tuple(masked)


def action_of(tag: BaseTag) -> str | None:
    exact, masked = _table()
    if int(tag) in exact:
        return exact[int(tag)]
    for group, element, gmask, emask, action in masked:
        if tag.group & gmask == group & gmask and tag.element & emask == element & emask:
            return action
    return None


def _shift_date(value: str, days: int) -> str | None:
    try:
        day = dt.datetime.strptime(value[:8], "%Y%m%d").date() - dt.timedelta(days=days)
    except ValueError:
        return None
    return day.strftime("%Y%m%d") + value[8:]


class _Deidentifier:
    def __init__(self, secret: bytes, options: DeidOptions, shift_days: int) -> None:
        self.secret, self.options, self.shift_days = secret, options, shift_days
        self.stats = DeidStats()

    def dataset(self, ds: Dataset) -> None:
        for elem in list(ds):
            self.element(ds, elem)

    def element(self, ds: Dataset, elem: DataElement) -> None:
        name = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
        if elem.tag.is_private:
            del ds[elem.tag]
            self.stats.removed["private"] += 1
            return
        action = action_of(elem.tag)
        if elem.VR in ("DA", "DT") and self.options.dates == "shift" and action != "U":
            self.date(ds, elem, name)
        elif action == "U" or (action == "XU" and elem.VR == "UI"):
            self.uid(elem, name)
        elif action in ("X", "XU", "D"):
            del ds[elem.tag]
            self.stats.removed[name] += 1
        elif action == "Z" or elem.VR == "PN":
            if elem.value not in (None, "", b"") and not (elem.VR == "SQ" and len(elem.value) == 0):
                elem.value = [] if elem.VR == "SQ" else None
                self.stats.emptied[name] += 1
        elif elem.VR == "SQ":
            for item in elem.value:
                self.dataset(item)

    def uid(self, elem: DataElement, name: str) -> None:
        if elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [pseudo_uid(self.secret, str(v)) for v in values]
            elem.value = new if elem.VM > 1 else new[0]
            self.stats.replaced[name] += 1

    def date(self, ds: Dataset, elem: DataElement, name: str) -> None:
        if not elem.value:
            return
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        shifted = [_shift_date(str(v), self.shift_days) for v in values]
        if any(s is None for s in shifted):  # not a date we can shift (a range, a typo): it goes
            del ds[elem.tag]
            self.stats.removed[name] += 1
            return
        elem.value = shifted if elem.VM > 1 else shifted[0]
        self.stats.replaced[name] += 1


def deidentify(ds: Dataset, secret: bytes, options: DeidOptions = DeidOptions()) -> DeidStats:
    """De-identify ``ds`` in place (Annex E basic profile, keyed UIDs, dates per ``options``)."""
    days = 1 + int(pseudonym(secret, "date-shift", patient_key(ds), 12), 16) % options.max_shift_days
    worker = _Deidentifier(secret, options, days)
    if getattr(ds, "file_meta", None) is not None:
        worker.dataset(ds.file_meta)  # (0002,0003) Media Storage SOP Instance UID is a U attribute
    worker.dataset(ds)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "DICOM PS3.15 Annex E " + " ".join(method_codes(options))
    return worker.stats
