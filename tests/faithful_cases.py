"""A planted evaluation set for the faithfulness gate, built from real captions in ../shared/data.

Faithful outputs: hand-written paraphrases of real captions (some with the finding moved first), and
rule-made rewrites that keep the meaning (abbreviation and synonym swaps, unit conversion, dropped or
reordered sentences).
Hallucinated outputs: the same captions with one planted error — an invented diagnosis, a changed
number, an invented measurement, a flipped side or a flipped negation.
Outputs without content: text that says nothing checkable, another caption's text (off topic), a
random token stream like a random-weight model's, and the caption's own words shuffled (word salad).
Each case belongs to the tune split or the aside split (by a hash of its source id, a quarter aside):
tune while looking at tune only; report aside as well.
"""
from __future__ import annotations

import json
import random
import re
import zlib
from dataclasses import dataclass

from testdata import DATA, ROCO_CAPTIONS

MEDICAT = DATA / "compound" / "medicat_sample" / "sample.jsonl"


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    generated: str
    faithful: bool
    kind: str

    @property
    def split(self) -> str:
        """``aside`` for a quarter of the source captions (all cases of one caption share a split)."""
        base = self.id.split("-")[0]
        return "aside" if zlib.crc32(base.encode()) % 4 == 0 else "tune"


def roco_captions(n: int = 60) -> list[tuple[str, str]]:
    """The first ``n`` English ROCO test captions of 60-300 characters (deterministic)."""
    out = []
    for line in ROCO_CAPTIONS.read_text(encoding="utf-8").splitlines():
        rid, _, cap = line.partition("\t")
        cap = cap.strip()
        if 60 <= len(cap) <= 300 and re.search(r"\b(the|of|with|showing|shows)\b", cap):
            out.append((rid, cap))
        if len(out) >= n:
            break
    return out


# Hand-written paraphrases (and one planted error each) of real captions; the ids name the source.
HAND = [
    ("ROCO_00006", "Coronal non-contrast CT demonstrating several large neoplasms with rim enhancement in the "
     "abdomen and liver.", "Coronal CT demonstrating several large tumors in the abdomen and liver, consistent "
     "with hepatocellular carcinoma."),
    ("ROCO_00016", "Axial MR angiogram showing increased arterial signal in the cavernous sinuses, left greater "
     "than right, in keeping with a carotid cavernous fistula (arrow).", "Axial MR angiogram showing increased "
     "arterial signal in the right cavernous sinus, in keeping with a carotid cavernous fistula (arrow)."),
    ("ROCO_00036", "Venogram showing extensive thrombus formation in the femoropopliteal vein prior to "
     "thrombolysis.", "Venogram showing extensive thrombus formation in the femoropopliteal vein prior to "
     "thrombolysis, with a pulmonary embolism."),
    ("ROCO_00138", "CT of the abdomen; the arrow marks the probable cholecystocutaneous fistulous tract.",
     "CT of the abdomen; the arrow marks a 12 mm cholecystocutaneous fistulous tract."),
    ("ROCO_00176", "Panoramic radiograph obtained four years later: unilocular radiolucency in the left ramus.",
     "Panoramic radiograph obtained two years later: unilocular radiolucency in the left ramus."),
    ("ROCO_00185", "AP pelvic radiograph at the latest follow-up.",
     "AP pelvic radiograph at the latest follow-up showing avascular necrosis of the femoral head."),
]


