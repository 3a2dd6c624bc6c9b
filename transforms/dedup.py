"""Deduplication that scales: hashes per sample, then map → shuffle-by-key → reduce.

Three kinds of duplicates link samples into clusters:

* ``exact``   — the same pixels (sha256 of normalized pixels, see ``exact_pixel_hash``);
* ``image``   — near-duplicate images: pHash‖dHash (128 bits) within ``near_image_distance``
                (Hamming), found through LSH banding (each band = ``band_bits`` fixed, seeded bit
                positions; two records meet in a bucket when one band agrees exactly). Alone
                (no identical pixels, no near caption) a pair counts only within
                ``image_alone_distance``: distinct real figures fall within 34 bits of each other
                at a rate of about 3 in 10,000 pairs, which over millions of samples is millions of
                distinct samples;
* ``caption`` — near-duplicate captions: word-shingle Jaccard ≥ ``caption_jaccard``, found
                through MinHash LSH bands (datasketch MinHash, our own band keys).

Distributed form (no all-pairs comparison, no collect to one process for the grouping):

    map      bucket_keys(record)                     -> [bucket key, ...]
    shuffle  group records by bucket key
    reduce   candidate_pairs(bucket_key, records)    -> verified pairs (true Hamming / Jaccard)
    reduce   dedup_clusters.finish(all pairs)        -> canonical-anchored clusters, panels
                                                        following their figures (see that module)

``dedup_clusters.dedup_local`` runs the same phases in one process; ``image_pairs_numpy`` is the
vectorized equivalent of the image bands for one core (same bands, same verification, same pairs).
Every result is independent of input order.

Why pHash/dHash are our own and not the ``imagehash`` package's: figures are reprinted with added
margins and frames, so both hashes are taken of the border-trimmed image (``trim_border``), which
``imagehash`` does not do. Measured with 128 real figures × 6 transformed copies (bench/dedup_eval.py,
threshold 34, same bands; 2026-11):

    hashes                                 recall   pad     crop    false pairs (copy / original)
    ours (trimmed 32×32 thumbnail)         0.951    0.992   0.711   29 / 97,536    3 / 8,128
    imagehash phash+dhash (hash_size 8)    0.842    0.289   0.766   28 / 97,536    3 / 8,128
    imagehash on our trimmed image         0.957    0.992   0.750   23 / 97,536    2 / 8,128

The last is within noise on that set, but on the reprint benchmark (bench/dedup_reprint_eval.py
--set tune, whose thresholds these hashes were tuned with) it joins 33/34 figures instead of 34/34,
pairs 1–2 duplicates with the wrong counterpart and loses one original in every scenario, where
ours has none; changing it would also change every stored ``image_phash`` and eval-set registry.
"""
from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Annotated, Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
from PIL import ExifTags, Image, ImageOps
from pydantic import Field
from scipy.fft import dctn

from medcorpus.transforms.images import to_rgb
from medcorpus.transforms.options import (ConfigError, Fraction, NonNegativeInt, PositiveInt, known_names,
                                          validated)

Bits = Annotated[int, Field(ge=0, le=128)]

HASH_SIDE = 32
KINDS = ("exact", "image", "caption")

LICENSE_PREFERENCE = ("CC0", "PD", "CC BY", "CC BY-SA", "CC BY-ND", "CC BY-NC", "CC BY-NC-SA",
                      "CC BY-NC-ND")
"""Most permissive first; codes not listed rank after all listed ones."""


