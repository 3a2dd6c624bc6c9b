"""panels: a compound figure → the figure and one sample per panel (cropped image, subcaption
plus the caption's shared text), paired by OCR'd labels, reading order and position."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Iterator

from medcorpus.pipelines.stages.base import Stage
from medcorpus.schemas.manifest import PANEL_FIELDS
from medcorpus.schemas.records import Sample
from medcorpus.transforms.images import encode_rgb
from medcorpus.transforms.panel_labels import ocr_engine
from medcorpus.transforms.subfigures import (PanelPair, SubfigureConfig, SubfigureOptions, crop_panel, panel_key,
                                             split_figure)


class Panels(Stage):
    name = "panels"
    requires = ("image",)
    sections = {"subfigures": SubfigureConfig}
    columns = tuple(PANEL_FIELDS)
    needs_pixels = True

    def setup(self) -> None:
        sub = self.config.subfigures
        detector = None
        if sub.detector:
            from medcorpus.transforms.panel_detector import LearnedPanelDetector

            detector = LearnedPanelDetector(sub.detector)  # loaded once per worker
        self.split_options = SubfigureOptions(ocr=sub.ocr, keep_whole_figure=sub.keep_whole_figure,
                                              split_unlabeled=sub.split_unlabeled, max_panels=sub.max_panels,
                                              detector=detector)
        if sub.ocr != "never":
            ocr_engine()  # this worker's tesseract, loaded once and reused for every figure

    def process(self, item: Sample) -> Iterator[Sample]:
        if item.figure is None:  # a DICOM frame or a dataset image is one picture: never split
            item.extra.update(n_panels=0, split_status="not_a_figure")
            yield item
            return
        assert item.decoded is not None
        result = split_figure(item.decoded, item.text, self.split_options)
        sub = self.config.subfigures
        pairs = [p for p in result.panels if p.confidence >= sub.min_confidence]
        if len(pairs) < len(result.panels):
            pairs = []
        status = "split" if pairs else (result.kept_whole_reason or "single_panel")
        if sub.keep_whole_figure or not pairs:
            item.extra.update(n_panels=len(pairs), split_status=status)
            yield item
        for index, pair in enumerate(pairs):
            yield self._panel(item, pair, index)

    def _panel(self, parent: Sample, pair: PanelPair, index: int) -> Sample:
        assert parent.decoded is not None
        crop = crop_panel(parent.decoded, pair.box)
        data = encode_rgb(crop, self.config.image)
        return replace(
            parent, key=panel_key(parent.key, pair, index), image=data, image_format="jpg", width=crop.width,
            height=crop.height, image_sha256=hashlib.sha256(data).hexdigest(), text=pair.subcaption, decoded=crop,
            extra={"parent_key": parent.key, "panel_index": index, "panel_box": list(pair.box),
                   "panel_label": pair.label, "panel_confidence": round(pair.confidence, 6), "split_status": "split"},
        )
