"""parse (DICOM sources): a series → de-identified, rendered frames as ``ImageTask``s.

Per instance: pseudonyms from the original header, then BurnedInAnnotation YES drops it, then the
header is de-identified (PS3.15 Annex E, transforms/dicom_deid.py) and everything after reads the
de-identified header only: the frames the policy keeps are decoded and rendered by the standard's
LUT pipeline, OCR drops frames with burned-in text where the modality carries it, and the caption is
built from the header. A failing instance is an error record and the rest of the series goes on.
Every error, drop and key names the instance by its pseudonym.
"""
from __future__ import annotations

import hashlib
import io
from collections import Counter
from typing import Any, Iterator

from pydicom.dataset import Dataset

from medcorpus.pipelines.items import DroppedRow, ImageTask
from medcorpus.pipelines.sources.dicom import DicomSeries
from medcorpus.pipelines.stages.base import Stage
from medcorpus.schemas.records import ErrorRecord, SkipError
from medcorpus.transforms.burned_in import declared_burned_in, needs_ocr, text_characters
from medcorpus.transforms.dicom_caption import caption, imaging_columns
from medcorpus.transforms.dicom_deid import deidentify, method_codes, patient_key
from medcorpus.transforms.pseudonyms import pseudonym
from medcorpus.transforms.dicom_options import DicomOptions, is_volume, order_slices, pick
from medcorpus.transforms.dicom_pixels import decode_frame, frame_count, render_frame
from medcorpus.transforms.licenses import license_family, normalize_code


class ParseDicom(Stage):
    name = "parse"
    parser = "dicom"
    requires = ("fetch",)
    sections = {"dicom": DicomOptions}

    def setup(self) -> None:
        self.options: DicomOptions = self.config.section("dicom", DicomOptions)
        self.secret: bytes = self.env.source.secret
        self.counts: Counter[str] = Counter()

    def summary(self) -> dict[str, int]:
        return dict(self.counts)

    def process(self, item: DicomSeries) -> Iterator[Any]:
        datasets: list[tuple[str, Dataset]] = []
        for blob in item.instances:
            digest = hashlib.sha256(blob).hexdigest()[:20]  # names an instance without a SOP Instance UID
            ref = f"dicom:{item.unit_id}/{digest}"
            try:
                ds = _read(blob)
            except SkipError as exc:
                self.counts["deid:dropped:" + exc.reason] += 1
                yield ErrorRecord(ref, self.name, exc.reason, exc.detail)
                continue
            if "PixelData" not in ds:  # structured reports, plans, waveforms: no image to make
                yield ErrorRecord(ref, self.name, "dicom_no_pixels", f"a {ds.get('Modality') or 'DICOM'} object without pixel data")
                continue
            datasets.append((digest, ds))
        chosen: list[tuple[str, Dataset, int | None]] = [(d, ds, None) for d, ds in datasets]
        if is_volume([d for _, d in datasets]):
            ordered = order_slices([d for _, d in datasets])
            picked = pick(len(ordered), self.options.slices)
            self.counts["deid:not_selected:slices"] += len(ordered) - len(picked)  # by the slice policy
            digests = {id(ds): d for d, ds in datasets}
            chosen = [(digests[id(ordered[i])], ordered[i], i) for i in picked]
        for digest, ds, slice_index in chosen:
            ids = self._ids(item, ds, digest)
            try:
                yield from self._instance(item, ds, ids, slice_index)
            except SkipError as exc:  # this instance only: the rest of the series goes on
                self.counts["deid:dropped:" + exc.reason] += 1
                yield ErrorRecord(f"dicom/{ids['series']}/{ids['instance']}", self.name, exc.reason, exc.detail,
                                  f"dicom/{ids['study']}")

    def _ids(self, series: DicomSeries, ds: Dataset, digest: str) -> dict[str, str]:
        """Pseudonyms of the patient, study, series and instance, from the original header."""
        ids = {kind: pseudonym(self.secret, kind, value) for kind, value in (
            ("patient", patient_key(ds)), ("study", str(ds.get("StudyInstanceUID") or series.unit_id)),
            ("series", str(ds.get("SeriesInstanceUID") or series.unit_id)))}
        uid = ds.get("SOPInstanceUID")
        ids["instance"] = pseudonym(self.secret, "instance", str(uid)) if uid else digest
        return ids

    def _instance(self, series: DicomSeries, ds: Dataset, ids: dict[str, str], slice_index: int | None) -> Iterator[Any]:
        base = f"dicom/{ids['series']}/{ids['instance']}"
        self.counts["deid:instances"] += 1
        if declared_burned_in(ds):
            yield self._dropped(base, ids, "burned_in_annotation", "BurnedInAnnotation is YES: the pixels carry text")
            return
        self._count(deidentify(ds, self.secret, self.options.deid()))
        code = normalize_code(series.license_code) or series.license_code
        n = frame_count(ds)
        frames = pick(n, self.options.frames) if n > 1 else [0]
        self.counts["deid:not_selected:frames"] += n - len(frames)
        for frame in frames:
            key = f"{base}/{frame if slice_index is None else slice_index:04d}"
            rendered = render_frame(decode_frame(ds, frame), ds, self.options.pixels())
            if needs_ocr(ds, self.options.ocr):
                chars = text_characters(rendered.image)
                if chars >= self.options.ocr_min_chars:
                    yield self._dropped(key, ids, "burned_in_text", f"OCR read {chars} characters of text in the pixels")
                    continue
            yield ImageTask(
                key=key, text=caption(ds, rendered.window), document_id=f"dicom/{ids['study']}", pixels=rendered.image,
                license_code=code, license_family=license_family(code, self.config.licenses), source=series.source_name,
                extra={**imaging_columns(ds), "dataset_name": series.dataset_name, "frame_index": frame if slice_index is None else slice_index,
                       "window": rendered.window, "patient_pseudo_id": ids["patient"], "study_pseudo_id": ids["study"],
                       "series_pseudo_id": ids["series"], "patient_identity_removed": True,
                       "deid_method": method_codes(self.options.deid())})

    def _dropped(self, key: str, ids: dict[str, str], by: str, reason: str) -> DroppedRow:
        self.counts[f"deid:dropped:{by}"] += 1
        return DroppedRow({"key": key, "article_id": f"dicom/{ids['study']}", "figure_id": None, "stage": self.name,
                           "dropped_by": by, "reason": reason})

    def _count(self, stats: Any) -> None:
        for kind in ("removed", "emptied", "replaced"):
            for name, n in getattr(stats, kind).items():
                self.counts[f"deid:{kind}:{name}"] += n


def _read(blob: bytes) -> Dataset:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        try:
            ds = pydicom.dcmread(io.BytesIO(blob))
        except InvalidDicomError:  # a bare dataset without the DICM preamble and meta header
            ds = pydicom.dcmread(io.BytesIO(blob), force=True)
    except Exception as exc:  # noqa: BLE001 - any damage is one error record (no message: it may quote values)
        raise SkipError("dicom_unreadable", f"pydicom cannot read it ({type(exc).__name__})") from None
    if "PixelData" in ds and not getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None):
        if getattr(ds, "file_meta", None) is None:
            ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = _guess_syntax(ds)
    return ds


def _guess_syntax(ds: Dataset) -> str:
    """A file without its meta header (a bare dataset): pydicom read it with the encoding it found."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if ds.is_little_endian is False:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if ds.is_implicit_VR else ExplicitVRLittleEndian
