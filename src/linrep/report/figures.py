"""Figure helpers: each function draws one kind of plot and returns a ``matplotlib.figure.Figure``.

They only draw: statistics (means, 95 % intervals) are computed by the caller with
:mod:`linrep.geometry` and passed in as ``(mean, lo, hi)`` triples, so what a figure shows is exactly
what the tables and ``results.json`` report. The Agg backend is selected inside each function (never
at import time), so these work on headless machines and never change a user's interactive backend
unless they call them.

Pass the returned figure to :meth:`linrep.report.Report.add_figure`, which saves PNG + SVG and closes it.

Every helper sizes its figure for the report page (:func:`linrep.report.layout.page_inches`): panels
that do not fit side by side wrap onto more rows, and heatmaps shrink their cells and fonts with the
number of labels, so the HTML shows each figure at full size (the PNG/SVG link gives the original).
A label whose ``$…$`` is not valid mathtext (a user string with dollar signs) is shown literally.
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
    "intervals_vs_value",
    "scatter",
]

Band = tuple[Any, Any, Any]
"""A statistic with its interval: ``(mean, lo, hi)``, each a float or an array of one shape."""

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"]


def _tight_layout(fig) -> None:
    """``fig.tight_layout()`` after making unparsable ``$…$`` labels literal (see layout.literal_text)."""
    from .layout import literal_text

    literal_text(fig)
    fig.tight_layout()


def _plt():
    """pyplot on a backend that needs no display: Agg, unless Jupyter's inline backend is active
    (then figures keep showing in the notebook)."""
    import matplotlib

    backend = matplotlib.get_backend().lower()
    if backend != "agg" and "inline" not in backend:
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, panel_w: float, panel_h: float, extra_w: float = 0.0):
    """(rows, cols, figsize) of ``n`` panels wrapped to fit the page width (``extra_w``: colour bar)."""
    from .layout import page_inches

    page = page_inches()
    cols = max(1, min(n, int((page - extra_w) // panel_w)))
    rows = -(-n // cols)
    return rows, cols, (min(page, cols * panel_w + extra_w), rows * panel_h)


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
    rows, cols, size = _grid(n, 4.0, 3.2)
    fig, axes = plt.subplots(rows, cols, figsize=size, sharey=True, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    for ax, (ptitle, series) in zip(axes.ravel(), panels.items(), strict=False):
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
    for row in axes:
        row[0].set_ylabel("density")
    if title:
        fig.suptitle(title)
    _tight_layout(fig)
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
        vmin: lower colour limit shared by all panels (None = data minimum).
        vmax: upper colour limit shared by all panels (None = data maximum).
        cmap: matplotlib colormap name.
        annotate: write each cell's value when the matrix is at most 12 × 12.
        colorbar_label: label of the shared colour bar.

    Returns:
        The figure.
    """
    plt = _plt()
    col_labels = list(labels) if col_labels is None else list(col_labels)
    n = max(len(matrices), 1)
    cell, font, margin = _heatmap_cells(labels, col_labels, n)
    # each panel is sized by its own rows and columns, so a wide (r < c) matrix is not padded
    panel_w = len(col_labels) * cell + margin + 0.2
    panel_h = len(labels) * cell + 0.8 * margin + 0.5
    rows, cols, size = _grid(n, panel_w, panel_h, extra_w=1.0)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    im = None
    for ax, (ptitle, mat) in zip(axes.ravel(), matrices.items(), strict=False):
        mat = np.asarray(mat, dtype=float)
        im = ax.imshow(mat, vmin=vmin, vmax=vmax, cmap=cmap, aspect="equal")
        ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right", fontsize=font)
        ax.set_yticks(range(len(labels)), labels, fontsize=font)
        ax.set_title(ptitle, fontsize=10)
        if annotate and max(mat.shape) <= 12 and cell >= 0.22:
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
                        fontsize=7 if cell >= 0.3 else 6,
                        color="black" if v > mid else "white",
                    )
    if im is not None:
        below = rows > 1  # stacked panels: a short bar under them, not one as tall as the figure
        fig.colorbar(
            im,
            ax=list(axes.ravel()[:n]),
            shrink=0.5 if below else 0.8,
            aspect=40 if below else 20,
            location="bottom" if below else "right",
            label=colorbar_label,
        )
    if title:
        fig.suptitle(title)
    return fig