# Paraphrases that change the form of words, not their meaning (morphology, abbreviations, relational
# adjectives), written by reading the real captions they rewrite.
MORPHOLOGY = [
    ("ROCO_12519", "Left subclavian arteriogram showing thrombosis of the brachial artery at the mid-humeral level, "
     "with extensive proximal collaterals."),
    ("ROCO_13745", "Coronal oblique contrast-enhanced CT: thrombosis of the portal vein and the superior mesenteric "
     "vein (arrows), their walls enhancing at the rim."),
    ("ROCO_00611", "Transesophageal echocardiography showing a fibroelastoma mass in the outflow tract of the left "
     "ventricle."),
    ("ROCO_16684", "Obstruction of the left ventricle outflow with secondary turbulence in the left ventricle and "
     "mitral regurgitation."),
    ("ROCO_14936", "MR images showing partially intact anterior growth plates more than one year after completing "
     "anti-TB therapy."),
    ("ROCO_02462", "A 6-cm jejunal segment with stenosis in the left renal fossa."),
    ("ROCO_30853", "Axial diffusion-weighted MR image showing an acute ischemia infarct of the primary motor cortex."),
    ("ROCO_00425", "First radiograph showing a fracture of the right femoral neck with sclerosis of the superior "
     "cortex and an undisplaced linear pattern."),
    ("ROCO_10859", "Multidetector CT showing a large, heterogeneously enhanced, necrosis-containing left suprarenal "
     "mass, confirmed as a malignant pheochromocytoma at histopathology."),
    ("ROCO_00468", "Computed tomography revealing dilatation of the intrahepatic bile ducts."),
    ("ROCO_74471", "Chest CT showing irregular bands of fibrosis on both sides in the lung parenchyma."),
    ("ROCO_11403", "Transthoracic 2D echocardiogram, four-chamber view: aneurysmal dilatation of the mid and apical "
     "segments of the left ventricle at end-diastole."),
    ("ROCO_30249", "Axial non-contrast CT showing a hemorrhage-containing midline mass of the posterior fossa causing "
     "obstructive hydrocephalus."),
    ("ROCO_33597", "Contrast-enhanced abdominal CT showing a swollen, edematous pancreas with inflammation."),
    ("ROCO_01873", "Four-chamber TEE showing complete absence of the interatrial septum; common atrium, LV and RV "
     "labelled."),
    ("ROCO_07274", "Coronal pelvic CT showing a left hematoma next to a fracture of the right iliopubic ramus."),
]

# Rewrites that move the finding first and the modality last, as a language model often does: the
# same facts in another order (written by reading real captions the gate had never been run on).
REORDERED = [
    ("ROCO_01018", "Kinking of the common bile duct (arrows) 1 cm above the proximal end of the metal stent, shown by "
     "endoscopic retrograde cholangiography with carbon dioxide insufflation."),
    ("ROCO_01037", "Reduction in the size of the adrenal mass on a CT scan obtained 6 months after mitotane "
     "treatment."),
    ("ROCO_01038", "Thickening of the gastric wall and a niche-like echogenicity (arrow), probably representing the "
     "ulcer, on abdominal ultrasound of a 48-year-old female with a benign gastric ulcer of the lesser curvature."),
    ("ROCO_01041", "A well-circumscribed soft tissue density (*) measuring 3.1×3.7 cm in the left breast, on an axial "
     "CT image of the chest."),
    ("ROCO_01123", "No enhancing portion of the lesion after contrast enhancement on the portal phase CT scan."),
    ("ROCO_01154", "Intense 18F-FDG uptake (arrow) with a maximum standardized uptake value of 9.0 on PET-CT, without "
     "suspected extrasplenic tumor dissemination or metastasis."),
    ("ROCO_01164", "Forearm deformity due to shortening of the ulna on a radiograph of an individual with hereditary "
     "multiple exostosis."),
    ("ROCO_01176", "Multiple locules of air (arrows) on a frontal view CT scan."),
    ("ROCO_01226", "Significant deviation of the median nerve toward the fracture site of the radius (arrow) on short "
     "tau inversion recovery magnetic resonance imaging."),
    ("ROCO_01228", "A giant hepatic cyst on ultrasound, with echogenic substances at the bottom of the cyst forming a "
     "fluid-fluid level."),
    ("ROCO_01264", "A secundum ASD with left-to-right shunting, demonstrated by transthoracic echocardiography."),
    ("ROCO_01274", "A 2 cm × 2 cm mobile echogenic mass (arrow), probably a thrombus, in the right ventricular "
     "outflow tract on the mid-esophageal right ventricular inflow-outflow view."),
    ("ROCO_01343", "Severe aortic regurgitation with a possible dissection flap on the aortogram."),
    ("ROCO_01383", "Herniation of the colon into the chest with free air (arrow) on coronal preoperative chest CT."),
    ("ROCO_01391", "A solitary 5x4 cm metastasis in the right occipital lobe with some extension to the parietal lobe, "
     "heterogeneous in appearance and with surrounding brain edema, on CT of the brain."),
    ("ROCO_01409", "Callus formation in the proximal fibula and a faint fracture line on a standing lateral radiograph "
     "of the left leg."),
    ("ROCO_01458", "Abscess formation beginning around the piriform sinus, seen on a CT scan."),
    ("ROCO_01529", "An oval umbilical mass measuring 2 cm on CT of the abdomen."),
    ("ROCO_01532", "A giant hepatic cyst in the right lobe of the liver compressing the adjacent diaphragm, right "
     "ventricle and inferior vena cava (arrow heads) on computed tomography."),
    ("ROCO_01552", "High position of the right diaphragm due to postoperative paralysis on chest x-ray."),
]

