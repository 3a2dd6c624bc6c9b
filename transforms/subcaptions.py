"""Split a compound-figure caption into per-panel subcaptions.

Captions mark panels in several ways: ``(A)``, ``A.``, ``A:``, ``a)``, Nature's bare ``a, b Text``,
ranges ``(a-c)``, groups ``(A and B)``, brackets listing labels with notes ``(A, *100; B, *200)``,
nested ``B1``/``Ai``/``A'`` and labels written after their text (``stained for LDLR (a); ...``).
We find every label-like token, keep the family (bracketed, dotted, bare) and letter case that
forms the longest run a, b, c ... (stray tokens such as ``(N)`` for "normal" do not extend a run),
then cut the caption at the tokens. Text before the
first label is shared by every panel; closing sentences that talk about all panels ("Scale bars
...", "Magnification of all cores ...") are shared too.

Pure and deterministic: only compiled regexes are cached at module level.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator

__all__ = ["Subcaption", "SubcaptionSplit", "split_caption", "label_sort_key"]

_ATOM = r"(?:[A-Z](?:iii|ii|iv|vi{0,3}|i)(?![a-z])|[A-Za-z])(?:\d{1,2})?(?:['’′])?"
_SEP = r"(?:\s*,\s*(?:and\s+)?|\s+(?:and|or|to|through)\s+|\s*[-–—‐−~∼]\s*|\s*[/&]\s*)"
_BGROUP = _ATOM + r"(?:" + _SEP + _ATOM + r")*"
_ROMAN = r"(?:viii|vii|vi|iv|v|ix|x|iii|ii|i)"

# Bracketed: "(A)", "(a-c)", "[B and C]", "((a), (b))", "(b, hematoxylin and eosin, original magnification, *100)".
_RE_PAREN = re.compile(r"[(\[]\s*(?P<g>" + _BGROUP + r")\s*(?:[,;:][^()\[\]]{1,60})?[)\]](?![A-Za-z0-9])")
# A bracket of labels with a note each: "(A, *100; B, *200)", "(A: H&E stain, *100, B: H&E stain, *400)";
# an item starts where a label followed by "," or ":" and a note follows a ";" or ",".
_RE_BRACKET = re.compile(r"[(\[](?P<body>[^()\[\]]{4,200})[)\]]")
_RE_ITEM_CUT = re.compile(r"[;,]\s*(?=(?:and\s+)?" + _ATOM + r"\s*[:,]\s)")
_RE_ITEM = re.compile(r"\s*(?:and\s+)?(?P<g>" + _ATOM + r")\s*[:,]\s*(?P<note>\S.*)", re.S)
# Doubly bracketed groups: "((a), (b))", "((C), (D))".
_RE_DOUBLE = re.compile(r"\(\s*(?P<g>\(" + _ATOM + r"\)(?:" + _SEP + r"\(" + _ATOM + r"\))+)\s*\)")
# Closing bracket only: "a)", "B) and C)".
_RE_CLOSE = re.compile(
    r"(?:^|(?<=[\s.;:,])|(?<=[a-z](?=[A-Z]\))))(?P<g>" + _BGROUP + r")\)(?![a-z0-9])"
)
# Dot/colon at a sentence start: "A. Text", "B and D: Text", "cancer.A. Photographs"; not a letter of a
# dotted abbreviation ("S.E.M.", "U.S.").
_AT_START = r"(?:^|(?<=[.;:)\]])|(?<=[.;:)\]]\s))"  # the caption's start or after a sentence's or bracket's end
_RE_DOT = re.compile(_AT_START + r"(?<!\b[A-Za-z]\.)(?P<g>" + _BGROUP
                     + r")[.:](?=\s|[A-Z(]|$)")
# Named by the word at a sentence start: "Panel A. Text", "Panels B and C: Text", "Panel F shows ...",
# "Row A: ...", "In panel D, ..."; the words are part of the hit, so no panel's text begins with them.
_NAMING = r"(?:[Pp]anels?|PANELS?|[Rr]ows?|[Cc]olumns?)"
_RE_NAMED = re.compile(_AT_START + r"(?:In\s+)?" + _NAMING
                       + r"\s+(?P<g>" + _BGROUP + r")(?![A-Za-z0-9])(?:\s*[.:,](?=\s|[A-Z(]|$))?")
# Bracketed and named: "(Panel C)", "(panels A-C, respectively)".
_RE_PAREN_NAMED = re.compile(r"[(\[]\s*" + _NAMING + r"\s+(?P<g>" + _BGROUP + r")\s*(?:,[^()\[\]]{1,40})?[)\]]")
# Bare at a sentence or list start: "a, b Schematic ...", "c–e SEM images", ": a Gleason grade 2, b ...".
_RE_BARE = re.compile(r"(?:^|(?<=[.;:,]\s)|(?<=[.;:])|(?<=,\sand\s))(?P<g>" + _BGROUP
                      + r")(?:\s+|,\s+)(?=[A-Za-z0-9*(\[\"'])")
# Lower-case roman numerals as top-level labels: "(i) ... (ii) ...".
_RE_ROMAN = re.compile(r"[(\[](?P<g>" + _ROMAN + r"(?:" + _SEP + _ROMAN + r")*)[)\]]")

# Positional panel names, used when a caption has no letters: "Left: CT. Right: MRI.", "(top)".
_POS = r"(?:top|bottom|upper|lower|middle|center|centre|left|right)"
_POSNOUN = r"(?:panels?|images?|figures?|plots?|graphs?|rows?|columns?)"
_POSGROUP = _POS + r"(?:[\s-]+" + _POS + r")?(?:\s+" + _POSNOUN + r")?"
# "Left: CT.", "(top)", and a sentence about one: "The left panel shows ..."
_RE_POSITION = re.compile(
    r"(?:(?:^|(?<=[.;]\s)|(?<=[.;]))(?P<g>" + _POSGROUP + r")\s*[:,.]\s|[(\[](?P<g2>" + _POSGROUP + r")[)\]]"
    r"|(?:^|(?<=[.;]\s))the\s+(?P<g3>" + _POS + r"(?:[\s-]+" + _POS + r")?\s+" + _POSNOUN + r")\b)",
    re.I,
)
_POSITION_WORDS = {"top", "bottom", "left", "right", "center"}
# a bracketed letter after these words names a category, not a panel: "category (a)", "pattern (B)"
# (a genotype is not: "wild type (A-C)"); such a letter still fills a gap in the panels' run
_RE_NAMED_BEFORE = re.compile(r"\b(?:categor(?:y|ies)|groups?|(?<!wild )(?<!wild-)types?|class(?:es)?|patterns?|"
                              r"grades?|lanes?|zones?|clusters?|lineages?|genotypes?|sites?|strains?)\s+$", re.I)
# a first label written after an unpunctuated title ("... time points a. Power ...") or glued to its
# last word ("... autoimmunitya. Prostate", "mannerA, Cell"): found only when its run's "b" is there
_RE_WEAK_FIRST = {"dot": re.compile(r"(?:(?<=\s)|(?<=[a-z]))(?P<g>[aA])\.\s+(?=[A-Z])"),
                  "bare": re.compile(r"(?:(?:^|(?<=\s))(?=[aA]\s)|(?<=[a-z])(?=[aA],\s))(?P<g>[aA])"
                                     r"(?:\s+(?=[A-Z][a-z-]*[A-Z0-9]|[A-Z]{2})|,\s+(?=[A-Z]))")}
# "H&E" (hematoxylin and eosin) is a stain, never the labels H and E
_RE_STAIN = re.compile(r"\bH\s?&\s?E\b")
# labels written with the figure's own number at sentence starts: "1A: ... 1B: ...", "1-A ... 1-B ..."
_RE_NUMBERED = re.compile(r"(?:^|(?<=[.;]\s))(?P<n>\d{1,2}-?)(?=[A-Za-z](?:[.:]\s|\s+[A-Z]))")
_RE_ATOM = re.compile(_ATOM)
_RE_RANGE_SEP = re.compile(r"^\s*(?:[-–—‐−~∼]|to|through)\s*$")
_RE_SEP_SPLIT = re.compile(r"(" + _SEP + r")")
_RE_SENT_START = re.compile(r"(?:^|[.;!?]\s*|[.;!?]\)\s*)$")
_RE_WS = re.compile(r"\s+")
# a single letter in brackets or before a colon or dot: a panel label, or a key to one image's parts
_RE_SINGLE_MARK = re.compile(r"[(\[]\s*([A-Za-z])\s*[)\]]|(?:^|(?<=[\s;,.]))([A-Za-z])\s*[:.](?=\s)")
_RE_CLOSING = re.compile(r"([)\]])(\.?)$")
_RE_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")
_RE_SHARED_TAIL = re.compile(
    r"^(?:scale\s*bars?|bars?\s*[=:,]|original\s+magnification|magnifications?\b|all\b|in\s+all\b|"
    r"error\s+bars?|data\s+(?:are|were|represent)|values\s+(?:are|were)|\*+\s*p|n\s*=)"
    r"|\b(?:all|each|every|both)\s+(?:of\s+the\s+)?(?:panels?|images?|cores?|figures?|sections?|micrographs?)\b",
    re.I,
)
_RE_LEAD_CONJ = re.compile(r"^[\s,;]*(?:and|or)\s+", re.I)
_PRIME = str.maketrans({"’": "'", "′": "'"})
_FAMILY_PRIORITY = {"paren": 0, "dot": 1, "bare": 2, "roman": 3}


@dataclass(frozen=True)
class Subcaption:
    """One panel label and the caption text that belongs to it alone."""

    label: str
    text: str


@dataclass(frozen=True)
class SubcaptionSplit:
    """A caption cut per panel. ``shared`` text applies to every panel."""

    caption: str
    shared_prefix: str
    shared_suffix: str = ""
    subcaptions: tuple[Subcaption, ...] = field(default_factory=tuple)

    @property
    def shared(self) -> str:
        return _join(self.shared_prefix, self.shared_suffix)

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.subcaptions]

    @property
    def is_compound(self) -> bool:
        return len(self.subcaptions) >= 2

    def own(self, label: str) -> str:
        for s in self.subcaptions:
            if s.label == label:
                return s.text
        return ""

    def text_for(self, label: str | None) -> str:
        """Shared prefix + the panel's own text + shared suffix; the whole caption if unknown."""
        if label is None or label not in self.labels:
            return self.caption.strip()
        return _join(self.shared_prefix, self.own(label), self.shared_suffix)


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    family: str
    upper: bool
    labels: tuple[str, ...]


