"""A medical lexicon from the open vocabularies in ``shared/data/umls/open_vocab`` (no UMLS licence).

Why: the faithfulness gate must recognise medical concepts in generated text and accept a source
that names the same concept differently (bleeding/hemorrhage, TB/tuberculosis, renal/kidney).
The lexicon maps every label and synonym of HPO, Disease Ontology, MONDO, Uberon and the Symptom
Ontology to concept keys (ontology ids plus the UMLS CUIs they cross-reference, so two ontologies
naming one CUI agree), mines word-level synonyms from label/synonym pairs that differ in one word
("Gingival bleeding" / "Gingival hemorrhage"), and adds common clinical abbreviations.

The files are read with ``vocab_ontology``'s parsers, the concept linker's, so both see the same
terms, synonyms and CUIs; this module only chooses what the lexicon keeps (names and EXACT
synonyms, no HPO qualifier subtrees) and pickles the result under ``cache_root()``.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

from medcorpus.files import atomic_write, cache_root
from medcorpus.transforms.vocab_ontology import (OntologyTerm, parse_obo, parse_obograph_json, parse_sssom,
                                                 umls_cuis)

__all__ = ["Lexicon", "ConceptMatch", "tokenize", "norm_word", "load_lexicon", "default_vocab_dir",
           "ABBREVIATIONS"]

_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9'’\-]*[A-Za-z0-9]|[A-Za-z]|\d+(?:[.,]\d+)?")

# Clinical and imaging abbreviations too common to be defined in a caption; expansion in lower case.
ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "tb": ("tuberculosis",), "mi": ("myocardial infarction",), "ct": ("computed tomography",),
    "mri": ("magnetic resonance imaging",), "mr": ("magnetic resonance",), "pet": ("positron emission tomography",),
    "us": ("ultrasound",), "usg": ("ultrasonography",), "cxr": ("chest radiograph",), "ecg": ("electrocardiogram",),
    "ekg": ("electrocardiogram",), "eeg": ("electroencephalogram",), "oct": ("optical coherence tomography",),
    "he": ("hematoxylin and eosin",), "h&e": ("hematoxylin and eosin",), "ihc": ("immunohistochemistry",),
    "cta": ("computed tomography angiography",), "mra": ("magnetic resonance angiography",),
    "dwi": ("diffusion weighted imaging",), "adc": ("apparent diffusion coefficient",),
    "flair": ("fluid attenuated inversion recovery",), "copd": ("chronic obstructive pulmonary disease",),
    "hcc": ("hepatocellular carcinoma",), "rcc": ("renal cell carcinoma",), "nsclc": ("non-small cell lung cancer",),
    "dvt": ("deep vein thrombosis",), "pe": ("pulmonary embolism",), "chf": ("congestive heart failure",),
    "cad": ("coronary artery disease",), "afib": ("atrial fibrillation",), "af": ("atrial fibrillation",),
    "ich": ("intracerebral hemorrhage",), "sah": ("subarachnoid hemorrhage",), "tia": ("transient ischemic attack",),
    "ms": ("multiple sclerosis",), "als": ("amyotrophic lateral sclerosis",), "hiv": ("human immunodeficiency virus",),
    "uti": ("urinary tract infection",), "gi": ("gastrointestinal",), "cns": ("central nervous system",),
    "csf": ("cerebrospinal fluid",), "lv": ("left ventricle",), "rv": ("right ventricle",), "la": ("left atrium",),
    "ra": ("right atrium",), "ivc": ("inferior vena cava",), "svc": ("superior vena cava",),
    "lad": ("left anterior descending artery",), "rca": ("right coronary artery",), "ap": ("anteroposterior",),
    "pa": ("posteroanterior",), "ards": ("acute respiratory distress syndrome",), "ca": ("cancer", "carcinoma"),
    "fna": ("fine needle aspiration",), "em": ("electron microscopy",), "tem": ("transmission electron microscopy",),
    "sem": ("scanning electron microscopy",), "cbct": ("cone beam computed tomography",),
}

# Words too generic to be a claim on their own even though some vocabulary lists them as a term.
GENERIC = frozenset("""
a an the of in on at to and or with without by for from as is are was were be been this that these those
abnormal abnormality abnormalities increased decreased large small normal image images figure figures panel
view scan shows showing show shown demonstrating demonstrates revealed reveals arrow arrows area region
left right upper lower anterior posterior medial lateral side level part structure body tissue cell cells
organ entire whole portion sample section finding findings sign signs type feature change changes mass
lesion lesions disease disorder syndrome condition process stage grade phenotype multiple single
""".split())


def norm_word(word: str) -> str:
    """Lower case, British → American spelling, plural → singular: one key per word form."""
    w = word.lower().replace("’", "'").strip("'-")
    if len(w) > 4:
        w = w.replace("haem", "hem").replace("oedem", "edem").replace("aemi", "emi").replace("oesoph", "esoph")
        w = re.sub(r"(?<=[a-z]{3})our(s?)$", r"or\1", w)  # tumour -> tumor (not "four", "pour")
    if len(w) > 4 and not w.endswith(("ss", "us", "is", "ous", "sis")):
        if w.endswith("ies"):
            w = w[:-3] + "y"
        elif w.endswith(("stases", "oses", "yses", "eses")) and len(w) > 6:
            w = w[:-2] + "is"  # metastases -> metastasis, stenoses -> stenosis, analyses -> analysis
        elif w.endswith("s"):
            w = w[:-1]
    return w


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """(normalized word, start, end) for every word or number of ``text``."""
    return [(norm_word(m.group(0)), m.start(), m.end()) for m in _TOKEN.finditer(text)]


@dataclass(frozen=True)
class ConceptMatch:
    """One vocabulary term found in a text: its words, their character span and concept keys."""
    words: tuple[str, ...]
    start: int
    end: int
    keys: frozenset[str]
    kind: str  # disease | phenotype | anatomy | symptom | abbreviation


@dataclass
class Lexicon:
    terms: dict[tuple[str, ...], set[str]] = field(default_factory=dict)
    kinds: dict[tuple[str, ...], str] = field(default_factory=dict)
    word_syn: dict[str, str] = field(default_factory=dict)  # word -> canonical word of its synonym set
    max_len: int = 1

    def canon(self, word: str) -> str:
        return self.word_syn.get(word, word)

    def add(self, label: str, keys: Iterable[str], kind: str) -> None:
        words = tuple(w for w, _, _ in tokenize(label))
        if not words or len(words) > 8 or all(w in GENERIC or w.isdigit() for w in words):
            return
        if len(words) == 1 and len(words[0]) < 3:
            return
        self.terms.setdefault(words, set()).update(keys)
        self.kinds.setdefault(words, kind)
        self.max_len = max(self.max_len, len(words))

    def canonical_terms(self) -> dict[tuple[str, ...], set[str]]:
        """Terms with every word replaced by its synonym set's canonical word."""
        out: dict[tuple[str, ...], set[str]] = {}
        for words, keys in self.terms.items():
            out.setdefault(tuple(self.canon(w) for w in words), set()).update(keys)
        return out

    def find(self, text: str) -> list[ConceptMatch]:
        """Longest-first, non-overlapping matches of vocabulary terms in ``text``."""
        toks = tokenize(text)
        index = _canonical_index(self)
        words = [self.canon(w) for w, _, _ in toks]
        out, i = [], 0
        while i < len(toks):
            for n in range(min(self.max_len, len(toks) - i), 0, -1):
                key = tuple(words[i:i + n])
                hit = index.get(key)
                if hit:
                    keys, _ = hit
                    out.append(ConceptMatch(key, toks[i][1], toks[i + n - 1][2], frozenset(keys), kind_of(keys)))
                    i += n
                    break
            else:
                i += 1
        return out


