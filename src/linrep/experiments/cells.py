"""Table cells and labels of the experiment reports: one formatter for every interval.

Every "mean ± CI" string in an experiment report, the ``reproduce`` index and the CLI comes from
:func:`ci_cell`, which calls :func:`linrep.report.format_ci` (the one interval formatter).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .stats import Summary

__all__ = ["METRIC_LABELS", "label", "ci_cell", "geometry_cells", "headline_text"]

METRIC_LABELS = {
    "same_concept_cosine": "same-concept cos",
    "cross_concept_abs_cosine": "cross |cos| (directions)",
    "cross_pair_abs_cosine": "cross |cos| (pairs)",
    "alignment_cosine": "alignment cos(f̄ᵢ, ḡᵢ)",
    "log_odds_matching_error": "log-odds error (nats)",
    "excess_loss": "excess loss (nats)",
    "probe_accuracy": "probe accuracy",
    "true_log_odds_spread": "true log-odds spread",
}
"""Column labels of the geometry statistics (keys of :data:`linrep.geometry.SUMMARY_KEYS` & co.)."""


def label(key: str) -> str:
    """The column label of a metric key (the key itself when it has no label).

    An identifiable twin ``<key>_identifiable`` is labelled "<label of key> in span{f}".
    """
    from ..geometry.simulation import IDENTIFIABLE_SUFFIX

    if key.endswith(IDENTIFIABLE_SUFFIX):
        return label(key[: -len(IDENTIFIABLE_SUFFIX)]) + " in span{f}"
    return METRIC_LABELS.get(key, key)


def ci_cell(s: Summary | Mapping[str, Any] | None, digits: int = 3) -> str:
    """``mean ± half-width`` of a :class:`~.stats.Summary` (or its JSON dict); "–" for None."""
    from ..report import format_ci, format_value

    if s is None:
        return "–"
    if isinstance(s, Summary):
        return s.cell(digits)
    lo, hi = (list(s.get("ci") or [None, None]) + [None, None])[:2]
    if lo is None or hi is None:
        return format_value(float(s["mean"]), digits)
    return format_ci(float(s["mean"]), float(lo), float(hi), digits)


def geometry_cells(
    st: Mapping[str, Summary], keys: tuple[str, ...] | None = None
) -> dict[str, str]:
    """Table cells of the geometry summaries in ``st`` (default keys: ``SUMMARY_KEYS``)."""
    from ..geometry.simulation import SUMMARY_KEYS

    return {label(k): ci_cell(st[k]) for k in keys or SUMMARY_KEYS if k in st}


def headline_text(headline: Mapping[str, Any], digits: int = 3) -> str:
    """``"key: mean ± half-width; ..."`` for a headline of summaries (other values as they are)."""
    from ..report import format_value

    parts = []
    for key, s in headline.items():
        is_summary = isinstance(s, Summary) or (isinstance(s, Mapping) and "mean" in s)
        parts.append(f"{key}: {ci_cell(s, digits) if is_summary else format_value(s, digits)}")
    return "; ".join(parts)
