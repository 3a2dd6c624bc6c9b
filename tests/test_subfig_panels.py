"""Panel detection, label OCR, pairing and the learned-detector hook, on real and synthetic figures."""
from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ holds the synthetic generator and the metric

from bench.subfigure_eval import PRF  # noqa: E402
from bench.synthetic_compound import load_sources, make_figure  # noqa: E402
from medcorpus.transforms.panel_labels import candidate_regions, detect_labels, ocr_available  # noqa: E402
from medcorpus.transforms.panels import analyze_layout, iou  # noqa: E402
from medcorpus.transforms.subfigures import (  # noqa: E402
    PanelPair, SubfigureOptions, find_panels, panel_key, split_figure,
)

DATA = Path(os.environ.get("MEDCORPUS_SHARED", ROOT / ".." / "shared")) / "data"
EXSCLAIM = DATA / "compound/exsclaim_nature/nature_closed_expected.json"
NEVER = SubfigureOptions(ocr="never")


@pytest.fixture(scope="module")
def sources():
    src = load_sources(str(DATA))
    if len(src) < 10:
        pytest.skip("shared data images missing")
    return src


def test_synthetic_panels_f1(sources) -> None:
    prf = PRF()
    for seed in range(40):
        fig = make_figure(seed, sources)
        prf.add(list(analyze_layout(fig.image).panels), list(fig.boxes))
    assert prf.f1 >= 0.90, (prf.p, prf.r)


def test_synthetic_generator_is_deterministic(sources) -> None:
    a, b = make_figure(7, sources), make_figure(7, sources)
    assert a.boxes == b.boxes and a.caption == b.caption
    assert a.image.tobytes() == b.image.tobytes()


def test_exsclaim_reviewed_boxes() -> None:
    if not EXSCLAIM.exists():
        pytest.skip("shared data missing")
    data = json.loads(EXSCLAIM.read_text())
    prf = PRF()
    for name, fig in sorted(data.items()):
        path = EXSCLAIM.parent / "images" / name
        if not path.exists():
            continue
        gold = [(min(p["x"] for p in m["geometry"]), min(p["y"] for p in m["geometry"]),
                 max(p["x"] for p in m["geometry"]), max(p["y"] for p in m["geometry"])) for m in fig["master_images"]]
        prf.add(list(analyze_layout(Image.open(path).convert("RGB")).panels), gold)
    assert prf.tp + prf.fn == 27  # 5 figures, 27 reviewed panels
    assert prf.f1 >= 0.80, (prf.p, prf.r)


def test_split_figure_pairs_in_reading_order(sources) -> None:
    fig = next(f for f in (make_figure(s, sources) for s in range(50))
               if len(f.boxes) == 4 and "gutter=0 " not in f.style)
    res = split_figure(fig.image, fig.caption, NEVER)
    assert res.compound and res.kept_whole_reason is None
    assert [p.label for p in res.panels] == list(fig.labels)
    for p, gold in zip(res.panels, fig.boxes):
        assert iou(p.box, gold) >= 0.5
        assert p.subcaption.startswith("Synthetic compound figure.")
        assert f"Panel {p.label} shows" in p.subcaption
        assert 0.0 < p.confidence <= 1.0


def test_count_mismatch_keeps_figure_whole(sources) -> None:
    fig = next(f for f in (make_figure(s, sources) for s in range(50)) if len(f.boxes) == 3)
    caption = "Four views. (A) one. (B) two. (C) three. (D) four. (E) five."
    res = split_figure(fig.image, caption, NEVER)
    assert res.panels == ()
    assert res.kept_whole_reason is not None and res.kept_whole_reason.startswith("count_mismatch")
    assert res.caption_labels == ("a", "b", "c", "d", "e")