def kind_of(keys: Iterable[str]) -> str:
    """disease > phenotype > symptom > anatomy > abbreviation, from the ontologies naming the concept."""
    prefixes = {k.split(":")[0].split("_")[0] for k in keys}
    for prefix, kind in (("DOID", "disease"), ("MONDO", "disease"), ("HP", "phenotype"), ("SYMP", "symptom"),
                         ("UBERON", "anatomy")):
        if prefix in prefixes:
            return kind
    return "abbreviation" if "abbr" in prefixes else "concept"


_INDEX_CACHE: dict[int, dict[tuple[str, ...], tuple[set[str], str]]] = {}


def _canonical_index(lex: Lexicon) -> dict[tuple[str, ...], tuple[set[str], str]]:
    idx = _INDEX_CACHE.get(id(lex))
    if idx is None:
        idx = {}
        for words, keys in lex.terms.items():
            cw = tuple(lex.canon(w) for w in words)
            prev = idx.get(cw)
            idx[cw] = (set(keys) | (prev[0] if prev else set()), prev[1] if prev else lex.kinds[words])
        _INDEX_CACHE[id(lex)] = idx
    return idx


# --- readers of the open vocabularies: vocab_ontology's parsers (one loader), lexicon entries out ------

# HPO subtrees that are qualifiers, not findings: clinical modifier, frequency, inheritance, course.
_EXCLUDED_ROOTS = {"HP:0012823", "HP:0040279", "HP:0000005", "HP:0031797", "HP:0032443"}


