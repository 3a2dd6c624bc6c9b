"""From verified duplicate pairs to removals that never lose a distinct sample.

A pair of near-duplicates says only that two samples look alike. Merging pairs transitively
(union-find) lets a third sample bridge two distinct ones: a reprint's panel that resembles two
look-alike panels of the original drags both into one cluster, and one of them is lost. So:

1. **Evidence per pair.** All kinds found for one pair (exact, image, caption) are kept together;
   pairs that can never mean reuse are left out (``related``: a figure and its own panels, a figure
   and a panel, panel captions, near pairs inside one article), and so are look-alike images with
   nothing else agreeing, unless within ``image_alone_distance`` (``Evidence.links``).
2. **One-to-one between articles.** Between two articles, a sample is paired with at most one
   sample of the other (greedy by strength of evidence), so look-alike figures of one article each
   keep their own counterpart. Identical pixels are exempt: equal images are equal.
3. **Canonical-anchored stars.** Samples are visited in canonical order (newest version, freest
   license, most pixels, smallest key); an unassigned one becomes a canonical, and only samples that
   pair with it *directly* become its duplicates. Nothing is dropped through a chain.
4. **Identical pixels are one image.** Copies with the same pixels (``exact``, and figure or panel
   alike) form a class led by its first in canonical order; only the leads (and copies related to
   their lead) are bucketed and paired, and every other copy follows its lead: a duplicate of the
   lead, or, when the lead itself goes, of the lead's canonical (with its own evidence, computed
   against that canonical). Work and memory are linear in the number of copies: a placeholder
   image reused 100,000 times is one record in the buckets and 99,999 direct links, never 5·10⁹
   pairs in each of 128 bands.
5. **Panels follow their figure.** When a whole figure duplicates another, its panels are paired
   with that figure's panels by label (by a closer box overlap where labels are missing or
   disagree) and checked by their own hashes; such panels are never matched with panels of other figures.

Every result depends only on the set of records, never on their order, so the in-process path and
the Ray/Beam shuffles (which only find the pairs) give the same removals.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from medcorpus.transforms.dedup import (DedupOptions, DedupRecord, Pair, bucket_keys, candidate_pairs, hamming,
                                        image_pairs_numpy, jaccard, license_rank, text_only)
from medcorpus.transforms.panels import iou as box_iou

KIND_ORDER = ("exact", "image", "caption", "panel")


@dataclass(frozen=True)
class Match:
    """Why ``key`` was dropped: the canonical it duplicates and the evidence between the two."""

    key: str
    canonical: str
    kinds: tuple[str, ...]           # exact | image | caption | panel (a panel that follows its figure)
    hamming: int | None = None       # pHash‖dHash bits apart (of 128)
    jaccard: float | None = None     # caption shingle Jaccard
    via: str | None = None           # for a panel: the figure whose duplicate it follows

    def columns(self) -> dict[str, Any]:
        """The evidence columns of ``dropped`` (see ``schemas.quality.DROPPED``)."""
        return {"duplicate_of": self.canonical, "dropped_by": ",".join(self.kinds), "match_hamming": self.hamming,
                "match_jaccard": self.jaccard, "match_via": self.via}


@dataclass
class DedupResult:
    cluster_of: dict[str, str] = field(default_factory=dict)      # key -> cluster id (clustered keys only)
    canonical_of: dict[str, str] = field(default_factory=dict)    # cluster id -> canonical key
    pairs: list[Pair] = field(default_factory=list)               # every verified pair that may mean reuse
    matches: dict[str, Match] = field(default_factory=dict)       # dropped key -> its evidence

    def duplicate_of(self, key: str) -> str | None:
        """The canonical key this sample duplicates; None for canonicals and singletons."""
        match = self.matches.get(key)
        return match.canonical if match else None

    def columns(self, key: str) -> dict[str, Any]:
        """Manifest columns ``dedup_cluster`` and ``duplicate_of`` (see ``schemas.quality``)."""
        return {"dedup_cluster": self.cluster_of.get(key), "duplicate_of": self.duplicate_of(key)}


# ---- evidence ------------------------------------------------------------------------------------

@dataclass
class Evidence:
    """All kinds of pairs found between two samples, and how strong they are together."""

    key_a: str
    key_b: str
    distances: dict[str, float] = field(default_factory=dict)   # kind -> distance

    def strength(self, options: DedupOptions) -> tuple[Any, ...]:
        """Sort key, strongest first: identical pixels, then more kinds agreeing, then closeness."""
        scaled = [self.distances["image"] / max(options.near_image_distance, 1)] if "image" in self.distances else []
        if "caption" in self.distances:
            scaled.append(self.distances["caption"] / max(1.0 - options.caption_jaccard, 1e-9))
        return ("exact" not in self.distances, -len(self.distances), min(scaled, default=0.0), self.key_a, self.key_b)

    def links(self, options: DedupOptions) -> bool:
        """Look-alike images alone are weak evidence at scale: they link only when very close."""
        return set(self.distances) != {"image"} or self.distances["image"] <= options.image_alone_distance

    def match(self, key: str, canonical: str, records: Mapping[str, DedupRecord]) -> Match:
        jaccard = 1.0 - self.distances["caption"] if "caption" in self.distances else None
        return Match(key, canonical, tuple(k for k in KIND_ORDER if k in self.distances),
                     hamming(records[key].perceptual, records[canonical].perceptual),
                     None if jaccard is None else round(jaccard, 6))


def is_panel(record: DedupRecord) -> bool:
    return bool(record.group) and record.group != record.key


def related(a: DedupRecord, b: DedupRecord, kind: str) -> bool:
    """Pairs that are not duplicates, whatever their hashes say:

    - a figure and its own panels (one ``group``);
    - a whole figure and a panel (like is compared with like);
    - panel captions (shared text makes sibling panels' captions alike by design);
    - within one article (any of its versions), anything short of identical pixels: figures of
      one study look alike by design. Near-duplicates are for reuse across articles.
    """
    a_panel, b_panel = is_panel(a), is_panel(b)
    if (a.group and a.group == b.group) or a_panel != b_panel or (kind == "caption" and a_panel):
        return True
    return kind != "exact" and a.article_id == b.article_id


def gather(records: Mapping[str, DedupRecord], pairs: Iterable[Pair],
           rank: Mapping[str, int]) -> tuple[list[Pair], list[Evidence]]:
    """The smallest distance per (pair, kind) without related pairs; and the same grouped per pair."""
    best: dict[tuple[str, str, str], Pair] = {}
    for p in pairs:
        k = (p.key_a, p.key_b, p.kind)
        if k not in best or p.distance < best[k].distance:
            best[k] = p
    kept = sorted(p for p in best.values() if not related(records[p.key_a], records[p.key_b], p.kind))
    grouped: dict[tuple[str, str], Evidence] = {}
    for p in [*(p for p in kept if p.kind != "exact"), *_exact_stars(kept, records, rank)]:
        grouped.setdefault((p.key_a, p.key_b), Evidence(p.key_a, p.key_b)).distances[p.kind] = p.distance
    return kept, list(grouped.values())


def _exact_stars(pairs: Sequence[Pair], records: Mapping[str, DedupRecord], rank: Mapping[str, int]) -> list[Pair]:
    """Identical pixels are one image: the exact buckets link each copy to the smallest key only;
    instead, link every copy to the copy that leads the canonical order, so each pairs with it
    directly."""
    groups: dict[tuple[str, bool], set[str]] = defaultdict(set)
    for p in pairs:
        if p.kind == "exact":
            for key in (p.key_a, p.key_b):
                groups[(records[key].exact, is_panel(records[key]))].add(key)
    out = []
    for keys in groups.values():
        lead, *rest = sorted(keys, key=rank.__getitem__)
        out.extend(Pair(*sorted((lead, k)), "exact", 0.0) for k in rest
                   if not related(records[lead], records[k], "exact"))
    return out


# ---- one-to-one between articles, then stars -------------------------------------------------------

def one_to_one(evidence: Sequence[Evidence], records: Mapping[str, DedupRecord],
               options: DedupOptions) -> list[Evidence]:
    """Strongest pairs first; a sample takes at most one partner in each other article."""
    partner: set[tuple[str, str]] = set()   # (key, the other article) already paired
    kept = []
    for ev in sorted((e for e in evidence if e.links(options)), key=lambda e: e.strength(options)):
        a, b = records[ev.key_a], records[ev.key_b]
        taken = (a.key, b.article_id) in partner or (b.key, a.article_id) in partner
        if "exact" in ev.distances or not taken:  # identical pixels exempt (exact pairs come first)
            partner.update({(a.key, b.article_id), (b.key, a.article_id)})
            kept.append(ev)
    return kept


def canonical_order(records: Iterable[DedupRecord], options: DedupOptions,
                    newest: Mapping[str, int] | None = None) -> list[DedupRecord]:
    """Most preferred first: an older version of an article whose newer version is in the corpus
    never leads; then the most permissive license, the most pixels, the smallest key. ``newest``:
    each article's newest version in the corpus, when ``records`` are only some of its records."""
    recs = list(records)
    if newest is None:
        newest = defaultdict(int)
        for r in recs:
            newest[r.article_id] = max(newest[r.article_id], r.version)
    return sorted(recs, key=lambda r: (r.version != newest[r.article_id],
                                       license_rank(r.license_code, options.license_preference), -r.pixels, r.key))


def choose_canonical(records: Iterable[DedupRecord], options: DedupOptions = DedupOptions()) -> str:
    return canonical_order(records, options)[0].key


def stars(evidence: Sequence[Evidence], records: Mapping[str, DedupRecord], rank: Mapping[str, int],
          options: DedupOptions) -> dict[str, Match]:
    """Canonical-anchored clusters: a sample is dropped only as a duplicate of a canonical it pairs
    with directly, and only of the one it matches best among the samples that can be its canonical
    (ranked before it, not dropped themselves), so a false near pair never takes a sample from its
    true counterpart. Returns dropped key -> match."""
    neighbours: dict[str, dict[str, Evidence]] = defaultdict(dict)
    for ev in sorted(evidence, key=lambda e: e.strength(options)):
        neighbours[ev.key_a][ev.key_b] = ev
        neighbours[ev.key_b][ev.key_a] = ev
    matches: dict[str, Match] = {}
    for center in sorted((records[k] for k in neighbours), key=lambda r: rank[r.key]):
        if center.key in matches:
            continue
        for other, ev in sorted(neighbours[center.key].items()):
            if rank[other] < rank[center.key] or other in matches:
                continue
            # its strongest partner (insertion order) among those ranked before it and not dropped
            best = next(k for k in neighbours[other] if rank[k] < rank[other] and k not in matches)
            if best == center.key:
                matches[other] = ev.match(other, center.key, records)
    return matches


# ---- panels follow their figure -------------------------------------------------------------------

def _normalized_box(panel: DedupRecord, parent: DedupRecord) -> tuple[float, ...] | None:
    if len(panel.box) != 4 or not parent.width or not parent.height:
        return None
    x1, y1, x2, y2 = panel.box
    return (x1 / parent.width, y1 / parent.height, x2 / parent.width, y2 / parent.height)


def pair_panels(dup: list[DedupRecord], canon: list[DedupRecord], dup_parent: DedupRecord,
                canon_parent: DedupRecord, options: DedupOptions) -> list[tuple[DedupRecord, DedupRecord]]:
    """Panels of a duplicate figure with those of its canonical figure: the same label at about
    the same place, or otherwise (labels missing, or read differently in a degraded copy) the
    best-overlapping box under the stricter ``panel_box_iou``; hashes within ``panel_distance``
    either way. Labels are evidence, not a veto: a resized reprint whose labels could not be read
    is labelled in reading order, which need not be the original's."""
    candidates = []
    for d in dup:
        for c in canon:
            same_label = bool(d.label) and d.label.lower() == c.label.lower()
            boxes = _normalized_box(d, dup_parent), _normalized_box(c, canon_parent)
            iou = box_iou(*boxes) if None not in boxes else 0.0  # type: ignore[arg-type]
            if iou >= (options.panel_label_iou if same_label else options.panel_box_iou):
                candidates.append((-iou, d.key, c.key, d, c))
    taken: set[str] = set()
    out = []
    for _, _, _, d, c in sorted(candidates):
        if d.key in taken or c.key in taken or hamming(d.perceptual, c.perceptual) > options.panel_distance:
            continue
        taken.update({d.key, c.key})
        out.append((d, c))
    return out


def follow_figures(figure_matches: Mapping[str, Match], records: Mapping[str, DedupRecord],
                   options: DedupOptions) -> tuple[dict[str, Match], set[str]]:
    """Panel matches implied by figure matches, and every panel whose figure has a counterpart
    (those are never searched independently)."""
    panels_of: dict[str, list[DedupRecord]] = defaultdict(list)
    for r in records.values():
        if is_panel(r):
            panels_of[r.group].append(r)
    anchored: set[str] = set()
    matches: dict[str, Match] = {}
    for fig_key, fm in sorted(figure_matches.items()):
        anchored.update(p.key for p in panels_of.get(fig_key, ()))
        anchored.update(p.key for p in panels_of.get(fm.canonical, ()))
        pairs = pair_panels(sorted(panels_of.get(fig_key, ()), key=lambda r: r.key),
                            sorted(panels_of.get(fm.canonical, ()), key=lambda r: r.key),
                            records[fig_key], records[fm.canonical], options)
        for d, c in pairs:
            kinds = ("exact", "panel") if d.exact == c.exact else ("panel",)
            matches[d.key] = Match(d.key, c.key, kinds, hamming(d.perceptual, c.perceptual), None, fig_key)
    return matches, anchored


# ---- identical pixels: copies follow their class lead ---------------------------------------------

def twin_leads(ordered: Sequence[DedupRecord], options: DedupOptions) -> dict[str, str]:
    """Copy key -> its lead, for records in canonical order: the first of each class of identical
    pixels (figures and panels apart) leads it; copies related to their lead (one figure's sibling
    panels) stay on their own. Empty without the ``exact`` kind."""
    if "exact" not in options.kinds:
        return {}
    lead_of: dict[tuple[str, bool], DedupRecord] = {}
    out = {}
    for r in ordered:
        lead = lead_of.setdefault((r.exact, is_panel(r)), r)
        if lead is not r and not related(lead, r, "exact"):
            out[r.key] = lead.key
    return out


def bucketed(records: Iterable[DedupRecord], options: DedupOptions) -> list[DedupRecord]:
    """The records that go through the buckets: every one but the copies that follow a lead."""
    recs = list(records)
    twins = twin_leads(canonical_order(recs, options), options)
    return [r for r in recs if r.key not in twins]


def _caption_jaccard(a: DedupRecord, b: DedupRecord, options: DedupOptions) -> float | None:
    short = min(len(a.caption_tokens), len(b.caption_tokens)) < options.caption_min_words
    return None if short else jaccard(a.shingles(options), b.shingles(options))


def direct_evidence(a: DedupRecord, b: DedupRecord, options: DedupOptions) -> Evidence | None:
    """Every kind that pairs ``a`` with ``b`` by their own hashes (what the buckets would find)."""
    distances: dict[str, float] = {}
    if "exact" in options.kinds and a.exact == b.exact and not related(a, b, "exact"):
        distances["exact"] = 0.0
    bits = hamming(a.perceptual, b.perceptual)
    if "image" in options.kinds and bits <= options.near_image_distance and not related(a, b, "image"):
        distances["image"] = float(bits)
    j = _caption_jaccard(a, b, options) if "caption" in options.kinds and not related(a, b, "caption") else None
    if j is not None and j >= options.caption_jaccard:
        distances["caption"] = round(1.0 - j, 6)
    ev = Evidence(*sorted((a.key, b.key)), distances)
    return ev if distances and ev.links(options) else None


def follow_leads(classes: Mapping[str, Sequence[str]], matches: dict[str, Match], anchored: set[str],
                 records: Mapping[str, DedupRecord], options: DedupOptions) -> list[Evidence]:
    """Copies (in canonical order) of each lead: duplicates of the lead while it stays; of the
    lead's canonical when the lead goes by its own hashes and the copy pairs with it directly;
    otherwise the first such copy stays and the others are its duplicates. Adds to ``matches``."""
    found = []
    for lead, copies in classes.items():
        lm = matches.get(lead)
        if lead in anchored:
            target = None
        else:
            target = lead if lm is None else (lm.canonical if lm.via is None else None)
        new_lead = None
        for key in copies:
            if key in matches or key in anchored:
                continue
            to = target
            ev = direct_evidence(records[key], records[to], options) if to else None
            if ev is None and new_lead is None:
                new_lead = key
                continue
            if ev is None:
                to = new_lead
                ev = direct_evidence(records[key], records[to], options)
            if ev is not None and to is not None:
                matches[key] = ev.match(key, to, records)
                found.append(ev)
    return found


def _classes(twins: Mapping[str, str], keys: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for key in keys:  # canonical order
        if key in twins:
            out[twins[key]].append(key)
    return out


# ---- the whole reduce ------------------------------------------------------------------------------

def finish(records: Mapping[str, DedupRecord], pairs: Iterable[Pair], options: DedupOptions,
           twins: Mapping[str, str] | None = None, newest: Mapping[str, int] | None = None) -> DedupResult:
    """Final reduce over all verified pairs: figures first, their panels after them, then the
    panels whose figure has no counterpart; copies of identical pixels follow their lead after
    each. Pairs that name a copy following a lead are ignored (``bucketed`` leaves them out).

    ``records`` may be only those the result can depend on (the pairs' records, every copy and
    lead, the panels of those figures) when ``twins`` (copy -> lead) and ``newest`` (each
    article's newest version) come from all of them (``pipelines/dedup.py``)."""
    ordered = canonical_order(records.values(), options, newest)
    rank = {r.key: i for i, r in enumerate(ordered)}
    twins = twin_leads(ordered, options) if twins is None else twins
    classes = _classes(twins, (r.key for r in ordered))
    kept, evidence = gather(records, (p for p in pairs if p.key_a not in twins and p.key_b not in twins), rank)
    figure_ev = [e for e in evidence if not is_panel(records[e.key_a])]
    figure_matches = stars(one_to_one(figure_ev, records, options), records, rank, options)
    figure_classes = {k: v for k, v in classes.items() if not is_panel(records[k])}
    followed = follow_leads(figure_classes, figure_matches, set(), records, options)
    matches, anchored = follow_figures(figure_matches, records, options)
    free_panels = [e for e in evidence if is_panel(records[e.key_a])
                   and e.key_a not in anchored and e.key_b not in anchored]
    matches.update(stars(one_to_one(free_panels, records, options), records, rank, options))
    matches.update(figure_matches)
    panel_classes = {k: v for k, v in classes.items() if is_panel(records[k])}
    followed += follow_leads(panel_classes, matches, anchored, records, options)
    kept = sorted([*kept, *(Pair(e.key_a, e.key_b, k, d) for e in followed for k, d in e.distances.items())])
    return _result(matches, kept)


def _result(matches: Mapping[str, Match], kept: list[Pair]) -> DedupResult:
    members: dict[str, set[str]] = defaultdict(set)
    for m in matches.values():
        members[m.canonical].update({m.key, m.canonical})
    cluster_of, canonical_of = {}, {}
    for canonical, keys in sorted(members.items()):
        cid = min(keys)
        canonical_of[cid] = canonical
        cluster_of.update({k: cid for k in keys})
    return DedupResult(dict(sorted(cluster_of.items())), canonical_of, kept, dict(sorted(matches.items())))


def merged(results: Iterable[DedupResult]) -> DedupResult:
    """Results of disjoint sets of clusters as one: what a single ``finish`` over them all gives."""
    out = DedupResult()
    for r in results:
        out.cluster_of.update(r.cluster_of)
        out.canonical_of.update(r.canonical_of)
        out.pairs.extend(r.pairs)
        out.matches.update(r.matches)
    return DedupResult(dict(sorted(out.cluster_of.items())), dict(sorted(out.canonical_of.items())), sorted(out.pairs),
                       dict(sorted(out.matches.items())))


def dedup_local(records: Iterable[DedupRecord], options: DedupOptions = DedupOptions()) -> DedupResult:
    """map → group → reduce in one process (local runner); images through the vectorized bands."""
    recs = {r.key: r for r in records}
    ordered = sorted(bucketed(recs.values(), options), key=lambda r: r.key)
    pairs: set[Pair] = set()
    if "image" in options.kinds:
        pairs.update(image_pairs_numpy([r.key for r in ordered], [r.perceptual for r in ordered], options))
    groups: dict[str, list[DedupRecord]] = defaultdict(list)
    text_options = text_only(options)
    for r in ordered:
        for bk in bucket_keys(r, text_options):
            groups[bk].append(r)
    for bk in sorted(groups):
        pairs.update(candidate_pairs(bk, groups[bk], options))
    return finish(recs, pairs, options)
