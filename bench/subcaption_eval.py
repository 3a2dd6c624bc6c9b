"""Caption splitting on real captions, per source, tune vs aside.

Sources (never the acceptance holdout):
- ``labelled``: 611 real PMC captions whose panel labels were read and written down by hand
  (``tests/data/subcaption_labels.jsonl``: which file and figure, the gold label set; the caption
  is read back from ``shared/data/pmc``), from the article packages, the nxml-only articles and the
  PMC OA bulk package. 131 carry label sets only: 35 + 35 + 50 captions with panel markers and
  4 + 4 + 4 without, drawn by a hash of their id. 480 more also carry each panel's text (``shared``:
  the text before the first label; ``panels``: each label's own text, verbatim): every remaining
  caption of the three sources with a panel-like marker (402) and 78 drawn at random from those
  without, each read and written down by one reader following one written guide (labels as
  written, ranges expanded, letters that name groups, categories or other figures' panels left
  out, position words not labels, closing sentences about every panel in no panel's text).
  Label-set exact match and subcaption token F1 per source.
- ``prostate_panels`` (in the same file): 24 captions of the prostate collection that its authors
  left unsplit, every one that names a panel with the word at a sentence start or in brackets
  ("Panel A.", "Panels C and E show", "(Panel C)"), label sets read and written down by the same
  guide (2 more left out: a second level of letters or numerals repeats in every part, "a. ...
  (Panel A) ... b. ... (Panels A-C)", which the guide does not settle).
- ``prostate_drawn`` (same file): 704 more of that collection's unsplit captions, the first 720 of
  the rest in the order of a hash of their name (16 left out: fourteen for the reason above, two
  that name panels by another figure's number, "Fig. 2c-d", "3A H&E"), read and written down by the
  same guide before the splitter was run on them (in ten draws, of 40, 60, 60, 80, 80, 80, 80, 80, 80
  and 80; the splitter was changed for tune cases of the first four and of draws 7 and 8 only; the
  last four were labelled by four readers a draw pair, 40 captions each, from a written copy of the
  guide in which position words are never labels); 292 name no panel.
- ``roco`` (same file): 256 radiology and other captions of ROCO's test split
  (``shared/data/evalsets/roco_test``, PMC figure captions), labelled by four readers (64 each) from
  the same written guide plus notes on imaging terms (T1, C5, AP views) and letters that key parts of
  one image ("A: anterior tubercle; N: nerve root"): every caption with a panel-like marker (174
  radiology, 42 non-radiology) and 40 without (30 + 10), in the order of a hash of their id; 83 name
  panels. Split by the PMC article the figure comes from.
- ``prostate``: the 196 gold-split prostate captions (label sets and per-panel text): label-set
  exact match and subcaption token F1.
(EXSCLAIM's reviewed figures are not used: their label lists are the labels found in the image, so
panels whose label was not detected are missing from them.)
Each item is tune or aside by a hash of its article (a quarter aside).

    python bench/subcaption_eval.py
"""
from __future__ import annotations

import json
import re
import tarfile
import zlib
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

from medcorpus.transforms.jats import parse_article
from medcorpus.transforms.subcaptions import split_caption
from modality_eval import ROCO, _read  # bench/: ROCO's tab-separated files, read one way

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LABELS = ROOT / "tests" / "data" / "subcaption_labels.jsonl"
BULK = DATA / "pmc" / "pmc_oa_bulk" / "oa_noncomm_xml.incr.2024-12-22.tar.gz"
PROSTATE = DATA / "compound" / "caption_splitting_prostate" / "prostate_data_only_annotated_captions.json"
_TOKEN = re.compile(r"\w+")


def split_of(key: str) -> str:
    return "aside" if zlib.crc32(key.encode()) % 4 == 0 else "tune"


@lru_cache(maxsize=None)
def _prostate_captions() -> dict[str, dict]:
    return json.loads((PROSTATE.parent / "prostate_data.json").read_text())


@lru_cache(maxsize=None)
def _roco_captions() -> dict[str, str]:
    return {key: " ".join(parts).strip() for part in ("radiology", "non-radiology")
            for key, parts in _read(ROCO / part / "captions.txt").items()}


