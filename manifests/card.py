"""The dataset card ``README.md`` of a release folder: YAML metadata that Hugging Face ``datasets``
reads, so ``load_dataset("OUT/current")`` loads a release unchanged, with declared (never inferred)
features. Its paths are relative to the release folder.

Configs: ``all`` (the default: every shard) and one per license family (``datasets`` takes one
builder per folder, so the Parquet manifest loads with the ``parquet`` builder instead). They
declare the WebDataset columns: ``__key__``, ``__url__``, one image column per image format the
output holds, ``txt`` and ``json`` (the sidecar, a struct of ``schemas.manifest.SIDECAR``):
declared types keep null-only columns typed, and panels keep their ``parent_key`` and ``panel_*``
whatever the first samples are.
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from medcorpus.manifests.storage import Output
from medcorpus.schemas.manifest import SCHEMA_VERSION, SIDECAR

CARD = "README.md"
SPLIT = "train"

_DTYPES = {pa.string(): "string", pa.int32(): "int32", pa.int64(): "int64", pa.float32(): "float32",
           pa.float64(): "float64", pa.bool_(): "bool"}


def hf_feature(name: str, dtype: pa.DataType) -> dict[str, Any]:
    """One field in the card's feature notation (``datasets.Features._to_yaml_list``)."""
    return {"name": name, **_feature_type(dtype)}


def _feature_type(dtype: pa.DataType) -> dict[str, Any]:
    if pa.types.is_struct(dtype):
        return {"struct": [hf_feature(f.name, f.type) for f in dtype]}
    if pa.types.is_list(dtype):
        inner = _feature_type(dtype.value_type)
        return {"list": inner.get("dtype", inner.get("struct"))}
    if dtype not in _DTYPES:
        raise TypeError(f"no Hugging Face feature for Arrow type {dtype}")
    return {"dtype": _DTYPES[dtype]}


def shard_features(image_formats: list[str]) -> list[dict[str, Any]]:
    """The columns ``datasets``' WebDataset builder gives a sample of this output."""
    return ([{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"}]
            + [{"name": fmt, "dtype": "image"} for fmt in sorted(image_formats)]
            + [{"name": "txt", "dtype": "string"}, hf_feature("json", pa.struct(list(SIDECAR)))])


def family_formats(output: Output) -> dict[str, dict[str, int]]:
    """Per license family: image format → sample count, from the manifest parts."""
    counts: dict[str, dict[str, int]] = {}
    for part in output.list("manifest/samples"):
        with output.fs.open(output.path(part), "rb") as f:
            table = pq.read_table(f, columns=["license_family", "image_format"])
        for row in table.group_by(["license_family", "image_format"]).aggregate([([], "count_all")]).to_pylist():
            fam = counts.setdefault(row["license_family"], {})
            fam[row["image_format"]] = fam.get(row["image_format"], 0) + row["count_all"]
    return counts


def card_text(formats: dict[str, dict[str, int]]) -> str:
    families = sorted(formats)
    all_formats = sorted({f for fam in formats.values() for f in fam})
    configs = [{"config_name": "all", "default": True,
                "data_files": [{"split": SPLIT, "path": "shards/*/*.tar"}]}]
    configs += [{"config_name": fam, "data_files": [{"split": SPLIT, "path": f"shards/{fam}/*.tar"}]} for fam in families]
    info = [{"config_name": "all", "features": shard_features(all_formats)}]
    info += [{"config_name": fam, "features": shard_features(sorted(formats[fam]))} for fam in families]
    meta = {"license": "other", "pretty_name": "medcorpus build", "task_categories": ["image-to-text"],
            "tags": ["medical", "webdataset"], "configs": configs, "dataset_info": info}
    counts = "\n".join(f"| `{fam}` | {sum(formats[fam].values())} | `shards/{fam}/{fam}-NNNNNN.tar` |" for fam in families)
    return (f"---\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---\n\n"
            f"# medcorpus build\n\nMedical image-text samples as WebDataset shards with a Parquet manifest "
            f"(schema version {SCHEMA_VERSION}). Shards are split by license family, so nothing "
            f"non-commercial lands in a commercial shard; every sample's `json` carries its license, source "
            f"and provenance, and `attribution.csv` cites every sample.\n\n"
            f"| config | samples | shards |\n|---|---|---|\n{counts}\n\n"
            f"```python\nfrom datasets import load_dataset\nRELEASE = \"OUT/current\"         # this folder: the current release, or OUT/releases/NNNNNN\n"
            f"ds = load_dataset(RELEASE)            # every family\n"
            f"ds = load_dataset(RELEASE, \"comm\")    # one license family\n"
            f"rows = load_dataset(\"parquet\", data_files=f\"{{RELEASE}}/manifest/samples/*.parquet\")  # the manifest\n```\n\n"
            f"Each shard folder holds `sizes.json` (samples per shard) for webdataset trainers.\n")


def write_card(output: Output) -> None:
    """Write ``README.md`` from the manifest parts already in place."""
    output.write_bytes(CARD, card_text(family_formats(output)).encode("utf-8"))
