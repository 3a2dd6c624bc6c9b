"""``croissant.json``: the release described in Croissant 1.1 (MLCommons), with its RAI fields.

Every shard is a FileObject with its sha256 (hashed by the shard's writer and kept in its manifest
part's footer, so this never reads the corpus again) and every manifest part a Parquet FileObject.
Per license family there is a FileSet of the images inside that family's shards and two
RecordSets: ``{family}`` from the manifest parts (key, caption, license, the image's shard and
byte range ...) and ``{family}_images`` from the tar members (key and image). The version is the
release number (``N.0.0``: a release may remove samples, so each is a major version). The dataset
card is the output's ``README.md``, written beside it; the description points to it.
"""
from __future__ import annotations

import datetime as dt
import json
import posixpath
from typing import Any

import pyarrow.compute as pc

from medcorpus import __version__
from medcorpus.manifests.completion import file_sha256
from medcorpus.manifests.parquet import read_columns, shard_sha256
from medcorpus.manifests.storage import Output

CROISSANT = "croissant.json"
CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/", "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "containedIn": "cr:containedIn", "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract", "field": "cr:field", "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path",
    "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated",
    "replace": "cr:replace", "separator": "cr:separator", "source": "cr:source", "subField": "cr:subField",
    "transform": "cr:transform", "equivalentProperty": "cr:equivalentProperty", "samplingRate": "cr:samplingRate",
    "arrayShape": "cr:arrayShape", "isArray": "cr:isArray",
}
# manifest columns each family's RecordSet exposes, with their Croissant types
FIELDS = (("key", "sc:Text"), ("caption", "sc:Text"), ("shard", "sc:Text"), ("image_member", "sc:Text"),
          ("image_offset", "sc:Integer"), ("image_size", "sc:Integer"), ("image_sha256", "sc:Text"),
          ("width", "sc:Integer"), ("height", "sc:Integer"), ("image_type", "sc:Text"),
          ("article_id", "sc:Text"), ("pmcid", "sc:Text"), ("doi", "sc:Text"), ("year", "sc:Integer"),
          ("license_code", "sc:Text"), ("license_url", "sc:URL"))
IMAGE_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "tif": "image/tiff",
               "tiff": "image/tiff", "gif": "image/gif", "webp": "image/webp"}


