"""The semantic network tables: every type in exactly one group, subtrees and filters expand correctly."""
from __future__ import annotations

import pytest

from medcorpus.transforms.semantic_types import GROUPS_FILE, TREE_FILE, load_semantic_network


def test_every_tree_type_has_exactly_one_group() -> None:
    tree_tuis = {line.split("\t")[1] for line in TREE_FILE.read_text().splitlines() if line.strip()} - {"UnknownType"}
    group_rows = [line.split("|") for line in GROUPS_FILE.read_text().splitlines() if line.strip()]
    tuis = [r[2] for r in group_rows]
    assert len(tuis) == len(set(tuis)), "a TUI is listed in two groups"
    assert set(tuis) == tree_tuis
    assert len({r[0] for r in group_rows}) == 15


def test_groups_and_subtrees() -> None:
    sn = load_semantic_network()
    assert sn.group_of("T047") == "DISO" and sn.group_of("T023") == "ANAT" and sn.group_of("T060") == "PROC"
    assert sn.types["T023"].parent == "T021"  # Body Part ... is_a Fully Formed Anatomical Structure
    anatomy = sn.descendants("T017")
    assert {"T023", "T024", "T025"} <= anatomy and "T047" not in anatomy
    assert sn.expand(["DISO"]) == {t for t, st in sn.types.items() if st.group == "DISO"}
    assert sn.expand(["T017", "CHEM"]) >= anatomy | {"T121"}
    with pytest.raises(ValueError):
        sn.expand(["NOPE"])


def test_primary_group_prefers_clinical_groups() -> None:
    sn = load_semantic_network()
    assert sn.primary_group(["T080", "T047"]) == "DISO"  # qualitative concept + disease
    assert sn.primary_group(["T082"]) == "CONC"
    assert sn.primary_group([]) is None
