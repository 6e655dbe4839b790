"""Figures only the real-model report draws: quantities against depth, steering curves, and observed
summaries against their nulls (one panel per inner product).

(Heatmaps and interval plots come from :mod:`linrep.report.figures`.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["layer_profile_figure", "null_panels_figure", "steering_figure"]


def _plt():
    from ..report.figures import _plt as report_plt

    return report_plt()


def layer_profile_figure(prof, inner: str | None = None):
    """Alignment (per concept, mean, permutation-null q95) and probe accuracy against depth.

    Args:
        prof: a :class:`~linrep.llm.layers.LayerProfile`.
        inner: inner product of the alignment panel (default causal, else the first).
    """
    plt = _plt()
    ip = inner or ("causal" if "causal" in prof.alignment else next(iter(prof.alignment)))
    x = np.asarray(prof.layers)
    A, Q = prof.alignment[ip], prof.perm_null_q95[ip]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for j in range(A.shape[1]):
        ax1.plot(x, A[:, j], color="tab:blue", alpha=0.25, lw=1)
    ax1.plot(x, np.nanmean(A, axis=1), color="tab:blue", lw=2.5, label="mean alignment")
    ax1.plot(x, np.nanmean(Q, axis=1), color="gray", ls="--", lw=1.5, label="mean perm. null q95")
    ax1.axhline(0, color="black", lw=0.5)
    ax1.set(
        xlabel="layer (hidden-state index)",
        ylabel=f"cos(f̄_W, ḡ_W) ({ip})",
        title="Alignment with the unembedding direction",
    )
    ax1.legend(fontsize=9, loc="upper left")
    P = prof.probe_accuracy
    if np.isfinite(P).any():
        for j in range(P.shape[1]):
            ax2.plot(x, P[:, j], color="tab:green", alpha=0.25, lw=1)
        ax2.plot(x, np.nanmean(P, axis=1), color="tab:green", lw=2.5, label="mean")
        ax2.axhline(0.5, color="gray", ls=":", lw=1, label="chance")
        ax2.legend(fontsize=9, loc="lower right")
    ax2.set(
        xlabel="layer (hidden-state index)",
        ylabel="probe accuracy (CV)",
        title="Linear probe",
        ylim=(0.4, 1.02),
    )
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    return fig


def steering_figure(curve):
    """On-target and off-target log-odds change against α, one line per layer.

    Args:
        curve: a :class:`~linrep.llm.steering.SteeringCurve`.
    """
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained", sharey=True)
    a = np.asarray(curve.alphas)
    cmap = plt.get_cmap("viridis")
    for i, L in enumerate(curve.layers):
        color = cmap(i / max(len(curve.layers) - 1, 1))
        ax1.errorbar(
            a,
            curve.on_target[i],
            yerr=1.96 * curve.on_target_se[i],
            color=color,
            marker="o",
            capsize=2,
            label=f"layer {L}",
        )
        ax2.plot(a, curve.off_target[i], color=color, marker="o", label=f"layer {L}")
    ax1.set(
        xlabel="α (× mean ‖h‖ at the layer)",
        ylabel="log-odds change",
        title="on-target (target vs base word)",
    )
    ax2.set(xlabel="α (× mean ‖h‖ at the layer)", title="off-target (other concepts, mean |·|)")
    for ax in (ax1, ax2):
        ax.axhline(0, color="black", lw=0.5)
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


Band = tuple[np.ndarray, np.ndarray, np.ndarray]  # (mean, lo, hi), each (n_categories,)


def null_panels_figure(
    panels: dict[str, dict[str, Band]], categories: list[str], *, ylabel: str, title: str
):
    """One panel per inner product (shared y): each category's observed value and null intervals.

    Short upright category labels under every panel, one legend under the figure, so the figure
    stays legible in the report's column however many inner products there are.

    Args:
        panels: panel title (inner product) → series label → (mean, lo, hi), each ``(C,)``; NaN
            bounds draw no bar (e.g. the observed value).
        categories: the ``C`` x tick labels, e.g. ``["all", "related", "unrelated"]``.
        ylabel: y-axis label of the first panel.
        title: figure title.
    """
    from ..report.layout import page_inches

    plt = _plt()
    n = max(len(panels), 1)
    fig, axes = plt.subplots(
        1, n, figsize=(page_inches(), 3.6), sharey=True, squeeze=False, layout="constrained"
    )
    x = np.arange(len(categories), dtype=float)
    series: list[str] = []
    for ax, (name, bands) in zip(axes[0], panels.items(), strict=False):
        step = 0.6 / max(len(bands), 1)
        for k, (label, (mean, lo, hi)) in enumerate(bands.items()):
            mean, lo, hi = (np.asarray(a, float) for a in (mean, lo, hi))
            err = np.nan_to_num(np.vstack([mean - lo, hi - mean]), nan=0.0).clip(min=0)
            xs = x - 0.3 + step * (k + 0.5)
            ax.errorbar(xs, mean, yerr=err, fmt="o", capsize=3, color=f"C{k}", label=label)
            if label not in series:
                series.append(label)
        ax.set_xticks(x, categories)
        ax.set_title(name, fontsize=11)
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].set_ylabel(ylabel)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=9)
    fig.suptitle(title)
    return fig