# Outputs that state nothing checkable about the figure.
EMPTY = ["An image.", "This figure shows the image described in the text.", "See the text for details.",
         "The image is shown here for illustration purposes."]


def _by_id() -> dict[str, str]:
    out = {}
    for line in ROCO_CAPTIONS.read_text(encoding="utf-8").splitlines():
        rid, _, cap = line.partition("\t")
        out[rid] = cap.strip()
    return out


def medicat_cases() -> list[Case]:
    """MedICaT captions with their in-text references as source; faithful = a clause of the reference."""
    cases = []
    for i, line in enumerate(MEDICAT.read_text().splitlines()):
        rec = json.loads(line)
        refs = " ".join(rec.get("s2orc_references") or [])
        cap = rec.get("s2_caption") or ""
        if not refs or not cap:
            continue
        src = cap + "\n" + refs
        cases.append(Case(f"medicat{i}-faithful", src, re.sub(r"^Figure \d+\.\s*", "", cap), True, "copy"))
        cases.append(Case(f"medicat{i}-dx", src, re.sub(r"^Figure \d+\.\s*", "", cap).rstrip(".")
                          + ", suggestive of sarcoidosis.", False, "diagnosis"))
    return cases


_SWAPS = [("computed tomography", "CT"), ("magnetic resonance imaging", "MRI"), ("tuberculosis", "TB"),
          ("hemorrhage", "bleeding"), ("X-ray", "radiograph"), ("tumor", "neoplasm"), ("showing", "demonstrating"),
          ("shows", "demonstrates"), ("reveals", "shows"), ("arrow", "arrowhead")]
_DIAGNOSES = ["sarcoidosis", "glioblastoma", "lymphoma", "appendicitis", "osteosarcoma", "hydrocephalus",
              "pneumothorax", "endometriosis"]
_NUM = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)(\s*(?:mm|cm))?\b")


def _swap(cap: str) -> str | None:
    out = cap
    for a, b in _SWAPS:
        out = re.sub(rf"\b{re.escape(a)}\b", b, out, flags=re.I)
    return out if out != cap else None


