"""image: a figure task or a source's image task → its sample (resolve the href, decode, normalize, encode)."""
from __future__ import annotations

from typing import Iterator

from medcorpus.pipelines.items import FigureTask, ImageTask
from medcorpus.pipelines.stages.base import Stage
from medcorpus.schemas.records import Sample, SkipError
from medcorpus.transforms.images import ImageOptions, encode_image, encode_pixels
from medcorpus.transforms.limits import check_text_fields
from medcorpus.transforms.resolve import resolve_graphic


class Image(Stage):
    name = "image"
    requires = ("parse",)
    sections = {"image": ImageOptions}

    def setup(self) -> None:
        from medcorpus.pipelines.stages import REGISTRY

        # later stages that read pixels get the decoded image with the sample (never decoded twice)
        self.keep_decoded = any(REGISTRY[s].needs_pixels for s in self.config.stages)

    def process(self, item: FigureTask | ImageTask) -> Iterator[Sample]:
        if isinstance(item, ImageTask):
            check_text_fields(item.text, item.context)
            yield self._image_sample(item)
            return
        fig = item.figure
        check_text_fields(fig.caption, fig.mentions)
        graphic = fig.primary_graphic()
        if graphic is None:
            raise SkipError("no_graphic", "the <fig> has no <graphic> with an href")
        name = resolve_graphic(graphic.href, item.package.media_names)
        enc = encode_image(item.package.read_media(name), self.config.image, keep_decoded=self.keep_decoded)
        article = item.article
        yield Sample(
            key=fig.key, image=enc.data, image_format=enc.extension, width=enc.width, height=enc.height,
            orig_width=enc.orig_width, orig_height=enc.orig_height, image_sha256=enc.sha256, text=fig.caption,
            document_id=article.article_id, license_code=article.license_code,
            license_family=article.license_family, source=article.source, source_url=item.package.source_url,
            source_md5=item.package.source_md5, context=list(fig.mentions), article=article, figure=fig,
            graphic_href=graphic.href, graphic_file=name, decoded=enc.decoded,
        )

    def _image_sample(self, item: ImageTask) -> Sample:
        if item.pixels is not None:
            enc = encode_pixels(item.pixels, self.config.image, keep_decoded=self.keep_decoded)
        elif item.data is not None:
            enc = encode_image(item.data, self.config.image, keep_decoded=self.keep_decoded)
        else:
            raise SkipError("no_image", "the source gave neither pixels nor an image file")
        return Sample(
            key=item.key, image=enc.data, image_format=enc.extension, width=enc.width, height=enc.height,
            orig_width=enc.orig_width, orig_height=enc.orig_height, image_sha256=enc.sha256, text=item.text,
            document_id=item.document_id, license_code=item.license_code, license_family=item.license_family,
            source=item.source, source_url=item.source_url, source_md5=item.source_md5, context=list(item.context),
            extra=dict(item.extra), decoded=enc.decoded,
        )
