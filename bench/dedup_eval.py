"""Near-duplicate image detection on real figures, and near-dup search at 1 M hashes.

Part 1 (real): every real figure image under ../shared/data (pmc/articles, compound/ images,
MedICaT sample figures) is an original; each gets one transformed copy per transformation
(resize, JPEG q30-90, crop up to 10 %, grayscale, padding, format change; seeded). All originals
and copies go through the production path (``hash_image`` → ``near_pairs_array``: LSH bands +
verified distance). Recall = share of (original, its copy) pairs found; FPR = share of
(copy, another original) pairs found, plus (original, original) pairs. A brute-force sweep of the
threshold shows what the bands lose. Known renditions of one figure in the data (SciELO ships
each figure with a thumbnail) are dropped from the originals so they are not counted as negatives.

Part 2 (synthetic): 1 M random 128-bit hashes with planted near-duplicates, all-pairs near-dup
search on one core (one process, numpy single-threaded); wall time and peak RSS reported.

    PYTHONPATH=. python bench/dedup_eval.py [--scale 1000000] [--json out.json]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from medcorpus.transforms.dedup import (DedupOptions, hash_image, near_pairs_array, perceptual_array,  # noqa: E402
                                        popcount128)

DATA = Path(os.environ.get("MEDCORPUS_SHARED", Path(__file__).resolve().parents[1].parent / "shared")) / "data"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".gif")
TRANSFORMS = ("resize", "jpeg", "crop", "grayscale", "pad", "format")
MIN_SIDE = 100  # formula/icon images below this are dropped by the quality filter anyway


def real_figure_paths(data: Path = DATA) -> list[Path]:
    roots = [data / "pmc" / "articles", data / "compound"]
    paths = sorted(p for root in roots for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    # SciELO packages ship a small thumbnail of each figure: same figure, not a negative.
    return [p for p in paths if not ("scielo" in p.parent.name and p.stat().st_size < 10_000)]


def load(path: Path, max_side: int = 1024) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            im.draft("RGB", (max_side, max_side))
            img = ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, ValueError):
        return None
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img if min(img.size) >= MIN_SIDE else None


def transform(img: Image.Image, kind: str, rng: random.Random) -> tuple[Image.Image, str]:
    """One transformed copy and a description of its parameters."""
    w, h = img.size
    if kind == "resize":
        s = rng.uniform(0.3, 0.9)
        return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR), f"scale={s:.2f}"
    if kind == "jpeg":
        q = rng.randint(30, 90)
        return _reencode(img, "JPEG", quality=q), f"q={q}"
    if kind == "crop":  # up to 10 % of each side's length removed in total, split randomly between the two ends
        fx, fy = rng.uniform(0.02, 0.10), rng.uniform(0.02, 0.10)
        left, top = rng.uniform(0, fx), rng.uniform(0, fy)
        box = (round(left * w), round(top * h), round(w - (fx - left) * w), round(h - (fy - top) * h))
        return img.crop(box), f"crop=({fx:.3f},{fy:.3f})"
    if kind == "grayscale":
        return img.convert("L").convert("RGB"), "L"
    if kind == "pad":
        p = round(rng.uniform(0.02, 0.10) * max(w, h))
        fill = rng.choice([(255, 255, 255), (0, 0, 0), (128, 128, 128)])
        return ImageOps.expand(img, border=p, fill=fill), f"pad={p}px fill={fill[0]}"
    if kind == "format":
        fmt = rng.choice(["PNG", "WEBP", "TIFF"])
        return _reencode(img, fmt, **({"lossless": True} if fmt == "WEBP" else {})), fmt
    raise ValueError(kind)


def _reencode(img: Image.Image, fmt: str, **kw: object) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def real_eval(options: DedupOptions, seed: int = 0, thresholds: range = range(16, 46, 2)) -> dict:
    rng = random.Random(seed)
    originals = [(p, im) for p in real_figure_paths() if (im := load(p)) is not None]
    n = len(originals)
    hashes = [hash_image(im).perceptual for _, im in originals]
    variant_of, kinds = [], []
    for i, (_, im) in enumerate(originals):
        for kind in TRANSFORMS:
            t, _desc = transform(im, kind, rng)
            hashes.append(hash_image(t).perceptual)
            variant_of.append(i)
            kinds.append(kind)
    h = perceptual_array(hashes)
    vo, kd = np.array(variant_of), np.array(kinds)
    # production path: bands + verification
    t0 = time.perf_counter()
    pi, pj, _ = near_pairs_array(h, options)
    search_s = time.perf_counter() - t0
    found = set(zip(pi.tolist(), pj.tolist()))
    recall = {}
    for kind in TRANSFORMS:
        idx = np.flatnonzero(kd == kind)
        recall[kind] = float(np.mean([(int(vo[v]), n + int(v)) in found for v in idx]))
    fp_copy = sum(1 for a, b in found if a < n <= b and vo[b - n] != a)
    fp_orig = sum(1 for a, b in found if b < n)
    neg_copy, neg_orig = len(vo) * (n - 1), n * (n - 1) // 2
    # brute force: distances of every positive and negative, to sweep the threshold
    orig_h, copy_h = h[:n], h[n:]
    pos_d = popcount128(copy_h ^ orig_h[vo])
    neg_d = np.concatenate([popcount128(copy_h ^ orig_h[i]) [vo != i] for i in range(n)])
    sweep = [{"threshold": t, "recall": float(np.mean(pos_d <= t)), "fpr": float(np.mean(neg_d <= t)),
              "recall_crop": float(np.mean(pos_d[kd == "crop"] <= t))} for t in thresholds]
    overall = float(np.mean([(int(vo[v]), n + int(v)) in found for v in range(len(vo))]))
    return {
        "originals": n, "copies": len(vo), "threshold": options.near_image_distance,
        "bands": options.bands, "band_bits": options.band_bits,
        "recall": overall, "recall_by_transform": recall,
        "fpr_copy_vs_other_originals": fp_copy / neg_copy, "false_pairs_copy": fp_copy, "negative_pairs_copy": neg_copy,
        "fpr_original_pairs": fp_orig / neg_orig, "false_pairs_original": fp_orig, "negative_pairs_original": neg_orig,
        "search_seconds": round(search_s, 4), "bruteforce_sweep": sweep,
    }


def synthetic_scale(n: int, options: DedupOptions, planted: int = 10_000, seed: int = 0) -> dict:
    """Random 128-bit hashes with ``planted`` near-duplicates at distance 1..threshold (synthetic)."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64).astype(np.uint64) * np.uint64(2) \
        + rng.integers(0, 2, size=(n, 2), dtype=np.int64).astype(np.uint64)
    src = rng.choice(n - planted, size=planted, replace=False)
    dst = np.arange(n - planted, n)
    dist = rng.integers(1, options.near_image_distance + 1, size=planted)
    for s, d, k in zip(src, dst, dist):
        bits = rng.choice(128, size=k, replace=False)
        v = h[s].copy()
        for b in bits:
            v[b // 64] ^= np.uint64(1) << np.uint64(63 - b % 64)
        h[d] = v
    t0 = time.perf_counter()
    i, j, d = near_pairs_array(h, options)
    secs = time.perf_counter() - t0
    found = set(zip(i.tolist(), j.tolist()))
    hit = np.array([(int(min(s, t)), int(max(s, t))) in found for s, t in zip(src, dst)])
    by_d = {int(k): float(hit[dist == k].mean()) for k in np.unique(dist) if k % 4 == 0 or k <= 8}
    return {"n": n, "planted": planted, "seconds": round(secs, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "pairs_found": len(found), "planted_recall": float(hit.mean()), "planted_recall_by_distance": by_d}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    options = DedupOptions()
    report = {"real": real_eval(options)}
    print(json.dumps(report["real"], indent=1), flush=True)
    if args.scale:
        report["synthetic"] = synthetic_scale(args.scale, options)
        print(json.dumps(report["synthetic"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
