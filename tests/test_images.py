"""Image normalization on real figure images, converted into the formats PMC ships.

The exotic variants (CMYK, 16-bit, palette+transparency, alpha, multi-page, EXIF-rotated) are made
here from a real shared figure, because the shared data holds too few of each; the bomb and the
truncated files are synthetic by nature.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from testdata import ARTICLES

from medcorpus.schemas.records import SkipError
from medcorpus.transforms.images import ImageOptions, encode_image

REAL_JPEG = (ARTICLES / "elife-46472-v3" / "fig1.jpg").read_bytes()


def _real(size: int = 600) -> Image.Image:
    img = Image.open(io.BytesIO(REAL_JPEG)).convert("RGB")
    img.thumbnail((size, size))
    return img


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and img.mode == "RGB"
    return img


@pytest.mark.parametrize("name,data", [
    ("cmyk-jpeg", lambda: _save(_real().convert("CMYK"), "JPEG")),
    ("16bit-png", lambda: _save(Image.fromarray((np.asarray(_real().convert("L"), np.uint16) * 257)), "PNG")),
    ("palette-gif", lambda: _save(_real().convert("P", palette=Image.Palette.ADAPTIVE), "GIF", transparency=0)),
    ("rgba-png", lambda: _save(_real().convert("RGBA"), "PNG")),
    ("la-png", lambda: _save(_real().convert("LA"), "PNG")),
    ("grey-tiff", lambda: _save(_real().convert("L"), "TIFF", compression="tiff_lzw")),
    ("bilevel-png", lambda: _save(_real().convert("1"), "PNG")),
])
def test_formats_become_8bit_rgb_jpeg(name: str, data) -> None:  # noqa: ANN001
    enc = encode_image(data(), ImageOptions())
    img = _decode(enc.data)
    assert (enc.width, enc.height) == img.size == _real().size
    assert np.asarray(img).std() > 10, f"{name}: content lost"


def test_sixteen_bit_range_is_scaled_not_clipped() -> None:
    arr = (np.asarray(_real().convert("L"), np.uint16) * 16)  # 12-bit data in a 16-bit container
    enc = encode_image(_save(Image.fromarray(arr), "PNG"), ImageOptions())
    out = np.asarray(_decode(enc.data).convert("L"))
    assert out.max() > 240 and out.mean() > 60


def test_transparent_areas_become_white() -> None:
    img = _real().convert("RGBA")
    px = np.asarray(img).copy()
    px[:50, :50, 3] = 0
    enc = encode_image(_save(Image.fromarray(px), "PNG"), ImageOptions(max_side=None))
    assert np.asarray(_decode(enc.data))[:40, :40].min() > 245


def test_multipage_tiff_takes_the_first_page() -> None:
    first, second = _real(300), _real(500)
    buf = io.BytesIO()
    first.save(buf, "TIFF", save_all=True, append_images=[second])
    enc = encode_image(buf.getvalue(), ImageOptions())
    assert (enc.width, enc.height) == first.size


def test_exif_orientation_is_applied() -> None:
    img = _real()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    enc = encode_image(_save(img, "JPEG", exif=exif.tobytes()), ImageOptions())
    assert (enc.width, enc.height) == (img.height, img.width)


def test_real_tiff_from_a_pmc_package() -> None:
    data = (ARTICLES / "elife-19405" / "elife-19405-fig1.tif").read_bytes()
    enc = encode_image(data, ImageOptions(max_side=800))
    assert max(enc.width, enc.height) == 800 and enc.source_format == "TIFF"
    assert (enc.orig_width, enc.orig_height) == Image.open(io.BytesIO(data)).size


def test_reencode_policies() -> None:
    small = _save(_real(500), "JPEG", quality=80)
    kept = encode_image(small, ImageOptions(max_side=1024, reencode="auto"))
    assert kept.data == small  # a clean RGB JPEG that fits is kept byte for byte
    redone = encode_image(small, ImageOptions(max_side=1024, reencode="always"))
    assert redone.data != small
    png = _save(_real(500), "PNG")
    original = encode_image(png, ImageOptions(reencode="never"))
    assert original.data == png and original.extension == "png"
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # metadata that could identify a device or a person is never kept
    with_exif = _save(_real(500), "JPEG", exif=exif.tobytes())
    cleaned = encode_image(with_exif, ImageOptions())
    assert cleaned.data != with_exif and not Image.open(io.BytesIO(cleaned.data)).getexif()


def test_max_side_bounds_the_output() -> None:
    enc = encode_image(REAL_JPEG, ImageOptions(max_side=256))
    assert max(enc.width, enc.height) == 256
    assert (enc.orig_width, enc.orig_height) == Image.open(io.BytesIO(REAL_JPEG)).size


@pytest.mark.parametrize("resample", ["area", "lanczos"])
def test_downscaling_filters_agree_and_gray_stays_gray(resample: str) -> None:
    """A real 8-bit gray PMC TIFF, 1346x812: resized in one band, then made RGB (R = G = B); the two
    filters give the same size and nearly the same pixels (area is the default because it is ~3x
    faster: bench/build_bench.py)."""
    data = (ARTICLES / "pone.0056489" / "pone.0056489.g003.tif").read_bytes()
    assert Image.open(io.BytesIO(data)).mode == "L"
    enc = encode_image(data, ImageOptions(max_side=600, resample=resample))
    out = np.asarray(_decode(enc.data), dtype=np.int16)
    assert (enc.width, enc.height) == (600, 362)
    assert np.abs(out[..., 0] - out[..., 1]).max() <= 2 and np.abs(out[..., 0] - out[..., 2]).max() <= 2
    other = "lanczos" if resample == "area" else "area"
    ref = np.asarray(_decode(encode_image(data, ImageOptions(max_side=600, resample=other)).data), dtype=np.float64)
    psnr = 10 * np.log10(255**2 / ((out - ref) ** 2).mean())
    assert psnr > 30, psnr


def test_wide_jpeg_is_downscaled_in_the_dct_domain_to_the_right_size() -> None:
    wide = _save(_real(600).resize((2400, 500)), "JPEG", quality=92)
    enc = encode_image(wide, ImageOptions(max_side=1000))
    assert (enc.width, enc.height) == (1000, 208)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_from_the_header() -> None:
    with pytest.raises(SkipError) as exc:
        encode_image(_png_header_only(60_000, 60_000), ImageOptions(max_pixels=100_000_000))
    assert exc.value.reason == "image_too_large" and "pixels" in exc.value.detail


@pytest.mark.parametrize("data", [REAL_JPEG[: len(REAL_JPEG) // 2], b"GIF89a\x00", b"", b"not an image at all"])
def test_truncated_or_garbage_bytes(data: bytes) -> None:
    with pytest.raises(SkipError) as exc:
        encode_image(data, ImageOptions())
    assert exc.value.reason == "image_undecodable"


def test_one_mode_conversion_for_encoder_quality_and_dedup():
    """Quality measures and dedup hashes see the encoder's pixels, for every mode (LAB included)."""
    from medcorpus.transforms.dedup import _decode
    from medcorpus.transforms.images import to_8bit, to_rgb
    from medcorpus.transforms.quality import measure_image, open_small

    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), "RGB")
    alpha = Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8), "L")
    rgba = base.copy()
    rgba.putalpha(alpha)
    for img in (base, rgba, base.convert("P"), base.convert("CMYK"), base.convert("LAB"), base.convert("1")):
        rgb = np.asarray(to_rgb(img))
        assert np.array_equal(np.asarray(_decode(img)), rgb)
        assert np.array_equal(np.asarray(open_small(img, side=64)[0]), np.asarray(to_8bit(img).convert("L")))
        assert measure_image(img) is not None
