"""Burned-in text in pixels: names and dates that ultrasound, angiography and secondary captures
often carry in the image itself. The header's BurnedInAnnotation YES decides alone; otherwise, for
the kinds of images that carry it, OCR (tesseract) decides. Only how much text was read leaves
here: the text itself may be what must not be kept."""
from __future__ import annotations

from pydicom.dataset import Dataset
from PIL import Image

OCR_MODALITIES = frozenset({"US", "SC", "XA", "RF", "OT", "ES", "XC", "IVUS", "OP"})
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # and its multi-frame children (…7.1 … 7.4)


def declared_burned_in(ds: Dataset) -> bool:
    return str(ds.get("BurnedInAnnotation") or "").strip().upper() == "YES"


def needs_ocr(ds: Dataset, policy: str) -> bool:
    """``auto``: modalities that carry annotations and every secondary capture; ``always``; ``never``."""
    if policy != "auto":
        return policy == "always"
    return str(ds.get("Modality") or "").upper() in OCR_MODALITIES or str(ds.get("SOPClassUID") or "").startswith(SECONDARY_CAPTURE)


def text_characters(img: Image.Image, min_confidence: float = 60.0) -> int:
    """How many letters and digits tesseract reads with confidence, in words of 2+ such characters."""
    import pytesseract

    gray = img.convert("L")
    if max(gray.size) > 1024:  # annotation text stays legible; OCR time grows with pixels
        gray.thumbnail((1024, 1024))
    data = pytesseract.image_to_data(gray, config="--psm 11", output_type=pytesseract.Output.DICT)
    count = 0
    for word, conf in zip(data["text"], data["conf"]):
        chars = sum(ch.isalnum() for ch in word)
        if chars >= 2 and float(conf) >= min_confidence:
            count += chars
    return count