def _entry(term: OntologyTerm) -> tuple[str, list[str], set[str]]:
    """(id, [name, exact synonyms...], UMLS CUIs): what the lexicon takes of a term."""
    names = [term.name] + [text for text, scope in term.synonyms if scope == "EXACT"]
    return term.id, names, set(umls_cuis(term.xrefs))


def read_obo(path: Path) -> Iterator[tuple[str, list[str], set[str]]]:
    """Lexicon entries of the non-obsolete [Term]s outside the excluded qualifier subtrees."""
    terms = [t for t in parse_obo(path) if t.id and t.name and not t.obsolete]
    parents = {t.id: t.parents for t in terms}

    def excluded(tid: str, depth: int = 0) -> bool:
        if tid in _EXCLUDED_ROOTS:
            return True
        return depth < 40 and any(excluded(p, depth + 1) for p in parents.get(tid, ()))

    for t in terms:
        if not excluded(t.id):
            yield _entry(t)


def read_obographs(path: Path) -> Iterator[tuple[str, list[str], set[str]]]:
    for t in parse_obograph_json(path, untyped=False):
        if t.name and not t.obsolete:
            yield _entry(t)


def read_sssom_labels(path: Path) -> Iterator[tuple[str, list[str], set[str]]]:
    for t in parse_sssom(path):
        if t.name:
            yield _entry(t)


# (relative path, reader, kind)
SOURCES = [
    ("hpo/hp_2025-01-16.obo.gz", read_obo, "phenotype"),
    ("doid/doid-2018-07-05.json.gz", read_obographs, "disease"),
    ("mondo/mondo_exactmatch_umls.sssom.tsv.gz", read_sssom_labels, "disease"),
    ("uberon/efo-slim.obo", read_obo, "anatomy"),
    ("symp/symp.obo", read_obo, "symptom"),
]


# Words whose "synonyms" in name pairs are really a different claim (acute/chronic, with/without,
# fetal/maternal, anterior/lateral, malignant/immature): never merged with anything.
_NO_MERGE = GENERIC | frozenset("""
with without not no acute chronic fetal maternal antepartum postpartum prenatal postnatal immature mature
malignant benign frontal height length volume width depth cholesterol concentration level lymphocyte complex
nucleus slow under early late premature delayed central median midline disc disk nerve dorsum margin ridge
bridge root count number use exposure compression wedge flexion joint hinge absent missing aplastic absence
canal septal color pigmentation future presumptive cutaneous subcutaneous skin appendicular extremity limb
apical periapical interventricular ventricular system tract development milestone maturation ossification
elevated raised ankle tarsal mch mchc acidemia aciduria glomerulonephritis nephropathy fusion high low
hypo hyper total partial complete primary secondary congenital acquired proximal distal terminal inner outer
external internal superior inferior dorsal ventral horizontal transverse vertical
""".split())


def _mine_word_synonyms(entries: list[list[tuple[str, ...]]], min_support: int = 3,
                        max_set: int = 3) -> dict[str, str]:
    """Word pairs that are the only difference between two names of one concept, seen ≥ min_support times."""
    pairs: Counter[tuple[str, str]] = Counter()
    for names in entries:
        seen = set()
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if len(a) != len(b) or len(a) < 2:
                    continue
                diff = [(x, y) for x, y in zip(a, b) if x != y]
                if len(diff) == 1:
                    x, y = sorted(diff[0])
                    if x not in _NO_MERGE and y not in _NO_MERGE and not x.isdigit() and not y.isdigit() \
                            and len(x) > 2 and len(y) > 2:
                        seen.add((x, y))
        pairs.update(seen)
    parent: dict[str, str] = {}

    def find(w: str) -> str:
        while parent.get(w, w) != w:
            w = parent[w]
        return w

    for (x, y), n in pairs.items():
        if n >= min_support:
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[max(rx, ry)] = min(rx, ry)
    groups: dict[str, list[str]] = defaultdict(list)
    for w in list(parent):
        groups[find(w)].append(w)
    out = {}
    for root, members in groups.items():
        members = set(members) | {root}
        if len(members) <= max_set:  # big clusters are chains of loose pairs, not synonyms
            canon = min(members)
            out.update({m: canon for m in members})
    return out


