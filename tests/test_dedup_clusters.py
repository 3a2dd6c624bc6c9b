"""Dedup on real figures: copies cluster, the canonical is chosen by version/license/resolution,
the shuffle phases agree with the in-process path, and results do not depend on input order."""
from __future__ import annotations

import io
import random
from collections import defaultdict

import numpy as np
from PIL import Image, ImageOps
from testdata import ARTICLES

from medcorpus.transforms.dedup import (DedupOptions, DedupRecord, ImageHashes, Pair, bucket_keys, candidate_pairs,
                                        exact_pixel_hash, hamming, hash_image, make_record)
from medcorpus.transforms.dedup_clusters import choose_canonical, dedup_local, finish

FIG = ARTICLES / "elife-46793-v1" / "fig1.jpg"
OTHERS = [ARTICLES / "plosone-0178565" / "g004.png", ARTICLES / "elife-52882-v2" / "fig2.jpg",
          ARTICLES / "elife-43154-v2" / "fig1.jpg"]
CAPTION = ("Genome-wide distribution of G-quadruplex forming sequences in human promoters and their "
           "association with gene expression in the cell lines used in this study.")


def _bytes(img: Image.Image, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, fmt, **kw)
    return buf.getvalue()


def _copies() -> dict[str, bytes]:
    img = Image.open(FIG).convert("RGB")
    w, h = img.size
    return {
        "a_orig": FIG.read_bytes(),
        "b_q35": _bytes(img, quality=35),
        "c_crop": _bytes(img.crop((int(0.03 * w), int(0.02 * h), w - int(0.02 * w), h - int(0.03 * h))), quality=85),
        "d_half": _bytes(img.resize((w // 2, h // 2)), quality=90),
        "e_pad": _bytes(ImageOps.expand(img.resize((w // 2, h // 2)), border=30, fill=(255, 255, 255)), "PNG"),
    }


def test_exact_hash_ignores_container_not_colour() -> None:
    img = Image.open(FIG).convert("RGB")
    assert exact_pixel_hash(Image.open(io.BytesIO(_bytes(img, "PNG")))) == exact_pixel_hash(
        Image.open(io.BytesIO(_bytes(img, "TIFF"))))
    gray = img.convert("L")
    assert exact_pixel_hash(gray) == exact_pixel_hash(gray.convert("RGB"))
    assert exact_pixel_hash(gray) != exact_pixel_hash(img)


def test_real_copies_cluster_and_others_do_not() -> None:
    # each copy reused by another article (reuse across papers is what dedup is for)
    recs = [make_record(k, b, CAPTION if k == "a_orig" else "", f"PMC{k}", 1, "CC BY") for k, b in _copies().items()]
    recs += [make_record(f"z{i}", p.read_bytes(), "", f"other{i}", 1, "CC BY") for i, p in enumerate(OTHERS)]
    res = dedup_local(recs)
    copies = sorted(_copies())
    assert {res.cluster_of.get(k) for k in copies} == {"a_orig"}
    assert all(res.cluster_of.get(f"z{i}") is None for i in range(len(OTHERS)))
    assert res.canonical_of["a_orig"] == "a_orig"  # full resolution, everything else equal
    assert res.duplicate_of("c_crop") == "a_orig" and res.duplicate_of("a_orig") is None


def test_within_one_article_only_identical_pixels_are_duplicates() -> None:
    copies = _copies()
    near = [make_record(k, b, "", "PMC1", 1, "CC BY") for k, b in copies.items()]
    assert dedup_local(near).cluster_of == {}  # look-alike panels of one study stay
    exact = [make_record(k, copies["a_orig"], "", "PMC1", 1, "CC BY") for k in ("p1", "p2")]
    assert dedup_local(exact).duplicate_of("p2") == "p1"
    panels = [make_record(k, copies["a_orig"], "", "PMC1", 1, "CC BY", group="fig1") for k in ("fig1", "fig1_pa")]
    assert dedup_local(panels).cluster_of == {}  # a figure and its own panel are never duplicates
    near_versions = [make_record(k, b, "", "PMC1", v, "CC BY") for (k, b), v in zip(list(copies.items())[:2], (1, 2))]
    assert dedup_local(near_versions).cluster_of == {}  # versions of one article: only identical pixels
    versions = [make_record(k, copies["a_orig"], "", "PMC1", v, "CC BY") for k, v in (("v1", 1), ("v2", 2))]
    assert dedup_local(versions).duplicate_of("v1") == "v2"  # the newest version is canonical


def test_canonical_prefers_newest_version_then_license_then_pixels() -> None:
    h = hash_image(FIG.read_bytes())
    r = lambda key, art, ver, lic, px: make_record(key, h, "", art, ver, lic, px)  # noqa: E731
    assert choose_canonical([r("k1", "A", 1, "CC BY", 10_000), r("k2", "A", 2, "CC BY-NC", 100)]) == "k2"
    assert choose_canonical([r("k1", "A", 1, "CC BY-NC", 10_000), r("k2", "B", 1, "CC BY", 100)]) == "k2"
    assert choose_canonical([r("k1", "A", 1, "CC BY", 100), r("k2", "B", 1, "CC BY", 10_000)]) == "k2"
    assert choose_canonical([r("k2", "A", 1, "CC BY", 100), r("k1", "B", 1, "CC BY", 100)]) == "k1"


def _shuffle(recs, options):  # noqa: ANN001, ANN202 - what Ray/Beam do: map, group by key, reduce
    groups = defaultdict(list)
    for rec in recs:
        for key in bucket_keys(rec, options):
            groups[key].append(rec)
    pairs = [p for key, group in groups.items() for p in candidate_pairs(key, group, options)]
    return finish({r.key: r for r in recs}, pairs, options)


def test_shuffle_phases_equal_local_and_order_free() -> None:
    opts = DedupOptions()
    recs = [make_record(k, b, CAPTION, "PMCX", 1, "CC BY") for k, b in _copies().items()]
    recs += [make_record("y_caption_only", OTHERS[0].read_bytes(), "Figure 7. " + CAPTION, "PMCY", 2, "CC0")]
    local = dedup_local(recs, opts)
    shuffled = random.Random(1).sample(recs, len(recs))
    dist = _shuffle(shuffled, opts)
    assert dist.cluster_of == local.cluster_of and dist.canonical_of == local.canonical_of
    assert {(p.key_a, p.key_b, p.kind) for p in dist.pairs} == {(p.key_a, p.key_b, p.kind) for p in local.pairs}
    assert dedup_local(shuffled, opts).pairs == local.pairs
    # the caption-only duplicate joins the cluster, and wins: CC0 beats CC BY
    assert local.cluster_of["y_caption_only"] == "a_orig"
    assert local.canonical_of["a_orig"] == "y_caption_only"
    assert any(p.kind == "caption" for p in local.pairs)
    no_caption = dedup_local(recs, DedupOptions(kinds=("exact", "image")))
    assert "y_caption_only" not in no_caption.cluster_of


def _distinct_pixels(key: str) -> ImageHashes:
    """The figure's perceptual hash over pixels of their own: pairs are given by hand, and identical
    pixels would make the records one image."""
    h = hash_image(FIG.read_bytes())
    return ImageHashes(f"pixels-of-{key}", h.phash, h.dhash)


def test_no_chaining_a_sample_is_dropped_only_for_its_canonical() -> None:
    # b is near a and c, but a and c are not near each other: c must not go because of a via b
    recs = {k: make_record(k, _distinct_pixels(k), "", art, 1, "CC BY", px) for k, art, px in
            (("a", "A", 300), ("b", "B", 200), ("c", "C", 100))}
    res = finish(recs, [Pair("a", "b", "image", 20), Pair("b", "c", "image", 20)],
                 DedupOptions(image_alone_distance=34))  # look-alikes alone link here, as they may
    assert res.duplicate_of("b") == "a" and res.duplicate_of("c") is None
    assert res.matches["b"].kinds == ("image",) and res.matches["b"].hamming == 0


def test_look_alike_images_alone_link_only_when_very_close() -> None:
    """Distinct real figures fall within 34 bits of each other at about 3 in 10,000 pairs (and random
    hashes do at 10 M samples: 400,000 samples lost in the driver benchmark): with nothing else
    agreeing, two images count as one only within ``image_alone_distance``; a near caption or
    identical pixels still link them up to ``near_image_distance``."""
    caption = "Clonogenic cell survival assay demonstrates enhanced cell death upon treatment with PDS"
    recs = {k: make_record(k, _distinct_pixels(k), cap, art, 1, "CC BY", px) for k, cap, art, px in
            (("a", "", "A", 300), ("b", "", "B", 200), ("c", caption, "C", 300), ("d", caption, "D", 200),
             ("e", "", "E", 300), ("f", "", "F", 200))}
    pairs = [Pair("a", "b", "image", 30), Pair("c", "d", "image", 30), Pair("c", "d", "caption", 0.0),
             Pair("e", "f", "image", 12)]
    res = finish(recs, pairs, DedupOptions())
    assert res.duplicate_of("b") is None  # 30 bits apart, nothing else agrees: two figures
    assert res.duplicate_of("d") == "c" and res.matches["d"].kinds == ("image", "caption")
    assert res.duplicate_of("f") == "e"


def test_one_counterpart_per_article_keeps_look_alikes() -> None:
    # r1 (reprint) resembles a1 and a2 of one article: only its closest stays paired, a2 is never lost
    recs = {k: make_record(k, _distinct_pixels(k), "", art, 1, "CC BY", px) for k, art, px in
            (("a1", "A", 300), ("a2", "A", 300), ("r1", "R", 100))}
    pairs = [Pair("a1", "r1", "image", 12), Pair("a2", "r1", "image", 6)]
    res = finish(recs, pairs, DedupOptions())
    assert res.duplicate_of("r1") == "a2" and res.duplicate_of("a1") is None and res.duplicate_of("a2") is None
    assert res.canonical_of == {"a2": "a2"} and res.cluster_of == {"a2": "a2", "r1": "a2"}


def test_copy_distances_under_threshold_others_far() -> None:
    hashes = {k: hash_image(b).perceptual for k, b in _copies().items()}
    t = DedupOptions().near_image_distance
    assert all(hamming(hashes["a_orig"], v) <= t for v in hashes.values())
    for p in OTHERS:
        assert hamming(hashes["a_orig"], hash_image(p.read_bytes()).perceptual) > t


def test_exact_copies_all_go_to_the_canonical_whichever_key_leads() -> None:
    # the exact bucket links copies to the smallest key; the canonical (CC0 here) is another one
    h = hash_image(FIG.read_bytes())
    recs = [make_record(k, h, "", art, 1, lic, 100) for k, art, lic in
            (("a", "A", "CC BY-NC"), ("b", "B", "CC BY"), ("c", "C", "CC0"), ("d", "D", "CC BY-NC"))]
    for kinds in (("exact",), ("exact", "image")):
        res = dedup_local(recs, DedupOptions(kinds=kinds))
        assert {k: res.duplicate_of(k) for k in "abcd"} == {"a": "c", "b": "c", "c": None, "d": "c"}
        assert all(m.kinds[0] == "exact" for m in res.matches.values())


def test_many_identical_copies_follow_one_anchor_linearly() -> None:
    # a placeholder image reused by 20,000 articles, same caption: one bucket record, direct links only
    h = hash_image(FIG.read_bytes())
    recs = [make_record(f"k{i:05d}", h, CAPTION, f"PMC{i}", 1, "CC BY-NC" if i else "CC BY", 100)
            for i in range(20_000)]
    opts = DedupOptions()
    res = dedup_local(recs, opts)
    assert res.canonical_of == {"k00000": "k00000"} and len(res.matches) == 19_999
    assert {m.canonical for m in res.matches.values()} == {"k00000"}
    assert res.matches["k12345"].kinds == ("exact", "image", "caption") and res.matches["k12345"].hamming == 0
    assert len(res.pairs) == 3 * 19_999  # exact, image and caption evidence per copy: no pair inside the cluster
    assert _shuffle(recs[:40], opts).matches == dedup_local(recs[:40], opts).matches  # the shuffle: all pairs


def test_copies_of_a_dropped_lead_go_to_its_canonical_or_keep_one() -> None:
    # a near copy (another article, CC0) outranks the lead of three identical copies: the copies go to
    # it directly; with a caption-only link the copies share no evidence with it and one of them stays
    copies = _copies()
    recs = [make_record(k, copies["a_orig"], CAPTION, f"PMC{k}", 1, "CC BY") for k in ("c1", "c2", "c3")]
    near = make_record("n", copies["d_half"], CAPTION, "PMCN", 1, "CC0")
    res = dedup_local([*recs, near])
    assert {k: res.duplicate_of(k) for k in ("c1", "c2", "c3", "n")} == {"c1": "n", "c2": "n", "c3": "n", "n": None}
    other = make_record("o", OTHERS[0].read_bytes(), CAPTION, "PMCO", 1, "CC0")
    res = dedup_local([*(make_record(r.key, copies["a_orig"], CAPTION if r.key == "c1" else "", r.article_id, 1,
                                     "CC BY") for r in recs), other], DedupOptions(kinds=("exact", "caption")))
    assert {k: res.duplicate_of(k) for k in ("c1", "c2", "c3", "o")} == {"c1": "o", "c2": None, "c3": "c2", "o": None}


# fig9-figsupp2 of elife-46793: 12 panels lettered down three columns (A-D, E-H, I-L), boxes as the
# panels stage cuts the original (600 x 694)
GRID = ARTICLES / "elife-46793-v1" / "fig9-figsupp2.jpg"
GRID_CAPTION = ("Clonogenic cell survival assay demonstrates enhanced cell death upon treatment with PDS in "
                "combination MK1775 or pimozide.")  # its caption in the article
GRID_BOXES = [(1, 2, 186, 165), (1, 182, 185, 346), (1, 358, 185, 515), (1, 534, 184, 691),
              (199, 2, 393, 166), (199, 179, 395, 350), (203, 355, 396, 519), (203, 534, 397, 693),
              (412, 2, 599, 143), (412, 179, 600, 325), (413, 356, 599, 500), (412, 534, 599, 676)]


def _figure_records(prefix: str, img: Image.Image, boxes: list[tuple[int, ...]], labels: str,
                    caption: str = "") -> list:
    fig = make_record(prefix, _bytes(img, quality=60), caption, prefix, 1, "CC BY", group=prefix,
                      width=img.width, height=img.height)
    panels = [make_record(f"{prefix}_p{lab}", _bytes(img.crop(b), quality=60), "", prefix, 1, "CC BY", group=prefix,
                          label=lab, box=b, width=img.width, height=img.height) for b, lab in zip(boxes, labels)]
    return [fig, *panels]


def test_panels_whose_labels_disagree_pair_by_place_and_a_replaced_panel_stays() -> None:
    """A 0.8x copy of a real column-lettered grid whose letters were not read is labelled row by row
    (a b c / d e f ...): its panels still pair with the original's panel at the same place, never by
    label; a panel whose pixels the copy replaced (a correction) stays."""
    orig = Image.open(GRID).convert("RGB")
    copy = orig.resize((round(orig.width * 0.8), round(orig.height * 0.8)), Image.Resampling.BICUBIC)
    boxes = [tuple(round(v * 0.8) for v in b) for b in GRID_BOXES]
    other = Image.open(OTHERS[1]).convert("RGB")
    replaced = boxes[5]  # the original's panel F
    copy.paste(other.resize((replaced[2] - replaced[0], replaced[3] - replaced[1])), replaced[:2])
    rows = sorted(range(12), key=lambda i: (GRID_BOXES[i][1] // 150, GRID_BOXES[i][0]))  # row-major
    row_labels = {i: "abcdefghijkl"[rank] for rank, i in enumerate(rows)}
    records = _figure_records("orig", orig, GRID_BOXES, "abcdefghijkl", GRID_CAPTION)
    records += _figure_records("copy", copy, boxes, "".join(row_labels[i] for i in range(12)), GRID_CAPTION)
    result = dedup_local(records)
    assert result.matches["copy"].canonical == "orig"  # a reprint: its caption agrees too
    same_place = {f"copy_p{row_labels[i]}": f"orig_p{'abcdefghijkl'[i]}" for i in range(12) if i != 5}
    got = {k: m.canonical for k, m in result.matches.items() if k.startswith("copy_p")}
    assert sum(row_labels[i] != "abcdefghijkl"[i] for i in range(12)) >= 8  # the labels do disagree
    assert f"copy_p{row_labels[5]}" not in got  # the replaced panel stays
    assert got == same_place
    assert not any(k.startswith("orig") for k in result.matches)


def test_vectorized_image_bands_find_the_pairs_of_the_per_record_buckets() -> None:
    """``near_pairs_array`` (the local runner's bands: byte tables, packed sort, or the argsort when
    key and index do not fit in 64 bits) gives exactly the pairs of the shuffle's per-record bucket
    keys, on the hashes of real figures and copies of them with 1-40 bits flipped."""
    from medcorpus.transforms.dedup import image_pairs_numpy, near_pairs_array, perceptual_array

    keys, hashes = _real_and_flipped_hashes()
    for band_bits in (20, 60):  # 20 + 8 index bits pack into one uint64; 60 + 8 do not
        opts = DedupOptions(kinds=("image",), band_bits=band_bits)
        buckets = defaultdict(list)
        for k, h in zip(keys, hashes):
            for b in bucket_keys(_hash_record(k, h), opts):
                buckets[b].append(_hash_record(k, h))
        expected = {p for b, members in buckets.items() for p in candidate_pairs(b, members, opts)}
        got = set(image_pairs_numpy(keys, hashes, opts))
        assert got == expected and len(got) > 20
        h = perceptual_array(hashes)  # bands in groups (one per worker) find the same pairs
        groups = [near_pairs_array(h, opts, bands=range(a, b)) for a, b in ((0, 50), (50, 51), (51, opts.bands))]
        whole = near_pairs_array(h, opts)
        assert {(i, j, d) for g in groups for i, j, d in zip(*g)} == set(zip(*whole))


def test_bands_sorted_a_key_prefix_at_a_time_find_the_pairs_of_one_sort(monkeypatch) -> None:
    """A band over more than ``SLICE_ROWS`` rows sorts the rows of each key prefix apart (and
    gathers keys ``KEY_ROWS`` at a time): equal keys share a prefix, so the pairs are the same
    arrays, for the packed sort and the argsort alike."""
    from medcorpus.transforms import dedup

    keys, hashes = _real_and_flipped_hashes()
    h = dedup.perceptual_array(hashes)
    for band_bits in (20, 60):
        opts = DedupOptions(kinds=("image",), band_bits=band_bits)
        whole = dedup.near_pairs_array(h, opts)
        monkeypatch.setattr(dedup, "SLICE_ROWS", 16)  # 160 rows: 4 prefix bits, 16 slices a band
        monkeypatch.setattr(dedup, "KEY_ROWS", 7)
        sliced = dedup.near_pairs_array(h, opts)
        monkeypatch.undo()
        assert len(whole[0]) > 20 and all(np.array_equal(a, b) for a, b in zip(whole, sliced))


def _real_and_flipped_hashes() -> tuple[list[str], list[int]]:
    """Keys and perceptual hashes of 40 real figures, each with three copies 1-40 bits away."""
    rng = random.Random(7)
    keys, hashes = [], []
    for f in sorted(ARTICLES.glob("*/*.jpg"))[:40]:
        h = hash_image(f.read_bytes()).perceptual
        for copy in range(4):
            flipped = h
            for bit in rng.sample(range(128), rng.randint(1, 40)) if copy else []:
                flipped ^= 1 << bit
            keys.append(f"{f.parent.name}/{f.stem}/{copy}")
            hashes.append(flipped)
    return keys, hashes


def _hash_record(key: str, perceptual: int) -> DedupRecord:
    """A record with only a key and a perceptual hash."""
    return make_record(key, ImageHashes(key, perceptual >> 64, perceptual & ((1 << 64) - 1)), "", "A" + key)
