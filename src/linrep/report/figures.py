"""Figure helpers: each function draws one kind of plot and returns a ``matplotlib.figure.Figure``.

They only draw: statistics (means, 95 % intervals) are computed by the caller with
:mod:`linrep.geometry` and passed in as ``(mean, lo, hi)`` triples, so what a figure shows is exactly
what the tables and ``results.json`` report. The Agg backend is selected inside each function (never
at import time), so these work on headless machines and never change a user's interactive backend
unless they call them.

Pass the returned figure to :meth:`linrep.report.Report.add_figure`, which saves PNG + SVG and closes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Band",
    "cosine_histograms",
    "heatmaps",
    "lines_vs_step",
    "point_intervals",
    "scatter",
]

Band = tuple[Any, Any, Any]
"""A statistic with its interval: ``(mean, lo, hi)``, each a float or an array of one shape."""

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"]


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def cosine_histograms(
    panels: Mapping[str, Mapping[str, np.ndarray]],
    *,
    bins: int = 40,
    xlabel: str = "cosine",
    title: str | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
):
    """Overlaid density histograms, one panel per condition (e.g. trained vs untrained).

    Args:
        panels: panel title → {series label → 1-D array of values}, e.g.
            ``{"trained": {"same concept": cos_same, "different concepts": cos_cross}, "untrained": ...}``.
        bins: number of bins over ``value_range``.
        xlabel: x-axis label.
        title: figure title.
        value_range: histogram range (cosines live in [−1, 1]).

    Returns:
        The figure (one row of panels sharing the y axis).
    """
    plt = _plt()
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.4), sharey=True, squeeze=False)
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    for ax, (ptitle, series) in zip(axes[0], panels.items(), strict=False):
        for k, (label, vals) in enumerate(series.items()):
            v = np.asarray(vals, dtype=float).ravel()
            v = v[np.isfinite(v)]
            ax.hist(
                v,
                bins=edges,
                density=True,
                alpha=0.55,
                color=_COLORS[k % len(_COLORS)],
                label=f"{label} (n={v.size}, mean {v.mean():.2f})" if v.size else label,
            )
        ax.set_title(ptitle)
        ax.set_xlabel(xlabel)
        ax.set_xlim(*value_range)
        ax.legend(fontsize=8, loc="upper left")
    axes[0][0].set_ylabel("density")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def heatmaps(
    matrices: Mapping[str, np.ndarray],
    labels: Sequence[str],
    *,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cmap: str = "viridis",
    annotate: bool = True,
    colorbar_label: str = "|cosine|",
):
    """Side-by-side heatmaps with concept names on the axes (e.g. one per inner product).

    Args:
        matrices: panel title → (r, c) matrix.
        labels: row labels (r,), e.g. concept names.
        col_labels: column labels (c,), default ``labels``.
        title: figure title.
        vmin, vmax: colour limits shared by all panels (None = data range).
        cmap: matplotlib colormap name.
        annotate: write each cell's value when the matrix is at most 12 × 12.
        colorbar_label: label of the shared colour bar.

    Returns:
        The figure.
    """
    plt = _plt()
    col_labels = list(labels) if col_labels is None else list(col_labels)
    n = max(len(matrices), 1)
    # each panel is sized by its own rows and columns, so a wide (r < c) matrix is not padded
    width = max(3.2, 0.45 * len(col_labels) + 1.6)
    height = max(3.2, 0.45 * len(labels) + 1.6)
    fig, axes = plt.subplots(
        1, n, figsize=(width * n + 1.2, height + 0.4), squeeze=False, layout="constrained"
    )
    im = None
    for ax, (ptitle, mat) in zip(axes[0], matrices.items(), strict=False):
        mat = np.asarray(mat, dtype=float)
        im = ax.imshow(mat, vmin=vmin, vmax=vmax, cmap=cmap, aspect="equal")
        ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(ptitle, fontsize=10)
        if annotate and max(mat.shape) <= 12:
            lo = np.nanmin(mat) if vmin is None else vmin
            hi = np.nanmax(mat) if vmax is None else vmax
            mid = (lo + hi) / 2
            for (i, j), v in np.ndenumerate(mat):
                if np.isfinite(v):
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if v > mid else "white",
                    )
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label=colorbar_label)
    if title:
        fig.suptitle(title)
    return fig


def lines_vs_step(
    steps: np.ndarray,
    panels: Mapping[str, Mapping[str, Band]],
    *,
    logx: bool = True,
    ylabels: Mapping[str, str] | None = None,
    title: str | None = None,
    logy: Sequence[str] = (),
    xlabel: str = "training step",
):
    """Curves vs training step (or any numeric x) with shaded 95 % bands, one panel per quantity.

    Args:
        steps: (T,) training steps of the logged rows, or any numeric x values (e.g. an
            initialisation scale or a coupling strength; name them with ``xlabel``).
        panels: panel title → {series label → (mean, lo, hi) with arrays of shape (T,)}; up to
            three panels per row (four make a 2 × 2 grid).
        logx: logarithmic step axis (points at step ≤ 0 are omitted there; report them in a table).
        ylabels: optional y-axis label per panel.
        title: figure title.
        logy: panel titles whose y axis is logarithmic (e.g. excess loss); there the lower band is
            clipped at the smallest positive mean of the panel.
        xlabel: x-axis label.

    Returns:
        The figure.
    """
    plt = _plt()
    from matplotlib.ticker import NullFormatter

    steps = np.asarray(steps, dtype=float)
    keep = steps > 0 if logx else np.ones_like(steps, dtype=bool)
    n = max(len(panels), 1)
    ncols = min(n, 3) if n != 4 else 2
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for ax, (ptitle, series) in zip(axes.ravel(), panels.items(), strict=False):
        floor = None
        if ptitle in logy:  # a t-interval can reach ≤ 0: clip it at the smallest positive mean
            pos = [np.asarray(m, float)[keep] for m, _, _ in series.values()]
            pos = np.concatenate([p[p > 0] for p in pos]) if pos else np.array([])
            floor = float(pos.min()) if pos.size else None
        for k, (label, (mean, lo, hi)) in enumerate(series.items()):
            c = _COLORS[k % len(_COLORS)]
            x = steps[keep]
            lo = np.asarray(lo, float)[keep]
            if floor is not None:
                lo = np.maximum(lo, floor)
            ax.plot(x, np.asarray(mean, float)[keep], color=c, label=label, lw=1.6)
            ax.fill_between(x, lo, np.asarray(hi, float)[keep], color=c, alpha=0.2)
        if logx:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        if ptitle in logy:
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_title(ptitle, fontsize=10)
        if ylabels and ptitle in ylabels:
            ax.set_ylabel(ylabels[ptitle])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def point_intervals(
    groups: Sequence[str],
    series: Mapping[str, Band],
    *,
    ylabel: str = "",
    title: str | None = None,
    hlines: Mapping[str, float] | None = None,
    xlabel: str | None = None,
    ylim: tuple[float, float] | None = None,
):
    """Points with 95 % interval bars: one x position per group, one colour per series.

    Args:
        groups: x tick labels (G,), e.g. encoder names.
        series: series label → (mean, lo, hi), each of shape (G,) (NaN = missing).
        ylabel: y-axis label.
        title: figure title.
        hlines: reference lines, label → y (e.g. ``{"random directions": 0.0}``).
        xlabel: x-axis label.
        ylim: y limits.

    Returns:
        The figure.
    """
    plt = _plt()
    g = len(groups)
    s = max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * g * max(1, s / 2) + 2.0), 3.6))
    x = np.arange(g, dtype=float)
    width = 0.7 / s
    for k, (label, (mean, lo, hi)) in enumerate(series.items()):
        mean, lo, hi = (np.asarray(a, float).reshape(g) for a in (mean, lo, hi))
        xs = x - 0.35 + width * (k + 0.5)
        err = np.vstack([mean - lo, hi - mean])
        ax.errorbar(
            xs,
            mean,
            yerr=np.where(np.isfinite(err), np.maximum(err, 0), 0),
            fmt="o",
            color=_COLORS[k % len(_COLORS)],
            capsize=3,
            label=label,
        )
    for k, (label, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, color="gray", ls=["--", ":", "-."][k % 3], lw=1, label=label)
    ax.set_xticks(x, list(groups), rotation=20 if g > 5 else 0)
    ax.set_ylabel(ylabel)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylim:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.margins(y=0.08)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # never over the data
    fig.tight_layout()
    return fig


def scatter(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = None,
    logx: bool = False,
):
    """Scatter plot, one colour per series (e.g. one point per concept and run).

    Args:
        series: label → (x (N,), y (N,)).
        xlabel, ylabel: axis labels.
        title: figure title.
        logx: logarithmic x axis (non-positive x are dropped).

    Returns:
        The figure.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for k, (label, (x, y)) in enumerate(series.items()):
        x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
        keep = np.isfinite(x) & np.isfinite(y) & ((x > 0) if logx else True)
        ax.scatter(x[keep], y[keep], s=14, alpha=0.7, color=_COLORS[k % len(_COLORS)], label=label)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
