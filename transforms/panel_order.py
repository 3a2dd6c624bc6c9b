"""Which layout panel carries which caption label when there are as many panels as labels.

Why: a grid of panels may be lettered along its rows (A B C / D E F) or down its columns (A D / B E
/ C F). Pairing labels with panels in row-major order without looking is right for the first and
silently pairs every panel of the second with another panel's subcaption. Where the two orders
differ, the letters printed at the panels' corners decide: the reads themselves when they name
every label once, else the order (rows or columns) they support. With no read that tells the two
orders apart, or reads that back both, rows stay the guess and the result says so (its method, and
a lower confidence on every panel whose label depends on the guess).
"""
from __future__ import annotations

from dataclasses import dataclass

from .panel_labels import LabelHit
from .panels import Box, column_order

__all__ = ["OrderedLabels", "orders_differ", "label_per_box", "order_labels", "CONF_ORDER_UNCONFIRMED"]

# a label whose panel depends on an unconfirmed row-major guess (reading_order pairs get 0.5)
CONF_ORDER_UNCONFIRMED = 0.35


@dataclass(frozen=True)
class OrderedLabels:
    """``boxes[i]`` carries ``labels[i]``; ``method`` says what decided it; ``guessed`` = the boxes
    whose label rests on an unconfirmed row-major guess (rows and columns would label them apart)."""

    boxes: tuple[Box, ...]
    method: str
    guessed: frozenset[Box] = frozenset()


def orders_differ(boxes: list[Box]) -> bool:
    """Rows and columns give the panels different orders (a grid of at least 2 x 2 panels, or a
    layout like one): only then is reading the letters worth an OCR call."""
    return len(boxes) >= 4 and column_order(boxes) != list(boxes)


def label_per_box(boxes: list[Box], hits: list[LabelHit]) -> dict[Box, LabelHit]:
    """Each box gets the most confident label read at (or just outside) its top-left corner."""
    out: dict[Box, LabelHit] = {}
    for b in boxes:
        tol = 0.25 * min(b[2] - b[0], b[3] - b[1])
        near = [h for h in hits if _near_corner(h, b, tol)]
        if near:
            out[b] = max(near, key=lambda h: (h.confidence, h.label))
    return out


def _near_corner(hit: LabelHit, box: Box, tol: float) -> bool:
    cx, cy = (hit.box[0] + hit.box[2]) / 2, (hit.box[1] + hit.box[3]) / 2
    return box[0] - tol <= cx <= box[0] + tol and box[1] - tol <= cy <= box[1] + tol


def order_labels(boxes: list[Box], labels: list[str], read: dict[Box, str]) -> OrderedLabels:
    """Boxes for ``labels`` (as many as boxes; ``boxes`` in row-major order) given the letter read
    at each box's corner (``read``, boxes unread left out).

    Reads naming every label once label the boxes themselves. Otherwise only reads on panels that
    rows and columns label apart count: the order that some of them back and none contradicts
    wins; none or both backed keeps rows, with the boxes in question marked ``guessed``."""
    if len(read) == len(boxes) and sorted(read.values()) == sorted(labels):
        at = {lab: b for b, lab in read.items()}
        return OrderedLabels(tuple(at[lab] for lab in labels), "ocr_labels")
    cols = column_order(boxes)
    row_label = dict(zip(boxes, labels))
    col_label = dict(zip(cols, labels))
    apart = [b for b in boxes if row_label[b] != col_label[b]]
    if not apart:
        return OrderedLabels(tuple(boxes), "ocr+reading_order" if read else "reading_order")
    rows_backed = sum(read.get(b) == row_label[b] for b in apart)
    cols_backed = sum(read.get(b) == col_label[b] for b in apart)
    if rows_backed and not cols_backed:
        return OrderedLabels(tuple(boxes), "ocr_rows")
    if cols_backed and not rows_backed:
        return OrderedLabels(tuple(cols), "ocr_columns")
    method = "reading_order_reads_disagree" if rows_backed else "reading_order_unconfirmed"
    return OrderedLabels(tuple(boxes), method, frozenset(apart))
