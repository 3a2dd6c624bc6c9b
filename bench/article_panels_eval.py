"""Panel counts on real figures counted by eye (``tests/data/compound_panels_by_eye.jsonl``).

Each figure is decoded as the image stage does (longest side 1024) and split by ``split_figure``;
the predicted count is the number of panels (1 when kept whole). A figure whose caption names no
panels is counted as layout analysis splits it (``split_unlabeled``), unless ``--unlabeled whole``
(the pipeline's default: such figures stay whole). Prints exact and within-one counts per split
(tune; aside, to be looked at only after tuning) and per set: ``shared21`` (the first 21 shared
article figures), ``widened`` (MedICaT sample, PMC7003341, EXSCLAIM Nature and more shared
article figures) and ``late`` (16 more shared article figures, all aside, counted after tuning). Per-figure rows are printed for the tune split only, unless ``--rows all``.

    python bench/article_panels_eval.py [--ocr auto|never|always] [--unlabeled layout|whole] [--rows tune|all]

``--articles`` instead splits every figure of the shared sample articles as the panels stage does and
prints the share of figures whose caption names panels that end split with every panel paired, the
kept-whole reasons, and the false-split check: every figure left whole, given the made-up caption
"(A) ... (B) ... (C) ...", should stay whole (a split there is cut from layout and letters alone).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.synthetic_compound import data_dir  # noqa: E402
from medcorpus.transforms.images import ImageOptions, encode_image  # noqa: E402
from medcorpus.transforms.jats import parse_article  # noqa: E402
from medcorpus.transforms.subcaptions import split_caption  # noqa: E402
from medcorpus.transforms.subfigures import SubfigureOptions, split_figure  # noqa: E402

LABELS = _ROOT / "tests" / "data" / "compound_panels_by_eye.jsonl"


def figure_path(rec: dict) -> Path:
    """The figure's file under the shared data folder (``article``/``file`` or ``path``)."""
    if "path" in rec:
        return data_dir() / rec["path"]
    return data_dir() / "pmc" / "articles" / rec["article"] / rec["file"]


def evaluate(ocr: str, unlabeled: str, rows: str) -> dict[tuple[str, str], dict[str, float]]:
    options = SubfigureOptions(ocr=ocr, split_unlabeled=unlabeled == "layout")  # type: ignore[arg-type]
    out: dict[tuple[str, str], dict[str, float]] = {}
    for line in LABELS.read_text().splitlines():
        rec = json.loads(line)
        image = encode_image(figure_path(rec).read_bytes(), ImageOptions(), keep_decoded=True).decoded
        t0 = time.perf_counter()
        res = split_figure(image, rec["caption"], options)
        spent = time.perf_counter() - t0
        n = len(res.panels) or 1
        group = rec.get("set") or ("widened" if "path" in rec else "shared21")
        for key in ((rec["split"], group), (rec["split"], "all")):
            row = out.setdefault(key, {"figures": 0, "exact": 0, "within_one": 0, "seconds": 0.0})
            row["figures"] += 1
            row["exact"] += n == rec["panels"]
            row["within_one"] += abs(n - rec["panels"]) <= 1
            row["seconds"] += spent
        if rows == "all" or rec["split"] == "tune":
            name = rec.get("path") or f"{rec['article']}/{rec['file']}"
            print(f"{rec['split']:5} {name[-60:]:60} eye {rec['panels']:2}  got {n:2}  "
                  f"{res.method or res.kept_whole_reason}")
    return out


FAKE_CAPTION = "(A) The first panel. (B) The second panel. (C) The third panel."


def article_figures() -> list[tuple[str, Path, str]]:
    """(name, image file, caption) of every figure of the shared sample articles that has an image."""
    out = []
    for art in sorted((data_dir() / "pmc" / "articles").iterdir()):
        files = {p.stem: p for p in art.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif")}
        for xml in sorted(art.rglob("*.xml")):
            try:
                parsed = parse_article(xml.read_bytes(), fallback_id=art.name)
            except Exception:  # noqa: BLE001 - manifests and other XML beside the article
                continue
            for fig in parsed.figures:
                g = fig.primary_graphic()
                path = files.get(Path(g.href).stem) if g else None
                if path is not None:
                    out.append((f"{art.name}/{path.name}", path, fig.caption))
            break
    return out


def evaluate_articles(ocr: str) -> None:
    options = SubfigureOptions(ocr=ocr)  # type: ignore[arg-type]
    named = paired = 0
    reasons: Counter[str] = Counter()
    whole: list[tuple[str, object]] = []
    for name, path, caption in article_figures():
        image = encode_image(path.read_bytes(), ImageOptions(), keep_decoded=True).decoded
        res = split_figure(image, caption, options)
        if not res.panels:
            whole.append((name, image))
        if len(split_caption(caption).labels) < 2:
            continue
        named += 1
        if res.panels and set(res.caption_labels) <= {p.label for p in res.panels}:
            paired += 1
        else:
            reasons[(res.kept_whole_reason or "not_all_paired").split(":")[0]] += 1
            print(f"  whole {name}: {res.kept_whole_reason}")
    print(f"captions naming panels: {named}; split with every panel paired: {paired}/{named}")
    print("kept whole:", dict(reasons.most_common()))
    false = [name for name, image in whole if split_figure(image, FAKE_CAPTION, options).panels]  # type: ignore[arg-type]
    print(f"false-split check: {len(false)} of {len(whole)} figures left whole split under a made-up (A)(B)(C) caption: {false}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ocr", default="auto", choices=["never", "auto", "always"])
    ap.add_argument("--unlabeled", default="layout", choices=["layout", "whole"])
    ap.add_argument("--rows", default="tune", choices=["tune", "all"])
    ap.add_argument("--articles", action="store_true", help="the sample articles' split share and false-split check")
    args = ap.parse_args(argv)
    if args.articles:
        evaluate_articles(args.ocr)
        return 0
    for (split, group), r in sorted(evaluate(args.ocr, args.unlabeled, args.rows).items()):
        print(f"{split} {group}: exact {r['exact']}/{r['figures']}, within one {r['within_one']}/{r['figures']}, "
              f"{r['seconds'] / r['figures']:.2f} s/figure")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
