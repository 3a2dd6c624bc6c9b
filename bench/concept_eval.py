"""Evaluate concept linking: ROCO test captions, the MedMentions excerpt, speed, index memory, UMLS build cost.

    python bench/concept_eval.py --vocab VOCAB [--limit 2000] [--umls-synthetic-rows 1000000] [--out FILE]

ROCO's CUIs were extracted upstream with QuickUMLS against the full UMLS; the gold set of each caption is
restricted to CUIs present in the evaluated vocabulary (an open vocabulary covers ~22% of them). Reports
micro P/R/F1 over all (caption, CUI) pairs (``linker``: every link, so a MeSH-only concept counts as a false
positive; ``linker_umls_ids``: the links in the gold's id space) and the mean per-caption P/R/F1, for the linker and for a plain
longest-match dictionary lookup over the same vocabulary (the baseline of the issue), in the same run.
Never reads the acceptance holdout.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing
SHARED = Path(os.environ.get("MEDCORPUS_SHARED", REPO / ".." / "shared")) / "data"
ROCO = SHARED / "evalsets" / "roco_test"
MEDMENTIONS = SHARED / "umls" / "scispacy_fixtures" / "med_mentions.txt"


UMLS_CUI = re.compile(r"^C\d{7}$")  # ROCO's gold is UMLS: MeSH-only concepts (MESH:D...) can never be in it


# --- data -----------------------------------------------------------------------------------------------------

def read_roco(split: str = "radiology") -> list[tuple[str, str, set[str]]]:
    """(id, caption, gold CUIs) of the ROCO test split, in file order."""
    caps: dict[str, str] = {}
    with open(ROCO / split / "captions.txt", encoding="utf-8") as fh:
        for line in fh:
            rid, _, text = line.rstrip("\n").partition("\t")
            caps[rid] = text.strip()
    gold: dict[str, set[str]] = {}
    with open(ROCO / split / "cuis.txt", encoding="utf-8") as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            gold[f[0]] = {x for x in f[1:] if x}
    return [(rid, text, gold.get(rid, set())) for rid, text in caps.items()]


def read_medmentions(path: Path = MEDMENTIONS) -> list[tuple[str, str, set[str]]]:
    """(pmid, title + abstract, gold CUIs) from a PubTator file."""
    docs: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "|t|" in line or "|a|" in line:
            pmid, kind, text = line.split("|", 2)
            d = docs.setdefault(pmid, {"t": "", "a": "", "cuis": set()})
            d[kind] = text
        elif "\t" in line:
            f = line.split("\t")
            docs.setdefault(f[0], {"t": "", "a": "", "cuis": set()})["cuis"].update(
                c.replace("UMLS:", "") for c in f[5].split(","))
    return [(pmid, f"{d['t']} {d['a']}", d["cuis"]) for pmid, d in docs.items()]


# --- scoring --------------------------------------------------------------------------------------------------

def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4)}


def score(pred: list[set[str]], gold: list[set[str]]) -> dict[str, object]:
    tp = fp = fn = 0
    per = []
    for p, g in zip(pred, gold):
        a, b, c = len(p & g), len(p - g), len(g - p)
        tp, fp, fn = tp + a, fp + b, fn + c
        if p or g:
            per.append(prf(a, b, c))
    mean = {k: round(sum(x[k] for x in per) / len(per), 4) if per else 0.0 for k in ("precision", "recall", "f1")}
    return {"micro": prf(tp, fp, fn), "per_caption_mean": mean, "tp": tp, "fp": fp, "fn": fn,
            "captions_scored": len(per)}


def error_table(pred: list[set[str]], gold: list[set[str]], names: dict[str, str], top: int = 15) -> dict:
    fp, fn = Counter(), Counter()
    for p, g in zip(pred, gold):
        fp.update(p - g)
        fn.update(g - p)
    return {"top_fp": [(c, n, names.get(c, "")) for c, n in fp.most_common(top)],
            "top_fn": [(c, n, names.get(c, "")) for c, n in fn.most_common(top)]}


# --- baseline -------------------------------------------------------------------------------------------------

def baseline_linker(vocab) -> Callable[[str], set[str]]:  # type: ignore[no-untyped-def]
    """Plain longest-match dictionary lookup: lower-cased token n-grams, every CUI of the alias, no filters."""
    from medcorpus.transforms.text_norm import tokenizer

    tok = tokenizer()
    import pyarrow.parquet as pq

    at = pq.read_table(vocab.path / "aliases.parquet", columns=["alias", "cui"]).to_pydict()
    table: dict[str, set[str]] = {}
    longest = 1
    for alias, cui in zip(at["alias"], at["cui"]):
        key = " ".join(t.text.lower() for t in tok(alias))
        table.setdefault(key, set()).add(cui)
        longest = max(longest, key.count(" ") + 1)
    longest = min(longest, 10)

    def link(text: str) -> set[str]:
        words = [t.text.lower() for t in tok(text)]
        out: set[str] = set()
        i = 0
        while i < len(words):
            for j in range(min(len(words), i + longest), i, -1):
                hit = table.get(" ".join(words[i:j]))
                if hit:
                    out |= hit
                    i = j
                    break
            else:
                i += 1
        return out

    return link


# --- runs -----------------------------------------------------------------------------------------------------

def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def fp_kinds(linked: list, gold: list[set[str]]) -> dict[str, int]:  # type: ignore[type-arg]
    """Why predictions miss the gold: compound mentions (ROCO's CUIs are per keyword, so ``lymph node`` is
    never gold), words mapped through the anatomy-adjective table (``pleural`` -> pleura), single words."""
    from medcorpus.transforms.text_norm import ADJECTIVE_NOUNS

    kinds: Counter = Counter()
    for cs, g in zip(linked, gold):
        seen = set()
        for c in cs:
            if c.cui in g or c.cui in seen:
                continue
            seen.add(c.cui)
            if " " in c.mention.strip() or "-" in c.mention:
                kinds["compound_mention"] += 1
            elif c.mention.lower() in ADJECTIVE_NOUNS:
                kinds["anatomy_adjective"] += 1
            else:
                kinds["single_word"] += 1
    return dict(kinds)


def attainable_gold(vocab, docs: list[tuple[str, str, set[str]]], known: set[str]) -> list[set[str]]:  # type: ignore[no-untyped-def]
    """Gold CUIs one of whose vocabulary names occurs in the caption (after normalisation).

    The rest cannot be found by linking the words that are there: ROCO's fuzzy QuickUMLS matches ("arrow"
    -> Narrow face, "cavity" -> dental caries) or names the open vocabularies lack ("lobe", "spine").
    """
    from medcorpus.transforms.text_norm import DROP_TOKENS, norm_token, tokenizer

    tok = tokenizer()
    cui_keys: dict[str, set[str]] = {}
    for key, cuis in vocab.key_to_cuis.items():
        for c in cuis:
            cui_keys.setdefault(c, set()).add(key)
    out = []
    for _, text, gold in docs:
        words = [norm_token(t.text) for t in tok(text) if t.text not in DROP_TOKENS]
        grams = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, min(len(words), i + 10) + 1)}
        out.append({c for c in gold & known if cui_keys.get(c, set()) & grams})
    return out


def evaluate_set(linker, base, docs: list[tuple[str, str, set[str]]], known: set[str]) -> dict:  # type: ignore[no-untyped-def]
    gold = [g & known for _, _, g in docs]
    texts = [t for _, t, _ in docs]
    t0 = time.perf_counter()
    linked = linker.link_many(texts)
    secs = time.perf_counter() - t0
    pred = [{c.cui for c in cs} for cs in linked]
    in_space = [{c for c in p if UMLS_CUI.match(c)} for p in pred]
    bpred = [base(t) for t in texts]
    names = {c: i.name for c, i in linker.vocab.concepts.items()}
    res = {"docs": len(docs), "gold_pairs_all": sum(len(g) for _, _, g in docs),
           "gold_pairs_in_vocab": sum(len(g) for g in gold), "linker": score(pred, gold),
           "baseline": score(bpred, gold), "linker_seconds": round(secs, 2),
           "linker_umls_ids": score(in_space, gold),
           "links_outside_umls": sum(len(p) - len(u) for p, u in zip(pred, in_space)),
           "errors": error_table(pred, gold, names)}
    bf1 = res["baseline"]["micro"]["f1"]
    res["f1_ratio_vs_baseline"] = round(res["linker"]["micro"]["f1"] / bf1, 3) if bf1 else None
    res["negated_concepts"] = sum(c.negated for cs in linked for c in cs)
    res["false_positive_kinds"] = fp_kinds(linked, gold)
    att = attainable_gold(linker.vocab, docs, known)
    res["gold_pairs_attainable"] = sum(map(len, att))
    res["linker_vs_attainable_gold"] = score(pred, att)["micro"]
    res["baseline_vs_attainable_gold"] = score(bpred, att)["micro"]
    return res


def speed(linker, texts: list[str]) -> dict:  # type: ignore[no-untyped-def]
    """Captions/s on one core: the batched path and the one-record-at-a-time path."""
    t0 = time.perf_counter()
    linker.link_many(texts)
    batched = len(texts) / (time.perf_counter() - t0)
    sub = texts[: min(len(texts), 1000)]
    t0 = time.perf_counter()
    for t in sub:
        linker.link(t)
    single = len(sub) / (time.perf_counter() - t0)
    return {"captions": len(texts), "captions_per_s_batched": round(batched, 1),
            "captions_per_s_per_record": round(single, 1), "cores": 1,
            "mean_chars": round(sum(map(len, texts)) / len(texts), 1)}


def index_load_cost(vocab_dir: Path, env: dict[str, str]) -> dict[str, float]:
    """Seconds and RSS to load an index into a linker's exact-match tables (fresh process, libraries first)."""
    code = ("import json,time,psutil,spacy;from pathlib import Path;"
            "from medcorpus.transforms.vocab_index import VocabIndex;"
            "from medcorpus.transforms.concept_matcher import VocabMatcher;spacy.blank('en');"
            "p=psutil.Process();b=p.memory_info().rss;t=time.time();"
            f"v=VocabIndex.load(Path({str(vocab_dir)!r}));m=VocabMatcher.from_vocab(v);"
            "print(json.dumps({'load_s':time.time()-t,'rss_mb':(p.memory_info().rss-b)/2**20}))")
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def umls_build_estimate(rows: int, full_rows: int = 16_000_000) -> dict:
    """Time and peak memory of a UMLS build on a SYNTHETIC release of ``rows`` MRCONSO rows, extrapolated."""
    with tempfile.TemporaryDirectory() as tmp:
        rel = Path(tmp) / "META"
        cmd = [sys.executable, str(Path(__file__).with_name("synthetic_rrf.py")), str(rel), "--rows", str(rows)]
        subprocess.run(cmd, check=True)
        rrf_bytes = sum(p.stat().st_size for p in rel.glob("*.RRF"))
        out = Path(tmp) / "vocab"
        code = ("import resource,sys,time,json,psutil;from pathlib import Path;"
                "from medcorpus.transforms.vocab_umls import iter_umls_concepts,UmlsFilters;"
                "from medcorpus.transforms.vocab_index import build_index;"
                "import sklearn.feature_extraction.text,nmslib,scipy.sparse,spacy;"
                "from medcorpus.transforms.text_norm import tokenizer;tokenizer();"
                "base=psutil.Process().memory_info().rss/2**20;t=time.time();"
                f"m=build_index(iter_umls_concepts(Path({str(rel)!r}),UmlsFilters()),Path({str(out)!r}),{{}});"
                "print(json.dumps({'seconds':time.time()-t,'maxrss_mb':resource.getrusage(resource.RUSAGE_SELF)"
                ".ru_maxrss/1024,'base_mb':base,'meta':m}))")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        load = index_load_cost(out, env)
    scale = full_rows / rows
    m = r["meta"]
    build_mb = r["maxrss_mb"] - r["base_mb"]
    tables_s = m["build_s"]["tables"]
    return {"synthetic": True, "mrconso_rows": rows, "rrf_bytes": rrf_bytes, "build_seconds": round(r["seconds"], 1),
            "build_s_detail": m["build_s"], "ann": m["ann"], "peak_rss_mb": round(r["maxrss_mb"]),
            "libraries_rss_mb": round(r["base_mb"]), "build_rss_mb": round(build_mb),
            "index_disk_mb": round(m["disk_bytes"] / 2**20, 1), "concepts": m["counts"]["concepts"],
            "aliases": m["counts"]["aliases"],
            "linker_tables_load_s": round(load["load_s"], 1), "linker_tables_rss_mb": round(load["rss_mb"]),
            "extrapolated_full_release": {
                "mrconso_rows": full_rows, "scale": round(scale, 1),
                "build_hours_1_thread": round(r["seconds"] * scale * 1.15 / 3600, 2),  # HNSW ~ n log n
                "tables_only_minutes": round(tables_s * scale / 60, 1),  # --no-ann: exact matching only
                "peak_rss_gb": round((r["base_mb"] + build_mb * scale) / 1024, 1),
                "index_disk_gb": round(m["disk_bytes"] * scale / 2**30, 2),
                "linker_tables_rss_gb": round(load["rss_mb"] * scale / 1024, 1),
                "linker_tables_load_minutes": round(load["load_s"] * scale / 60, 1),
                "note": "linear in rows (HNSW insertion adds ~log n); the peak holds all aliases, their "
                        "TF-IDF vectors and the HNSW graph at once"}}


