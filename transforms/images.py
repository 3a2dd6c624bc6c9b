"""Decode any figure image into 8-bit RGB and encode it for a shard.

PMC ships JPEG, PNG, GIF and TIFF (multi-page, CMYK, 16-bit, palette, alpha). Training wants one
format, so everything becomes RGB JPEG at a bounded size, unless the original is already a clean
RGB JPEG that fits (then its bytes are kept: faster and lossless). A pixel cap is checked from the
header, before decoding, so a decompression bomb costs nothing.
"""
from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from medcorpus.schemas.records import SkipError
from medcorpus.transforms.options import Percent, PositiveInt

_PRIVATE_INFO = ("exif", "comment", "xmp", "photoshop", "XML:com.adobe.xmp")
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "TIFF": "tif", "WEBP": "webp", "BMP": "bmp"}


@dataclass(frozen=True)
class ImageOptions:
    max_side: PositiveInt | None = 1024
    jpeg_quality: Percent = 90
    reencode: Literal["auto", "always", "never"] = "auto"  # auto: keep clean RGB JPEGs that fit; never: original bytes
    max_pixels: PositiveInt = 100_000_000
    max_bytes: PositiveInt = 256 * 1024 * 1024
    # downscaling filter: area (box average over each output pixel's footprint, as img2dataset's
    # cv2.INTER_AREA; ~3x faster) or lanczos (a little sharper)
    resample: Literal["area", "lanczos"] = "area"


_RESAMPLE = {"area": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS}


@dataclass
class EncodedImage:
    data: bytes
    extension: str
    width: int
    height: int
    orig_width: int
    orig_height: int
    source_format: str
    sha256: str
    decoded: Image.Image | None = field(default=None, repr=False, compare=False)  # RGB, for later stages


def _open(data: bytes, options: ImageOptions) -> Image.Image:
    if len(data) > options.max_bytes:
        raise SkipError("image_too_large", f"{len(data)} bytes > max_bytes {options.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise SkipError("image_too_large", str(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise SkipError("image_undecodable", f"{type(exc).__name__}: {exc}") from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise SkipError("image_undecodable", f"image has size {w}x{h}")
    if w * h > options.max_pixels:
        raise SkipError("image_too_large", f"{w}x{h} = {w * h} pixels > max_pixels {options.max_pixels}")
    return img


WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def to_8bit(img: Image.Image) -> Image.Image:
    """Any decoded mode as 8-bit ``L`` or ``RGB``: the one mode conversion of every stage.

    Gray stays gray (resizing one band is 3x cheaper; callers convert after). 16-bit, 32-bit and
    float gray are scaled by their maximum when it exceeds 255 (microscopy TIFFs use a fraction of
    the 16-bit range; clipping would saturate them, a fixed >>8 would blacken them). Transparency
    (alpha modes, palettes with a transparent index) is composited on white, as figures are printed
    on white paper. Everything else (palette, CMYK, YCbCr, LAB, 1-bit) goes through Pillow's RGB.
    The image encoder, the quality measures and the dedup hashes all see the same pixels this way.
    """
    mode = img.mode
    if mode in ("RGB", "L"):
        return img
    if mode in WIDE_MODES:
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / top if top > 255 else 1.0
        return Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """``to_8bit``, then gray to RGB: 8-bit RGB of any decoded mode."""
    img = to_8bit(img)
    return img if img.mode == "RGB" else img.convert("RGB")


def _fits(img: Image.Image, options: ImageOptions) -> bool:
    return options.max_side is None or max(img.size) <= options.max_side


def _keep_original(img: Image.Image, options: ImageOptions) -> bool:
    if options.reencode == "never":
        return True
    if options.reencode != "auto" or img.format != "JPEG" or img.mode != "RGB" or not _fits(img, options):
        return False
    if img.getexif().get(0x0112, 1) != 1:
        return False
    return not any(k in img.info for k in _PRIVATE_INFO)


def encode_rgb(img: Image.Image, options: ImageOptions, icc: bytes | None = None) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=options.jpeg_quality, icc_profile=icc)
    return out.getvalue()


def encode_pixels(img: Image.Image, options: ImageOptions = ImageOptions(), keep_decoded: bool = False) -> EncodedImage:
    """Encode an image a source rendered itself (a DICOM frame after its LUTs): no file to keep, so
    it is bounded, made RGB and encoded like any other."""
    orig_w, orig_h = img.size
    img = to_8bit(img)
    if not _fits(img, options):
        img = img.copy()
        img.thumbnail((options.max_side, options.max_side), _RESAMPLE[options.resample],
                      reducing_gap=3.0 if options.resample == "lanczos" else None)
    img = to_rgb(img)
    encoded = encode_rgb(img, options)
    return EncodedImage(encoded, "jpg", img.width, img.height, orig_w, orig_h, "rendered",
                        hashlib.sha256(encoded).hexdigest(), img if keep_decoded else None)


def encode_image(data: bytes, options: ImageOptions = ImageOptions(), keep_decoded: bool = False) -> EncodedImage:
    """Decode, orient, convert to RGB, bound the size and encode; raise SkipError on bad input.

    With ``keep_decoded`` the RGB image (as encoded) rides along for stages that need pixels.
    """
    img = _open(data, options)
    orig_w, orig_h = img.size
    fmt = img.format or "unknown"
    try:
        if _keep_original(img, options):
            img.load()  # a truncated file must fail here, not in a training job
            decoded = to_rgb(img) if keep_decoded else None
            return EncodedImage(data, EXTENSIONS.get(fmt, "bin"), orig_w, orig_h, orig_w, orig_h, fmt,
                                hashlib.sha256(data).hexdigest(), decoded)
        if fmt == "JPEG" and options.max_side and max(img.size) > 2 * options.max_side:
            # DCT-domain downscale (fast) to no less than the final size; asking for the final size
            # itself, not a square, lets wide and tall figures shrink too
            r = options.max_side / max(img.size)
            img.draft("RGB", (math.ceil(img.width * r), math.ceil(img.height * r)))
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        img.load()
        icc = img.info.get("icc_profile")
        ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of an upright image
        img = to_8bit(img)
        if not _fits(img, options):
            img.thumbnail((options.max_side, options.max_side), _RESAMPLE[options.resample],
                          reducing_gap=3.0 if options.resample == "lanczos" else None)
        img = to_rgb(img)
        encoded = encode_rgb(img, options, icc)
    except SkipError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise SkipError("image_undecodable", f"{type(exc).__name__}: {exc}") from None
    return EncodedImage(encoded, "jpg", img.width, img.height, orig_w, orig_h, fmt,
                        hashlib.sha256(encoded).hexdigest(), img if keep_decoded else None)
