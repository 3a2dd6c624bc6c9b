"""Evaluation-set registry and decontamination: no training sample may leak an evaluation item.

The registry is a JSON-lines file of entries ``{"evalset", "kind", "value", "detail"}``:

* ``pmcid_figure`` — ``value`` = ``PMC123:fig-file-stem`` (figure file stem or figure id, lower
  case) or ``PMC123:*`` (the whole article);
* ``pmid``         — a PubMed id whose article is in the eval set;
* ``image_hash``   — 128-bit pHash‖dHash as 32 hex digits (see transforms.dedup);
* ``caption``      — normalized caption text; matched by word n-gram containment.

``builtin_entries`` loads the lists named in ../shared/data/SOURCES.md (never the holdout).
A sample is contaminated when its PMCID + figure file/id is listed, its image hash lies within
``image_distance`` of a listed image, or ``ngram``-word shingles of a listed caption are contained
in its caption at ``containment`` or more (see ``DecontamOptions`` for why those numbers).
"""
from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from medcorpus.files import atomic_write
from medcorpus.transforms.dedup import caption_tokens, hash_image, popcount64
from medcorpus.transforms.options import Fraction, NonNegativeInt, PositiveInt, validated

KINDS = ("pmcid_figure", "pmid", "image_hash", "caption")


@dataclass(frozen=True)
class EvalEntry:
    evalset: str
    kind: str
    value: str
    detail: str = ""


@dataclass(frozen=True)
class DecontamOptions:
    """dataflow.yaml ``decontam:``.

    ``ngram`` = 8 words: long enough that shared medical phrases ("computed tomography of the
    chest showing") rarely fill one, short enough that a caption edited in a few places still
    shares many. A sample is a hit when it contains ≥ ``containment`` of the eval caption's
    n-grams (containment, not Jaccard: an eval caption copied into a longer training caption is
    still a leak). Eval captions shorter than ``min_words`` are skipped (too generic to be evidence).
    ``image_distance`` is the near-duplicate threshold of transforms.dedup.
    """

    ngram: PositiveInt = 8
    containment: Fraction = 0.5
    min_words: NonNegativeInt = 8
    image_distance: NonNegativeInt = 34
    registry: str | None = None       # the user's eval sets (``medcorpus evalsets add`` writes one)
    builtin_data: str | None = None   # the folder of the shared evaluation lists

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DecontamOptions:
        return validated(cls, values, "decontam")


@dataclass(frozen=True)
class Hit:
    evalset: str
    kind: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


# ---- ids ------------------------------------------------------------------------------------------

_PMCID = re.compile(r"PMC\d+", re.I)


def figure_stem(name: str) -> str:
    """``/x/PMC1_cro-0008-0385-g01.jpg`` → ``cro-0008-0385-g01`` (lower case, no folder, no extension)."""
    base = name.rsplit("/", 1)[-1]
    base = re.sub(r"\.(jpe?g|png|tiff?|gif|bmp|webp)$", "", base, flags=re.I)
    return base.lower()


def figure_value(pmcid: str, figure: str = "*") -> str:
    return f"{pmcid.upper()}:{figure if figure == '*' else figure_stem(figure)}"


# ---- the registry file -----------------------------------------------------------------------------

def read_registry(path: str | Path) -> list[EvalEntry]:
    p = Path(path)
    if not p.exists():
        return []
    with p.open(encoding="utf-8") as f:
        return [EvalEntry(**json.loads(line)) for line in f if line.strip()]


def write_registry(path: str | Path, entries: Iterable[EvalEntry]) -> int:
    """Sorted, de-duplicated JSON lines (a deterministic file); returns the entry count. A file that
    already holds them is left alone (every build prepares its registry: no rewrite, no second copy)."""
    unique = sorted(set(entries), key=lambda e: (e.evalset, e.kind, e.value, e.detail))
    # vars: the entry's flat string fields (``asdict``'s deep copy costs seconds on ~30k entries)
    data = "".join(json.dumps(vars(e), ensure_ascii=False, sort_keys=True) + "\n" for e in unique).encode("utf-8")
    try:
        same = Path(path).stat().st_size == len(data) and Path(path).read_bytes() == data
    except OSError:
        same = False
    if not same:
        atomic_write(path, data)
    return len(unique)


def add_entries(path: str | Path, entries: Iterable[EvalEntry]) -> int:
    return write_registry(path, [*read_registry(path), *entries])