@dataclass(frozen=True)
class DedupOptions:
    """dataflow.yaml ``dedup:``. Defaults measured by bench/dedup_eval.py on real figures."""

    kinds: tuple[str, ...] = KINDS          # kinds of pairs that link samples into one cluster
    near_image_distance: Bits = 34          # pHash+dHash Hamming distance (of 128) at or below = near-dup
    image_alone_distance: Bits = 12         # ... but with neither the same pixels nor a near caption: this close
    bands: PositiveInt = 128                # image LSH bands ...
    band_bits: Annotated[int, Field(ge=1, le=64)] = 20  # ... of this many bit positions each
    band_seed: int = 20240601               # fixes the bit positions: keys must agree across workers/runs
    caption_shingle: PositiveInt = 3        # words per shingle
    caption_jaccard: Fraction = 0.8         # shingle Jaccard at or above = near-duplicate captions
    caption_min_words: NonNegativeInt = 10  # shorter captions ("Figure 1.") never link samples
    caption_num_perm: PositiveInt = 128
    caption_bands: PositiveInt = 16         # MinHash bands (rows = num_perm // bands)
    license_preference: tuple[str, ...] = LICENSE_PREFERENCE
    # panels of a duplicate figure pair with its counterpart's panels (dedup_clusters.pair_panels):
    panel_label_iou: Fraction = 0.5         # same label: boxes (relative to the figure) overlap at least this
    panel_box_iou: Fraction = 0.7           # labels missing or disagreeing: the best box overlap at least this
    panel_distance: Bits = 44               # and the two panels' hashes at most this far apart

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DedupOptions:
        options = validated(cls, values, "dedup")
        known_names(options.kinds, KINDS, "dedup.kinds")
        if options.caption_num_perm % options.caption_bands:
            raise ConfigError(f"dedup.caption_bands: {options.caption_bands} must divide caption_num_perm "
                              f"({options.caption_num_perm})")
        return options
        return cls(**values)


# ---- image hashes ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageHashes:
    exact: str      # sha256 hex of normalized pixels
    phash: int      # 64-bit DCT hash of the border-trimmed grayscale image
    dhash: int      # 64-bit gradient hash of the same

    @property
    def perceptual(self) -> int:
        """pHash‖dHash as one 128-bit int (what bands and distances use)."""
        return (self.phash << 64) | self.dhash


def _decode(image: bytes | Image.Image) -> Image.Image:
    """Oriented 8-bit RGB; an upright image (the image stage's decoded ones) is used as it is, uncopied."""
    img = image if isinstance(image, Image.Image) else Image.open(io.BytesIO(image))
    img.load()
    if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        img = ImageOps.exif_transpose(img)
    return to_rgb(img)


def exact_pixel_hash(img: Image.Image) -> str:
    """sha256 of the decoded, oriented RGB pixels (alpha over white) plus the size.

    Container, metadata and lossless re-encoding vanish (PNG ≡ TIFF ≡ BMP of one bitmap). Colour is
    *not* collapsed to gray: a colour figure and its gray print version are different bitmaps and
    are caught as near-duplicates instead; but a gray image stored as RGB hashes like its L form
    (channels equal → one channel), so storage mode alone never hides an exact duplicate.
    """
    a = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    if channels_equal(a):
        a, mode = a[..., 0], "L"
    else:
        mode = "RGB"
    h = hashlib.sha256(f"{mode}:{a.shape[1]}x{a.shape[0]}:".encode())
    h.update(np.ascontiguousarray(a))
    return h.hexdigest()


def channels_equal(rgb: np.ndarray) -> bool:
    """Whether an RGB array is gray (R = G = B everywhere; an empty one is not). A sparse sample
    rejects a colour image before the full comparison."""
    if not rgb.size:
        return False
    for a in (rgb[::16, ::16], rgb):
        if not ((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()):
            return False
    return True


def trim_border(gray: np.ndarray, tolerance: int = 8) -> np.ndarray:
    """Drop a uniform border (the colour of the frame's edge): padding must not move the hash."""
    if gray.size == 0:
        return gray
    edge = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    colour = float(np.median(edge))
    content = np.abs(gray.astype(np.int16) - colour) > tolerance
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return gray
    return gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def hash_thumbnail(img: Image.Image) -> np.ndarray:
    """32×32 float grayscale of the border-trimmed image (aspect ignored: resizing must not matter)."""
    gray = img.convert("L")
    gray.thumbnail((256, 256), Image.Resampling.BILINEAR)
    cropped = trim_border(np.asarray(gray))
    small = Image.fromarray(cropped).resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64)


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(np.uint8)).tobytes(), "big")


