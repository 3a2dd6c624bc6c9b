"""Panel counts on real article figures counted by eye (``tests/data/compound_panels_by_eye.jsonl``).

Each figure is decoded as the image stage does (longest side 1024) and split by ``split_figure``;
the predicted count is the number of panels (1 when kept whole). Prints exact and within-one counts
for the tune half and the aside half (looked at only after tuning), and seconds per figure.

    python bench/article_panels_eval.py [--ocr auto|never|always]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from bench.synthetic_compound import data_dir  # noqa: E402
from medcorpus.transforms.images import ImageOptions, encode_image  # noqa: E402
from medcorpus.transforms.subfigures import SubfigureOptions, split_figure  # noqa: E402

LABELS = _ROOT / "tests" / "data" / "compound_panels_by_eye.jsonl"


def evaluate(ocr: str) -> dict[str, dict[str, float]]:
    base = data_dir() / "pmc" / "articles"
    options = SubfigureOptions(ocr=ocr)  # type: ignore[arg-type]
    out: dict[str, dict[str, float]] = {}
    for line in LABELS.read_text().splitlines():
        rec = json.loads(line)
        data = (base / rec["article"] / rec["file"]).read_bytes()
        image = encode_image(data, ImageOptions(), keep_decoded=True).decoded
        t0 = time.perf_counter()
        res = split_figure(image, rec["caption"], options)
        spent = time.perf_counter() - t0
        n = len(res.panels) or 1
        row = out.setdefault(rec["split"], {"figures": 0, "exact": 0, "within_one": 0, "seconds": 0.0})
        row["figures"] += 1
        row["exact"] += n == rec["panels"]
        row["within_one"] += abs(n - rec["panels"]) <= 1
        row["seconds"] += spent
        print(f"{rec['split']:5} {rec['article']:16} {rec['file']:22} eye {rec['panels']:2}  got {n:2}  "
              f"{res.method or res.kept_whole_reason}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ocr", default="auto", choices=["never", "auto", "always"])
    args = ap.parse_args(argv)
    for split, r in evaluate(args.ocr).items():
        print(f"{split}: exact {r['exact']}/{r['figures']}, within one {r['within_one']}/{r['figures']}, "
              f"{r['seconds'] / r['figures']:.2f} s/figure")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
