"""The index report of ``linrep reproduce``: one table of headline numbers, one figure per experiment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_index", "headline_text"]


def headline_text(headline: Mapping[str, Any], digits: int = 3) -> str:
    """``"key: mean ± half-width; ..."`` for a headline dict of :func:`~.common.summarise` dicts."""
    from ..report import format_ci, format_value

    parts = []
    for key, s in headline.items():
        if isinstance(s, Mapping) and "mean" in s:
            lo, hi = s.get("ci", [float("nan")] * 2)
            lo = float("nan") if lo is None else lo
            hi = float("nan") if hi is None else hi
            parts.append(f"{key}: {format_ci(float(s['mean']), lo, hi, digits)}")
        else:
            parts.append(f"{key}: {format_value(s, digits)}")
    return "; ".join(parts)


def write_index(
    summaries: Sequence[Mapping[str, Any]], out: Path, *, quick: bool, wall_time_s: float
) -> None:
    """Write ``out/report.html|md``, ``out/results.json`` summarising the experiments run."""
    from ..report import Report

    mode = "quick" if quick else "full"
    rep = Report(
        f"linrep reproduce ({mode} mode): {', '.join(s['name'] for s in summaries)}",
        summary="The simulations of Jiang et al. (ICML 2024), reconstructed: each experiment's "
        "headline numbers (mean ± 95 % CI over seeds) and its main figure. Open an experiment's "
        "own report for all tables and figures, its resolved config and its provenance.",
    )
    rows = []
    for s in summaries:
        rel = f"{Path(s['out']).name}/report.html"
        rows.append(
            {
                "experiment": f"[{s['name']}]({rel})",
                "question": s["title"],
                "headline (mean ± 95 % CI)": headline_text(s["headline"]),
                "wall time (s)": round(float(s["wall_time_s"]), 1),
            }
        )
    rep.add_table(rows, caption="Experiments", digits=1)
    for s in summaries:
        if s["figures"]:
            png = Path(s["out"]) / s["figures"][0]
            rep.add_image(png, f"{s['name']}_{png.stem}", caption=f"{s['name']} — {s['title']}")
    rep.results["experiments"] = list(summaries)
    rep.set_metadata(mode=mode)
    rep.write(out, wall_time_s=wall_time_s)
