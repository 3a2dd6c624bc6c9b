"""The on-disk vocabulary index: concepts, aliases, TUIs, and scispacy's char-3-gram TF-IDF + ANN index.

Layout of a ``VOCAB`` directory (``FORMAT_VERSION`` 1)::

    vocab.json            format, version, sources and filters (provenance), counts, build cost
    concepts.parquet      cui, name, name_key (normalised name), tuis, group, definition, sources
    aliases.parquet       alias, key (normalised, see text_norm), cui
    ann/                  exactly scispacy's ``LinkerPaths.from_directory`` layout:
      tfidf_vectorizer.joblib   sklearn TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 3))
      tfidf_vectors_sparse.npz  one row per alias of concept_aliases.json
      nmslib_index.bin          nmslib HNSW over cosinesimil_sparse
      concept_aliases.json

scispacy's own ``create_tfidf_ann_index`` refuses to run on Python >= 3.11, so the vectors and the HNSW index
are built here with the same settings (``M``/``efConstruction`` smaller by default: the open vocabularies
are small, and 2,000 costs hours on a full UMLS release). Parquet keeps loading cheap (once per worker).
"""
from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from medcorpus.transforms.semantic_types import load_semantic_network
from medcorpus.transforms.text_norm import NORMALIZER_VERSION, norm_key
from medcorpus.transforms.vocab_records import ConceptRecord

FORMAT = "medcorpus-vocab"
FORMAT_VERSION = 1
ANN_DIR = "ann"
SHORT_KEY = 6  # keys up to this length keep their raw spellings (case rules for abbreviations, 3-letter words)


@dataclass(frozen=True)
class AnnParams:
    min_df: int = 2  # scispacy uses 10 on full UMLS; 2 keeps rare 3-grams of small vocabularies
    m: int = 24
    ef_construction: int = 200
    ef_search: int = 100
    threads: int = 1


def _concept_columns(records: Iterable[ConceptRecord]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Columns of both tables, filled in one pass so a streamed build never holds the records."""
    sn = load_semantic_network()
    c: dict[str, list[Any]] = {k: [] for k in ("cui", "name", "name_key", "tuis", "group", "definition", "sources")}
    a: dict[str, list[Any]] = {k: [] for k in ("alias", "key", "cui")}
    key_cache: dict[str, str] = {}
    for r in records:
        c["cui"].append(r.cui)
        c["name"].append(r.name)
        name_key = key_cache.get(r.name)
        if name_key is None:
            name_key = key_cache[r.name] = norm_key(r.name)
        c["name_key"].append(name_key)
        c["tuis"].append(list(r.tuis))
        c["group"].append(sn.primary_group(r.tuis))
        c["definition"].append(r.definition)
        c["sources"].append(list(r.sources))
        for alias in dict.fromkeys([r.name, *r.aliases] if r.matchable else []):
            key = key_cache.get(alias)
            if key is None:
                key = key_cache[alias] = norm_key(alias)
            if key:
                a["alias"].append(alias)
                a["key"].append(key)
                a["cui"].append(r.cui)
    return c, a


def build_ann(aliases: list[str], out_dir: Path, params: AnnParams) -> dict[str, Any]:
    """Fit the char-3-gram TF-IDF on the unique aliases and index them with nmslib HNSW (scispacy's layout)."""
    import joblib
    import nmslib
    import numpy as np
    import scipy.sparse
    from sklearn.feature_extraction.text import TfidfVectorizer

    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    min_df = params.min_df if len(aliases) >= 50 * params.min_df else 1
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 3), min_df=min_df, dtype=np.float32)
    vectors = vec.fit_transform(aliases)
    keep = np.asarray(vectors.sum(axis=1)).reshape(-1) != 0  # nmslib cannot index all-zero rows
    aliases = [x for x, k in zip(aliases, keep) if k]
    vectors = vectors[keep].astype(np.float32)
    joblib.dump(vec, out_dir / "tfidf_vectorizer.joblib")
    scipy.sparse.save_npz(out_dir / "tfidf_vectors_sparse.npz", vectors)
    (out_dir / "concept_aliases.json").write_text(json.dumps(aliases), encoding="utf-8")
    t1 = time.perf_counter()
    index = nmslib.init(method="hnsw", space="cosinesimil_sparse", data_type=nmslib.DataType.SPARSE_VECTOR)
    index.addDataPointBatch(vectors)
    index.createIndex({"M": params.m, "efConstruction": params.ef_construction, "post": 0,
                       "indexThreadQty": params.threads}, print_progress=False)
    index.saveIndex(str(out_dir / "nmslib_index.bin"))
    return {"aliases": len(aliases), "dropped_empty": int((~keep).sum()), "ngrams": len(vec.vocabulary_),
            "min_df": min_df, "M": params.m, "efConstruction": params.ef_construction,
            "ef_search": params.ef_search, "tfidf_s": round(t1 - t0, 2),
            "hnsw_s": round(time.perf_counter() - t1, 2)}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_index(records: Iterable[ConceptRecord], out: Path, provenance: dict[str, Any], *,
                id_space: str = "UMLS", tuis_inferred: bool = False, ann: bool = True,
                ann_params: AnnParams = AnnParams()) -> dict[str, Any]:
    """Write a vocabulary directory from concept records; returns (and stores) its ``vocab.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    c, a = _concept_columns(records)
    if not c["cui"]:
        raise ValueError("no concepts to index: check the inputs and filters")
    list_str = pa.list_(pa.string())
    pq.write_table(pa.table({"cui": pa.array(c["cui"], pa.string()), "name": pa.array(c["name"], pa.string()),
                             "name_key": pa.array(c["name_key"], pa.string()),
                             "tuis": pa.array(c["tuis"], list_str), "group": pa.array(c["group"], pa.string()),
                             "definition": pa.array(c["definition"], pa.string()),
                             "sources": pa.array(c["sources"], list_str)}),
                   out / "concepts.parquet", compression="zstd")
    pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in a.items()}), out / "aliases.parquet",
                   compression="zstd")
    t1 = time.perf_counter()
    ann_meta = build_ann(list(dict.fromkeys(a["alias"])), out / ANN_DIR, ann_params) if ann else None
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "normalizer_version": NORMALIZER_VERSION,
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "id_space": id_space, "tuis_inferred": tuis_inferred, "provenance": provenance,
        "counts": {"concepts": len(c["cui"]), "aliases": len(a["alias"]), "keys": len(set(a["key"]))},
        "ann": ann_meta, "build_s": {"tables": round(t1 - t0, 2), "total": round(time.perf_counter() - t0, 2)},
    }
    meta["disk_bytes"] = dir_bytes(out)
    (out / "vocab.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


@dataclass
class ConceptInfo:
    cui: str
    name: str
    tuis: tuple[str, ...]
    group: str | None
    name_key: str
    n_sources: int = 1


@dataclass
class VocabIndex:
    """A loaded vocabulary: concept info by CUI, CUIs by normalised alias key, and the ANN parts on demand."""

    path: Path
    meta: dict[str, Any]
    concepts: dict[str, ConceptInfo]
    key_to_cuis: dict[str, tuple[str, ...]]
    key_cased: dict[str, set[str]] = field(default_factory=dict)  # short keys -> their raw alias spellings
    _candidate_generator: Any = None

    @classmethod
    def load(cls, path: Path | str) -> "VocabIndex":
        path = Path(path)
        meta = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: not a {FORMAT} v{FORMAT_VERSION} index")
        ct = pq.read_table(path / "concepts.parquet",
                           columns=["cui", "name", "name_key", "tuis", "group", "sources"]).to_pydict()
        at = pq.read_table(path / "aliases.parquet").to_pydict()
        keys, name_keys = at["key"], ct["name_key"]
        if meta.get("normalizer_version") != NORMALIZER_VERSION:  # built by another normaliser: recompute
            keys = [norm_key(a) for a in at["alias"]]
            name_keys = [norm_key(n) for n in ct["name"]]
        intern: dict[str, str] = {}
        concepts = {
            cui: ConceptInfo(cui, name, tuple(intern.setdefault(t, t) for t in tuis or ()), group, name_key,
                             len(sources or ()))
            for cui, name, name_key, tuis, group, sources in zip(ct["cui"], ct["name"], name_keys, ct["tuis"],
                                                                  ct["group"], ct["sources"])
        }
        key_to_cuis: dict[str, tuple[str, ...]] = {}
        key_cased: dict[str, set[str]] = {}
        for alias, key, cui in zip(at["alias"], keys, at["cui"]):
            prev = key_to_cuis.get(key, ())
            if cui not in prev:
                key_to_cuis[key] = prev + (cui,)
            if len(key) <= SHORT_KEY:
                key_cased.setdefault(key, set()).add(alias)
        return cls(path, meta, concepts, key_to_cuis, key_cased)

    @property
    def has_ann(self) -> bool:
        return (self.path / ANN_DIR / "nmslib_index.bin").is_file()

    def candidate_generator(self):  # type: ignore[no-untyped-def]
        """scispacy's ``CandidateGenerator`` over this index (loaded on first use, then kept)."""
        if self._candidate_generator is None:
            self._candidate_generator = load_candidate_generator(self.path)
        return self._candidate_generator


