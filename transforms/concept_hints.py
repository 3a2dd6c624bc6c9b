"""Anatomy and imaging-modality hints derived from linked concepts (inputs to the image-type tags).

Hints come from the concepts' preferred names and semantic groups, not from CUI lists, so they work with
any vocabulary build: an Uberon ``lung`` and a UMLS ``Lung`` both give ``chest``. Modality hints come
from modality concepts in the vocabulary (a UMLS build has ``X-Ray Computed Tomography``; the
licence-free ontologies carry none) and from the caption's own modality words and abbreviations
(``caption_modalities``), so they are filled with any vocabulary; ``bench/modality_eval.py`` measures
them on ROCO's radiology captions.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from medcorpus.transforms.concept_matcher import NON_MEDICAL_PHRASES
from medcorpus.transforms.modality_evidence import indirect_modalities
from medcorpus.transforms.modality_model import is_radiology

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
    ("fundus", r"\b(fundus photograph\w*|fluorescein angiogra\w*)\b"),
    ("oct", r"\b(optical coherence tomography)\b"),
    ("dermoscopy", r"\b(dermoscop\w*|dermatoscop\w*)\b"),
)
# imaging modality <- the caption's own names for it: (tag, case-insensitive words, case-sensitive abbreviations).
# Abbreviations keep their case (CT, US, MR) so "us", "mr" in prose and MR = mitral regurgitation
# ("severe MR") do not count; MR counts only before an imaging word. Signs that imply a modality without
# naming it (hyperintense, hypoechoic, SUV ...) are the evidence table of ``modality_evidence``.
CAPTION_MODALITY_RULES: tuple[tuple[str, str, str | None], ...] = (
    ("ct", r"computed tomogra\w*|computeri[sz]ed (axial )?tomogra\w*|\bcat scan|tomodensitometr\w*|"
           r"\btdm\b|multi-?detector|multi-?slice|cone[- ]beam", r"\b(?:CT|CECT|NCCT|HRCT|MDCT|CBCT|CTA|CTPA|CTU)\b"),
    ("mri", r"magnetic resonance|\bt[12][- ]?weighted|diffusion[- ]weighted|\bmr (?:image|imaging|angiogra\w*|scan)",
     r"\b(?:MRI|fMRI|MRA|MRV|MRCP)\b|"
     r"\bMR(?=[\s-]+(?:imag|angio|scan|venog|sequence|spectro|enterog|arthrog|cholangio|T[12]|exam|study|urogra|"
     r"neurogra|elastogra|section|slice|view|axial|coronal|sagittal))"),
    ("xray", r"radiogra\w*|x ?-? ?rays?\b|roentgen\w*|plain films?|chest films?|orthopant\w*|pantomogra\w*|"
             r"panorex|cephalogra\w*|\bfilms?\b",
     r"\b(?:CXR|KUB|OPG|IOPA|DR)\b"),
    ("ultrasound", r"ultraso\w*|sonogra\w*|echocardiogra\w*|echogra\w*|\bduplex|\bsono-?\w*|\becho(?:c\w*)?\b",
     r"\b(?:US|USG|TTE|TEE|TOE|EUS|IVUS|CEUS|2D echo)\b"),
    ("pet", r"positron emission", r"\bPET\b"),
    ("spect", r"single[- ]photon|scintigra\w*|bone scan|radionuclide", r"\bSPECT\b"),
    ("angiography", r"(?<!fluorescein )(?<!indocyanine green )(?<!fluorescein-)(?<!icg )angiogra\w*|arteriogra\w*|"
                    r"venogra\w*|digital subtraction|portogra\w*|cholangiogra\w*|lymphangiogra\w*|aortogra\w*|"
                    r"ventriculogra\w*|cavogra\w*",
     r"\b(?:DSA|CTA|MRA|CTPA)\b"),
    ("mammography", r"mammogra\w*|tomosynthesis", None),
    ("fluoroscopy", r"fl(?:uo|ou)roscop\w*|barium (?:swallow|meal|enema|study)|contrast (?:swallow|enema)|"
                    r"cystourethrogra\w*|hysterosalpingogra\w*|urogra\w*|pyelo\w*gra(?:m|phy)\w*|fistulogra\w*|"
                    r"sialogra\w*|myelogra\w*|pancreat\w*ogra(?:m|phy)\w*|nephrostogra\w*|colostogra\w*|"
                    r"tubogra\w*|(?<!\bair )(?<!\bair-)bronchogra\w*|(?<!\bmr )(?<!\bct )arthrogra\w*|"
                    r"esophagogra\w*|oesophagogra\w*|defecogra\w*|opacification|urethrogra\w*|"
                    r"\bcontrast study|cystogra\w*|"
                    r"gastrointestinal series|small bowel (?:series|follow)",
     r"\b(?:ERCP|VCUG|MCUG|HSG|IVU|IVP|UGI|RUG)\b"),
    ("endoscopy", r"endoscop\w*|colonoscop\w*|gastroscop\w*|bronchoscop\w*|laparoscop\w*|cystoscop\w*|"
                  r"arthroscop\w*|hysteroscop\w*|duodenoscop\w*|thoracoscop\w*|sigmoidoscop\w*|"
                  r"esophagogastroduodenoscop\w*|capsule endoscop\w*", r"\b(?:EGD|EUS|ERCP)\b"),
    ("histology", r"histolog\w*|histopatholog\w*|hematoxylin|haematoxylin|\beosin|immunohistochem\w*|"
                  r"immunostain\w*|trichrome|periodic acid|cytolog\w*|\bstain(?:ed|ing)\b|photomicrograph\w*",
     r"\b(?:H&E|H & E|IHC|PAS)\b"),
    ("microscopy", r"microscop\w*|micrograph\w*|confocal|immunofluorescen\w*|scale bars?", r"\b(?:SEM|TEM)\b"),
    ("fundus", r"fundus|fundoscop\w*|funduscop\w*|fluorescein angiogra\w*|indocyanine green angiogra\w*|"
               r"retinal photograph\w*", r"\b(?:FA|FFA|ICGA|FAF)\b"),
    ("oct", r"optical coherence tomogra\w*", r"\b(?:OCT|SD-OCT|OCTA)\b"),
    ("dermoscopy", r"dermoscop\w*|dermatoscop\w*", None),
    ("photograph", r"\bphotograph\w*|\bphotos?\b|clinical (?:picture|appearance)|"
                   r"intra-?operative (?:view|image|finding)|"
                   r"gross (?:appearance|specimen|view)|macroscopic (?:view|appearance)", None),
    ("chart", r"\b(?:plots?|graphs?|bar charts?|histograms?|kaplan|scatter ?plots?|box ?plots?|forest plots?|"
              r"heat ?maps?|roc curves?|survival curves?)\b", None),
    ("diagram", r"schematic|diagram|flow ?chart|illustration|cartoon|drawing", None),
    # radiology of an unnamed modality: imaging planes, projections, radiological signs
    ("radiology", r"\b(?:axial|coronal|(?:mid|para)?sagittal|transverse|oblique|transaxial)\b|cross-?section\w*|"
                  r"reformat\w*|maximum intensity|"
                  r"volume[- ]render\w*|3d reconstruct\w*|\b(?:lateral|frontal|ap|pa|anteroposterior|"
                  r"posteroanterior) (?:view|projection)|\bscans?\b|enhanc\w*|opacit\w*|lucen\w*|attenuat\w*|"
                  r"calcifi\w*|consolidation|contrast (?:medium|agent|injection|material)|\bimaging\b|radiolog\w*|"
                  r"filling defects?|extravasation of contrast",
     r"\b(?:MPR|MIP|VRT|3D-?VR)\b"),
)
RADIOLOGY_MODALITIES = frozenset({"ct", "mri", "xray", "ultrasound", "pet", "spect", "angiography", "mammography",
                                  "fluoroscopy"})
RADIOLOGY = RADIOLOGY_MODALITIES | {"radiology"}
UNSPECIFIC = frozenset({"radiology", "photograph", "chart", "diagram"})  # names that do not tell the modality
_REGION = [(tag, re.compile(rx, re.I)) for tag, rx in REGION_RULES]
_MODALITY = [(tag, re.compile(rx, re.I)) for tag, rx in MODALITY_RULES]
_NOT_BODY = re.compile(r"\b(?:" + "|".join(r"\s+".join(map(re.escape, p)) for p in NON_MEDICAL_PHRASES) + r")\b", re.I)
_CAPTION_MODALITY = [(tag, re.compile(words, re.I), re.compile(abbr) if abbr else None)
                     for tag, words, abbr in CAPTION_MODALITY_RULES]


def _get(c: Any, key: str) -> Any:
    return c.get(key) if isinstance(c, dict) else getattr(c, key)


def _first_tag(rules: list[tuple[str, re.Pattern[str]]], text: str) -> str | None:
    for tag, rx in rules:
        if rx.search(text):
            return tag
    return None


def named_modalities(text: str) -> set[str]:
    """The modalities a caption names in its own words ("axial CT", "T2-weighted", "H&E", "fundus photograph")."""
    return {tag for tag, words, abbr in _CAPTION_MODALITY if words.search(text) or (abbr and abbr.search(text))}


def caption_modalities(text: str, learned: bool = True) -> set[str]:
    """The modalities a caption names, and where it names none, those its signs point to (``modality_evidence``:
    "hyperintense on T2" is MRI); ``radiology`` where it speaks of imaging planes but nothing tells the modality.
    A caption naming only a photograph, chart or diagram still takes the strong signs ("photograph of the plain
    abdominal view"), never the weaker priors. A caption with neither a name nor a sign gets ``radiology`` where
    it names inner anatomy and the learned word model (``modality_model``, with ``learned``) is confident it
    describes a radiology image: the model alone, trained on ROCO, calls long genomics and ecology captions
    radiology."""
    tags = named_modalities(text)
    if not tags - UNSPECIFIC:
        tags |= indirect_modalities(text, max_tier=1 if tags - {"radiology"} else 2)[0]
    if tags & RADIOLOGY_MODALITIES or tags - {"radiology"}:
        tags.discard("radiology")
    if not tags and learned and names_inner_anatomy(text) and is_radiology(text):
        tags.add("radiology")
    return tags


def names_inner_anatomy(text: str) -> bool:
    """Does the caption name a body region below the skin (``REGION_RULES``): what radiology images show.
    A body word inside another field's phrase ("diameter at breast height") is no body."""
    text = _NOT_BODY.sub(" ", text)
    return any(rx.search(text) for tag, rx in _REGION if tag != "skin")


def hints(concepts: Iterable[Any], text: str | None = None) -> dict[str, list[str]]:
    """``{"anatomy": [...regions], "modality": [...]}`` from non-negated concepts (objects or dicts)
    and, when given, the modality words of the caption ``text`` itself."""
    anatomy: set[str] = set()
    modality: set[str] = caption_modalities(text) if text else set()
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
