"""Write a SYNTHETIC UMLS release (MRCONSO/MRSTY/MRDEF.RRF) of realistic shape, to measure build cost.

Nothing here is UMLS content: names are random combinations of words drawn (Zipf-like) from a lexicon:
the distinct words of the open ontologies' labels in shared/data when present (so the char-3-gram
statistics that drive TF-IDF/HNSW cost are those of real biomedical words), else generated pseudo-words.
The shape follows a recent full release (~16M MRCONSO rows for ~3.3M CUIs, ~4.8 names per concept,
~70% English, ~6% suppressible, 1-2 semantic types per concept, definitions for ~10% of concepts,
names of 1-6 words, synonyms sharing most words with the preferred name).

    python bench/synthetic_rrf.py OUT_DIR --rows 1000000
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

SABS = ["SNOMEDCT_US", "MSH", "NCI", "MDR", "LNC", "RXNORM", "MEDCIN", "ICD10CM", "CHV", "HPO", "MTH", "OMIM"]
LANGS = ["ENG"] * 7 + ["SPA", "FRE", "GER"]
TUIS = ["T047", "T033", "T023", "T060", "T061", "T121", "T109", "T116", "T191", "T184", "T037", "T074",
        "T029", "T170", "T080", "T082", "T201", "T046", "T019", "T005"]
SYLLABLES = ["ar", "ter", "io", "neo", "plas", "ma", "car", "di", "hep", "at", "ren", "al", "pul", "mo", "na",
             "ry", "os", "te", "my", "el", "itis", "oma", "ec", "to", "my", "gas", "tro", "en", "cep", "ha", "lo",
             "path", "y", "sis", "lym", "pho", "cyt", "derm", "oid", "vas", "cu", "lar", "spin", "thor", "ax"]


def lexicon(rng: random.Random, n: int = 60_000) -> list[str]:
    """Real biomedical words (HPO, DO labels and synonyms) when the shared data is there, else pseudo-words."""
    import gzip
    import os
    import re

    data = Path(os.environ.get("MEDCORPUS_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")) / "data"
    words: set[str] = set()
    for rel in ("umls/open_vocab/hpo/hp_2025-01-16.obo.gz", "umls/open_vocab/doid/doid-2018-07-05.json.gz"):
        p = data / rel
        if p.is_file():
            text = gzip.open(p, "rt", errors="replace").read()
            for line in re.findall(r'(?:name: |synonym: "|"lbl" : "|"val" : ")([^"\n]+)', text):
                words.update(w for w in re.findall(r"[a-z][a-z-]+", line.lower()) if len(w) > 2)
    if len(words) > 5000:
        out = sorted(words)
        rng.shuffle(out)
        return out
    return ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(n)]


def zipf_word(rng: random.Random, words: list[str]) -> str:
    return words[min(len(words) - 1, int(rng.paretovariate(1.1)) - 1)] if rng.random() < 0.5 else rng.choice(words)


def write_release(out: Path, rows: int, seed: int = 13) -> dict[str, int]:
    rng = random.Random(seed)
    words = lexicon(rng)
    out.mkdir(parents=True, exist_ok=True)
    n_rows = n_cui = 0
    aui = 1
    with open(out / "MRCONSO.RRF", "w") as conso, open(out / "MRSTY.RRF", "w") as sty, \
            open(out / "MRDEF.RRF", "w") as mrdef:
        while n_rows < rows:
            n_cui += 1
            cui = f"C{n_cui:07d}"
            base = [zipf_word(rng, words) for _ in range(rng.choice([1, 2, 2, 3, 3, 3, 4, 5, 6]))]
            k = max(1, min(int(rng.expovariate(1 / 4.8)) + 1, 40))
            for j in range(k):
                name_words = list(base)
                if j:
                    op = rng.random()
                    if op < 0.4:
                        name_words.append(zipf_word(rng, words))
                    elif op < 0.6 and len(name_words) > 1:
                        rng.shuffle(name_words)
                    elif op < 0.8:
                        name_words[rng.randrange(len(name_words))] = zipf_word(rng, words)
                name = " ".join(name_words).capitalize() if rng.random() < 0.5 else " ".join(name_words)
                lat = "ENG" if j == 0 else rng.choice(LANGS)
                pref = "P" if j == 0 else "S"
                stt = "PF" if j == 0 or rng.random() < 0.6 else "VO"
                ispref = "Y" if j == 0 or rng.random() < 0.5 else "N"
                sab = rng.choice(SABS)
                supp = "N" if rng.random() > 0.06 else rng.choice("OEY")
                conso.write(f"{cui}|{lat}|{pref}|L{aui:07d}|{stt}|S{aui:07d}|{ispref}|A{aui:08d}||{aui}||{sab}|"
                            f"PT|{aui}|{name}|0|{supp}|256|\n")
                aui += 1
                n_rows += 1
            for tui in rng.sample(TUIS, 1 if rng.random() < 0.8 else 2):
                sty.write(f"{cui}|{tui}|A1.2.3|Synthetic type|AT{n_cui:08d}|256|\n")
            if rng.random() < 0.1:
                mrdef.write(f"{cui}|A{aui - 1:08d}|AT{n_cui:08d}||MSH|{' '.join(rng.choices(words, k=15))}.|N||\n")
    return {"mrconso_rows": n_rows, "cuis": n_cui}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    print(write_release(args.out, args.rows, args.seed))


if __name__ == "__main__":
    main()