def label_sort_key(label: str) -> tuple[str, int, str]:
    """Order labels as a reader does: a < b < b1 < b2 < c."""
    m = re.match(r"([a-z])(i{1,3}|iv|vi{0,3})?(\d*)('*)", label)
    if not m:
        return (label, 0, "")
    letter, roman, digits, prime = m.groups()
    romans = {"": 0, "i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6, "vii": 7, "viii": 8}
    return (letter, romans.get(roman or "", 0) * 100 + int(digits or 0), prime)


def _sort_key_for(hits: list[_Hit]):
    if hits and hits[0].family == "position":
        order = {lab: i for i, lab in enumerate(dict.fromkeys(lab for h in hits for lab in h.labels))}
        return lambda lab: (order.get(lab, 99), lab)
    if hits and hits[0].family == "roman":
        return lambda lab: (_ROMANS.index(lab) if lab in _ROMANS else 99, lab)
    return label_sort_key


def _norm_atom(atom: str) -> str:
    return atom.translate(_PRIME).lower()


def _expand_group(group: str) -> tuple[tuple[str, ...], bool] | None:
    """Labels named by one group ("a-c" -> a, b, c); None when atoms mix letter case."""
    parts = _RE_SEP_SPLIT.split(group)
    atoms = [p.strip("() ") for p in parts[0::2]]
    seps = parts[1::2]
    if not atoms or any(not _RE_ATOM.fullmatch(a) for a in atoms):
        return None
    cases = {a[0].isupper() for a in atoms}
    if len(cases) != 1:
        return None
    out: list[str] = [_norm_atom(atoms[0])]
    for sep, atom in zip(seps, atoms[1:]):
        cur = _norm_atom(atom)
        prev = out[-1]
        if _RE_RANGE_SEP.match(sep):
            out.extend(_expand_range(prev, cur)[1:])
        else:
            out.append(cur)
    seen: dict[str, None] = {}
    for lab in out:
        seen.setdefault(lab, None)
    return tuple(seen), cases.pop()


def _expand_range(a: str, b: str) -> list[str]:
    if len(a) == 1 and len(b) == 1 and a <= b and ord(b) - ord(a) <= 25:
        return [chr(c) for c in range(ord(a), ord(b) + 1)]
    ma, mb = re.fullmatch(r"([a-z])(\d+)", a), re.fullmatch(r"([a-z])(\d+)", b)
    if ma and mb and ma.group(1) == mb.group(1) and int(ma.group(2)) <= int(mb.group(2)) <= int(ma.group(2)) + 30:
        return [f"{ma.group(1)}{i}" for i in range(int(ma.group(2)), int(mb.group(2)) + 1)]
    return [a, b]


_ROMANS = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x")
_LETTERS = tuple(chr(c) for c in range(ord("a"), ord("z") + 1))


def _unnumbered(caption: str) -> tuple[str, dict[int, int]]:
    """The caption with a figure number written before every label masked ("1A:" -> ".A:", so the
    letter opens a sentence), when two or more labels carry the same one; and where each masked
    prefix started, by the position after it (the label's hit then covers its number)."""
    found = list(_RE_NUMBERED.finditer(caption))
    numbers = {m.group("n").rstrip("-") for m in found}
    if len(found) < 2 or len(numbers) != 1:
        return caption, {}
    out = list(caption)
    for m in found:
        out[m.start("n"):m.end("n")] = "." * len(m.group("n"))
    return "".join(out), {m.end("n"): m.start("n") for m in found}


def _find_hits(caption: str) -> list[_Hit]:
    hits: list[_Hit] = []
    caption = _RE_STAIN.sub(lambda m: m.group().replace("&", "#"), caption)  # same length: offsets hold
    caption, numbered = _unnumbered(caption)
    for family, regex in (("paren", _RE_PAREN), ("paren", _RE_DOUBLE), ("paren", _RE_CLOSE), ("paren", _RE_PAREN_NAMED),
                          ("dot", _RE_DOT), ("dot", _RE_NAMED), ("bare", _RE_BARE)):
        for m, exp in _expanded_matches(regex, caption):
            labels, upper = exp
            named = family == "paren" and _RE_NAMED_BEFORE.search(caption[max(0, m.start() - 20):m.start()])
            hits.append(_Hit(numbered.get(m.start(), m.start()), m.end(), "named" if named else family, upper,
                             labels))
    hits = _with_bracket_items(caption, hits)
    hits += _weak_first_hits(caption, hits)
    for m in _RE_POSITION.finditer(caption):
        hits.append(_Hit(m.start(), m.end(), "position", False, (_norm_position(m.group("g") or m.group("g2") or m.group("g3")),)))
    for m in _RE_ROMAN.finditer(caption):
        parts = _RE_SEP_SPLIT.split(m.group("g"))
        labels = _expand_roman(parts[0::2], parts[1::2])
        hits.append(_Hit(m.start(), m.end(), "roman", False, labels))
    return hits


def _with_bracket_items(caption: str, hits: list[_Hit]) -> list[_Hit]:
    """A bracket that lists two or more labels of one case, each with its note ("(A, *100; B,
    *200)"), as one hit per item: read as one label, the first item's note swallows the others.
    Not where every label it lists is named elsewhere: there it refers back ("(C-E) ... respectively
    (C, cytokeratin; D, TTF-1; E, N-CAM)"), and the labels' text is the sentence's."""
    for start, end, items in _bracket_items(caption):
        outside = [h for h in hits if not start <= h.start < end]
        named = {lab for h in outside if h.upper == items[0].upper for lab in h.labels}
        if not {h.labels[0] for h in items} <= named:
            hits = outside + items
    return hits


def _bracket_items(caption: str) -> Iterator[tuple[int, int, list[_Hit]]]:
    """(where the bracket starts and ends, a hit per item) of every bracket whose items are all
    labels with notes; the first item's hit starts at the bracket."""
    for m in _RE_BRACKET.finditer(caption):
        body, base = m.group("body"), m.start("body")
        cuts = [0, *(c.end() for c in _RE_ITEM_CUT.finditer(body))]
        found = [_RE_ITEM.match(body, a, b) for a, b in zip(cuts, [*cuts[1:], len(body)])]
        items = [i for i in found if i is not None and not _RE_ATOM.fullmatch(i.group("note").strip(" ,;"))]
        labels = [_norm_atom(i.group("g")) for i in items]
        cases = {i.group("g")[0].isupper() for i in items}
        if len(found) < 2 or len(items) < len(found) or len(cases) != 1 or len(set(labels)) < len(labels):
            continue
        upper = cases.pop()
        starts = [m.start(), *(base + i.start("g") for i in items[1:])]
        yield m.start(), m.end(), [_Hit(at, base + i.end("g") + 1, "paren", upper, (lab,))
                                   for at, i, lab in zip(starts, items, labels)]


def _expanded_matches(regex: re.Pattern, caption: str) -> Iterator[tuple[re.Match, tuple[tuple[str, ...], bool]]]:
    """Matches whose group expands to labels. A match that does not ("N, c" of "Tb.N, c Tb.Sp": two
    cases) is tried again one character later, so the label it swallowed ("c") is still found."""
    pos = 0
    while (m := regex.search(caption, pos)) is not None:
        exp = _expand_group(m.group("g"))
        if exp is None:
            pos = m.start() + 1
            continue
        yield m, exp
        pos = max(m.end(), m.start() + 1)


def _weak_first_hits(caption: str, hits: list[_Hit]) -> list[_Hit]:
    """The "a." or "a " that opens a run of "b." "c." ... but follows no punctuation (an unpunctuated
    title before it); looked for only before the family's first "b"."""
    out = []
    for family, regex in _RE_WEAK_FIRST.items():
        for upper in (True, False):
            group = [h for h in hits if h.family in (family, "paren") and h.upper == upper]
            keys = {lab[0] for h in group for lab in h.labels}
            if "a" in keys or "b" not in keys:
                continue
            first_b = min(h.start for h in group if any(lab[0] == "b" for lab in h.labels))
            for m in regex.finditer(caption, 0, first_b):
                if m.group("g").isupper() == upper:
                    out.append(_Hit(m.start(), m.end(), family, upper, ("a",)))
                    break
    return out


def _expand_roman(atoms: list[str], seps: list[str]) -> tuple[str, ...]:
    out = [atoms[0].strip()]
    for sep, atom in zip(seps, atoms[1:]):
        atom = atom.strip()
        if _RE_RANGE_SEP.match(sep) and out[-1] in _ROMANS and atom in _ROMANS:
            out.extend(_ROMANS[_ROMANS.index(out[-1]) + 1:_ROMANS.index(atom) + 1])
        else:
            out.append(atom)
    return tuple(dict.fromkeys(out))


def _norm_position(text: str) -> str:
    words = [w for w in re.split(r"[\s-]+", text.lower()) if not re.fullmatch(_POSNOUN, w)]
    words = ["top" if w == "upper" else "bottom" if w == "lower" else "center" if w in ("middle", "centre") else w for w in words]
    return "-".join(words)


def _choose_position(hits: list[_Hit]) -> list[_Hit]:
    """Positional labels count when at least two different positions are named."""
    pos = [h for h in hits if h.family == "position"]
    return _dedupe(pos) if len({h.labels for h in pos}) >= 2 else []


def _key(label: str, family: str) -> str:
    return label if family == "roman" else label[0]


def _run(keys: set[str], alphabet: tuple[str, ...]) -> set[str]:
    """Keys of the run starting at the alphabet's first symbol; one missing symbol is tolerated
    when at least two more follow (captions skip "J" to avoid confusing it with "I"), and a missing
    first one when three follow (the first panel described by the title, unlabelled)."""
    run: set[str] = set()
    i = 0
    while i < len(alphabet):
        follow = 2 if run else 3  # symbols that must follow a missing one
        if alphabet[i] in keys:
            run.add(alphabet[i])
            i += 1
        elif i + follow < len(alphabet) and all(a in keys for a in alphabet[i + 1:i + 1 + follow]):
            i += 1
        else:
            break
    return run


def _choose(hits: list[_Hit], caption: str) -> list[_Hit]:
    """Keep the hits of the (family, case) whose labels form the longest a, b, c ... run."""
    best: tuple[tuple, list[_Hit], set[str]] = ((0, False, 0, 0), [], set())
    for family in ("paren", "dot", "bare", "roman"):
        alphabet = _ROMANS if family == "roman" else _LETTERS
        for upper in (True, False):
            group = [h for h in hits if h.family == family and h.upper == upper]
            run = _run({_key(lab, family) for h in group for lab in h.labels}, alphabet)
            # A run of one label is only a panel marker when it is bracketed or dotted.
            if not run or (len(run) < 2 and family in ("bare", "roman")):
                continue
            kept = [h for h in group if all(_key(lab, family) in run for lab in h.labels)]
            # on equal runs, the style that opens sentences introduces the panels; the other refers to them
            leading = sum(_at_sentence_start(caption, h.start) for h in kept) * 2 >= len(kept)
            score = (len(run), leading, -_FAMILY_PRIORITY[family], int(upper))
            if score > best[0]:
                best = (score, kept, run)
    best = _mixed(hits, best)
    kept, run = best[1], set(best[2])
    if kept and kept[0].family in ("paren", "dot"):
        # Bracketed and dotted tokens of the same case may be mixed ("(A) ... B) ... C.");
        # a single-label token of the other family may extend the run by one letter (a bare one
        # only at a sentence start: "..., M stage (D)" names no panel M).
        # So may the next letter in the other case after the last label ("(E) ... (f) Photograph"),
        # and a missing "a" ("Panel A shows ... (B) ... (C)").
        fam, upper = kept[0].family, kept[0].upper
        for h in sorted(hits, key=lambda h: h.start):
            extends = len(h.labels) == 1 and chr(ord(h.labels[0][0]) - 1) in run
            if h.family == fam and h.upper != upper and extends and h.labels[0][0] not in run \
                    and h.start > max(k.start for k in kept):
                kept.append(h)
                run.add(h.labels[0][0])
                continue
            if h.family == "named" and h.upper == upper and _fills_gap(h.labels, run):
                kept.append(h)  # "categories (f) benign epithelium" between (e) and (g)
                run.update(h.labels)
                continue
            if h.family in (fam, "roman", "position", "named") or h.upper != upper or h in kept:
                continue
            letters = {lab[0] for lab in h.labels}
            first = letters == {"a"} and "a" not in run and "b" in run  # "a", missing from the run's style
            extends = (extends or first) and (h.family != "bare" or _at_sentence_start(caption, h.start))
            if (letters <= run and h.family != "bare") or extends:
                kept.append(h)
                run |= letters
    if not kept:
        return _choose_position(hits)
    return _dedupe(sorted(kept, key=lambda h: (h.start, -h.end)))


def _lone_first(caption: str, hits: list[_Hit], labels: set[str]) -> bool:
    """A caption that names panel "a" alone ("(A) Angiography of ...", "Cerebral MRI. A. The axial
    ..."): at a sentence start, with no other single letter marking anything; letters that do are a
    key to one image ("A: anterior tubercle; N: nerve root", "... under diaphragm (A), (L) liver")."""
    if labels != {"a"} or hits[0].family not in ("paren", "dot") or not _at_sentence_start(caption, hits[0].start):
        return False
    return all((m.group(1) or m.group(2)).lower() == "a" for m in _RE_SINGLE_MARK.finditer(caption))


def _fills_gap(labels: tuple[str, ...], run: set[str]) -> bool:
    """Single letters the run has or skips (with run letters on both sides), one at least skipped;
    a missing first "a" counts as skipped ("wile type (A-C), ... (D-F)")."""
    new = [lab for lab in labels if lab not in run]
    return bool(new) and all(len(lab) == 1 for lab in labels) and all(
        min(run) < lab < max(run) or (lab == "a" and min(run) == "b") for lab in new)


def _mixed(hits: list[_Hit], best: tuple) -> tuple:
    """Labels whose style changes midway ("a FT-IR spectra ..., (b) chemical structures"): the
    bracketed, dotted and bare tokens of one case together, in reading order, when they make a
    longer run than any one family does."""
    for upper in (True, False):
        group = sorted((h for h in hits if h.family in ("paren", "dot", "bare") and h.upper == upper),
                       key=lambda h: h.start)
        run = _run({lab[0] for h in group for lab in h.labels}, _LETTERS)
        kept = _dedupe([h for h in group if all(lab[0] in run for lab in h.labels)])
        firsts = [min(label_sort_key(lab) for lab in h.labels) for h in _introducing(kept)]
        in_order = all(a <= b for a, b in zip(firsts, firsts[1:]))
        if len(run) >= 2 and len(run) > best[0][0] and in_order:
            best = ((len(run), False, -9, int(upper)), kept, run)
    return best


def _introducing(hits: list[_Hit]) -> list[_Hit]:
    """The hits, in reading order, that name a label for the first time; a later mention ("as in
    a", "Both d, e are ...") refers back and says nothing about the labels' order."""
    seen: set[str] = set()
    out = []
    for h in hits:
        if any(lab not in seen for lab in h.labels):
            out.append(h)
            seen.update(h.labels)
    return out


def _drop_lone_nested(labels: set[str]) -> set[str]:
    """"B1", "Bv" count as nested labels only beside a sibling ("B1" and "B2"); a lone "G5" or
    "(Bv)" is an abbreviation (grade 5, blood vessel) in a caption whose labels are letters."""
    def nested(lab: str) -> bool:
        return len(lab) > 1 and lab not in _ROMANS and lab[1:] != "'" and "-" not in lab and lab not in _POSITION_WORDS

    def numbered_run(lab: str) -> bool:
        """Nested numbers count from 1 without gaps: B1, B2; not E1, E3 (protein names) or A5, A11
        (equation numbers)."""
        if not lab[1:].isdigit():
            return True
        numbers = sorted(int(o[1:]) for o in labels if o[0] == lab[0] and o[1:].isdigit())
        return numbers == list(range(1, len(numbers) + 1))

    def has_sibling(lab: str) -> bool:
        return any(o != lab and o[0] == lab[0] and nested(o) for o in labels)

    return {lab for lab in labels if not nested(lab) or (has_sibling(lab) and numbered_run(lab))}


def _dedupe(hits: list[_Hit]) -> list[_Hit]:
    """Drop hits overlapping an earlier (longer) one."""
    out: list[_Hit] = []
    for h in hits:
        if out and h.start < out[-1].end:
            continue
        out.append(h)
    return out


def _at_sentence_start(caption: str, pos: int) -> bool:
    before = caption[max(0, pos - 4):pos]
    return pos == 0 or bool(_RE_SENT_START.search(before.rstrip() if before.strip() else ""))


def _clean(text: str) -> str:
    text = _RE_WS.sub(" ", text).strip().strip(" ,;").strip()
    closing = _RE_CLOSING.search(text)  # the end of a bracket whose start the cut left elsewhere
    if closing and not _opened(text[:closing.start()], closing.group(1)):
        text = text[:closing.start()].rstrip(" ,;") + closing.group(2)
    return text if any(ch.isalnum() for ch in text) else ""


def _opened(text: str, closing: str) -> bool:
    """Whether ``text`` leaves a bracket open that ``closing`` would close."""
    opening, depth = "(" if closing == ")" else "[", 0
    for ch in text:
        depth = depth + 1 if ch == opening else max(0, depth - 1) if ch == closing else depth
    return depth > 0


def _join(*parts: str) -> str:
    return " ".join(p for p in (x.strip() for x in parts) if p)


def _split_tail(text: str) -> tuple[str, str]:
    """Split trailing sentences that describe all panels off the last panel's text."""
    sentences = _RE_SENTENCE.split(text)
    for i in range(1, len(sentences)):
        if _RE_SHARED_TAIL.search(sentences[i]):
            return " ".join(sentences[:i]), " ".join(sentences[i:])
    return text, ""


def _is_postfix(caption: str, hits: list[_Hit]) -> bool:
    """Labels written after their text: the first label sits mid-sentence and ends a clause."""
    first = hits[0]
    if _at_sentence_start(caption, first.start) or first.family not in ("paren", "position"):
        return False
    trailing = sum(1 for h in hits if re.match(r"\s*(?:[;,.]|$|and\b|or\b)", caption[h.end:h.end + 5]))
    return trailing >= max(2, (len(hits) + 1) // 2)


def _segments_prefix(caption: str, hits: list[_Hit]) -> tuple[str, dict[str, list[str]], str]:
    primary: list[_Hit] = []
    seen: set[str] = set()
    for h in hits:
        new = any(lab not in seen for lab in h.labels)
        if new or _at_sentence_start(caption, h.start):
            primary.append(h)
            seen.update(h.labels)
    own: dict[str, list[str]] = {}
    for i, h in enumerate(primary):
        end = primary[i + 1].start if i + 1 < len(primary) else len(caption)
        text = caption[h.end:end]
        for lab in h.labels:
            own.setdefault(lab, []).append(text)
    prefix = caption[:primary[0].start]
    suffix = ""
    last = primary[-1]
    tail_text = caption[last.end:]
    body, suffix = _split_tail(tail_text)
    if suffix:
        for lab in last.labels:
            own[lab][-1] = body
    return prefix, own, suffix


def _segments_postfix(caption: str, hits: list[_Hit]) -> tuple[str, dict[str, list[str]], str]:
    """Each label's text is what precedes it, less a joining "and" ("Proliferation (A) and ALP
    activity (B)"); what follows the last label is shared."""
    first = hits[0]
    sent_start = max(caption.rfind(". ", 0, first.start) + 2, caption.rfind(".", 0, first.start) + 1, 0)
    prefix = caption[:sent_start] if sent_start > 1 else ""
    own: dict[str, list[str]] = {}
    prev = sent_start if prefix else 0
    for h in hits:
        text = _RE_LEAD_CONJ.sub("", caption[prev:h.start])
        for lab in h.labels:
            own.setdefault(lab, []).append(text)
        prev = h.end
    return prefix, own, caption[prev:]


def split_caption(caption: str) -> SubcaptionSplit:
    """Cut ``caption`` into shared text and per-label text (labels lower-case, reading order)."""
    caption = caption or ""
    hits = _choose(_find_hits(caption), caption)
    labels = _drop_lone_nested({lab for h in hits for lab in h.labels})
    hits = [h for h in (_Hit(h.start, h.end, h.family, h.upper, tuple(x for x in h.labels if x in labels)) for h in hits) if h.labels]
    if len(labels) < 2 and not _lone_first(caption, hits, labels):
        return SubcaptionSplit(caption=caption, shared_prefix=_clean(caption))
    if _is_postfix(caption, hits):
        prefix, own, suffix = _segments_postfix(caption, hits)
    else:
        prefix, own, suffix = _segments_prefix(caption, hits)
    subs = tuple(
        Subcaption(lab, _clean(" ".join(own.get(lab, []))))
        for lab in sorted(labels, key=_sort_key_for(hits))
    )
    return SubcaptionSplit(caption=caption, shared_prefix=_clean(prefix), shared_suffix=_clean(suffix), subcaptions=subs)
