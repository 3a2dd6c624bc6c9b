"""parse (dataset): a unit of labelled images → one image task each, captioned from templates
(``transforms/label_captions.py``): the first caption is the sample's, the others ride in its
``mentions`` as alternatives. Labels go to ``labels``, the split to ``dataset_split``, the
descriptor's license to the sample's license code and shard family."""
from __future__ import annotations

from typing import Any, Iterator

from medcorpus.pipelines.items import ImageTask
from medcorpus.pipelines.sources.dataset import DatasetChunk
from medcorpus.pipelines.stages.base import Stage
from medcorpus.schemas.records import ErrorRecord
from medcorpus.transforms.label_captions import label_captions


class ParseDataset(Stage):
    name = "parse"
    parser = "dataset"
    requires = ("fetch",)

    def process(self, item: DatasetChunk) -> Iterator[Any]:
        info = item.info
        license_code, family = info.license_code(), info.family(self.config.licenses)
        for image in item.images:
            if image.data is None:
                yield ErrorRecord(image.key, self.name, "image_not_found", "the dataset lists an image it does not hold",
                                  image.key)
                continue
            captions = label_captions(image.key, image.label, info.labels.get(image.label), info.modality,
                                      info.body_part, info.captions_per_sample)
            yield ImageTask(
                key=image.key, text=captions[0], document_id=image.key, data=image.data,
                license_code=license_code, license_family=family, source=self.env.source.name,
                context=captions[1:],
                extra={"dataset_name": info.name, "dataset_version": info.version, "dataset_split": image.split,
                       "labels": [image.label], "image_modality": info.modality, "body_part": info.body_part},
            )