@lru_cache(maxsize=None)
def _bulk_members() -> dict[str, bytes]:
    with tarfile.open(BULK) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def labelled_caption(row: dict) -> str:
    """The caption of the labelled figure, read back from the shared article (title + caption) or,
    for ``prostate_panels`` and ``prostate_drawn``, from the prostate collection's captions, for
    ``roco`` from ROCO's."""
    if row["source"].startswith("prostate_"):
        return _prostate_captions()[row["figure"]]["caption"]
    if row["source"] == "roco":
        return _roco_captions()[row["figure"]]
    xml = _bulk_members()[row["file"]] if row["source"] == "bulk" else (DATA / "pmc" / row["file"]).read_bytes()
    for fig in parse_article(xml, fallback_id=row["file"]).figures:
        if fig.figure_id == row["figure"]:
            return (fig.caption_title + " " + fig.caption).strip()
    raise KeyError(row["figure"])


def _labels(labels) -> set[str]:
    return {str(lab).upper().replace("’", "'") for lab in labels}


def token_f1(pred: str, gold: str) -> float:
    p, g = Counter(_TOKEN.findall(pred.lower())), Counter(_TOKEN.findall(gold.lower()))
    common = sum((p & g).values())
    if not common:
        return 0.0
    precision, recall = common / sum(p.values()), common / sum(g.values())
    return 2 * precision * recall / (precision + recall)


def eval_labelled() -> dict[tuple[str, str], dict[str, list[float]]]:
    """{(source, split): {"exact": [1.0 per caption whose label set is right], "f1": [token F1 per
    gold panel]}}; F1 only for rows labelled with per-panel text (``shared`` + ``panels``), scored
    against the splitter's shared prefix + the panel's own text, as the labels were written (closing
    sentences that apply to every panel are in neither; a panel whose label was not found scores 0)."""
    out: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: {"exact": [], "f1": []})
    for line in LABELS.read_text().splitlines():
        row = json.loads(line)
        split = split_caption(labelled_caption(row))
        acc = out[(row["source"], split_of(row.get("article", row["file"])))]
        acc["exact"].append(float(_labels(split.labels) == _labels(row["labels"])))
        if "panels" in row:
            found = {lab.upper().replace("’", "'"): lab for lab in split.labels}
            for lab, text in row["panels"].items():
                got = found.get(lab.upper().replace("’", "'"))
                pred = " ".join(filter(None, (split.shared_prefix, split.own(got)))) if got else ""
                acc["f1"].append(token_f1(pred, f"{row.get('shared', '')} {text}"))
    return dict(out)


def eval_prostate() -> dict[str, dict[str, float]]:
    data = json.loads(PROSTATE.read_text())
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for key, item in data.items():
        gold = {s["label"]["text"].lower().replace("’", "'"): s["caption"] for s in item["gt_subfigures"]}
        split = split_caption(item["caption"])
        pred = {lab.lower() for lab in split.labels}
        s = acc[split_of(key.split("_")[0])]
        s["exact"].append(float(pred == set(gold)))
        s["f1"] += [token_f1(split.text_for(lab) if lab in pred else "", text) for lab, text in gold.items()]
    return {k: {"n": len(v["exact"]), "exact": sum(v["exact"]) / len(v["exact"]), "f1": sum(v["f1"]) / len(v["f1"])}
            for k, v in acc.items()}


def main() -> None:
    rows, totals = [], defaultdict(lambda: [0.0, 0])
    for (source, split), acc in sorted(eval_labelled().items()):
        ok, n = sum(acc["exact"]), len(acc["exact"])
        f1 = f", subcaption F1 {sum(acc['f1']) / len(acc['f1']):.3f} ({len(acc['f1'])} panels)" if acc["f1"] else ""
        rows.append((f"labelled/{source}", split, f"exact {ok:.0f}/{n} = {ok / n:.3f}{f1}"))
        totals[split] = [totals[split][0] + ok, totals[split][1] + n]
    for split, (ok, n) in sorted(totals.items()):
        rows.append(("labelled (all sources)", split, f"exact {ok:.0f}/{n} = {ok / n:.3f}"))
    for split, m in sorted(eval_prostate().items()):
        rows.append(("prostate", split, f"exact {m['exact']:.3f} (n={m['n']}), subcaption F1 {m['f1']:.3f}"))
    for r in rows:
        print(f"{r[0]:24s} {r[1]:6s} {r[2]}")


if __name__ == "__main__":
    main()
