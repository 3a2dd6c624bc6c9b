"""UMLS Semantic Network: the type tree (TUI -> name, parent) and the semantic groups (TUI -> ANAT, DISO ...).

Both tables ship with the code (``transforms/data/``, sources in its README) because every vocabulary build
and every linked concept needs them, and they are free of the UMLS licence.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

DATA_DIR = Path(__file__).resolve().parent / "data"
TREE_FILE = DATA_DIR / "semantic_type_tree.tsv"
GROUPS_FILE = DATA_DIR / "semgroups.txt"

# When a concept has types in several groups, the first group in this order names it: the specific
# clinical groups first, the catch-all CONC (qualifiers, spatial words) last.
GROUP_PRIORITY: tuple[str, ...] = (
    "DISO", "ANAT", "PROC", "CHEM", "DEVI", "GENE", "PHYS", "PHEN", "LIVB",
    "ACTI", "OBJC", "OCCU", "ORGA", "GEOG", "CONC",
)


@dataclass(frozen=True)
class SemanticType:
    tui: str
    name: str
    depth: int
    parent: str | None
    group: str
    group_name: str


class SemanticNetwork:
    """Lookup over the semantic types: names, groups, subtrees; expands user filters like ``DISO`` or ``T047``."""

    def __init__(self, types: dict[str, SemanticType]) -> None:
        self.types = types
        self.group_names = {t.group: t.group_name for t in types.values()}

    def group_of(self, tui: str) -> str | None:
        t = self.types.get(tui)
        return t.group if t else None

    def name_of(self, tui: str) -> str | None:
        t = self.types.get(tui)
        return t.name if t else None

    def descendants(self, tui: str) -> set[str]:
        """The TUI and every type below it in the tree (``T023`` has none; ``T017`` has all anatomy)."""
        out = {tui}
        changed = True
        while changed:
            changed = False
            for t in self.types.values():
                if t.parent in out and t.tui not in out:
                    out.add(t.tui)
                    changed = True
        return out

    def expand(self, selectors: Iterable[str]) -> set[str]:
        """Turn TUIs and/or group codes into the set of TUIs they select (a TUI selects its subtree)."""
        out: set[str] = set()
        for sel in selectors:
            s = sel.strip().upper()
            if not s:
                continue
            if s in self.group_names:
                out |= {t.tui for t in self.types.values() if t.group == s}
            elif s in self.types:
                out |= self.descendants(s)
            else:
                raise ValueError(f"unknown semantic type or group: {sel!r}")
        return out

    def primary_group(self, tuis: Iterable[str]) -> str | None:
        """One group for a concept with several types, by ``GROUP_PRIORITY``."""
        groups = {self.group_of(t) for t in tuis} - {None}
        for g in GROUP_PRIORITY:
            if g in groups:
                return g
        return None


def _read_groups(path: Path) -> dict[str, tuple[str, str, str]]:
    out: dict[str, tuple[str, str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        group, group_name, tui, name = line.split("|")
        out[tui] = (group, group_name, name)
    return out


def _read_tree(path: Path) -> list[tuple[str, str, int]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        name, tui, depth = line.split("\t")
        rows.append((tui, name.strip(), int(depth)))
    return rows


@lru_cache(maxsize=4)
def load_semantic_network(tree_path: Path = TREE_FILE, groups_path: Path = GROUPS_FILE) -> SemanticNetwork:
    """Parse the tree (indentation order gives parents) and join the groups; cached per process."""
    groups = _read_groups(groups_path)
    types: dict[str, SemanticType] = {}
    stack: list[tuple[int, str]] = []
    for tui, name, depth in _read_tree(tree_path):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack and stack[-1][1].startswith("T") else None
        stack.append((depth, tui))
        if tui not in groups:
            continue  # the tree's synthetic root "UnknownType"
        group, group_name, group_type_name = groups[tui]
        types[tui] = SemanticType(tui, group_type_name, depth, parent, group, group_name)
    return SemanticNetwork(types)