def phash64(thumb: np.ndarray) -> int:
    """Signs of the 8×8 lowest DCT frequencies against their median (AC only)."""
    d = dctn(thumb, norm="ortho")[:8, :8].ravel()
    return _bits_to_int(d > np.median(d[1:]))


def dhash64(thumb: np.ndarray) -> int:
    """Horizontal gradient signs on a 9×8 reduction."""
    g = np.asarray(Image.fromarray(thumb.astype(np.float32), "F").resize((9, 8), Image.Resampling.BOX))
    return _bits_to_int(g[:, 1:] > g[:, :-1])


def hash_image(image: bytes | Image.Image) -> ImageHashes:
    """Exact and perceptual hashes of one image (bytes or PIL)."""
    return _hashes(_decode(image))


def _hashes(img: Image.Image) -> ImageHashes:
    thumb = hash_thumbnail(img)
    return ImageHashes(exact_pixel_hash(img), phash64(thumb), dhash64(thumb))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


# ---- caption shingles and MinHash ------------------------------------------------------------------

_LABEL = re.compile(r"^\s*(fig(ure)?|supplementary figure|table)\s*[\w.-]*\s*[.:|-]?\s*", re.I)
_TOKEN = re.compile(r"[a-z0-9]+")


def caption_tokens(caption: str) -> list[str]:
    """Lower-case word tokens without the leading "Figure 3." label (labels differ across versions)."""
    return _TOKEN.findall(_LABEL.sub("", caption or "").lower())


def shingles(tokens: Sequence[str], n: int) -> set[str]:
    if len(tokens) < n:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


@lru_cache(maxsize=4)
def _minhash_template(num_perm: int) -> Any:
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=1)


def caption_minhash(tokens: Sequence[str], options: DedupOptions) -> np.ndarray | None:
    """MinHash signature (datasketch, fixed seed) of the caption's shingles; None for short captions."""
    if len(tokens) < options.caption_min_words:
        return None
    m = _minhash_template(options.caption_num_perm).copy()
    m.update_batch([s.encode("utf-8") for s in sorted(shingles(tokens, options.caption_shingle))])
    return np.asarray(m.hashvalues, dtype=np.uint64)


# ---- the record that travels through the shuffle ---------------------------------------------------

@dataclass(frozen=True)
class DedupRecord:
    """What dedup needs of a sample: small and picklable (no image bytes)."""

    key: str
    article_id: str
    version: int
    license_code: str
    pixels: int                    # orig_width * orig_height
    exact: str
    perceptual: int                # 128-bit pHash‖dHash
    caption_tokens: tuple[str, ...] = ()
    group: str = ""                # samples of one group (a figure and its panels) are never duplicates
    label: str = ""                # a panel's caption label
    box: tuple[float, ...] = ()    # a panel's box [x1, y1, x2, y2] in its figure's stored image
    width: int = 0                 # stored image size (a figure's, to place its panels' boxes)
    height: int = 0
    bands: tuple[int, ...] = ()    # ``caption_bands``, where the sample was staged (empty: computed here)

    def shingles(self, options: DedupOptions) -> set[str]:
        return shingles(self.caption_tokens, options.caption_shingle)


def make_record(key: str, image: bytes | Image.Image | ImageHashes, caption: str, article_id: str,
                version: int = 1, license_code: str = "unknown", pixels: int | None = None,
                group: str = "", **panel: Any) -> DedupRecord:
    """Hash one sample. ``pixels`` defaults to the decoded image's size; ``panel`` takes the
    record's ``label``, ``box``, ``width`` and ``height``."""
    if isinstance(image, ImageHashes):
        hashes, px = image, pixels or 0
    else:
        img = _decode(image)
        hashes = _hashes(img)
        px = pixels if pixels is not None else img.width * img.height
        panel.setdefault("width", img.width)
        panel.setdefault("height", img.height)
    panel["box"] = tuple(panel.get("box") or ())
    panel["label"] = panel.get("label") or ""
    return DedupRecord(key, article_id, int(version), license_code, int(px), hashes.exact, hashes.perceptual,
                       tuple(caption_tokens(caption)), group, **panel)


# ---- map: bucket keys -----------------------------------------------------------------------------

