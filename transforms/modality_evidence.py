"""Imaging modality from indirect evidence: the signs a radiologist reads the modality from when the
caption never names it ("hyperintense on T2" is MRI, "hypoechoic" ultrasound, "SUVmax" PET).

One table, ``EVIDENCE``: (modality, tier, case-insensitive words, case-sensitive abbreviations).
Tier 1 holds signs that belong to one technique (signal, density and echo words, views and
projections, tracers, contrast studies); tier 2 holds weaker priors (fractures and fixation hardware
are followed up on radiographs, fetal structures on ultrasound), used only where no tier-1 sign fires.
Within a tier the modality with most matching rows wins (ties keep every tied modality); a caption
with no matching row gets nothing, so captions without evidence stay without a hint.
``bench/modality_eval.py`` measures each tier's agreement with the modality words of the captions
that also name their modality.
"""
from __future__ import annotations

import re
from collections import Counter

EVIDENCE: tuple[tuple[str, int, str, str | None], ...] = (
    # MRI: signal behaviour, sequences, MR-only contrast and techniques, other languages' names
    ("mri", 1, r"hyper-?intens\w*|hypo-?intens\w*|iso-?intens\w*|signal (?:intensity|void|loss|drop)|"
               r"\bhigh signal|\blow signal|\bt[12][- ]?(?:weighted|wi|w|hyper\w*|hypo\w*|images?|sequences?|map)\b|"
               r"\bt2\*|\bflair\b|diffusion(?:[- ]weighted)?|restricted diffusion|apparent diffusion|gadolinium|"
               r"gadoxetic|\bgd-?dtpa|fat[- ](?:sat\w*|suppress\w*)|\bstir\b|susceptibility|spectroscopy|"
               r"tractograph\w*|fractional anisotropy|spin[- ]echo|gradient[- ]echo|inversion recovery|"
               r"\bsequences?\b|\bangio-?mr\w*|\d(?:\.\d)? ?tesla|\d(?:\.\d)? ?T (?:scanner|magnet|MR)|"
               r"\bb ?= ?\d+ ?s/mm|time[- ]of[- ]flight|steady[- ]state free precession|ultra-?short echo",
     r"\bT[12]\b|\b(?:IRM|RMN|DWI|ADC|SWI|FLAIR|STIR|T1WI|T2WI|T1W|T2W|T2-WI|T1-WI|TSE|FSE|GRE|DTI|BOLD|MRS|"
     r"FIESTA|SSFP|2DTOF|3DTOF|UTE|DW)\b|\bat [13](?:\.5)? ?T\b"),
    # CT: density and attenuation, windows, reconstructions, HRCT signs, other languages' names
    ("ct", 1, r"hypo-?dens\w*|hyper-?dens\w*|iso-?dens\w*|\battenuation|hounsfield|\b\d+\s?HU\b|"
              r"(?:lung|bone|mediastinal|soft[- ]tissue|brain) window|reformat\w*|curv\w*[- ]?planar|"
              r"multi-?planar|volume[- ]render\w*|3d[- ]reconstruct\w*|three-dimensional reconstruct\w*|"
              r"maximum intensity|minimum intensity|ground[- ]glass|crazy[- ]paving|tree[- ]in[- ]bud|angiotomogra\w*|"
              r"\btomogra\w*|endoluminal view|virtual (?:colonoscop|bronchoscop|endoscop)\w*|"
              r"topogra\w*|dose distribution|tomodensit\w*|(?:arthro|angio|uro|entero)scanner|scann?ogra\w*|"
              r"\b(?:d'un|du|au|le) scanner|\bscanner (?:c[ée]r[ée]bral|thoraci\w*|abdomin\w*|cranio\w*|inject\w*)|"
              r"\b(?:high|low)[- ]density (?:lesion|mass|area|stone|focus|collection)|fat stranding|angioscan\w*|"
              r"inflammatory stranding",
     r"\b(?:TC|TAC|TDM|MPR|MIP|MinIP|VRT|HU|CTV|PTV|GGO)\b|\bCT(?=[a-z])"),
    # ultrasound: echogenicity, acoustic signs, echocardiographic views, probes, obstetric biometry
    ("ultrasound", 1, r"\b(?:hyper|hypo|iso|an)-?ec[h]?o(?:ic|gen\w*)|echogen\w*|echotexture|echo-?structure|"
                      r"acoustic (?:shadow\w*|enhancement)|posterior acoustic|calipers?|"
                      r"doppler|colou?r[- ]flow|power flow|spectral (?:wave|trace)|\bm-mode|\bb-mode|parasternal|"
                      r"apical (?:two|three|four|five|2|3|4|5)[- ]?chamber|chamber view|(?:long|short)[- ]axis view|"
                      r"subcostal|suprasternal|mid-?esophageal|midoesophageal|trans-?esophageal|trans-?thoracic|"
                      r"transvaginal|transabdominal|transrectal|transperineal|endovaginal|transducer|"
                      r"\becho\b|ecogra\w*|sonoelast\w*|elastogra\w*|gestational sac|crown[- ]rump|nuchal|"
                      r"biparietal|longitudinal strain|speckle|contrast-enhanced ultra\w*|hd[- ]?flow|intima[- ]media",
     r"\b(?:IOUS|UBM|TPU|TVUS|TVS|TAUS|TRUS|POCUS|EBUS|CDUS|CDFI|PSV|EDV|TAPSE|LVOT|RVOT|CDI|TGC)\b|\b[245]C view"),
    # X-ray: projections, views, chest-film anatomy, dental films, portal images
    ("xray", 1, r"\b(?:pa|ap|lateral|frontal|oblique|antero[- ]?posterior|postero[- ]?anterior|axillary|skyline|inlet|outlet|"
                r"sunrise|mortise|waters'?|towne'?s?|lordotic|decubitus|weight[- ]bearing|standing|cross[- ]table|"
                r"swimmer'?s?|frog[- ]leg|merchant) (?:views?|projections?|films?|images?|radiographs?)|"
                r"lung fields?|costophrenic|cardiothoracic ratio|hemi-?diaphragms?|cardiac silhouette|"
                r"air under the|panoram\w*|periapical|bitewing|occlusal (?:view|film|radiograph)|cephalometr\w*|"
                r"radiovisiogra\w*|"
                r"megavoltage|portal (?:image|film)|plain (?:view|abdomen|abdominal|image)|\bplain\b|"
                r"radio-?o?pa(?:que|c\w*)|radiolucen\w*|\bskiagram|(?:gas|air) under ?(?:the )?diaphragm|gasless abdomen|"
                r"r[öo]ntgen\w*",
     r"\b(?:CXR|AXR|KUB|OPG|OPT|OPTG|IOPA|RVG|RTG)\b|\b[Cc]hest (?:PA|AP)\b|\bAP (?:semi-?)?(?:erect|supine)"),
    # PET and nuclear medicine: tracers, uptake, metabolic words
    ("pet", 1, r"\buptake|\bsuv\w*|\bfdg\b|fluorodeoxy\w*|hypermetabol\w*|hypometabol\w*|metabolic activity|"
               r"\bavid\w*|psma|\b68ga|ga-?68|18f-|\bf-18|fluciclovine|dotatate|amyloid pet",
     r"\b(?:SUV|SUVmax|FDG|PSMA)\b"),
    ("spect", 1, r"99m-?tc|tc-?99m|technetium|\bmibg|octreotide scan\w*|\bmag-?3\b|\bdmsa\b|\bmdp\b|"
                 r"gallium scan|thallium|\bi-?131|131-?i\b|iodine-131|\bi-?123|gamma camera|"
                 r"cold (?:nodule|spot|area)|perfusion scan|ventilation[- ]perfusion|whole[- ]body scan|"
                 r"scintigraph\w*|planar image",
     r"\b(?:V/Q|MIBI|HMPAO|DaTscan)\b"),
    # angiography and interventional radiology: catheter work, embolization, selective runs
    ("angiography", 1, r"emboli[sz]ation|embolized|\bcoils?\b|coiling|micro-?catheter\w*|"
                       r"selective (?:injection|catheteri\w*|run)|arterial phase run|road-?map|"
                       r"angioplasty|run-?off|blush|"
                       r"collateral (?:vessels|circulation)|\bflow reversal|"
                       r"catheteri[sz]ation|coronary (?:artery )?injection",
     r"\b(?:TACE|PTA|PCI|LAD|LCX|RCA|AVM|AVF|RAO|LAO)\b"),
    # contrast studies under fluoroscopy: the -gram spellings, contrast agents
    ("fluoroscopy", 1, r"\w+(?<!di)agram\b|esophagram|oesophagram|barium|c-arm|"
                       r"water-?soluble contrast|contrast (?:swallow|study|enema|meal)|follow[- ]through|"
                       r"loopogra\w*|dacryocystogra\w*|sialogra\w*|gastrografin|image intensifier|upper GI (?:study|series)",
     r"\b(?:UGI|SBFT|VCUG|RGU)\b"),
    # weaker priors: what the finding is usually imaged with
    ("xray", 2, r"fractur\w*|\bscrews?\b|\bk-?wires?|prosthes[ie]s|"
                r"arthroplast\w*|osteotom\w*|(?:internal|external) fixat\w*|fixator|\bnail\w*|"
                r"bone graft\w*|callus|nonunion|malunion|osteosynthes\w*|"
                r"\bteeth\b|\btooth\b|molar|premolar|incisor|mesiodens|root canal|alveolar bone|"
                r"pneumothora\w*|pneumopericard\w*|cardiomegal\w*|"
                r"central line|pacemaker|"
                r"scoliosis|kyphosis|hallux|bone age|rickets",
     None),
    ("ct", 2, r"(?:arterial|portal[- ]venous|venous|delayed|nephrographic|excretory) phase|post-?contrast", None),
    ("ultrasound", 2, r"\bfetal|\bfoetal|gestation\w*|placent\w*|endometri\w*|"
                      r"testic\w*|scrot\w*|"
                      r"ventricular function|valve|ejection fraction|"
                      r"vegetation",
     None),
    ("mri", 2, r"white matter|demyelin\w*|menisc\w*|bone marrow (?:o)?edema|"
               r"spinal cord|\bcord\b|pituitary|labr\w*|disc (?:herniation|protrusion|extrusion)|"
               r"gyrus|gyri|hippocamp\w*|basal ganglia|thalam\w*",
     None),
    ("angiography", 2, r"coronary arter\w*|occlusion|vasospasm",
     None),
)
_RULES = [(tag, tier, re.compile(words, re.I), re.compile(abbr) if abbr else None)
          for tag, tier, words, abbr in EVIDENCE]
TIERS = tuple(sorted({tier for _, tier, _, _ in EVIDENCE}))


def evidence_votes(text: str, tier: int) -> Counter[str]:
    """Matching evidence rows per modality in one tier."""
    votes: Counter[str] = Counter()
    for tag, t, words, abbr in _RULES:
        if t == tier:
            votes[tag] += len(words.findall(text)) + (len(abbr.findall(text)) if abbr else 0)
    return +votes


def indirect_modalities(text: str, max_tier: int = TIERS[-1]) -> tuple[set[str], int | None]:
    """The modalities the strongest tier with any evidence points to (most votes; ties keep all), and that tier."""
    for tier in TIERS:
        if tier > max_tier:
            break
        votes = evidence_votes(text, tier)
        if votes:
            top = max(votes.values())
            return {tag for tag, n in votes.items() if n == top}, tier
    return set(), None
