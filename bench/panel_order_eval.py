"""Does every panel of a compound figure get its own label? Scored on real figures whose letters
were read by eye (``tests/data/panel_letter_order_by_eye.jsonl``: 2-D layouts, lettered along rows,
down columns or otherwise, each letter's rough position as fractions of the image).

Each figure is decoded as the image stage does (longest side 1024), also as a degraded reprint
(``bench/reprints.py``: 0.8x, JPEG quality 60), and split by ``split_figure`` (``--ocr auto``, the
sample config). A figure counts as right when it is split and the panel each letter belongs to
(letters and panels matched one to one by position) carries that letter's label. Prints, per split
(tune; aside, to be looked at only after tuning) and copy, figures right / all, figures split, and
the methods used.

    python bench/panel_order_eval.py [--split tune|aside|all] [--ocr auto|never|always] [--rows]
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

import numpy as np  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from bench.reprints import SCENARIOS, transform_bytes  # noqa: E402
from bench.synthetic_compound import data_dir  # noqa: E402
from medcorpus.transforms.images import ImageOptions, encode_image  # noqa: E402
from medcorpus.transforms.subfigures import SubfigureOptions, SubfigureResult, split_figure  # noqa: E402

LABELS = _ROOT / "tests" / "data" / "panel_letter_order_by_eye.jsonl"
DEGRADED = next(s for s in SCENARIOS if s.name == "reprint_0.8_q60")


def all_right(res: SubfigureResult, rec: dict, size: tuple[int, int]) -> bool:
    """Split, and every letter's panel labelled with that letter. Which panel is a letter's: letters
    and panels matched one to one (least total distance from each letter to the panel's point where
    the figure prints its letters, ``letter_at``: top-left corner by default), so a letter a little
    outside its panel's box, or inside a neighbour's, still finds its own."""
    letters = rec["letters"]
    if len(res.panels) < len(letters):
        return False
    w, h = size
    fx, fy = {"top-left": (0.0, 0.0), "top": (0.5, 0.0), "bottom-left": (0.0, 1.0)}[rec.get("letter_at", "top-left")]
    points = [((p.box[0] + fx * (p.box[2] - p.box[0])) / w, (p.box[1] + fy * (p.box[3] - p.box[1])) / h)
              for p in res.panels]
    names = sorted(letters)
    cost = np.array([[np.hypot(letters[n][0] - x, letters[n][1] - y) for x, y in points] for n in names])
    rows, cols = linear_sum_assignment(cost)
    return all(res.panels[c].label == names[r] for r, c in zip(rows, cols))


def evaluate(split: str, ocr: str, show_rows: bool) -> dict[tuple[str, str], Counter]:
    options = SubfigureOptions(ocr=ocr)  # type: ignore[arg-type]
    out: dict[tuple[str, str], Counter] = {}
    for line in LABELS.read_text().splitlines():
        rec = json.loads(line)
        if split != "all" and rec["split"] != split:
            continue
        raw = (data_dir() / rec["path"]).read_bytes()
        for copy, data in (("original", raw), ("degraded", transform_bytes(raw, DEGRADED)[0])):
            image = encode_image(data, ImageOptions(), keep_decoded=True).decoded
            t0 = time.perf_counter()
            res = split_figure(image, rec["caption"], options)
            row = out.setdefault((rec["split"], copy), Counter())
            row["seconds"] += time.perf_counter() - t0
            ok = all_right(res, rec, image.size)
            row.update(figures=1, right=ok, split=bool(res.panels), **{f"m:{res.method}": 1})
            if show_rows:
                print(f"{rec['split']:5} {copy:8} {rec['path'][-48:]:48} {rec['order']:7} "
                      f"{'RIGHT' if ok else 'wrong':5} {res.method or res.kept_whole_reason}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="tune", choices=["tune", "aside", "all"])
    ap.add_argument("--ocr", default="auto", choices=["never", "auto", "always"])
    ap.add_argument("--rows", action="store_true", help="one line per figure and copy")
    args = ap.parse_args(argv)
    for (split, copy), c in sorted(evaluate(args.split, args.ocr, args.rows).items()):
        methods = {k[2:]: v for k, v in sorted(c.items()) if k.startswith("m:")}
        print(f"{split} {copy}: every panel right {c['right']}/{c['figures']} ({c['right'] / c['figures']:.0%}), "
              f"split {c['split']}/{c['figures']}, {c['seconds'] / c['figures']:.2f} s/figure, methods {methods}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
