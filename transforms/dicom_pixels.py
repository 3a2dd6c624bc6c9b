"""DICOM pixels to an 8-bit image by the standard's grayscale pipeline (PS3.3 C.11, PS3.4 N.2).

Stored values → Modality LUT (a Modality LUT Sequence, or Rescale Slope/Intercept) → VOI LUT (a VOI
LUT Sequence wins over Window Center/Width; a configured window for the modality, such as CT lung,
wins over both) → Presentation LUT Shape (INVERSE, or MONOCHROME1 without one, inverts) → 8 bits.
Colour images come out RGB (YBR decoded by pydicom, palette colour through its LUT). Overlays live in
their own attributes and are never burned in. Decoding is pydicom's, with the pylibjpeg plugins for
JPEG (baseline, extended 12-bit, lossless), JPEG-LS, JPEG 2000 and RLE; deflate is a transfer syntax
pydicom reads itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, pixel_array

from medcorpus.schemas.records import SkipError

# Window presets (center, width) in Hounsfield units, as radiology viewers ship them.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "soft_tissue": (40.0, 400.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 160.0),
}
WindowName = Literal["header", "lung", "soft_tissue", "mediastinum", "bone", "brain", "liver"]


@dataclass(frozen=True)
class PixelOptions:
    """``windows`` maps a modality (CT, MR ...) to a preset; ``header`` (the default for every
    modality) uses the file's own VOI LUT or window, and a file with neither spans its value range."""

    windows: dict[str, WindowName] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    image: Image.Image
    window: str  # what mapped values to gray: a preset name, "voi_lut", "C=<c> W=<w>", "range", "color"


def window_8bit(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """The VOI window function of PS3.3 C.11.2.1.2-3 with an 8-bit output range (0..255)."""
    x = values.astype(np.float64)
    if function == "SIGMOID":
        y = 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        y = ((x - center) / width + 0.5) * 255.0
    else:  # LINEAR
        width = max(width, 1.0)
        y = ((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def _first(value: Any) -> float:
    """The first of a multi-valued window (the one the modality chose as default)."""
    return float(value[0] if isinstance(value, MultiValue) else value)


def _to_8bit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    return np.clip(np.rint((values.astype(np.float64) - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def voi_gray(stored: np.ndarray, ds: Dataset, options: PixelOptions = PixelOptions()) -> tuple[np.ndarray, str]:
    """A grayscale frame's stored values → 8-bit gray by Modality LUT then VOI (before any inversion)."""
    values = apply_modality_lut(stored, ds)
    preset = options.windows.get(str(ds.get("Modality") or ""), "header")
    if preset != "header":
        center, width = WINDOW_PRESETS[preset]
        return window_8bit(values, center, width), preset
    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        return _to_8bit(apply_voi(values, ds, 0), 0, 2**bits - 1), "voi_lut"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction") or "LINEAR").upper()
        if width > 0:
            return window_8bit(values, center, width, function), f"C={center:g} W={width:g}"
    return _to_8bit(values, float(values.min()), float(values.max())), "range"


def _inverts(ds: Dataset) -> bool:
    shape = str(ds.get("PresentationLUTShape") or "").upper()
    if shape in ("INVERSE", "IDENTITY"):
        return shape == "INVERSE"
    return str(ds.get("PhotometricInterpretation")) == "MONOCHROME1"


def _color(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    if str(ds.get("PhotometricInterpretation")) == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        bits = 8 if arr.dtype == np.uint8 else 16
    else:
        bits = int(ds.get("BitsStored") or 8)
    if arr.dtype == np.uint8:
        return arr
    return (arr.astype(np.float64) * (255.0 / (2**bits - 1))).round().clip(0, 255).astype(np.uint8)


def render_frame(arr: np.ndarray, ds: Dataset, options: PixelOptions = PixelOptions()) -> Rendered:
    """One decoded frame (``arr``: rows x columns [x samples], as pydicom gives it, YBR already RGB)
    → an 8-bit PIL image ("L" or "RGB") by the standard's pipeline."""
    photometric = str(ds.get("PhotometricInterpretation") or "")
    if arr.ndim == 3 or photometric == "PALETTE COLOR":
        return Rendered(Image.fromarray(np.ascontiguousarray(_color(arr, ds)), "RGB"), "color")
    if not photometric.startswith("MONOCHROME"):
        raise SkipError("dicom_photometric", f"unsupported photometric interpretation {photometric!r}")
    gray, window = voi_gray(arr, ds, options)
    if _inverts(ds):
        gray = 255 - gray
    return Rendered(Image.fromarray(np.ascontiguousarray(gray), "L"), window)


def frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError) as exc:
        raise SkipError("dicom_header", f"bad NumberOfFrames {ds.get('NumberOfFrames')!r}") from exc


def decode_frame(ds: Dataset, index: int) -> np.ndarray:
    """Frame ``index`` of the instance, decoded (YBR converted to RGB); SkipError with the decoder's
    reason when no installed plugin decodes the transfer syntax or the data are damaged."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise SkipError("dicom_no_pixels", "the instance holds no pixel data")
    try:
        return pixel_array(ds, index=index if frame_count(ds) > 1 else None)
    except SkipError:
        raise
    except Exception as exc:  # pydicom raises RuntimeError/ValueError/NotImplementedError/AttributeError
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(ts, "name", None) or "no transfer syntax"
        reason = " ".join(str(exc).split())[:300]
        raise SkipError("dicom_decode", f"{name}: {type(exc).__name__}: {reason}") from None