def summarize(entries: Iterable[EvalEntry]) -> dict[str, dict[str, int]]:
    """evalset → kind → count."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for e in entries:
        out[e.evalset][e.kind] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


# ---- user additions ---------------------------------------------------------------------------------

def entries_from_ids(evalset: str, ids: Iterable[str]) -> list[EvalEntry]:
    """``PMC123`` (whole article), ``PMC123:fig2`` / ``PMC123/fig2.jpg`` (one figure), or a PMID."""
    out = []
    for raw in ids:
        item = raw.strip()
        if not item:
            continue
        m = _PMCID.match(item)
        if m:
            rest = item[m.end():].lstrip(":/_ \t")
            out.append(EvalEntry(evalset, "pmcid_figure", figure_value(m.group(0), rest or "*"), item))
        elif item.isdigit():
            out.append(EvalEntry(evalset, "pmid", item, item))
        else:
            raise ValueError(f"not a PMCID[:figure] or PMID: {item!r}")
    return out


def entries_from_images(evalset: str, paths: Iterable[str | Path]) -> list[EvalEntry]:
    out = []
    for p in paths:
        h = hash_image(Path(p).read_bytes())
        out.append(EvalEntry(evalset, "image_hash", f"{h.perceptual:032x}", Path(p).name))
    return out


def entries_from_captions(evalset: str, captions: Iterable[str], ids: Iterable[str] | None = None) -> list[EvalEntry]:
    ids = list(ids) if ids is not None else None
    out = []
    for n, cap in enumerate(captions):
        text = " ".join(caption_tokens(cap))
        if text:
            out.append(EvalEntry(evalset, "caption", text, ids[n] if ids else ""))
    return out


# ---- the shared lists (SOURCES.md evalsets/ and "other eval lists"; never the acceptance holdout) ----

def _roco_dlinks(path: Path, evalset: str) -> Iterator[EvalEntry]:
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        m = _PMCID.search(parts[1])
        if m:
            yield EvalEntry(evalset, "pmcid_figure", figure_value(m.group(0), parts[2].strip()), parts[0].strip())


def _roco_captions(path: Path, evalset: str) -> Iterator[EvalEntry]:
    for line in path.read_text(encoding="utf-8").splitlines():
        roco_id, _, cap = line.partition("\t")
        yield from entries_from_captions(evalset, [cap], [roco_id.strip()])


def builtin_entries(data: str | Path) -> list[EvalEntry]:
    """Entries from the shared eval lists under ``data`` (= ../shared/data)."""
    d = Path(data)
    out: list[EvalEntry] = []
    for split, folder in (("test", "roco_test"), ("validation", "roco_validation_ids")):
        for part in ("radiology", "non-radiology"):
            name = f"roco-{split}"
            if (f := d / "evalsets" / folder / part / "dlinks.txt").exists():
                out.extend(_roco_dlinks(f, name))
            if (f := d / "evalsets" / folder / part / "captions.txt").exists():
                out.extend(_roco_captions(f, name))
    out.extend(_slake(d / "evalsets" / "slake_test" / "test.json"))
    out.extend(_iu_xray(d / "reports" / "iu_xray_r2gen_split" / "annotation.json"))
    out.extend(_imageclef(d / "compound" / "imageclef2016_figsep" / "clef_eval.txt"))
    out.extend(_medicat(d / "compound" / "medicat_sample"))
    if (f := d / "umls" / "medmentions_splits" / "corpus_pubtator_pmids_test.txt").exists():
        out.extend(EvalEntry("medmentions-test", "pmid", t, t) for t in f.read_text().split() if t.isdigit())
    return out


def _slake(path: Path) -> Iterator[EvalEntry]:
    """SLAKE images are not from PMC: the questions+answers are registered as text, for a VQA-leak check."""
    if not path.exists():
        return
    seen = set()
    for q in json.loads(path.read_text(encoding="utf-8")):
        if q.get("q_lang") != "en":
            continue
        text = f"{q['question']} {q['answer']}"
        if text not in seen:
            seen.add(text)
            yield from entries_from_captions("slake-test", [text], [q.get("img_name", "")])


def _iu_xray(path: Path) -> Iterator[EvalEntry]:
    """R2Gen test split: the test list's key is four spaces in this copy; every entry says split=test."""
    if not path.exists():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    for entries in data.values():
        for e in entries:
            if e.get("split") == "test" and e.get("report"):
                yield from entries_from_captions("iu-xray-test", [e["report"]], [e["id"]])


_CLEF_PMC = re.compile(r"^(PMC\d+)[_-](.+)$", re.I)


def _imageclef(path: Path) -> Iterator[EvalEntry]:
    """ImageCLEF 2016 figure-separation test: PMC figure file names (no PMCID): registered by file stem."""
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8").split():
        stem = figure_stem(line)
        m = _CLEF_PMC.match(stem)
        value = figure_value(m.group(1), m.group(2)) if m else f"*:{stem}"
        yield EvalEntry("imageclef2016-figsep-test", "pmcid_figure", value, line.rsplit("/", 1)[-1])


def _medicat(folder: Path) -> Iterator[EvalEntry]:
    """MedICaT sample: figure ids (``pdf_hash:fig_uri``), captions, and the figures' image hashes."""
    f = folder / "sample.jsonl"
    if not f.exists():
        return
    for line in f.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        fig_id = f"{r['pdf_hash']}_{r['fig_uri']}"
        yield from entries_from_captions("medicat-sample", [r.get("s2_caption") or ""], [fig_id])
        img = folder / "figures" / fig_id
        if img.exists():
            yield from entries_from_images("medicat-sample", [img])


# ---- matching ---------------------------------------------------------------------------------------

