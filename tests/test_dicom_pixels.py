"""DICOM rendering follows the standard's pipeline, checked against pydicom's own LUT functions on
the real pydicom test files: one file per transfer syntax, and every file with pixel data either
renders or fails with a recorded reason."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.uid import UID

from medcorpus.schemas.records import SkipError
from medcorpus.transforms.dicom_pixels import PixelOptions, WINDOW_PRESETS, decode_frame, render_frame, voi_gray
from testdata import DEID_DATA, DICOM, DICOM_TEST_FILES

# one real file per transfer syntax present in the shared data
BY_SYNTAX = {
    "1.2.840.10008.1.2": "MR_small_implicit.dcm",
    "1.2.840.10008.1.2.1": "CT_small.dcm",
    "1.2.840.10008.1.2.1.99": "image_dfl.dcm",
    "1.2.840.10008.1.2.2": "MR_small_bigendian.dcm",
    "1.2.840.10008.1.2.4.50": "SC_rgb_jpeg_dcmtk.dcm",
    "1.2.840.10008.1.2.4.51": "JPGExtended.dcm",
    "1.2.840.10008.1.2.4.70": "SC_rgb_jpeg_gdcm.dcm",
    "1.2.840.10008.1.2.4.80": "MR_small_jpeg_ls_lossless.dcm",
    "1.2.840.10008.1.2.4.81": "JPEGLSNearLossless_16.dcm",
    "1.2.840.10008.1.2.4.90": "MR_small_jp2klossless.dcm",
    "1.2.840.10008.1.2.4.91": "693_J2KI.dcm",
    "1.2.840.10008.1.2.5": "MR_small_RLE.dcm",
}


def _expected_gray(ds: pydicom.Dataset, stored: np.ndarray) -> np.ndarray:
    """pydicom's Modality LUT then VOI LUT, its output range (PS3.3 C.11.2.1.2: the range of the
    modality LUT's output for a window, the LUT's bit depth for a VOI LUT) scaled to 0..255."""
    values = apply_voi_lut(apply_modality_lut(stored, ds), ds, prefer_lut=True)
    if ds.get("VOILUTSequence"):
        lo, hi = 0, 2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
    elif ds.get("WindowWidth") is not None:
        signed = ds.PixelRepresentation == 1
        lo, hi = (-(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1) if signed else (0, 2**ds.BitsStored - 1)
        if ds.get("RescaleSlope") is not None:
            lo, hi = lo * float(ds.RescaleSlope) + float(ds.RescaleIntercept), hi * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    else:  # no VOI: pydicom leaves the values; the display spans them
        lo, hi = float(values.min()), float(values.max())
    return np.clip((values.astype(np.float64) - lo) * 255.0 / (hi - lo), 0, 255)


@pytest.mark.parametrize("syntax,name", sorted(BY_SYNTAX.items()))
def test_each_transfer_syntax_renders_as_pydicom_luts_say(syntax: str, name: str) -> None:
    ds = pydicom.dcmread(DICOM_TEST_FILES / name)
    assert ds.file_meta.TransferSyntaxUID == UID(syntax)
    frame = decode_frame(ds, 0)
    rendered = render_frame(frame, ds)
    assert rendered.image.size == (ds.Columns, ds.Rows)
    if frame.ndim == 3:  # colour: pydicom's RGB (YBR converted) at 8 bits
        want = pixel_array(ds, index=0 if ds.get("NumberOfFrames") else None)
        if want.dtype != np.uint8:
            want = want.astype(np.float64) * 255.0 / (2**ds.BitsStored - 1)
        assert rendered.image.mode == "RGB" and np.abs(np.asarray(rendered.image, np.float64) - want).max() <= 1
        return
    assert rendered.image.mode == "L"
    want = _expected_gray(ds, frame)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        want = 255 - want
    got = np.asarray(rendered.image, np.float64)
    assert np.abs(got - want).max() <= 1.0, (name, rendered.window)
    assert got.std() > 0  # a real picture, not a flat frame


def test_a_configured_window_wins_and_monochrome1_inverts() -> None:
    ds = pydicom.dcmread(DICOM_TEST_FILES / "CT_small.dcm")
    hu = apply_modality_lut(ds.pixel_array, ds)
    lung, label = voi_gray(ds.pixel_array, ds, PixelOptions(windows={"CT": "lung"}))
    center, width = WINDOW_PRESETS["lung"]
    assert label == "lung"
    assert (lung[hu <= center - width / 2] == 0).all() and (lung[hu >= center + width / 2] == 255).all()
    bone, _ = voi_gray(ds.pixel_array, ds, PixelOptions(windows={"CT": "bone"}))
    assert not np.array_equal(lung, bone)
    plain = np.asarray(render_frame(ds.pixel_array, ds).image)
    ds.PhotometricInterpretation = "MONOCHROME1"
    assert np.array_equal(np.asarray(render_frame(ds.pixel_array, ds).image), 255 - plain)
    ds.PresentationLUTShape = "IDENTITY"  # the presentation LUT shape decides over the photometric
    assert np.array_equal(np.asarray(render_frame(ds.pixel_array, ds).image), plain)


def test_a_voi_lut_sequence_wins_over_the_window() -> None:
    ds = pydicom.dcmread(DICOM_TEST_FILES / "MR_small.dcm")
    lut = pydicom.Dataset()
    lut.LUTDescriptor = [256, 0, 8]  # 256 entries from stored value 0, 8-bit output
    lut.LUTData = list(range(255, -1, -1))  # a reversing LUT: clearly not the header window
    ds.VOILUTSequence = pydicom.Sequence([lut])
    rendered = render_frame(ds.pixel_array, ds)
    assert rendered.window == "voi_lut"
    want = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, prefer_lut=True).astype(np.float64)
    assert np.abs(np.asarray(rendered.image, np.float64) - want).max() <= 1


def _all_pixel_files() -> list:
    out = []
    for path in sorted(DICOM.rglob("*.dcm")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=False)
        except Exception:
            continue
        if "PixelData" in ds:
            out.append(path)
    return out


def test_every_file_with_pixels_renders_or_says_why() -> None:
    rendered, failed = [], {}
    for path in _all_pixel_files():
        ds = pydicom.dcmread(path)
        try:
            rendered.append(render_frame(decode_frame(ds, 0), ds).image.size)
        except SkipError as exc:
            failed[path.name] = (exc.reason, exc.detail)
    assert len(rendered) >= 70
    assert set(failed) <= {"JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm", "MR_truncated.dcm",
                           "badVR.dcm", "meta_missing_tsyntax.dcm", "nested_priv_SQ.dcm"}, failed
    assert all(reason.startswith("dicom_") and detail for reason, detail in failed.values())
    assert "JPEG Extended" in failed["JPEG-lossy.dcm"][1]


def test_ybr_ultrasound_renders_rgb() -> None:
    ds = pydicom.dcmread(DEID_DATA / "ultrasounds" / "RGB_IMAGE.dcm")
    assert render_frame(decode_frame(ds, 0), ds).image.mode == "RGB"