def test_single_panel_and_unlabeled_caption(sources) -> None:
    res = split_figure(sources[0], "A CT scan of the abdomen.", NEVER)
    assert not res.compound and res.panels == () and res.kept_whole_reason == "single_panel"
    two = make_figure(next(s for s in range(50) if len(make_figure(s, sources).boxes) == 2), sources)
    res = split_figure(two.image, "Two views of the lesion.", NEVER)
    assert res.compound and res.kept_whole_reason.startswith("caption_has_no_panel_labels")


def test_positional_captions_pair_by_geometry() -> None:
    img = Image.new("RGB", (400, 200), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((10, 10, 190, 190), fill=(200, 30, 30))
    draw.rectangle((210, 10, 390, 190), fill=(30, 30, 200))
    res = split_figure(img, "Knee MRI. Right: coronal view. Left: sagittal view.", NEVER)
    by_label = {p.label: p for p in res.panels}
    assert by_label["left"].box[0] < by_label["right"].box[0]
    assert by_label["left"].subcaption == "Knee MRI. sagittal view."


def test_bad_images() -> None:
    tiny = Image.new("RGB", (1, 1), "black")
    res = split_figure(tiny, "(A) one (B) two", NEVER)
    assert res.panels == () and res.kept_whole_reason
    blank = Image.new("RGB", (4000, 4000), "white")
    layout = analyze_layout(blank)
    assert layout.panels == ((0, 0, 4000, 4000),) and not layout.compound
    gray = Image.new("L", (300, 200), 128)
    assert not analyze_layout(gray).compound


def test_deterministic(sources) -> None:
    fig = make_figure(3, sources)
    assert split_figure(fig.image, fig.caption) == split_figure(fig.image.copy(), fig.caption)


def test_panel_keys_are_stable_and_dot_free() -> None:
    p = PanelPair((0, 0, 5, 5), "b", "", 0.5)
    assert panel_key("PMC1_fig2", p, 1) == "PMC1_fig2_pb"
    assert panel_key("PMC1_fig2", PanelPair((0, 0, 5, 5), None, "", 0.5), 3) == "PMC1_fig2_p03"
    assert panel_key("k", PanelPair((0, 0, 5, 5), "a'", "", 0.5), 0) == "k_pap"


@pytest.mark.skipif(not ocr_available(), reason="tesseract-ocr not installed")
def test_ocr_reads_labels_outside_panels(sources) -> None:
    figs = [f for f in (make_figure(s, sources) for s in range(80)) if "labels=outside" in f.style and len(f.boxes) > 2]
    read = total = 0
    for fig in figs[:6]:
        layout = analyze_layout(fig.image)
        hits = detect_labels(fig.image, candidate_regions(layout.panels, layout.minor, fig.image.size))
        got = {h.label for h in hits}
        read += len(got & set(fig.labels))
        total += len(fig.labels)
    assert read >= 0.5 * total  # measured ~0.7 on outside labels; inside labels are weaker


def test_ocr_optional_without_tesseract(monkeypatch, sources) -> None:
    import medcorpus.transforms.panel_labels as pl
    monkeypatch.setattr(pl, "ocr_engine", lambda: None)
    monkeypatch.setattr(pl.shutil, "which", lambda _: None)
    pl._command_available.cache_clear()
    try:
        assert not ocr_available()
        fig = make_figure(3, sources)
        assert detect_labels(fig.image, [(0, 0, 30, 30)]) == []
        panels = find_panels(fig.image, SubfigureOptions(ocr="always"))
        assert all(p.label is None for p in panels)
    finally:
        pl._command_available.cache_clear()


def test_one_engine_per_thread_reads_as_the_tesseract_command(monkeypatch) -> None:
    """A worker thread makes one in-process tesseract and reuses it for every figure; its reads of a
    real figure's labels (elife-46793 fig3, A-F printed) are the tesseract command's."""
    import shutil

    import medcorpus.transforms.panel_labels as pl
    from medcorpus.transforms.panels import _analysis_arrays
    from testdata import ARTICLES

    tesserocr = pytest.importorskip("tesserocr")
    if pl.ocr_engine() is None or shutil.which("tesseract") is None:
        pytest.skip("needs both tesserocr with English tessdata and the tesseract command")
    img = Image.open(ARTICLES / "elife-46793-v1" / "fig3.jpg").convert("RGB")
    img.thumbnail((1024, 1024))
    layout = analyze_layout(img)
    content, _, scale = _analysis_arrays(img, SubfigureOptions().layout)
    candidates = candidate_regions(layout.panels, layout.minor, img.size) + pl.label_glyphs(content, scale, 26)
    omp = pl._openmp()
    levels = omp.omp_get_max_active_levels() if omp else None
    made, real = [], tesserocr.PyTessBaseAPI
    monkeypatch.setattr(tesserocr, "PyTessBaseAPI", lambda **kw: made.append(kw) or real(**kw))
    reads: list = []
    worker = threading.Thread(target=lambda: reads.extend(detect_labels(img, candidates, 0.2) for _ in range(3)))
    worker.start()
    worker.join()
    assert len(made) == 1 and reads[0] == reads[1] == reads[2]
    assert omp is None or omp.omp_get_max_active_levels() == levels  # OpenMP serial only during a read
    monkeypatch.setattr(pl, "ocr_engine", lambda: None)  # the tesseract command, one process per figure
    by_command = detect_labels(img, candidates, 0.2)
    assert reads[0] == by_command
    assert set("abcdef") <= {h.label for h in by_command}


def test_learned_detector_torchscript(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from medcorpus.transforms.panel_detector import LearnedPanelDetector

    class Fixed(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[2], x.shape[3]
            return torch.tensor([[0.0, 0.0, w / 2, h * 1.0, 0.9], [w / 2, 0.0, w * 1.0, h * 1.0, 0.8],
                                 [0.0, 0.0, 5.0, 5.0, 0.1]])

    path = tmp_path / "panels.pt"
    torch.jit.script(Fixed()).save(str(path))
    det = LearnedPanelDetector(path)
    img = Image.new("RGB", (200, 100), "white")
    assert [(b, round(s, 3)) for b, s in det(img)] == [((0, 0, 100, 100), 0.9), ((100, 0, 200, 100), 0.8)]
    res = split_figure(img, "Two. (A) left part. (B) right part.", SubfigureOptions(ocr="never", detector=det))
    assert [(p.label, p.box) for p in res.panels] == [("a", (0, 0, 100, 100)), ("b", (100, 0, 200, 100))]
    assert res.panels[1].confidence < res.panels[0].confidence


def test_label_covering_several_pieces_merges_them() -> None:
    """A real eLife figure (elife-30274 fig1): panel A is a blot above its loading control, panel B
    two bar charts; layout finds four pieces, the two labels cover two columns of them."""
    from testdata import ARTICLES

    img = Image.open(ARTICLES / "elife-30274-v1" / "fig1.jpg").convert("RGB")
    caption = "Induction of c-Myc. (A) Representative Western blot. (B) Quantification of total RNA levels."
    res = split_figure(img, caption, NEVER)
    assert res.method == "merged" and [p.label for p in res.panels] == ["a", "b"]
    a, b = (p.box for p in res.panels)
    assert a[2] <= b[0] + 0.05 * img.width and a[2] - a[0] < 0.6 * img.width  # side by side, A on the left
    assert all(p.confidence == 0.4 for p in res.panels)


def test_count_mismatch_without_clean_rows_or_columns_stays_whole() -> None:
    from medcorpus.transforms.subfigures import merge_panels

    # an L-shaped arrangement: no cut into two clean rows or columns keeps the big panel apart
    boxes = [(0, 0, 60, 100), (40, 0, 100, 40), (70, 50, 100, 100)]
    assert merge_panels(boxes, 2) is None
    assert merge_panels([(0, 0, 10, 10), (0, 20, 10, 30), (20, 0, 30, 30)], 2) == [(0, 0, 10, 30), (20, 0, 30, 30)]


@pytest.mark.skipif(not ocr_available(), reason="tesseract not installed")
def test_labels_read_on_the_figure_cut_it_into_the_captions_panels() -> None:
    """A real eLife figure (elife-46793 fig3, counted by eye: 6 panels A-F): layout finds 9 pieces
    (table F in four, labels apart); the letters read on the figure cut it into one panel per label."""
    from testdata import ARTICLES

    img = Image.open(ARTICLES / "elife-46793-v1" / "fig3.jpg").convert("RGB")
    img.thumbnail((1024, 1024))
    caption = ("G4 sensitiser genes. (A) shRNAs depleted. (B) Depleted genes. (C) G4 sensitiser genes. "
               "(D) Validated lethalities. (E) Additional genes. (F) Curated genes.")
    assert len(analyze_layout(img).panels) != 6
    res = split_figure(img, caption, SubfigureOptions(ocr="auto"))
    assert res.method == "ocr_anchors" and [p.label for p in res.panels] == list("abcdef")
    box = {p.label: p.box for p in res.panels}
    assert all(box[k][2] <= box["d"][0] for k in "abc")  # A-C the left column, D-F the right one
    assert box["d"][3] <= box["e"][1] <= box["f"][1] and box["f"][3] - box["f"][1] > 0.5 * img.height
    assert split_figure(img, caption, NEVER).panels == ()  # without OCR the figure stays whole


def test_anchored_cut_refuses_a_label_without_a_panel() -> None:
    """Anchors that would leave a panel smaller than a panel (a letter with nothing beside it)
    give no cut: the figure stays whole rather than split into a sliver."""
    import numpy as np
    from medcorpus.transforms.panel_anchors import cut_by_anchors

    content = np.zeros((200, 400), dtype=bool)
    content[10:190, 10:190] = content[10:190, 210:390] = True
    gray = np.where(content, 0, 255).astype(np.uint8)
    two = cut_by_anchors(content, gray, {"a": (10, 10, 20, 20), "b": (210, 10, 220, 20)})
    assert two == {"a": (10, 10, 190, 190), "b": (210, 10, 390, 190)}
    sliver = {"a": (10, 10, 20, 20), "b": (12, 30, 20, 40), "c": (210, 10, 220, 20)}
    assert cut_by_anchors(content, gray, sliver) is None


@pytest.mark.skipif(not ocr_available(), reason="tesseract not installed")
def test_figure_with_more_labels_than_the_caption_is_not_cut_by_them() -> None:
    """elife-32671 fig4 prints A-F; a caption naming only A-C must not cut it into three panels
    that each join several printed ones (D is read on the figure: more panels than labels)."""
    from testdata import ARTICLES

    img = Image.open(ARTICLES / "elife-32671" / "fig4.jpg").convert("RGB")
    img.thumbnail((1024, 1024))
    res = split_figure(img, "Cells. (A) Ensemble 1. (B) Ensemble 2. (C) Ensembles 1+2.", SubfigureOptions(ocr="auto"))
    assert res.method not in ("ocr_anchors", "ocr_regroup")


def _article_figure(article: str, name: str) -> Image.Image:
    from testdata import ARTICLES

    img = Image.open(ARTICLES / article / name).convert("RGB")
    img.thumbnail((1024, 1024))
    return img


@pytest.mark.skipif(not ocr_available(), reason="tesseract not installed")
def test_capital_i_read_as_l_still_anchors_panel_i() -> None:
    """elife-46793 fig8-figsupp3 (counted by eye: 10 panels A-J, B two bar charts): OCR reads the
    printed I as "l"; the caption has no L, so it is I, and all ten letters cut the figure. The row
    of labels D/H over their panels' gutter is not a cut (it would leave each label below its panel)."""
    img = _article_figure("elife-46793-v1", "fig8-figsupp3.jpg")
    caption = " ".join(f"({c}) Panel {c}." for c in "ABCDEFGHIJ")
    res = split_figure(img, caption, SubfigureOptions(ocr="auto"))
    assert res.method == "ocr_anchors" and [p.label for p in res.panels] == list("abcdefghij")
    box = {p.label: p.box for p in res.panels}
    w, h = img.size
    assert box["i"][0] > 0.6 * w and 0.4 * h < box["i"][1] < box["j"][1]  # right column, third row
    assert box["b"][3] - box["b"][1] > 0.45 * h  # both bar charts under B


@pytest.mark.skipif(not ocr_available(), reason="tesseract not installed")
def test_unread_letter_placed_at_the_free_panel_corner_reading_order_expects() -> None:
    """elife-52882 fig2 (counted by eye: 13 panels A-M): the thin I is never read, and a stray "i"
    is read inside panel B's plot. The stray read breaks the reading order (after H, before J); the
    one layout panel corner no letter claims, right of H, mends it and anchors panel I."""
    img = _article_figure("elife-52882-v2", "fig2.jpg")
    caption = " ".join(f"({c}) Panel {c}." for c in "ABCDEFGHIJKLM")
    res = split_figure(img, caption, SubfigureOptions(ocr="auto"))
    assert res.method == "ocr_anchors" and len(res.panels) == 13
    box = {p.label: p.box for p in res.panels}
    assert box["h"][2] <= box["i"][0] < box["l"][0] and abs(box["i"][1] - box["h"][1]) < 0.05 * img.height
    assert box["i"][3] <= box["k"][1] + 0.02 * img.height  # I above K, J-K-M the bottom row


def test_anchor_sets_need_reading_order_to_change_a_read() -> None:
    """The preferred reads come first as they are; another read, or a free panel corner, is only
    offered when it mends the labels' reading order; a missing letter needs four labels per gap."""
    from medcorpus.transforms.anchor_sets import anchor_sets
    from medcorpus.transforms.panel_labels import LabelHit

    panels = [(0, 0, 100, 100), (110, 0, 210, 100), (0, 110, 100, 210), (110, 110, 210, 210)]
    hits = [LabelHit("a", (0, 0, 10, 10), 0.9), LabelHit("b", (110, 0, 120, 10), 0.9),
            LabelHit("c", (0, 110, 10, 120), 0.9), LabelHit("d", (150, 50, 160, 60), 0.4)]
    sets = [{k: h.box for k, h in s.items()} for s in anchor_sets(hits, list("abcd"), panels)]
    assert sets[0]["d"] == (150, 50, 160, 60)  # as read, first
    assert sets[1]["d"] == (110, 110, 120, 120) and sets[1]["c"] == (0, 110, 10, 120)  # the weak read moves first
    assert list(anchor_sets(hits[:2], list("abc"), panels)) == []  # C missing of three: nothing
    missing_d = [s["d"].box for s in anchor_sets(hits[:3], list("abcd"), panels)]
    assert missing_d == [(110, 110, 120, 120)]


def test_white_gutters_on_a_dark_figure_and_hairlines_between_photos() -> None:
    """Real figures whose panels layout used to join: a MedICaT page crop of four MRI panels
    (black photos reaching the frame, so black is the background and the white page gutters are
    content), and PMC7003341 rows of CT slices touching along a one or two pixel light line."""
    medicat = DATA / "compound/medicat_sample/figures/5f2d2f2ffbd20c7ff3ac30d514da54ee5bd825b4_2-Figure2-1.png"
    assert len(analyze_layout(Image.open(medicat).convert("RGB")).panels) == 4
    for fig, n in (("Fig2", 4), ("Fig4", 3)):
        img = Image.open(DATA / f"compound/unlabeled_pmc7003341/PMC7003341_40779_2020_233_{fig}_HTML.jpg")
        panels = analyze_layout(img.convert("RGB")).panels
        assert len(panels) == n and all(b[3] - b[1] > 0.9 * img.height for b in panels)  # one row
