"""The report's charts: matplotlib (Agg, no display) rendered to PNG and returned as ``data:`` URIs,
so the HTML carries them inside and opens anywhere without the output folder."""
from __future__ import annotations

import base64
import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

WIDTH, HEIGHT = 7.0, 3.2


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def bars(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str = "samples") -> str:
    """Horizontal bars, largest on top (counts by filter, reason, concept ...)."""
    height = max(HEIGHT * 0.6, 0.28 * len(labels) + 1.0)
    fig, ax = plt.subplots(figsize=(WIDTH, height))
    ax.barh(list(labels)[::-1], list(values)[::-1], color="#4C72B0")
    for y, v in enumerate(list(values)[::-1]):
        ax.text(v, y, f" {v:g}", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.tick_params(axis="y", labelsize=8)
    return _png(fig)


def histogram(values: Sequence[float], title: str, xlabel: str, bins: int = 30, log_x: bool = False) -> str:
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    data = [v for v in values if v is not None and (v > 0 or not log_x)]
    if log_x and data:
        import numpy as np

        edges = np.logspace(np.log10(min(data)), np.log10(max(data)) + 1e-9, bins)
        ax.hist(data, bins=edges, color="#55A868")
        ax.set_xscale("log")
    else:
        ax.hist(data, bins=bins, color="#55A868")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    return _png(fig)


def stacked_by_release(releases: Sequence[int], series: dict[str, Sequence[int]], title: str) -> str:
    """One bar per release, stacked by category (license family, image type ...)."""
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    bottom = [0] * len(releases)
    x = [str(r) for r in releases]
    for name, counts in series.items():
        ax.bar(x, counts, bottom=bottom, label=name)
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_title(title)
    ax.set_xlabel("release")
    ax.set_ylabel("samples")
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)