def main(argv: Iterable[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", required=True, type=Path)
    ap.add_argument("--limit", type=int, default=0, help="first N ROCO radiology captions (0 = all)")
    ap.add_argument("--speed-captions", type=int, default=2000)
    ap.add_argument("--umls-synthetic-rows", type=int, default=0, help="0 = skip the UMLS build estimate")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(list(argv) if argv is not None else None)

    from medcorpus.transforms.concepts import ConceptLinker, LinkerConfig

    # the libraries' own memory (spaCy, scispacy, sklearn, medspacy) is paid before the index is loaded
    import spacy

    ConceptLinker._build_nlp(LinkerConfig())
    ConceptLinker._build_context(LinkerConfig())
    spacy.blank("en")
    gc.collect()
    rss_libs = rss_mb()
    rss0 = rss_libs
    t0 = time.perf_counter()
    linker = ConceptLinker.load(args.vocab)
    load_s = time.perf_counter() - t0
    rss1 = rss_mb()
    if linker.vocab.has_ann:
        linker.vocab.candidate_generator()
    rss2 = rss_mb()
    report: dict = {"vocab": str(args.vocab), "vocab_meta": {k: linker.vocab.meta[k] for k in
                                                            ("counts", "disk_bytes", "ann", "tuis_inferred")},
                    "memory": {"libraries_rss_mb": round(rss_libs, 1), "linker_load_s": round(load_s, 2),
                               "index_and_matcher_rss_mb": round(rss1 - rss0, 1),
                               "ann_rss_mb": round(rss2 - rss1, 1), "process_rss_mb": round(rss2, 1)}}
    known = set(linker.vocab.concepts)
    base = baseline_linker(linker.vocab)
    roco = read_roco("radiology")
    docs = roco[: args.limit] if args.limit else roco
    report["roco_radiology"] = evaluate_set(linker, base, docs, known)
    report["roco_non_radiology"] = evaluate_set(linker, base, read_roco("non-radiology"), known)
    report["medmentions_excerpt"] = evaluate_set(linker, base, read_medmentions(), known)
    report["speed"] = speed(linker, [t for _, t, _ in roco[: args.speed_captions]])
    report["maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.umls_synthetic_rows:
        report["umls_build_estimate"] = umls_build_estimate(args.umls_synthetic_rows)
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