def write(output: Output, release: int, preprocessing: list[str], source_spec: str = "") -> dict[str, Any]:
    """Describe what ``output`` holds now as release ``release`` (``preprocessing``: what the build
    did to the data, one step per line); returns the document written."""
    parts = _parts(output)
    doc = {"@context": CONTEXT, "@type": "sc:Dataset", "conformsTo": CONFORMS_TO,
           **_about(output, release, parts), **rai_fields(preprocessing, source_spec),
           "distribution": _distribution(parts), "recordSet": _record_sets(parts)}
    output.write_bytes(CROISSANT, json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8"))
    return doc


def _parts(output: Output) -> list[dict[str, Any]]:
    """Per manifest part: its family, its shard (from the part's own rows: shard names are not
    assumed), image formats, licenses, sizes and hashes."""
    parts = []
    for rel in output.list("manifest/samples"):
        if not rel.endswith(".parquet"):
            continue
        table = read_columns(output, rel, ["shard", "license_family", "image_format", "license_url"])
        if table.num_rows == 0:
            continue
        shard = table["shard"][0].as_py()
        parts.append({"part": rel, "shard": shard, "family": table["license_family"][0].as_py(),
                      "formats": sorted(f for f in pc.unique(table["image_format"]).to_pylist() if f),
                      "licenses": sorted(u for u in pc.unique(table["license_url"]).to_pylist() if u),
                      "part_sha256": file_sha256(output, rel), "part_size": output.fs.size(output.path(rel)),
                      "shard_sha256": shard_sha256(output, rel) or file_sha256(output, shard),
                      "shard_size": output.fs.size(output.path(shard))})
    return parts


def _about(output: Output, release: int, parts: list[dict[str, Any]]) -> dict[str, Any]:
    name = posixpath.basename(output.root.rstrip("/")) or "medcorpus"
    families = sorted({p["family"] for p in parts})
    return {
        "name": name,
        "description": (f"Medical image-text pairs (figures, their panels and captions) built by medcorpus "
                        f"{__version__}: WebDataset tar shards per license family ({', '.join(families) or 'none'}) "
                        f"and a Parquet manifest with every member's byte range. The dataset card is README.md "
                        f"beside this file; attribution.csv cites every sample's article and license."),
        "version": f"{release}.0.0",
        "datePublished": dt.datetime.now(dt.timezone.utc).date().isoformat(),
        "license": sorted({u for p in parts for u in p["licenses"]}) or ["https://www.ncbi.nlm.nih.gov/pmc/tools/openftlist/"],
        "url": output.url if "://" in output.url else f"file://{output.root}",
        "creator": {"@type": "sc:Organization", "name": "medcorpus"},
        "citeAs": "Cite each sample's source article (attribution.csv) and NLM PubMed Central as the source.",
        "keywords": ["medical imaging", "image-text", "PubMed Central", "WebDataset"],
        "isLiveDataset": False,
    }


def rai_fields(preprocessing: list[str], source_spec: str) -> dict[str, Any]:
    """The Responsible-AI fields that apply to a corpus of published figures."""
    return {
        "rai:dataCollection": (f"Figures, captions and citing paragraphs of open-access journal articles read from "
                               f"{source_spec or 'the configured source'} (PubMed Central open-access XML and media); "
                               f"each sample keeps its article's license, source URL and md5."),
        "rai:dataCollectionType": ["Secondary data: published open-access articles"],
        "rai:dataPreprocessingProtocol": preprocessing,
        "rai:personalSensitiveInformation": (
            "Clinical figures (radiology, clinical photographs, histology) as published by the articles' "
            "authors and journals under their consent and ethics procedures. medcorpus adds no patient "
            "identifier; imaging sources carry only pseudonymous ids (keyed hashes). Faces or burned-in text "
            "present in a published figure are not removed."),
        "rai:dataLimitations": (
            "Captions are the authors' text, not radiology reports; image types, panel splits and concepts are "
            "automatic and can be wrong (confidences are in the manifest). Coverage follows PMC's open-access "
            "subset, which over-represents some journals, languages and specialties."),
        "rai:dataBiases": "Publication bias: figures illustrate findings authors chose to publish.",
        "rai:dataReleaseMaintenancePlan": (
            "Rebuilt from the source on a schedule; every release is numbered (this document's version) and "
            "manifest/changes.parquet lists each sample added, removed or updated since the previous release with "
            "the reason (new article or version, retraction, withdrawal, license change, filters, config). "
            "`medcorpus diff` writes the removed samples' keys and image hashes so derived copies can be purged."),
    }


def _distribution(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = []
    for p in parts:
        files.append({"@type": "cr:FileObject", "@id": p["shard"], "name": p["shard"], "contentUrl": p["shard"],
                      "contentSize": f"{p['shard_size']} B", "encodingFormat": "application/x-tar",
                      "sha256": p["shard_sha256"]})
        files.append({"@type": "cr:FileObject", "@id": p["part"], "name": p["part"], "contentUrl": p["part"],
                      "contentSize": f"{p['part_size']} B", "encodingFormat": "application/x-parquet",
                      "sha256": p["part_sha256"]})
    for family in sorted({p["family"] for p in parts}):
        mine = [p for p in parts if p["family"] == family]
        formats = sorted({f for p in mine for f in p["formats"]})
        files.append({"@type": "cr:FileSet", "@id": f"{family}-manifest", "name": f"{family}-manifest",
                      "encodingFormat": "application/x-parquet",
                      "includes": [p["part"] for p in mine]})
        files.append({"@type": "cr:FileSet", "@id": f"{family}-images", "name": f"{family}-images",
                      "containedIn": [{"@id": p["shard"]} for p in mine],
                      "encodingFormat": sorted({IMAGE_TYPES.get(f, f"image/{f}") for f in formats}),
                      "includes": [f"*.{f}" for f in formats]})
    return files


def _record_sets(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sets = []
    for family in sorted({p["family"] for p in parts}):
        sets.append({"@type": "cr:RecordSet", "@id": family, "name": family, "key": {"@id": f"{family}/key"},
                     "description": f"Samples of license family {family}: columns of its manifest parts.",
                     "field": [_field(family, col, kind, {"fileSet": {"@id": f"{family}-manifest"},
                                                          "extract": {"column": col}}) for col, kind in FIELDS]})
        images = {"fileSet": {"@id": f"{family}-images"}}
        sets.append({"@type": "cr:RecordSet", "@id": f"{family}_images", "name": f"{family}_images",
                     "description": f"The images of family {family}, read from its shards' tar members.",
                     "field": [_field(f"{family}_images", "key", "sc:Text",
                                      {**images, "extract": {"fileProperty": "filename"},
                                       "transform": {"regex": "^(.*)\\.[A-Za-z0-9]+$"}}),
                               _field(f"{family}_images", "image", "sc:ImageObject",
                                      {**images, "extract": {"fileProperty": "content"}})]})
    return sets


def _field(record_set: str, name: str, kind: str, source: dict[str, Any]) -> dict[str, Any]:
    return {"@type": "cr:Field", "@id": f"{record_set}/{name}", "name": name, "dataType": kind, "source": source}