@dataclass
class EvalIndex:
    """The registry, indexed for lookups per sample."""

    options: DecontamOptions
    figures: dict[str, list[EvalEntry]] = field(default_factory=dict)
    pmids: dict[str, list[EvalEntry]] = field(default_factory=dict)
    hashes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.uint64))
    hash_entries: list[EvalEntry] = field(default_factory=list)
    ngram_owners: dict[str, list[int]] = field(default_factory=dict)   # n-gram -> caption entry indexes
    caption_entries: list[EvalEntry] = field(default_factory=list)
    caption_sizes: list[int] = field(default_factory=list)


def _ngrams(tokens: Sequence[str], n: int) -> set[str]:
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def build_index(entries: Iterable[EvalEntry], options: DecontamOptions = DecontamOptions()) -> EvalIndex:
    idx = EvalIndex(options)
    figures: dict[str, list[EvalEntry]] = defaultdict(list)
    pmids: dict[str, list[EvalEntry]] = defaultdict(list)
    owners: dict[str, list[int]] = defaultdict(list)
    hashes = []
    for e in sorted(set(entries), key=lambda e: (e.evalset, e.kind, e.value, e.detail)):
        if e.kind == "pmcid_figure":
            figures[e.value].append(e)
        elif e.kind == "pmid":
            pmids[e.value].append(e)
        elif e.kind == "image_hash":
            v = int(e.value, 16)
            hashes.append((v >> 64, v & 0xFFFFFFFFFFFFFFFF))
            idx.hash_entries.append(e)
        elif e.kind == "caption":
            toks = e.value.split()
            if len(toks) < options.min_words:
                continue
            grams = _ngrams(toks, options.ngram)
            for g in grams:
                owners[g].append(len(idx.caption_entries))
            idx.caption_entries.append(e)
            idx.caption_sizes.append(len(grams))
    idx.figures, idx.pmids, idx.ngram_owners = dict(figures), dict(pmids), dict(owners)
    if hashes:
        idx.hashes = np.array(hashes, dtype=np.uint64)
    return idx


def decontaminate(sample: Mapping[str, Any], index: EvalIndex) -> list[Hit]:
    """Hits of one sample. Fields used: ``pmcid``, ``pmid``, ``figure_id``, ``graphic_file`` /
    ``graphic_href``, ``caption``, ``perceptual`` (128-bit int) — each optional."""
    hits: list[Hit] = []
    pmcid = (sample.get("pmcid") or "").upper()
    names = {figure_stem(str(sample[k])) for k in ("graphic_file", "graphic_href", "figure_id") if sample.get(k)}
    keys = {f"{pmcid}:*"} | {f"{pmcid}:{n}" for n in names} if pmcid else set()
    keys |= {f"*:{n}" for n in names}
    for k in sorted(keys):
        hits.extend(Hit(e.evalset, "id", f"{e.value} ({e.detail})") for e in index.figures.get(k, ()))
    if sample.get("pmid"):
        hits.extend(Hit(e.evalset, "id", f"PMID {e.value}") for e in index.pmids.get(str(sample["pmid"]), ()))
    if sample.get("perceptual") is not None and len(index.hashes):
        v = int(sample["perceptual"])
        d = (popcount64(index.hashes[:, 0] ^ np.uint64(v >> 64))
             + popcount64(index.hashes[:, 1] ^ np.uint64(v & 0xFFFFFFFFFFFFFFFF)))
        for i in np.flatnonzero(d <= index.options.image_distance):
            e = index.hash_entries[i]
            hits.append(Hit(e.evalset, "phash", f"{e.detail} distance={int(d[i])}"))
    if sample.get("caption") and index.caption_entries:
        hits.extend(_caption_hits(str(sample["caption"]), index))
    return sorted(set(hits), key=lambda h: (h.evalset, h.kind, h.detail))


def _caption_hits(caption: str, index: EvalIndex) -> list[Hit]:
    grams = _ngrams(caption_tokens(caption), index.options.ngram)
    shared: Counter[int] = Counter()
    for g in grams:
        for owner in index.ngram_owners.get(g, ()):
            shared[owner] += 1
    out = []
    for owner, n in shared.items():
        c = n / index.caption_sizes[owner]
        if c >= index.options.containment:
            e = index.caption_entries[owner]
            out.append(Hit(e.evalset, "caption", f"{e.detail} containment={c:.2f}"))
    return out


def report(hits_by_key: Mapping[str, Sequence[Hit]]) -> list[dict[str, Any]]:
    """Per eval set: samples removed, by kind, and the keys (sorted): what a release's report shows."""
    per: dict[str, dict[str, Any]] = {}
    for key in sorted(hits_by_key):
        for h in hits_by_key[key]:
            r = per.setdefault(h.evalset, {"evalset": h.evalset, "samples": set(), "by_kind": Counter()})
            r["samples"].add(key)
            r["by_kind"][h.kind] += 1
    return [{"evalset": name, "samples_removed": len(r["samples"]), "by_kind": dict(sorted(r["by_kind"].items())),
             "keys": sorted(r["samples"])} for name, r in sorted(per.items())]


def write_report_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["evalset", "samples_removed", "by_kind", "keys"])
        for r in rows:
            w.writerow([r["evalset"], r["samples_removed"], json.dumps(r["by_kind"]), " ".join(r["keys"])])
