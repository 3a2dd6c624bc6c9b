"""SYNTHETIC compound figures with known panel boxes, composed from real single-panel figures.

Why synthetic: the only real compound figures with panel boxes that we may use for tuning are the
5 EXSCLAIM figures; the large annotated set is held out for acceptance. Pasting real single-panel
images (CT, endoscopy, charts, maps, diagrams from ../shared/data; chosen by a person looking at
them, listed in ``SOURCES``) into grids gives exact boxes and lets us vary what makes splitting
hard: grid shape, uneven panel sizes, gutter width (down to 0 with drawn borders), border lines,
labels inside or outside the panels, letter case. These are not real compound figures: layouts are
cleaner than many real ones, so scores here are an upper bound on real-figure accuracy.

Deterministic: ``make_figure(seed)`` always draws the same figure.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Box = tuple[int, int, int, int]

# Real figures that are a single panel (looked at one by one), relative to shared/data.
SOURCES = (
    "compound/medicat_sample/figures/57c9ad0f4aab133f96d40992c46926fabc901ffa_2-Figure3-1.png",
    "compound/medicat_sample/figures/b362a19e4c4b1854f7cbe246a19502a56f52c2b5_3-Figure2-1.png",
    "compound/medicat_sample/figures/e19039cd42f72102389f811643cd3036f8db5182_2-Figure1-1.png",
    "compound/medicat_sample/figures/e19039cd42f72102389f811643cd3036f8db5182_2-Figure3-1.png",
    "pmc/articles/elife-00353/elife-00353-fig1-v1.tif",
    "pmc/articles/elife-19405/elife-19405-inf1.tif",
    "pmc/articles/elife-43154-v2/fig1.jpg",
    "pmc/articles/elife-43154-v2/resp-fig1.jpg",
    "pmc/articles/elife-52882-v2/fig2-figsupp1.jpg",
    "pmc/articles/elife-52882-v2/fig2-figsupp2.jpg",
    "pmc/articles/elife-52882-v2/fig4-figsupp1.jpg",
    "pmc/articles/ijm-00202/ijm-00202-fig001.tif",
    "pmc/articles/ijm-00202/ijm-00202-fig005.tif",
    "pmc/articles/ijm-00202/ijm-00202-fig006.tif",
    "pmc/articles/plosone-0091296/g005.png",
    "pmc/articles/plosone-0091296/g006.png",
    "pmc/articles/plosone-0091296/g007.png",
    "pmc/articles/plosone-0091296/g009.png",
    "pmc/articles/plosone-0178565/g004.png",
    "pmc/articles/pone.0000010/pone.0000010.g001.png",
    "pmc/articles/pone.0038869/pone.0038869.g002.tif",
    "pmc/articles/pone.0056489/pone.0056489.g003.tif",
)
# The MedICaT sample figures are page crops with the caption's first line under the image.
_CROP_BOTTOM = {"compound/medicat_sample/figures": 0.12}


def data_dir() -> Path:
    """shared/data beside the checkout (or $MEDCORPUS_SHARED/data)."""
    root = Path(os.environ.get("MEDCORPUS_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared"))
    return root / "data"


@dataclass(frozen=True)
class SyntheticFigure:
    image: Image.Image
    boxes: tuple[Box, ...]  # reading order
    labels: tuple[str, ...]  # lower-case, same order
    caption: str
    style: str


def _trim_white(img: Image.Image) -> Image.Image:
    g = np.asarray(img.convert("L"))
    rows = np.flatnonzero((g < 235).any(axis=1))
    cols = np.flatnonzero((g < 235).any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return img
    return img.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))


@lru_cache(maxsize=None)
def load_sources(root: str | None = None) -> tuple[Image.Image, ...]:
    """The source panels, RGB, caption strips and white margins removed, at most 600 px a side."""
    base = Path(root) if root else data_dir()
    out = []
    for rel in SOURCES:
        path = base / rel
        if not path.exists():
            continue
        img = Image.open(path).convert("RGB")
        for prefix, frac in _CROP_BOTTOM.items():
            if rel.startswith(prefix):
                img = img.crop((0, 0, img.width, int(img.height * (1 - frac))))
        img = _trim_white(img)
        img.thumbnail((600, 600))
        out.append(img)
    return tuple(out)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _draw_labels(draw: ImageDraw.ImageDraw, boxes: list[Box], letters: list[str], style: str, rng: random.Random) -> None:
    size = rng.choice([16, 20, 24])
    font = _font(size)
    if style == "none" or len(boxes) < 2:
        return
    for b, letter in zip(boxes, letters):
        if style == "outside":
            draw.text((b[0], b[1] - 24), letter, fill="black", font=font)
        elif style == "inside":
            draw.text((b[0] + 4, b[1] + 2), letter, fill="white" if rng.random() < 0.5 else "black", font=font,
                      stroke_width=1, stroke_fill="black" if rng.random() < 0.5 else "white")
        else:
            draw.rectangle((b[0], b[1], b[0] + size + 4, b[1] + size + 6), fill="white")
            draw.text((b[0] + 3, b[1] + 1), letter, fill="black", font=font)


def make_figure(seed: int, sources: tuple[Image.Image, ...] | None = None) -> SyntheticFigure:
    """One synthetic compound (or, 1 time in 12, single) figure with known boxes."""
    rng = random.Random(seed)
    sources = sources or load_sources()
    single = rng.random() < 1 / 12
    rows = 1 if single else rng.choice([1, 1, 2, 2, 2, 3])
    cols_per_row = [1] if single else [rng.choice([1, 2, 2, 3, 3, 4]) if rows > 1 else rng.choice([2, 3, 4]) for _ in range(rows)]
    if not single and sum(cols_per_row) < 2:
        cols_per_row[0] = 2
    gutter = rng.choice([0, 2, 4, 8, 12, 20, 30])
    border = rng.choice(["none", "none", "box", "lines"]) if gutter > 0 else rng.choice(["box", "lines", "none"])
    label_style = rng.choice(["outside", "inside", "inside_box", "none"])
    upper = rng.random() < 0.5
    margin = rng.choice([0, 5, 15])
    row_h = [rng.randint(130, 300) for _ in range(rows)]
    label_space = 26 if label_style == "outside" else 0
    placed: list[tuple[Image.Image, Box]] = []
    y = margin
    width = 0
    for r in range(rows):
        x = margin
        y += label_space
        for _ in range(cols_per_row[r]):
            src = sources[rng.randrange(len(sources))]
            h = row_h[r]
            w = max(60, min(420, int(src.width * h / src.height)))
            placed.append((src.resize((w, h)), (x, y, x + w, y + h)))
            x += w + gutter + (label_space if label_style == "outside" and rng.random() < 0.3 else 0)
        width = max(width, x - gutter + margin)
        y += row_h[r] + gutter
    height = y - gutter + margin
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for img, box in placed:
        canvas.paste(img, box[:2])
    if border == "box":
        for _, b in placed:
            draw.rectangle((b[0], b[1], b[2] - 1, b[3] - 1), outline="black", width=2)
    elif border == "lines" and gutter == 0:
        for _, b in placed:
            draw.line((b[2] - 1, b[1], b[2] - 1, b[3]), fill="black", width=2)
            draw.line((b[0], b[3] - 1, b[2], b[3] - 1), fill="black", width=2)
    letters = [chr(ord("A" if upper else "a") + i) for i in range(len(placed))]
    _draw_labels(draw, [b for _, b in placed], letters, label_style, rng)
    boxes = tuple(b for _, b in placed)
    labels = tuple(l.lower() for l in letters)
    if len(placed) == 1:
        caption = "Axial image of the lesion with surrounding edema."
    else:
        caption = "Synthetic compound figure. " + " ".join(f"({l}) Panel {l} shows view {i + 1}." for i, l in enumerate(letters))
    style = f"{rows}x{max(cols_per_row)} gutter={gutter} border={border} labels={label_style}"
    return SyntheticFigure(canvas, boxes, labels, caption, style)
