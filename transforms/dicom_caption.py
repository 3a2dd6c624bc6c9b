"""A DICOM image's text when it has no report: a caption built from its de-identified header.

Only coded or numeric attributes the Basic Profile keeps are read (modality, body part, view
position, orientation, whether a Contrast/Bolus module is present, the window used), so the caption
can say nothing the de-identification removed: "Axial CT of the chest with contrast, lung window."
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset

MODALITY_NAMES = {
    "CT": "CT", "MR": "MRI", "CR": "radiograph", "DX": "radiograph", "PX": "panoramic radiograph",
    "IO": "intraoral radiograph", "MG": "mammogram", "US": "ultrasound image", "PT": "PET image",
    "NM": "nuclear medicine image", "XA": "X-ray angiogram", "RF": "fluoroscopy image", "OT": "medical image",
    "SC": "secondary capture image", "SM": "slide microscopy image", "XC": "clinical photograph",
    "ES": "endoscopy image", "OP": "ophthalmic photograph", "OPT": "optical coherence tomography image",
    "SEG": "segmentation map", "RTDOSE": "radiotherapy dose map", "RTIMAGE": "radiotherapy portal image",
}
VIEWS = {"PA": "posteroanterior", "AP": "anteroposterior", "LL": "left lateral", "RL": "right lateral",
         "LAT": "lateral", "LATERAL": "lateral", "LLD": "left lateral decubitus", "RLD": "right lateral decubitus",
         "CC": "craniocaudal", "MLO": "mediolateral oblique", "ML": "mediolateral", "LM": "lateromedial"}
WINDOW_WORDS = {"soft_tissue": "soft-tissue window", "voi_lut": "VOI LUT"}


def orientation(ds: Dataset) -> str | None:
    """axial, coronal or sagittal: the patient axis closest to the slice normal."""
    iop = ds.get("ImageOrientationPatient")
    if not iop or len(iop) != 6:
        return None
    try:
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    except (TypeError, ValueError):
        return None
    if not np.isfinite(normal).all() or not normal.any():
        return None
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value).strip() or None if value is not None else None


def imaging_columns(ds: Dataset) -> dict[str, Any]:
    """Manifest columns read from the de-identified header."""
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        spacing = [float(v) for v in spacing][:2] if spacing else None
    except (TypeError, ValueError):
        spacing = None
    return {"image_modality": _text(ds, "Modality"), "body_part": _text(ds, "BodyPartExamined"),
            "view_position": _text(ds, "ViewPosition") or orientation(ds), "pixel_spacing": spacing}


def caption(ds: Dataset, window: str) -> str:
    """One sentence from the header: orientation or view, modality, body part, contrast, window."""
    modality = _text(ds, "Modality") or "OT"
    noun = MODALITY_NAMES.get(modality.upper(), f"{modality} image")
    view = _text(ds, "ViewPosition")
    plane = orientation(ds) if modality in ("CT", "MR", "PT", "NM") else None
    lead = VIEWS.get(view.upper(), view.lower()) if view else plane
    text = f"{lead} {noun}" if lead else noun
    body = _text(ds, "BodyPartExamined")
    if body:
        text += f" of the {body.lower().replace('_', ' ')}"
    if "ContrastBolusAgent" in ds or "ContrastBolusRoute" in ds:
        text += " with contrast"
    if window in ("color", "range"):
        pass
    elif window.startswith("C="):
        text += f", window {window}"
    else:
        text += f", {WINDOW_WORDS.get(window, window.replace('_', ' ') + ' window')}"
    return text[0].upper() + text[1:] + "."
