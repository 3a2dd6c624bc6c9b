"""Anatomy and imaging-modality hints derived from linked concepts (inputs to the image-type tags).

Hints come from the concepts' preferred names and semantic groups, not from CUI lists, so they work with
any vocabulary build: an Uberon ``lung`` and a UMLS ``Lung`` both give ``chest``. Modality hints need
modality concepts in the vocabulary (a UMLS build has ``X-Ray Computed Tomography``; the licence-free
ontologies carry none, so with them the modality list stays empty).
"""
from __future__ import annotations

import re
from typing import Any, Iterable

# coarse body region <- words in the name of an anatomy concept (first matching rule wins)
REGION_RULES: tuple[tuple[str, str], ...] = (
    ("head", r"\b(brain|cerebr\w*|cerebell\w*|skull|cranium|cranial|head|face|orbit|eye|retina|nose|nasal|"
             r"sinus|ear|mouth|tongue|teeth|tooth|mandible|maxilla|jaw|hippocamp\w*|thalam\w*|pituitary|"
             r"ventricle of brain|corpus callosum|white matter|gr[ae]y matter|meninge\w*|temporal lobe|"
             r"frontal lobe|parietal lobe|occipital lobe|brainstem|pons|medulla oblongata)\b"),
    ("neck", r"\b(neck|thyroid|larynx|pharynx|trachea|cervical|carotid|jugular|parotid|tonsil)\b"),
    ("spine", r"\b(spine|spinal|vertebra\w*|vertebral column|intervertebral|sacrum|coccyx|lumbar)\b"),
    ("breast", r"\b(breast|mammary)\b"),
    ("chest", r"\b(lung|pulmonary|bronch\w*|pleura\w*|thorax|thoracic|chest|heart|cardiac|myocardi\w*|"
              r"pericardi\w*|atri\w*|ventricle|aorta|aortic|mediastin\w*|rib|sternum|esophag\w*|diaphragm)\b"),
    ("abdomen", r"\b(abdom\w*|liver|hepat\w*|gallbladder|bile duct|biliary|pancrea\w*|spleen|stomach|gastric|"
                r"duoden\w*|jejun\w*|ile\w*|colon|intestin\w*|bowel|rectum|appendix|kidney|renal|adrenal|"
                r"peritone\w*|mesenter\w*|omentum|ureter)\b"),
    ("pelvis", r"\b(pelvi\w*|bladder|uterus|uterine|ovar\w*|prostate|testis|cervix|vagina|hip|placenta)\b"),
    ("upper_limb", r"\b(arm|shoulder|humerus|elbow|forearm|radius|ulna|wrist|hand|finger|clavicle|scapula|"
                   r"axilla)\b"),
    ("lower_limb", r"\b(leg|thigh|femur|knee|patella|tibia|fibula|ankle|foot|toe|calcaneus)\b"),
    ("skin", r"\b(skin|dermis|epidermis)\b"),
)
MODALITY_RULES: tuple[tuple[str, str], ...] = (
    ("ct", r"\b(computed tomography|computerized tomography|ct scan|cat scan|x-ray computed)\b"),
    ("mri", r"\b(magnetic resonance|mri|nmr imaging|diffusion weighted)\b"),
    ("pet", r"\b(positron|pet scan)\b"),
    ("spect", r"\b(single photon|spect|scintigra\w*|radionuclide imaging|bone scan)\b"),
    ("ultrasound", r"\b(ultrason\w*|sonograph\w*|echocardiograph\w*|doppler|echography)\b"),
    ("angiography", r"\b(angiogra\w*|arteriogra\w*|venogra\w*)\b"),
    ("mammography", r"\b(mammogra\w*)\b"),
    ("fluoroscopy", r"\b(fluoroscop\w*)\b"),
    ("xray", r"\b(radiogra\w*|x-ray|roentgenogra\w*|plain film|diagnostic radiologic)\b"),
    ("endoscopy", r"\b(endoscop\w*|colonoscop\w*|gastroscop\w*|bronchoscop\w*|laparoscop\w*)\b"),
    ("histology", r"\b(histolog\w*|hematoxylin|haematoxylin|eosin|immunohistochem\w*|biopsy|cytolog\w*|stain\w*)\b"),
    ("microscopy", r"\b(microscop\w*)\b"),
    ("ophthalmic", r"\b(fundus photograph\w*|optical coherence tomography|fluorescein angiogra\w*)\b"),
    ("dermoscopy", r"\b(dermoscop\w*|dermatoscop\w*)\b"),
)
_REGION = [(tag, re.compile(rx, re.I)) for tag, rx in REGION_RULES]
_MODALITY = [(tag, re.compile(rx, re.I)) for tag, rx in MODALITY_RULES]


def _get(c: Any, key: str) -> Any:
    return c.get(key) if isinstance(c, dict) else getattr(c, key)


def _first_tag(rules: list[tuple[str, re.Pattern[str]]], text: str) -> str | None:
    for tag, rx in rules:
        if rx.search(text):
            return tag
    return None


def hints(concepts: Iterable[Any]) -> dict[str, list[str]]:
    """``{"anatomy": [...regions], "modality": [...]}`` from non-negated concepts (objects or dicts)."""
    anatomy: set[str] = set()
    modality: set[str] = set()
    for c in concepts:
        if _get(c, "negated"):
            continue
        name = _get(c, "name") or ""
        group = _get(c, "group")
        if group == "ANAT":
            tag = _first_tag(_REGION, name)
            if tag:
                anatomy.add(tag)
        if group in ("PROC", "DEVI", "CONC", None):
            tag = _first_tag(_MODALITY, name)
            if tag:
                modality.add(tag)
    return {"anatomy": sorted(anatomy), "modality": sorted(modality)}
