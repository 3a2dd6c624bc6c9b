"""The faithfulness gate on the planted cases (tests/faithful_cases.py), per kind and per split.

Faithful kinds should be accepted, every other kind rejected. The tune split is what the gate's
options were set on; the aside split (a quarter of the source captions) is reported beside it.
Run: ``python bench/faithfulness_eval.py`` (``--json`` for one JSON object).
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from faithful_cases import planted_cases  # noqa: E402

from medcorpus.transforms.faithfulness import check  # noqa: E402


def evaluate() -> dict[str, dict[str, list[int]]]:
    """{split: {kind: [right, total]}} plus the faithful/hallucinated totals per split."""
    out: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for case in planted_cases():
        right = check(case.source, case.generated).accepted == case.faithful
        for key in (case.kind, "ALL faithful accepted" if case.faithful else "ALL others rejected"):
            out[case.split][key][0] += right
            out[case.split][key][1] += 1
    return {s: dict(v) for s, v in out.items()}


def main() -> None:
    result = evaluate()
    if "--json" in sys.argv:
        print(json.dumps(result, sort_keys=True))
        return
    kinds = sorted({k for v in result.values() for k in v})
    print(f"{'kind':28s} {'tune':>10s} {'aside':>10s}")
    for k in kinds:
        cells = [f"{result[s][k][0]}/{result[s][k][1]}" if k in result.get(s, {}) else "-" for s in ("tune", "aside")]
        print(f"{k:28s} {cells[0]:>10s} {cells[1]:>10s}")


if __name__ == "__main__":
    main()