def _heatmap_cells(
    labels: Sequence[str], col_labels: Sequence[str], n_panels: int
) -> tuple[float, int, float]:
    """(cell size in inches, tick font size, label margin in inches) for a page-wide figure.

    As many panels as possible share a row, as long as a cell stays ≥ 0.22 in (room for a value);
    otherwise one panel per row with cells as large as the page allows (≥ 0.12 in).
    """
    from .layout import page_inches

    longest = max((len(str(x)) for x in (*labels, *col_labels)), default=1)
    n = max(len(labels), len(col_labels), 1)
    font = 8 if n <= 12 else 7 if n <= 20 else 6
    margin = 0.6 * longest * font / 72 + 0.3  # inches taken by the longest tick label
    room = page_inches() - 1.2  # minus the colour bar
    for cols in range(n_panels, 0, -1):
        cell = (room - cols * (margin + 0.2)) / (cols * max(len(col_labels), 1))
        if cell >= 0.22 or cols == 1:
            return float(np.clip(cell, 0.12, 0.45)), font, margin
    raise AssertionError  # unreachable: cols == 1 returns


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
    nrows, ncols, size = _grid(n, 4.0, 3.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
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
    _tight_layout(fig)
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
    from .layout import page_inches

    g = len(groups)
    s = max(len(series), 1)
    width = min(page_inches(), max(4.5, 0.9 * g * max(1, s / 2) + 2.0))
    fig, ax = plt.subplots(figsize=(width, 3.6))
    x = np.arange(g, dtype=float)
    step = 0.7 / s
    for k, (label, band) in enumerate(series.items()):
        _errorbars(ax, x - 0.35 + step * (k + 0.5), band, g, _COLORS[k % len(_COLORS)], label)
    ax.set_xticks(x, list(groups))
    _finish_intervals(ax, fig, ylabel, title, hlines, xlabel, ylim)
    return fig


def _errorbars(ax, xs: np.ndarray, band: Band, g: int, color: str, label: str, line=False) -> None:
    """Means with interval bars at ``xs`` (NaN bounds draw no bar), optionally joined by a line."""
    mean, lo, hi = (np.asarray(a, float).reshape(g) for a in band)
    err = np.vstack([mean - lo, hi - mean])
    ax.errorbar(
        xs,
        mean,
        yerr=np.where(np.isfinite(err), np.maximum(err, 0), 0),
        fmt="o-" if line else "o",
        lw=1 if line else None,
        color=color,
        capsize=3,
        label=label,
    )


def _finish_intervals(ax, fig, ylabel, title, hlines, xlabel, ylim) -> None:
    for k, (label, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, color="gray", ls=["--", ":", "-."][k % 3], lw=1, label=label)
    ax.set_ylabel(ylabel)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylim:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.margins(y=0.08)
    _outside_legend(ax)
    _tight_layout(fig)


def _outside_legend(ax) -> None:
    """A legend that never covers the data: right of the axes, or under them for long labels."""
    labels = ax.get_legend_handles_labels()[1]
    if max((len(x) for x in labels), default=0) <= 24:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)


def intervals_vs_value(
    values: Sequence[float],
    series: Mapping[str, Band],
    *,
    ylabel: str = "",
    xlabel: str = "",
    title: str | None = None,
    hlines: Mapping[str, float] | None = None,
    log: bool | None = None,
    ylim: tuple[float, float] | None = None,
):
    """Points with 95 % interval bars against a NUMERIC parameter (spacing on the axis means something).

    Args:
        values: (G,) parameter values (e.g. the coupling σ or the width d), any order.
        series: series label → (mean, lo, hi), each (G,) in the order of ``values``.
        ylabel: y-axis label.
        xlabel: x-axis label.
        title: figure title.
        hlines: reference lines, label → y.
        log: logarithmic x axis; default: when all values are > 0 and span a factor ≥ 20.
        ylim: y limits.

    Returns:
        The figure (series joined by lines and slightly offset so their bars do not hide each other).
    """
    plt = _plt()
    from .layout import page_inches

    x = np.asarray(values, dtype=float)
    order = np.argsort(x)
    x = x[order]
    g = x.size
    pos = x[x > 0]
    if log is None:
        log = bool(g and pos.size == g and pos.max() / pos.min() >= 20)
    fig, ax = plt.subplots(figsize=(min(page_inches(), 6.5), 3.6))
    s = max(len(series), 1)
    # offset the series by ±1.2 % of the axis span so that their bars do not hide each other
    span = np.log10(pos.max() / pos.min()) if log else float(np.ptp(x)) if g > 1 else 1.0
    for k, (label, band) in enumerate(series.items()):
        band = tuple(np.asarray(a, float).reshape(g)[order] for a in band)
        d = (k - (s - 1) / 2) * 0.012 * max(span, 1e-12)
        xs = x * 10**d if log else x + d
        _errorbars(ax, xs, band, g, _COLORS[k % len(_COLORS)], label, line=True)
    if log:
        ax.set_xscale("log")
    ax.set_xticks(x, [f"{v:g}" for v in x])
    ax.minorticks_off()
    _finish_intervals(ax, fig, ylabel, title, hlines, xlabel, ylim)
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
        xlabel: x-axis label.
        ylabel: y-axis label.
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
    _tight_layout(fig)
    return fig
