"""The index report of ``linrep reproduce``: one table of headline numbers, one figure per experiment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .cells import headline_text

if TYPE_CHECKING:
    from . import ExperimentRun

__all__ = ["write_index", "headline_text"]


def write_index(
    summaries: Sequence[ExperimentRun], out: Path, *, quick: bool, wall_time_s: float
) -> None:
    """Write ``out/report.html|md``, ``out/results.json`` summarising the experiments run."""
    from ..report import Report

    mode = "quick" if quick else "full"
    rep = Report(
        f"linrep reproduce ({mode} mode): {', '.join(s.name for s in summaries)}",
        summary="The simulations of Jiang et al. (ICML 2024), reconstructed: each experiment's "
        "headline numbers (mean ± 95 % CI over seeds) and its main figure. Open an experiment's "
        "own report for all tables and figures, its resolved config and its provenance.",
    )
    rows = []
    for s in summaries:
        rel = f"{Path(s.out).name}/report.html"
        rows.append(
            {
                "experiment": f"[{s.name}]({rel})",
                "question": s.title,
                "headline (mean ± 95 % CI)": headline_text(s.headline),
                "wall time (s)": round(float(s.wall_time_s), 1),
            }
        )
    rep.add_table(rows, caption="Experiments", digits=1)
    for s in summaries:
        if s.figures:
            png = Path(s.out) / s.figures[0]
            rep.add_image(png, f"{s.name}_{png.stem}", caption=f"{s.name} — {s.title}")
    rep.results["experiments"] = [s.to_json() for s in summaries]
    rep.set_metadata(mode=mode)
    rep.write(out, wall_time_s=wall_time_s)
