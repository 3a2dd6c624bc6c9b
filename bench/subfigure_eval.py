"""Evaluate compound-figure splitting and print one table.

Parts: caption splitting on the 196 gold prostate captions; panel detection on synthetic compound
figures and on the 5 reviewed EXSCLAIM figures (precision/recall/F1 at IoU 0.5); panel counts on
the unlabeled PMC7003341 figures with a contact sheet PNG for a person to check; speed of the stage
in figures/s on one core. Never reads the acceptance holdout.

    python bench/subfigure_eval.py [--out bench/results] [--synthetic 200]
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from PIL import Image, ImageDraw  # noqa: E402

from bench.synthetic_compound import data_dir, load_sources, make_figure  # noqa: E402
from medcorpus.transforms.panel_labels import ocr_available  # noqa: E402
from medcorpus.transforms.panels import Box, analyze_layout, iou  # noqa: E402
from medcorpus.transforms.subcaptions import split_caption  # noqa: E402
from medcorpus.transforms.subfigures import SubfigureOptions, split_figure  # noqa: E402

PROSTATE = "compound/caption_splitting_prostate/prostate_data_only_annotated_captions.json"
EXSCLAIM = "compound/exsclaim_nature/nature_closed_expected.json"
EXSCLAIM_IMAGES = "compound/exsclaim_nature/images"
UNLABELED = "compound/unlabeled_pmc7003341"


@dataclass
class PRF:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, pred: list[Box], gold: list[Box], thr: float = 0.5) -> int:
        k = match_count(pred, gold, thr)
        self.tp += k
        self.fp += len(pred) - k
        self.fn += len(gold) - k
        return k

    @property
    def p(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def r(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.p * self.r / (self.p + self.r) if self.p + self.r else 0.0


def match_count(pred: list[Box], gold: list[Box], thr: float = 0.5) -> int:
    """One-to-one greedy matching by IoU, best pairs first."""
    pairs = sorted(((iou(p, g), i, j) for i, p in enumerate(pred) for j, g in enumerate(gold)), reverse=True)
    used_p: set[int] = set()
    used_g: set[int] = set()
    for v, i, j in pairs:
        if v < thr:
            break
        if i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
    return len(used_p)


def eval_captions(base: Path) -> dict[str, float]:
    data = json.loads((base / PROSTATE).read_text())
    exact = 0
    sims: list[float] = []
    for item in data.values():
        gold = {s["label"]["text"].lower().replace("’", "'"): s["caption"] for s in item["gt_subfigures"]}
        split = split_caption(item["caption"])
        pred = set(split.labels)
        exact += pred == set(gold)
        for lab, text in gold.items():
            sims.append(difflib.SequenceMatcher(None, split.text_for(lab) if lab in pred else "", text).ratio())
    return {"figures": len(data), "label_set_exact": exact / len(data), "subcaption_similarity": sum(sims) / len(sims)}


def eval_synthetic(n: int) -> dict[str, float]:
    sources = load_sources()
    layout, stage = PRF(), PRF()
    labels_ok = labels_total = 0
    for seed in range(n):
        fig = make_figure(seed, sources)
        layout.add(list(analyze_layout(fig.image).panels), list(fig.boxes))
        res = split_figure(fig.image, fig.caption, SubfigureOptions(ocr="auto"))
        boxes = [p.box for p in res.panels] or [(0, 0, *fig.image.size)]
        stage.add(boxes, list(fig.boxes))
        gold = dict(zip(fig.boxes, fig.labels))
        for p in res.panels:
            g = max(gold, key=lambda b: iou(b, p.box))
            labels_ok += iou(g, p.box) >= 0.5 and gold[g] == p.label
        labels_total += len(fig.boxes) if len(fig.boxes) > 1 else 0
    return {
        "figures": n, "layout_p": layout.p, "layout_r": layout.r, "layout_f1": layout.f1,
        "stage_p": stage.p, "stage_r": stage.r, "stage_f1": stage.f1,
        "label_accuracy": labels_ok / labels_total if labels_total else 0.0,
    }


def _exsclaim(base: Path) -> list[tuple[Image.Image, list[Box], str]]:
    data = json.loads((base / EXSCLAIM).read_text())
    out = []
    for name, fig in sorted(data.items()):
        path = base / EXSCLAIM_IMAGES / name
        if not path.exists():
            continue
        gold = []
        for m in fig["master_images"]:
            xs = [p["x"] for p in m["geometry"]]
            ys = [p["y"] for p in m["geometry"]]
            gold.append((min(xs), min(ys), max(xs), max(ys)))
        out.append((Image.open(path).convert("RGB"), gold, fig["full_caption"]))
    return out


def eval_exsclaim(base: Path) -> dict[str, float]:
    layout, stage = PRF(), PRF()
    whole = 0
    for image, gold, caption in _exsclaim(base):
        layout.add(list(analyze_layout(image).panels), gold)
        res = split_figure(image, caption, SubfigureOptions(ocr="auto"))
        whole += not res.panels
        stage.add([p.box for p in res.panels] or list(analyze_layout(image).panels), gold)
    return {"layout_p": layout.p, "layout_r": layout.r, "layout_f1": layout.f1,
            "stage_p": stage.p, "stage_r": stage.r, "stage_f1": stage.f1, "kept_whole": whole}


def unlabeled_sheet(base: Path, out: Path) -> list[tuple[str, int]]:
    paths = sorted((base / UNLABELED).glob("*.jpg"))
    cells, counts = [], []
    for path in paths:
        img = Image.open(path).convert("RGB")
        layout = analyze_layout(img)
        counts.append((path.name, len(layout.panels)))
        draw = ImageDraw.Draw(img)
        for i, b in enumerate(layout.panels):
            draw.rectangle(b, outline=(255, 0, 0), width=3)
            draw.text((b[0] + 4, b[1] + 4), str(i + 1), fill=(255, 0, 0))
        img.thumbnail((420, 420))
        cells.append((path.name, img))
    cols = 3
    sheet = Image.new("RGB", (cols * 430, ((len(cells) + cols - 1) // cols) * 450), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, img) in enumerate(cells):
        x, y = (i % cols) * 430, (i // cols) * 450
        sheet.paste(img, (x + 5, y + 22))
        draw.text((x + 5, y + 4), f"{name[-20:]}: {counts[i][1]} panels", fill=(0, 0, 0))
    out.mkdir(parents=True, exist_ok=True)
    sheet.save(out / "subfigure_contact_sheet.png")
    return counts


def real_figures(base: Path) -> list[Path]:
    """Real figure images (not the holdout): compound sets, MedICaT sample, article figures."""
    pats = ["compound/**/*.jpg", "compound/**/*.png", "pmc/articles/**/fig*.jpg", "pmc/articles/**/g0*.png"]
    return sorted({p for pat in pats for p in base.glob(pat)})


def eval_speed(base: Path, ocr: str, repeat: int = 2) -> dict[str, float]:
    """Figures/s on one core: the stage on decoded images (decode measured separately)."""
    paths = real_figures(base)
    t0 = time.process_time()
    images = [Image.open(p).convert("RGB") for p in paths]
    decode = time.process_time() - t0
    options = SubfigureOptions(ocr=ocr)  # type: ignore[arg-type]
    caption = "Figure. (A) first panel. (B) second panel. (C) third panel."
    t0 = time.process_time()
    t_wall = time.perf_counter()
    for _ in range(repeat):
        for img in images:
            split_figure(img, caption, options)
    cpu = time.process_time() - t0
    wall = time.perf_counter() - t_wall
    n = len(images) * repeat
    # tesseract runs in a child process: its CPU time is not in process_time, so use wall time then.
    spent = wall if ocr != "never" else cpu
    return {"figures": len(images), "stage_fig_per_s": n / spent, "decode_fig_per_s": len(images) / decode,
            "mean_megapixels": sum(i.width * i.height for i in images) / len(images) / 1e6}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=_ROOT / "bench" / "results")
    ap.add_argument("--synthetic", type=int, default=200)
    args = ap.parse_args(argv)
    base = data_dir()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cap = eval_captions(base)
    syn = eval_synthetic(args.synthetic)
    ex = eval_exsclaim(base)
    counts = unlabeled_sheet(base, args.out)
    speed_never = eval_speed(base, "never")
    speed_auto = eval_speed(base, "auto", repeat=1)
    rows = [
        ("captions (prostate, %d gold)" % cap["figures"], "label-set exact match", cap["label_set_exact"], ">= 0.90"),
        ("", "mean subcaption similarity", cap["subcaption_similarity"], ""),
        ("synthetic (%d figures)" % syn["figures"], "layout P / R / F1",
         "%.3f / %.3f / %.3f" % (syn["layout_p"], syn["layout_r"], syn["layout_f1"]), ">= 0.90"),
        ("", "stage P / R / F1 (kept whole = 1 box)",
         "%.3f / %.3f / %.3f" % (syn["stage_p"], syn["stage_r"], syn["stage_f1"]), ""),
        ("", "label accuracy of pairs", syn["label_accuracy"], ""),
        ("EXSCLAIM reviewed (5 figures)", "layout P / R / F1",
         "%.3f / %.3f / %.3f" % (ex["layout_p"], ex["layout_r"], ex["layout_f1"]), ">= 0.80"),
        ("", "stage (+caption, OCR auto) P / R / F1",
         "%.3f / %.3f / %.3f" % (ex["stage_p"], ex["stage_r"], ex["stage_f1"]), ""),
        ("unlabeled PMC7003341", "panels per figure", " ".join(str(c) for _, c in counts), "contact sheet"),
        ("speed (%d real figures, %.2f MP)" % (speed_never["figures"], speed_never["mean_megapixels"]),
         "figures/s per core, ocr=never", speed_never["stage_fig_per_s"], "> 50"),
        ("", "figures/s per core, ocr=auto", speed_auto["stage_fig_per_s"], ""),
        ("", "image decode alone, figures/s", speed_never["decode_fig_per_s"], ""),
    ]
    print(f"tesseract available: {ocr_available()}")
    print(f"{'set':34} {'metric':40} {'value':>24}  goal")
    for a, b, v, g in rows:
        val = f"{v:.3f}" if isinstance(v, float) else str(v)
        print(f"{a:34} {b:40} {val:>24}  {g}")
    print(f"contact sheet: {args.out / 'subfigure_contact_sheet.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
