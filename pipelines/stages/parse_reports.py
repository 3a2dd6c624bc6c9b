"""parse (reports): a study → its article row (the report as a document) and one image task per
image, each paired with the report's findings and impression.

The report is split into sections (``transforms/report_sections.py``; an Open-i study's CSV
columns already are its sections) and every section is scrubbed of identifiers
(``transforms/deid_text.py``) before anything is kept. A study whose report has neither findings
nor impression gives no samples: its images have nothing to be paired with, and one error
(``report_empty``) records it; an image that is missing or cannot be rendered is an error of its
own. View positions come from the projections or metadata file, else the DICOM header."""
from __future__ import annotations

import io
from typing import Any, Iterator

from medcorpus.pipelines.items import ArticleRow, ImageTask
from medcorpus.pipelines.sources.reports import Study, StudyImage
from medcorpus.pipelines.stages.base import Stage
from medcorpus.schemas.records import Article, ErrorRecord, SkipError
from medcorpus.transforms.deid_text import scrub
from medcorpus.transforms.keys import slug
from medcorpus.transforms.pseudonyms import pseudonym
from medcorpus.transforms.report_sections import SECTIONS, ReportSections, parse_sections


def report_sections(study: Study) -> ReportSections:
    """The study's sections, de-identified."""
    raw = parse_sections(study.text) if study.text is not None else ReportSections(
        **{k: " ".join(v.split()) or None for k, v in study.columns.items() if k in SECTIONS})
    return ReportSections(**{k: scrub(v) for k, v in raw.to_dict().items()})


class ParseReports(Stage):
    name = "parse"
    parser = "reports"
    requires = ("fetch",)

    def process(self, item: Study) -> Iterator[Any]:
        info, secret = item.collection, self.env.source.secret
        sections = report_sections(item)
        caption = sections.caption()
        if not caption:
            raise SkipError("report_empty", "the report has neither findings nor impression: its images are not kept")
        document = item.unit.unit_id
        license_code, family = info.license_code(), info.family(self.config.licenses)
        yield ArticleRow(Article(document, version=1, title=None, license_code=license_code, license_family=family,
                                 source=self.env.source.name, n_figures=len(item.images)))
        common = {
            "dataset_name": info.name, "dataset_version": info.version, "report": sections.to_dict(),
            "study_pseudo_id": pseudonym(secret, "study", f"{info.name}:{item.study}"),
            "patient_pseudo_id": pseudonym(secret, "patient", f"{info.name}:{item.patient}") if item.patient else None,
            "patient_identity_removed": True, "labels": item.labels or None,
            "body_part": info.body_part or "CHEST", "image_modality": info.modality,  # both layouts: chest X-rays
        }
        context = [f"Indication: {sections.indication}"] if sections.indication else []
        for image in item.images:
            yield self._task(image, document, caption, context, license_code, family, common)

    def _task(self, image: StudyImage, document: str, caption: str, context: list[str], license_code: str,
              family: str, common: dict[str, Any]) -> ImageTask | ErrorRecord:
        """The image's task, or the error of this image alone (the study's other images go on)."""
        key = slug(f"{document}_{image.index}")
        if image.data is None:
            return ErrorRecord(key, self.name, "image_not_found", "the study lists an image the collection does not hold",
                               document)
        extra = {**common, "view_position": image.view}
        task = ImageTask(key=key, text=caption, document_id=document, license_code=license_code, license_family=family,
                         source=self.env.source.name, context=list(context), extra=extra)
        if image.suffix != ".dcm":
            task.data = image.data
            return task
        try:
            task.pixels, header = render_dicom(image.data)
        except SkipError as exc:
            return ErrorRecord(key, self.name, exc.reason, exc.detail, document)
        view = extra["view_position"] or header.pop("view_position")  # the metadata file's first
        extra.update({**{k: v for k, v in header.items() if v is not None}, "view_position": view})
        return task


def render_dicom(data: bytes) -> tuple[Any, dict[str, Any]]:
    """A DICOM image's first frame as display pixels (``transforms/dicom_pixels.py``), and what its
    header says of the image (view position, modality, body part, pixel spacing, window); nothing
    of the header that identifies anyone is read. An image that declares burned-in text is refused."""
    import pydicom

    from medcorpus.transforms.burned_in import declared_burned_in
    from medcorpus.transforms.dicom_pixels import decode_frame, render_frame

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on damaged files
        raise SkipError("dicom_header", f"{type(exc).__name__}: not a readable DICOM file") from None
    if declared_burned_in(ds):
        raise SkipError("burned_in_annotation", "the image says it carries burned-in text (BurnedInAnnotation YES)")
    rendered = render_frame(decode_frame(ds, 0), ds)
    spacing = ds.get("PixelSpacing")
    return rendered.image, {
        "view_position": str(ds.get("ViewPosition") or "").strip().upper() or None,
        "image_modality": str(ds.get("Modality") or "") or None,
        "body_part": str(ds.get("BodyPartExamined") or "") or None,
        "pixel_spacing": [float(v) for v in spacing] if spacing else None, "window": rendered.window,
    }