@lru_cache(maxsize=8)
def band_positions(bands: int, band_bits: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """Bit positions (0 = most significant of 128) of each band: seeded permutations, cycled."""
    rng = np.random.default_rng(seed)
    perm: list[int] = []
    while len(perm) < bands * band_bits:
        perm.extend(int(i) for i in rng.permutation(128))
    return tuple(tuple(sorted(perm[b * band_bits:(b + 1) * band_bits])) for b in range(bands))


def image_band_values(perceptual: int, options: DedupOptions) -> list[int]:
    out = []
    for pos in band_positions(options.bands, options.band_bits, options.band_seed):
        v = 0
        for p in pos:
            v = (v << 1) | ((perceptual >> (127 - p)) & 1)
        out.append(v)
    return out


def caption_band_values(signature: np.ndarray, options: DedupOptions) -> list[int]:
    rows = options.caption_num_perm // options.caption_bands
    return [int.from_bytes(hashlib.blake2b(signature[b * rows:(b + 1) * rows].tobytes(), digest_size=8).digest(), "big")
            for b in range(options.caption_bands)]


def caption_bands(tokens: Sequence[str], options: DedupOptions) -> tuple[int, ...]:
    """The caption's MinHash band values (band ``b`` is position ``b``); () for short captions. The
    workers that stage a sample compute them (``assemble.add_caption_bands``): the MinHash is the
    costliest part of bucketing, and the driver would otherwise compute it for every caption."""
    signature = caption_minhash(tokens, options)
    return () if signature is None else tuple(caption_band_values(signature, options))


def bucket_keys(record: DedupRecord, options: DedupOptions = DedupOptions()) -> list[str]:
    """Map phase: the shuffle keys of one record (``x:`` exact, ``i<band>:`` image, ``c<band>:`` caption)."""
    keys: list[str] = []
    if "exact" in options.kinds:
        keys.append(f"x:{record.exact}")
    if "image" in options.kinds:
        keys.extend(f"i{b}:{v:x}" for b, v in enumerate(image_band_values(record.perceptual, options)))
    if "caption" in options.kinds:
        keys.extend(f"c{b}:{v:x}" for b, v in enumerate(record.bands or caption_bands(record.caption_tokens, options)))
    return keys


# ---- reduce: verified pairs in one bucket ----------------------------------------------------------

@dataclass(frozen=True, order=True)
class Pair:
    key_a: str          # key_a < key_b
    key_b: str
    kind: str           # exact | image | caption
    distance: float     # Hamming bits (image), 1 - Jaccard (caption), 0 (exact)


def _ordered(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def candidate_pairs(bucket_key: str, records: Iterable[DedupRecord],
                    options: DedupOptions = DedupOptions()) -> list[Pair]:
    """Reduce phase for one bucket: the pairs whose true distance passes the threshold."""
    recs = sorted({r.key: r for r in records}.values(), key=lambda r: r.key)
    if len(recs) < 2:
        return []
    kind = {"x": "exact", "i": "image", "c": "caption"}[bucket_key[0]]
    if kind == "exact":  # all equal by construction: a star on the smallest key is enough to link them
        return [Pair(recs[0].key, r.key, "exact", 0.0) for r in recs[1:] if r.exact == recs[0].exact]
    if kind == "image":
        return _image_pairs_in_bucket(recs, options)
    shingled: dict[tuple[str, ...], set[str]] = {}  # reprints and versions share captions: shingle each once
    for r in recs:
        if r.caption_tokens not in shingled:
            shingled[r.caption_tokens] = r.shingles(options)
    sh = [shingled[r.caption_tokens] for r in recs]
    out = []
    for i in range(len(recs)):
        for j in range(i + 1, len(recs)):
            jac = 1.0 if sh[i] is sh[j] and sh[i] else jaccard(sh[i], sh[j])
            if jac >= options.caption_jaccard:
                out.append(Pair(recs[i].key, recs[j].key, "caption", round(1.0 - jac, 6)))
    return out


def _split128(values: Sequence[int]) -> np.ndarray:
    return np.array([[(v >> 64) & 0xFFFFFFFFFFFFFFFF, v & 0xFFFFFFFFFFFFFFFF] for v in values], dtype=np.uint64)


def _image_pairs_in_bucket(recs: list[DedupRecord], options: DedupOptions) -> list[Pair]:
    h = _split128([r.perceptual for r in recs])
    out = []
    for i in range(len(recs) - 1):
        d = popcount128(h[i + 1:] ^ h[i])
        for j in np.flatnonzero(d <= options.near_image_distance):
            out.append(Pair(recs[i].key, recs[i + 1 + j].key, "image", float(d[j])))
    return out


_M1, _M2, _M4 = np.uint64(0x5555555555555555), np.uint64(0x3333333333333333), np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


def popcount64(x: np.ndarray) -> np.ndarray:
    """SWAR popcount of a uint64 array (numpy < 2 has no bitwise_count)."""
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return ((x * _H01) >> np.uint64(56)).astype(np.int32)


def popcount128(x: np.ndarray) -> np.ndarray:
    """Popcount of rows of two uint64 words."""
    x = np.atleast_2d(x)
    return popcount64(x[:, 0]) + popcount64(x[:, 1])


def license_rank(code: str, preference: Sequence[str] = LICENSE_PREFERENCE) -> int:
    return preference.index(code) if code in preference else len(preference)


def text_only(options: DedupOptions) -> DedupOptions:
    """The options without the image kind: what the text buckets need beside the vectorized bands."""
    return DedupOptions(**{**_asdict(options), "kinds": tuple(k for k in options.kinds if k != "image")})


def _asdict(options: DedupOptions) -> dict[str, Any]:
    return {f.name: getattr(options, f.name) for f in fields(options)}


# ---- vectorized image bands (one core, millions of hashes) ----------------------------------------

def perceptual_array(values: Sequence[int]) -> np.ndarray:
    """128-bit ints → (n, 2) uint64."""
    return _split128(values) if len(values) else np.zeros((0, 2), dtype=np.uint64)


_BYTE_VALUES = np.arange(256, dtype=np.uint64)
KEY_ROWS = 1 << 20  # rows whose band keys are gathered at once (the bytes taken out of them are this size)
SLICE_ROWS = 1 << 20  # rows a band sorts at once: larger inputs sort by key prefix, a slice at a time


def _byte_tables(positions: Sequence[int]) -> dict[int, np.ndarray]:
    """For each byte of the hash (0 = the most significant) that ``positions`` fall in, the
    256-entry table of what its value gives the band key (the first position its top bit)."""
    tables: dict[int, np.ndarray] = {}
    for t, p in enumerate(positions):
        table = tables.setdefault(p // 8, np.zeros(256, np.uint64))
        table |= ((_BYTE_VALUES >> np.uint64(7 - p % 8)) & np.uint64(1)) << np.uint64(len(positions) - 1 - t)
    return tables


def _band_keys_array(hi: np.ndarray, lo: np.ndarray, positions: Sequence[int]) -> np.ndarray:
    """The band key of every row: one table lookup per byte its bits fall in, not a shift per bit.
    The bytes are taken out ``KEY_ROWS`` rows at a time, so the task holds no byte copy of the hashes."""
    tables = _byte_tables(positions)
    keys = np.zeros(len(hi), dtype=np.uint64)
    for start in range(0, len(hi), KEY_ROWS):
        part = keys[start:start + KEY_ROWS]
        for c, table in tables.items():
            word = (hi if c < 8 else lo)[start:start + KEY_ROWS]
            part |= table[(word >> np.uint64(56 - 8 * (c % 8))).astype(np.uint8)]
    return keys


def _sorted_keys(keys: np.ndarray, key_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The keys sorted, and the order that sorts them (equal keys in index order, as a stable
    argsort). Key and index packed into one uint64 sort several times faster than the argsort
    (numpy's vectorized sort); when they do not fit in 64 bits, the argsort."""
    index_bits = max(1, (len(keys) - 1).bit_length())
    if key_bits + index_bits > 64:
        order = np.argsort(keys, kind="stable")
        return keys[order], order
    keys <<= np.uint64(index_bits)  # in place: the keys are this function's to reuse
    keys |= np.arange(len(keys), dtype=np.uint64)
    keys.sort()
    order = (keys & np.uint64((1 << index_bits) - 1)).astype(np.int64)
    keys >>= np.uint64(index_bits)
    return keys, order


def _key_slices(keys: np.ndarray, key_bits: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``_sorted_keys`` of a band a slice at a time: the rows whose keys start with the same bits,
    about ``SLICE_ROWS`` each. Equal keys fall in one slice, in index order, so the slices pair
    what one sort pairs, and what a band task holds beyond the hashes and keys is one slice's.
    The keys are the caller's band's, reused in place when they make one slice."""
    prefix_bits = min(key_bits, 16, (-(-len(keys) // SLICE_ROWS) - 1).bit_length())
    if not prefix_bits:
        yield _sorted_keys(keys, key_bits)
        return
    prefix = (keys >> np.uint64(key_bits - prefix_bits)).astype(np.uint16)
    for p in range(1 << prefix_bits):
        rows = np.flatnonzero(prefix == p)
        if rows.size:
            ks, order = _sorted_keys(keys[rows], key_bits)
            yield ks, rows[order]


def _band_pairs(ks: np.ndarray, order: np.ndarray, hi: np.ndarray, lo: np.ndarray,
                limit: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(i, j, distance) of the rows within ``limit`` that share a key of one band, from its sorted
    keys: each row against the next ``off`` rows of its run of equal keys. The hashes are put in
    key order first, so the checks read them in sequence rather than at random."""
    hs, ls = hi[order], lo[order]
    off = 1
    cand = np.flatnonzero(ks[:-1] == ks[1:])
    while cand.size:
        d = popcount64(hs[cand] ^ hs[cand + off]) + popcount64(ls[cand] ^ ls[cand + off])
        ok = cand[d <= limit]
        if ok.size:
            a, b = order[ok], order[ok + off]
            yield np.minimum(a, b), np.maximum(a, b), d[d <= limit]
        off += 1
        cand = cand[cand + off < len(ks)]
        cand = cand[ks[cand] == ks[cand + off]]


def near_pairs_array(h: np.ndarray, options: DedupOptions = DedupOptions(),
                     bands: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (i, j, distance), i < j, of rows of ``h`` ((n, 2) uint64) that share a band (of ``bands``,
    by index; default all) and lie within ``near_image_distance``."""
    return near_pairs_columns(np.ascontiguousarray(h[:, 0]), np.ascontiguousarray(h[:, 1]), options, bands)


def near_pairs_columns(hi: np.ndarray, lo: np.ndarray, options: DedupOptions = DedupOptions(),
                       bands: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``near_pairs_array`` over the hashes' two halves as contiguous uint64 columns: sort per band,
    pair up equal runs, verify by popcount. A near copy shares most bands, so the pairs are made
    unique after each band: what is held is the distinct pairs, not one entry per band that finds them."""
    n = len(hi)
    ids, dists = np.zeros(0, np.int64), np.zeros(0, np.int32)  # pair id i * n + j, and its distance
    every = band_positions(options.bands, options.band_bits, options.band_seed)
    for positions in (every if bands is None else [every[b] for b in bands]):
        band_ids, band_dists = [ids], [dists]
        for ks, order in _key_slices(_band_keys_array(hi, lo, positions), options.band_bits):
            for i, j, d in _band_pairs(ks, order, hi, lo, options.near_image_distance):
                band_ids.append(i * n + j)
                band_dists.append(d)
        ids, first = np.unique(np.concatenate(band_ids), return_index=True)
        dists = np.concatenate(band_dists)[first]
    return ids // n, ids % n, dists


def image_pairs_numpy(keys: Sequence[str], perceptual: Sequence[int],
                      options: DedupOptions = DedupOptions()) -> list[Pair]:
    i, j, d = near_pairs_array(perceptual_array(perceptual), options)
    return [Pair(*_ordered(keys[a], keys[b]), "image", float(dist)) for a, b, dist in zip(i, j, d)]