_EXTRA_WORD_SYNONYMS = [("bleeding", "hemorrhage", "haemorrhage"), ("tumor", "neoplasm"), ("renal", "kidney"),
                        ("hepatic", "liver"), ("pulmonary", "lung"), ("cardiac", "heart"), ("cerebral", "brain"),
                        ("gastric", "stomach"), ("biliary", "bile"), ("radiograph", "x-ray", "radiography"),
                        ("enlarged", "enlargement"),
                        ("ultrasound", "ultrasonography", "sonography", "sonographic", "ultrasonographic")]


def default_vocab_dir() -> Path:
    env = os.environ.get("MEDCORPUS_VOCAB_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    shared = Path(os.environ.get("MEDCORPUS_SHARED", repo.parent / "shared"))
    return shared / "data" / "umls" / "open_vocab"


def build_lexicon(vocab_dir: Path) -> Lexicon:
    lex = Lexicon()
    name_sets: list[list[tuple[str, ...]]] = []
    for rel, reader, kind in SOURCES:
        path = vocab_dir / rel
        if not path.exists():
            continue
        for tid, names, cuis in reader(path):
            keys = {tid, *cuis}
            for name in names:
                lex.add(name, keys, kind)
            if len(names) > 1:
                name_sets.append([tuple(w for w, _, _ in tokenize(n)) for n in names])
    word_syn = _mine_word_synonyms(name_sets)
    for group in _EXTRA_WORD_SYNONYMS:
        normed = [norm_word(w) for w in group]
        canon = min(word_syn.get(w, w) for w in normed)
        for w in normed:
            old = word_syn.get(w)
            if old and old != canon:
                for k, v in list(word_syn.items()):
                    if v == old:
                        word_syn[k] = canon
            word_syn[w] = canon
    lex.word_syn = word_syn
    for short, longs in ABBREVIATIONS.items():
        for long in longs:
            keys = set(lex.terms.get(tuple(w for w, _, _ in tokenize(long)), set())) | {"abbr:" + long}
            lex.terms.setdefault(tuple(w for w, _, _ in tokenize(long)), set()).update(keys)
            lex.kinds.setdefault(tuple(w for w, _, _ in tokenize(long)), "abbreviation")
            lex.terms.setdefault((short,), set()).update(keys)
            lex.kinds.setdefault((short,), "abbreviation")
    lex.max_len = max(len(t) for t in lex.terms) if lex.terms else 1
    return lex


def _fingerprint(vocab_dir: Path) -> str:
    h = hashlib.sha256(b"medvocab-v5")
    for rel, _, _ in SOURCES:
        p = vocab_dir / rel
        if p.exists():
            st = p.stat()
            h.update(f"{rel}:{st.st_size}:{int(st.st_mtime)}".encode())
    h.update(repr(sorted(ABBREVIATIONS.items())).encode() + repr(_EXTRA_WORD_SYNONYMS).encode())
    return h.hexdigest()[:16]


@lru_cache(maxsize=4)
def load_lexicon(vocab_dir: str | None = None, cache_dir: str | None = None) -> Lexicon:
    """The lexicon of ``vocab_dir`` (default: the shared open vocabularies), pickled once per content.

    Parsing the vocabularies takes seconds; the pickle in ``cache_dir`` (default: ``cache_root()``,
    ``$MEDCORPUS_CACHE``) makes later loads, in every worker, a fraction of that.
    """
    vdir = Path(vocab_dir) if vocab_dir else default_vocab_dir()
    cdir = Path(cache_dir) if cache_dir else cache_root()
    pkl = cdir / f"lexicon-{_fingerprint(vdir)}.pkl"
    if pkl.exists():
        try:
            with open(pkl, "rb") as fh:
                return pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError):
            pass
    lex = build_lexicon(vdir)
    try:
        atomic_write(pkl, lambda fh: pickle.dump(lex, fh, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError:
        pass
    return lex