def scispacy_kb(path: Path):  # type: ignore[no-untyped-def]
    """A scispacy ``KnowledgeBase`` from the index's tables (concept_id, canonical_name, aliases, types)."""
    from scispacy.linking_utils import Entity, KnowledgeBase

    ct = pq.read_table(path / "concepts.parquet", columns=["cui", "name", "tuis", "definition"]).to_pydict()
    at = pq.read_table(path / "aliases.parquet", columns=["alias", "cui"]).to_pydict()
    aliases: dict[str, list[str]] = {}
    for alias, cui in zip(at["alias"], at["cui"]):
        aliases.setdefault(cui, []).append(alias)
    entities = (Entity(cui, name, aliases.get(cui, []), list(tuis or []), definition)
                for cui, name, tuis, definition in zip(ct["cui"], ct["name"], ct["tuis"], ct["definition"]))
    return KnowledgeBase(entities)


def load_candidate_generator(path: Path):  # type: ignore[no-untyped-def]
    """Load the ANN files through scispacy's own ``LinkerPaths`` loader, proving the layout is what it accepts."""
    from scispacy.candidate_generation import CandidateGenerator, LinkerPaths

    meta = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
    ef_search = (meta.get("ann") or {}).get("ef_search", 100)
    aliases, vectorizer, ann_index = LinkerPaths.from_directory(path / ANN_DIR).load(ef_search=ef_search)
    return CandidateGenerator(ann_index=ann_index, tfidf_vectorizer=vectorizer, ann_concept_aliases_list=aliases,
                              kb=scispacy_kb(path))


def vocab_provenance(path: Path | str) -> dict[str, Any]:
    """What a manifest's provenance records about the vocabulary a stage linked with."""
    meta = json.loads((Path(path) / "vocab.json").read_text(encoding="utf-8"))
    keys = ("format", "format_version", "normalizer_version", "built_at", "id_space", "tuis_inferred",
            "provenance", "counts")
    return {"path": str(path), **{k: meta.get(k) for k in keys}}
