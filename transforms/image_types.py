"""Image-type tags (radiology, histopathology, ... chart, diagram, gel/blot, other) with confidence.

The default tagger is cheap and needs no model: caption keywords carry most of the signal in PMC
(captions name the modality: "axial CT", "H&E staining", "western blot", "Kaplan-Meier"), image
statistics on a 64 px copy settle the rest (radiology is gray on black, charts and diagrams are
few colours on white, histology is pink/purple, fundus is an orange disc on black). A CLIP-family
zero-shot classifier from a local model path can be blended in when configured (``ClipZeroShot``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping, Protocol

import numpy as np
from PIL import Image

from medcorpus.schemas.quality import score_entries
from medcorpus.transforms.options import Fraction, validated

LABELS = ("radiology", "histopathology", "microscopy", "fundus", "endoscopy", "clinical_photo", "chart",
          "diagram", "gel_blot", "other")

_KEYWORDS: dict[str, tuple[str, ...]] = {
    "radiology": (r"\bct\b", r"computed tomograph", r"\bmri?\b", r"magnetic resonance", r"x-?ray", r"radiograph",
                  r"ultrasound", r"ultrasonograph", r"sonograph", r"echocardiogra", r"\bpet\b", r"\bspect\b",
                  r"angiogra", r"mammogra", r"fluoroscop", r"t[12]-weighted", r"\bflair\b", r"doppler",
                  r"tomosynthesis", r"scintigra", r"\bcta\b", r"hounsfield", r"contrast[- ]enhanced"),
    "histopathology": (r"h\s*&\s*e\b", r"hematoxylin", r"haematoxylin", r"eosin", r"histolog", r"histopatholog",
                       r"immunohistochem", r"\bihc\b", r"biopsy", r"masson", r"trichrome", r"periodic acid",
                       r"\bpas\b stain", r"tissue section", r"paraffin"),
    "microscopy": (r"microscop", r"micrograph", r"confocal", r"fluorescen", r"immunofluorescen", r"\bdapi\b", r"\bgfp\b",
                   r"scale bar", r"\bµm\b", r"\bum\b", r"\bsem\b", r"\btem\b", r"two-photon", r"live imaging",
                   r"\bcells?\b.*\bstained\b"),
    "fundus": (r"fundus", r"fundoscop", r"retinal photograph", r"optic disc", r"\boct\b", r"optical coherence",
               r"fluorescein angiogra"),
    "endoscopy": (r"endoscop", r"colonoscop", r"gastroscop", r"laparoscop", r"bronchoscop", r"cystoscop",
                  r"arthroscop", r"hysteroscop", r"duodenoscop", r"capsule endoscop"),
    "clinical_photo": (r"photograph", r"clinical photo", r"\bskin\b", r"\brash\b", r"dermatolog", r"dermoscop",
                       r"erythema", r"\blesions? on\b", r"intraoperative", r"gross (appearance|specimen|view)",
                       r"clinical (appearance|picture)", r"patient'?s? (face|hand|foot|leg|arm)", r"ulcer"),
    "chart": (r"\bplot\b", r"\bgraph\b", r"bar (chart|graph)", r"histogram", r"\bcurves?\b", r"kaplan", r"scatter",
              r"box ?plot", r"error bars?", r"mean\s*±", r"\bsd\b", r"\bs\.?e\.?m\.?\b", r"\bp\s*[<=>]",
              r"correlation", r"\broc\b", r"forest plot", r"heat ?map", r"distribution of", r"regression",
              r"axis", r"survival"),
    "diagram": (r"schematic", r"diagram", r"flow ?chart", r"illustration", r"overview", r"workflow", r"cartoon",
                r"model of", r"pathway", r"study design", r"consort", r"timeline", r"proposed mechanism",
                r"structure of"),
    "gel_blot": (r"western blot", r"immunoblot", r"\bblots?\b", r"\bgels?\b", r"electrophores", r"\bkda\b",
                 r"northern", r"southern", r"pcr products?", r"\bbands?\b", r"agarose", r"sds-page", r"loading control"),
}
_PATTERNS = {label: tuple(re.compile(p, re.I) for p in pats) for label, pats in _KEYWORDS.items()}


@dataclass(frozen=True)
class ImageTypeOptions:
    """dataflow.yaml ``image_types:``. ``model_path`` switches the zero-shot CLIP hook on."""

    text_weight: Fraction = 0.6     # caption evidence vs image statistics in the heuristic blend
    min_confidence: Fraction = 0.25  # below this the label is ``other``
    model_path: str | None = None   # local transformers CLIP checkpoint (never downloaded)
    model_weight: Fraction = 0.5    # share of the CLIP probabilities in the final blend
    device: str = "cpu"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ImageTypeOptions:
        return validated(cls, values, "image_types")


@dataclass
class ImageTags:
    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)

    def columns(self) -> dict[str, Any]:
        """Manifest columns ``image_type``, ``image_type_confidence``, ``image_type_scores``."""
        return {"image_type": self.label, "image_type_confidence": round(self.confidence, 4),
                "image_type_scores": score_entries({k: round(v, 4) for k, v in self.scores.items()})}


class ZeroShot(Protocol):
    def scores(self, image: Image.Image) -> dict[str, float]: ...


# ---- evidence ----------------------------------------------------------------------------------------

def caption_scores(caption: str) -> dict[str, float]:
    """Keyword hits per label, normalized to sum 1 (empty when no keyword matches)."""
    hits = {label: float(sum(1 for p in pats if p.search(caption or ""))) for label, pats in _PATTERNS.items()}
    total = sum(hits.values())
    return {k: v / total for k, v in hits.items() if v} if total else {}


@dataclass(frozen=True)
class ImageFeatures:
    colourfulness: float   # mean |R-G| + |G-B| (0 = gray)
    white: float           # share of near-white pixels
    black: float           # share of near-black pixels
    colours: int           # distinct colours after 4-bit quantization
    pink: float            # share of pink/purple pixels (H&E)
    orange_disc: float     # share of red/orange pixels (fundus)


def image_features(image: Image.Image) -> ImageFeatures:
    small = image.convert("RGB")
    small.thumbnail((64, 64), Image.Resampling.BILINEAR)
    a = np.asarray(small, dtype=np.int16).reshape(-1, 3)
    r, g, b = a[:, 0], a[:, 1], a[:, 2]
    lum = (r + g + b) / 3
    q = (a >> 4).astype(np.int32)
    colours = len(np.unique(q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2]))
    pink = (r > 150) & (b > 120) & (g < r - 30) & (g < b - 10)
    orange = (r > 120) & (r > g + 40) & (g > b) & (lum < 200)
    return ImageFeatures(float((np.abs(r - g) + np.abs(g - b)).mean()), float((lum > 235).mean()),
                         float((lum < 25).mean()), colours, float(pink.mean()), float(orange.mean()))


def image_scores(f: ImageFeatures) -> dict[str, float]:
    """Soft priors from image statistics (hand-set, coarse: they break ties, captions decide)."""
    gray = f.colourfulness < 6
    s = {label: 0.02 for label in LABELS}
    if gray and f.black > 0.15 and f.white < 0.3:
        s["radiology"] += 1.0
    if gray and f.white > 0.5:
        s["chart"] += 0.4
        s["diagram"] += 0.3
        s["gel_blot"] += 0.2
    if gray and 0.15 < f.white <= 0.5 and f.black < 0.1:
        s["gel_blot"] += 0.3
    if not gray and f.white > 0.45 and f.colours < 150:
        s["chart"] += 0.6
        s["diagram"] += 0.4
    if f.pink > 0.25:
        s["histopathology"] += 1.0
    if not gray and f.black > 0.3 and f.colourfulness > 20:
        s["microscopy"] += 0.8
    if f.orange_disc > 0.3 and f.black > 0.15:
        s["fundus"] += 0.8
    if not gray and f.white < 0.2 and f.black < 0.3 and f.colours > 300 and f.pink <= 0.25:
        s["endoscopy"] += 0.3
        s["clinical_photo"] += 0.4
    total = sum(s.values())
    return {k: v / total for k, v in s.items()}


# ---- the tag -------------------------------------------------------------------------------------------

def _blend(parts: list[tuple[float, dict[str, float]]]) -> dict[str, float]:
    weight = sum(w for w, p in parts if p)
    if not weight:
        return {}
    out = {label: sum(w * p.get(label, 0.0) for w, p in parts if p) / weight for label in LABELS}
    return {k: v for k, v in out.items() if v > 0}


def tag_image(image: Image.Image | None, caption: str, options: ImageTypeOptions = ImageTypeOptions(),
              model: ZeroShot | None = None, text_scores: Mapping[str, float] | None = None) -> ImageTags:
    """Label, confidence and per-label scores from the caption, the image statistics and (when given
    or configured) a zero-shot model. ``text_scores``: the caption's ``caption_scores`` when the
    caller has them (a worker's memo)."""
    text = dict(text_scores) if text_scores is not None else caption_scores(caption)
    img = image_scores(image_features(image)) if image is not None else {}
    scores = _blend([(options.text_weight, text), (1.0 - options.text_weight, img)])
    if model is None and options.model_path and image is not None:
        model = load_zero_shot(options.model_path, options.device)
    if model is not None and image is not None:
        scores = _blend([(1.0 - options.model_weight, scores), (options.model_weight, model.scores(image))])
    if not scores:
        return ImageTags("other", 0.0, {})
    label = max(sorted(scores), key=lambda k: scores[k])
    conf = scores[label]
    if conf < options.min_confidence:
        return ImageTags("other", 1.0 - conf, scores)
    return ImageTags(label, conf, scores)


# ---- optional zero-shot model hook -------------------------------------------------------------------

PROMPTS: dict[str, str] = {
    "radiology": "a radiology image: CT, MRI, X-ray, ultrasound or PET scan",
    "histopathology": "a histopathology slide stained with hematoxylin and eosin",
    "microscopy": "a fluorescence or electron microscopy image of cells",
    "fundus": "a fundus photograph of the retina",
    "endoscopy": "an endoscopy image of the inside of the body",
    "clinical_photo": "a clinical photograph of a patient's skin or body",
    "chart": "a chart or plot with axes",
    "diagram": "a schematic diagram or flowchart",
    "gel_blot": "a western blot or gel electrophoresis image",
    "other": "an image",
}


class ClipZeroShot:
    """Zero-shot label probabilities from a local transformers CLIP checkpoint (no download:
    ``local_files_only``). One instance per worker; text embeddings are computed once."""

    def __init__(self, model_path: str, prompts: Mapping[str, str] | None = None, device: str = "cpu") -> None:
        import torch
        from transformers import CLIPModel, CLIPProcessor, CLIPTokenizer

        self._torch = torch
        self.labels = list((prompts or PROMPTS).keys())
        self.model = CLIPModel.from_pretrained(model_path, local_files_only=True).to(device).eval()
        self.device = device
        try:
            self.processor = CLIPProcessor.from_pretrained(model_path, local_files_only=True)
            tok = self.processor.tokenizer
        except (OSError, ValueError, TypeError):
            self.processor = None
            tok = CLIPTokenizer.from_pretrained(model_path, local_files_only=True)
        texts = [(prompts or PROMPTS)[k] for k in self.labels]
        with torch.no_grad():
            enc = tok(texts, padding=True, return_tensors="pt").to(device)
            t = self.model.get_text_features(**enc)
            t = t if isinstance(t, torch.Tensor) else t.pooler_output
            self.text = t / t.norm(dim=-1, keepdim=True)

    def _pixels(self, image: Image.Image) -> Any:
        if self.processor is not None and getattr(self.processor, "image_processor", None) is not None:
            return self.processor.image_processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]
        size = self.model.config.vision_config.image_size
        a = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
        mean, std = np.array([0.4815, 0.4578, 0.4082]), np.array([0.2686, 0.2613, 0.2758])
        return self._torch.from_numpy(((a - mean) / std).transpose(2, 0, 1)[None].astype(np.float32))

    def scores(self, image: Image.Image) -> dict[str, float]:
        torch = self._torch
        with torch.no_grad():
            v = self.model.get_image_features(pixel_values=self._pixels(image).to(self.device))
            v = v if isinstance(v, torch.Tensor) else v.pooler_output
            v = v / v.norm(dim=-1, keepdim=True)
            logits = self.model.logit_scale.exp() * v @ self.text.T
            probs = logits.softmax(dim=-1)[0].tolist()
        return dict(zip(self.labels, (float(p) for p in probs)))


@lru_cache(maxsize=2)
def load_zero_shot(model_path: str, device: str = "cpu") -> ClipZeroShot:
    """Loaded once per process and path."""
    return ClipZeroShot(model_path, device=device)
