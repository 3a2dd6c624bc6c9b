"""Which panel carries which label when layout finds as many panels as the caption names: rows,
columns or the letters read, on real figures (and on boxes, for the cases no shared figure shows)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.reprints import SCENARIOS, transform_bytes  # noqa: E402
from medcorpus.transforms import subfigures  # noqa: E402
from medcorpus.transforms.images import ImageOptions, encode_image  # noqa: E402
from medcorpus.transforms.panel_labels import ocr_available  # noqa: E402
from medcorpus.transforms.panel_order import order_labels, orders_differ  # noqa: E402
from medcorpus.transforms.subfigures import SubfigureOptions, split_figure  # noqa: E402

AUTO = SubfigureOptions(ocr="auto")
GRID = [(0, 0, 10, 10), (20, 0, 30, 10), (0, 20, 10, 30), (20, 20, 30, 30)]  # 2 x 2, row-major


def _decoded(article: str, name: str, scenario: str | None = None) -> Image.Image:
    """The figure as the image stage decodes it, optionally as a degraded reprint."""
    from testdata import ARTICLES

    data = (ARTICLES / article / name).read_bytes()
    if scenario:
        data = transform_bytes(data, next(s for s in SCENARIOS if s.name == scenario))[0]
    return encode_image(data, ImageOptions(), keep_decoded=True).decoded


@pytest.mark.skipif(not ocr_available(), reason="tesseract not installed")
def test_grid_lettered_down_columns_gets_its_labels_on_a_degraded_copy() -> None:
    """elife-46793 fig9-figsupp2 prints A-D down the first column, E-H the second, I-L the third.
    On a 0.8x JPEG-q60 copy layout finds 12 panels for 12 labels; the letters read put each label
    on its own panel (row-major would pair B with the second column's top panel)."""
    img = _decoded("elife-46793-v1", "fig9-figsupp2.jpg", "reprint_0.8_q60")
    caption = "Synergy. " + " ".join(f"({c}) Panel {c}." for c in "ABCDEFGHIJKL")
    res = split_figure(img, caption, AUTO)
    assert res.layout_panel_count == 12 and res.method in ("ocr_columns", "ocr_labels")
    box = {p.label: p.box for p in res.panels}
    columns = ["abcd", "efgh", "ijkl"]
    for left, right in zip(columns, columns[1:]):  # every panel of a column left of the next column's
        assert all(box[a][2] <= box[b][0] + 5 for a in left for b in right)
    for col in columns:  # down each column in letter order
        assert all(box[a][3] <= box[b][1] + 5 for a, b in zip(col, col[1:]))
    assert min(p.confidence for p in res.panels) >= 0.5


@pytest.mark.skipif(not ocr_available(), reason="tesseract not installed")
def test_grid_lettered_along_rows_keeps_row_order() -> None:
    """elife-46472 fig5 (2 x 2, a b / c d): the letters read confirm rows."""
    img = _decoded("elife-46472-v3", "fig5.jpg")
    res = split_figure(img, "Body temperature. (a) Saline. (b) Saline. (c) 2 mg/kg. (d) 2 mg/kg.", AUTO)
    assert res.method in ("ocr_rows", "ocr_labels")
    box = {p.label: p.box for p in res.panels}
    assert box["a"][2] <= box["b"][0] and box["a"][3] <= box["c"][1] and box["c"][2] <= box["d"][0]


def test_one_row_or_column_pays_no_ocr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows and columns give one order: the labels are paired without reading any letter."""
    calls = []
    monkeypatch.setattr(subfigures, "detect_labels", lambda *a, **k: calls.append(1) or [])
    assert not orders_differ([(0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10), (60, 0, 70, 10)])
    assert not orders_differ([(0, 0, 10, 10), (0, 20, 10, 30), (0, 40, 10, 50), (0, 60, 10, 70)])
    assert orders_differ(GRID)
    img = _decoded("elife-46472-v3", "fig7.jpg").crop((0, 0, 600, 120))  # the top row: a | c
    res = split_figure(img, "Mapping. (a) Interval. (b) Composite.", AUTO)
    assert res.layout_panel_count == 2 and res.method == "reading_order" and calls == []


def test_reads_decide_the_order_or_the_result_says_it_is_a_guess() -> None:
    labels = list("abcd")
    b = GRID
    assert order_labels(b, labels, {b[1]: "c"}).boxes == (b[0], b[2], b[1], b[3])  # columns
    assert order_labels(b, labels, {b[1]: "c"}).method == "ocr_columns"
    assert order_labels(b, labels, {b[2]: "c", b[0]: "a"}).method == "ocr_rows"
    every = order_labels(b, labels, {b[0]: "a", b[1]: "d", b[2]: "b", b[3]: "c"})  # neither order
    assert every.method == "ocr_labels" and every.boxes == (b[0], b[2], b[3], b[1])
    unread = order_labels(b, labels, {b[0]: "a"})  # a sits first either way: no evidence
    assert unread.method == "reading_order_unconfirmed" and unread.boxes == tuple(b)
    assert unread.guessed == {b[1], b[2]}
    both = order_labels(b, labels, {b[1]: "b", b[2]: "b"})  # one read backs rows, one columns
    assert both.method == "reading_order_reads_disagree" and both.boxes == tuple(b)
