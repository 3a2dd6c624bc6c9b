"""Which OCR reads anchor the caption's panel labels: candidate sets of one box per label, best first.

Why: OCR on a figure reads a letter more than once (the panel letter, a lane letter "C" in a blot,
a "d" in a plot's icon), takes a capital I for an l, and now and then misses a thin or touching
letter. The caption says which letters exist, and a figure prints them in reading order. So the
reads of each label are ranked (panel letters share one size and sit at panel corners), and a
label that no read names may stand at the top-left corner of a layout panel that no read letter
claims. A set that picks a less preferred read, or puts a label at such a corner, is offered only
when it leaves fewer consecutive letters out of reading order (in rows or in columns) than the
preferred reads do, or, placing an unread letter, no more; the caller keeps the first set that
cuts the figure cleanly.
"""
from __future__ import annotations

from dataclasses import replace
from itertools import combinations, product
from typing import Iterator

from .panel_labels import LabelHit
from .panels import Box

__all__ = ["anchor_sets", "as_caption_labels", "reads_next_label"]

# capital I and lower-case l print as one vertical bar
_LOOKALIKE = {"l": "i", "i": "l"}
MAX_SETS = 32  # sets offered per figure (each costs one anchored cut)
_MAX_TRIED = 20000  # sets checked for reading order per figure
CONF_OCR_READ = 0.5


def as_caption_labels(hits: list[LabelHit], labels: list[str]) -> list[LabelHit]:
    """Reads of a look-alike of a caption label (l for I) renamed when the caption has no such letter."""
    out = []
    for h in hits:
        alt = _LOOKALIKE.get(h.label)
        out.append(replace(h, label=alt) if h.label not in labels and alt in labels else h)
    return out


def reads_next_label(hits: list[LabelHit], labels: list[str]) -> bool:
    """The letter after the caption's last label is read on the figure: it has more panels than
    the caption names, so grouping panels under the caption's labels would join panels."""
    after = chr(ord(max(labels)) + 1) if all(len(lab) == 1 for lab in labels) else ""
    return any(h.label == after and h.confidence >= CONF_OCR_READ for h in hits)


def _at_corner(box: Box, panel: Box) -> bool:
    """The letter's centre near the panel's top-left corner (within a letter plus a tenth of the panel)."""
    tol = 0.1 * min(panel[2] - panel[0], panel[3] - panel[1]) + max(box[2] - box[0], box[3] - box[1])
    return abs((box[0] + box[2]) / 2 - panel[0]) <= tol and abs((box[1] + box[3]) / 2 - panel[1]) <= tol


def _overlaps(a: Box, b: Box) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _after(a: Box, b: Box, tol: float, axis: int) -> bool:
    """``b`` after ``a`` reading rows (axis 1: a lower row, or the same row further right) or columns (axis 0)."""
    other = 1 - axis
    return b[axis] > a[axis] + tol or (abs(b[axis] - a[axis]) <= tol and b[other] > a[other])


def _disorder(chosen: dict[str, LabelHit], labels: list[str], tol: float) -> tuple[int, int, set[str]]:
    """How many consecutive caption labels are out of reading order in rows or in columns,
    whichever fits better; the count in both summed (ties go to the set that fits both better);
    the labels of the pairs out of order in the better fit."""
    placed = [lab for lab in labels if lab in chosen]
    fits = []
    for axis in (1, 0):
        bad = [(a, b) for a, b in zip(placed, placed[1:]) if not _after(chosen[a].box, chosen[b].box, tol, axis)]
        fits.append((len(bad), {lab for pair in bad for lab in pair}))
    best = min(fits, key=lambda f: f[0])
    return best[0], fits[0][0] + fits[1][0], best[1]