def _convert_units(cap: str) -> str | None:
    def conv(m: re.Match) -> str:
        v, u = float(m.group(1)), m.group(2).strip()
        return f"{v * 10:g} mm" if u == "cm" else f"{v / 10:g} cm"
    out = re.sub(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(cm|mm)\b", conv, cap)
    return out if out != cap else None


def _drop_last_sentence(cap: str) -> str | None:
    parts = re.split(r"(?<=\.)\s+(?=[A-Z])", cap)
    return " ".join(parts[:-1]) if len(parts) > 1 else None


def _change_number(cap: str) -> str | None:
    m = _NUM.search(cap)
    if not m:
        return None
    v = float(m.group(1))
    return cap[:m.start(1)] + f"{v + 3:g}" + cap[m.end(1):]


def _flip_side(cap: str) -> str | None:
    sides = set(re.findall(r"\b(left|right)\b", cap, re.I))
    if len({s.lower() for s in sides}) != 1:
        return None
    return re.sub(r"\b(left|right)\b", lambda m: {"left": "right", "right": "left"}[m.group(1).lower()], cap,
                  flags=re.I)


def _add_diagnosis(cap: str, k: int) -> str:
    dx = next(d for d in _DIAGNOSES[k % len(_DIAGNOSES):] + _DIAGNOSES if d not in cap.lower())
    return cap.rstrip(". ") + f", consistent with {dx}."


def _add_measurement(cap: str) -> str:
    return cap.rstrip(". ") + ", measuring 4.2 cm."


def _flip_negation(cap: str) -> str | None:
    out = re.sub(r"\b(?:no|without)\s+(?=[a-z])", "with ", cap, count=1)
    return out if out != cap else None


def _random_tokens(rng: random.Random, words: list[str], n: int) -> str:
    """A random-weight model's output: tokens drawn without regard to order or the source."""
    return " ".join(rng.choice(words) for _ in range(n))


def _shuffled(rng: random.Random, cap: str) -> str:
    words = cap.split()
    rng.shuffle(words)
    return " ".join(words)


def contentless_cases(captions: list[tuple[str, str]]) -> list[Case]:
    """Empty-of-content, off-topic, random-token and word-salad outputs for each caption."""
    rng = random.Random(16)
    vocab = sorted({w.strip(".,;:()").lower() for _, c in captions for w in c.split() if w.isalpha()})
    cases = []
    for k, (rid, cap) in enumerate(captions):
        other = captions[(k + len(captions) // 2) % len(captions)][1]
        n = max(8, len(cap.split()))
        cases += [Case(f"{rid}-empty", cap, EMPTY[k % len(EMPTY)], False, "empty"),
                  Case(f"{rid}-offtopic", cap, other, False, "off_topic"),
                  Case(f"{rid}-random", cap, _random_tokens(rng, vocab, n), False, "random_tokens"),
                  Case(f"{rid}-salad", cap, _shuffled(rng, cap), False, "word_salad")]
    return cases


def planted_cases(n_roco: int = 60) -> list[Case]:
    cases: list[Case] = []
    roco = _by_id()
    for rid, para, bad in HAND:
        cases.append(Case(f"{rid}-hand", roco[rid], para, True, "paraphrase"))
        cases.append(Case(f"{rid}-hand-bad", roco[rid], bad, False, "hand"))
    for rid, para in MORPHOLOGY:
        cases.append(Case(f"{rid}-morph", roco[rid], para, True, "morphology"))
    for rid, para in REORDERED:
        cases.append(Case(f"{rid}-reorder", roco[rid], para, True, "reorder"))
    cases += contentless_cases(roco_captions(n_roco))
    for k, (rid, cap) in enumerate(roco_captions(n_roco)):
        for kind, fn in (("swap", _swap), ("units", _convert_units), ("drop", _drop_last_sentence)):
            out = fn(cap)
            if out:
                cases.append(Case(f"{rid}-{kind}", cap, out, True, kind))
        cases.append(Case(f"{rid}-dx", cap, _add_diagnosis(cap, k), False, "diagnosis"))
        cases.append(Case(f"{rid}-measure", cap, _add_measurement(cap), False, "measurement"))
        for kind, fn in (("number", _change_number), ("side", _flip_side), ("negation", _flip_negation)):
            out = fn(cap)
            if out:
                cases.append(Case(f"{rid}-{kind}", cap, out, False, kind))
    return cases + medicat_cases()