def _ranked_reads(hits: list[LabelHit], labels: list[str], panels: list[Box]) -> tuple[dict[str, list[LabelHit]], int]:
    """Each label's reads, one per spot, best first: panel letters share one size (the median
    read's height) and sit at a panel's top-left corner; then the surest. Also that height."""
    by_label: dict[str, list[LabelHit]] = {}
    for h in hits:
        if h.label in labels:
            by_label.setdefault(h.label, []).append(h)
    if not by_label:
        return {}, 0
    heights = sorted(min(h.box[3] - h.box[1] for h in hs) for hs in by_label.values())
    ref = heights[len(heights) // 2]

    def rank(h: LabelHit) -> tuple:
        corner = any(_at_corner(h.box, p) for p in panels)
        return abs(h.box[3] - h.box[1] - ref) > 0.2 * ref, not corner, -h.confidence, h.box

    ranked: dict[str, list[LabelHit]] = {}
    for lab, hs in by_label.items():
        for h in sorted(hs, key=rank):
            if not any(_overlaps(h.box, k.box) for k in ranked.get(lab, [])):
                ranked.setdefault(lab, []).append(h)
    return ranked, ref


def anchor_sets(hits: list[LabelHit], labels: list[str], panels: list[Box]) -> Iterator[dict[str, LabelHit]]:
    """Sets of one read (or inferred panel corner) per caption label, the preferred one first.

    The best read of every label comes first, as is. Then sets that change at most a quarter of the
    labels, fewest changes first, among the labels that are missing or out of reading order: to
    another read of theirs, or to the corner of a layout panel no read letter claims; those sets
    must be in reading order. Nothing when the letter after the caption's last one is read in the
    labels' size (the figure has more panels than the caption names). ``panels`` = the layout
    panels, in the hits' pixel space."""
    if not all(len(lab) == 1 for lab in labels):
        return
    hits = as_caption_labels(hits, labels)
    ranked, ref = _ranked_reads(hits, labels, panels)
    if not ranked or reads_next_label([h for h in hits if abs(h.box[3] - h.box[1] - ref) <= 0.2 * ref], labels):
        return
    base = {lab: hs[0] for lab, hs in ranked.items()}
    missing = [lab for lab in labels if lab not in base]
    if not missing:
        yield base
    if len(missing) <= len(labels) // 4:
        yield from _alternatives(base, ranked, missing, labels, panels, ref)


def _alternatives(base: dict[str, LabelHit], ranked: dict[str, list[LabelHit]], missing: list[str],
                  labels: list[str], panels: list[Box], ref: int) -> list[dict[str, LabelHit]]:
    """Sets changing up to a quarter of the labels (all the missing ones among them) that mend the
    reading order, fewest changes, best order, then least sure reads given up first. ``ref`` =
    the labels' letter height (rows and columns are that close, times 1.5)."""
    tol = 1.5 * ref
    disorder, _, suspects = _disorder(base, labels, tol)
    suspects |= set(missing)
    read_boxes = [h.box for hs in ranked.values() for h in hs]
    corners = [LabelHit("", (p[0], p[1], p[0] + ref, p[1] + ref), 0.0) for p in panels
               if not any(_at_corner(b, p) for b in read_boxes)]
    found: list[tuple[int, int, int, float, int, dict[str, LabelHit]]] = []
    tried = 0
    for k in range(max(1, len(missing)), len(labels) // 4 + 1):
        for changed in combinations(sorted(suspects, key=labels.index), k):
            if not set(missing) <= set(changed):
                continue
            alternatives = [[*ranked.get(lab, [])[1:], *(replace(c, label=lab) for c in corners)] for lab in changed]
            for choice in product(*alternatives):
                tried += 1
                if tried > _MAX_TRIED:
                    return [f[-1] for f in sorted(found, key=lambda f: f[:5])[:MAX_SETS]]
                chosen = {**base, **dict(zip(changed, choice))}
                n_bad, both, _ = _disorder(chosen, labels, tol)
                # a changed read must mend the order; a missing label placed must not spoil it
                if n_bad < disorder or (missing and n_bad <= disorder):
                    given_up = sum(base[lab].confidence for lab in changed if lab in base)
                    found.append((k, n_bad, both, given_up, len(found), chosen))
    return [f[-1] for f in sorted(found, key=lambda f: f[:5])[:MAX_SETS]]
