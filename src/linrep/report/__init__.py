"""Figures and self-contained reports (HTML + Markdown + JSON + PNG/SVG).

Every linrep run that produces numbers (``linrep simulate``, ``linrep reproduce``, the LLM analyses,
sweeps) writes the same set of files through one small API::

    from linrep.report import Report, figures

    rep = Report("E1 — emergence", config=resolved_config, seeds=[0, 1, 2, 3, 4],
                 summary="Linear representations emerge after training.")
    rep.add_heading("Headline numbers")
    rep.add_table(rows, caption="mean ± 95 % CI over seeds")          # rows: list of dicts
    fig = figures.cosine_histograms({"trained": {"same": a, "cross": b}, "untrained": {...}})
    rep.add_figure(fig, "e1_histograms", caption="Steering-vector cosines")
    rep.add_text("Prose; blank lines split paragraphs; `code` and **bold** work.")
    rep.results.update(metrics)                                       # → results.json
    rep.write("runs/e1")   # report.html, report.md, results.json, figures/e1_histograms.{png,svg}

``report.html`` is self-contained (figures embedded as base64 PNG, inline CSS, no scripts) and ends with
the run information (seeds, wall time, package versions from :func:`linrep.io.run_metadata`) and the
resolved configuration. All files are written atomically through :mod:`linrep.io`.

Figure helpers (:mod:`linrep.report.figures`) only draw; intervals are computed by the caller and
passed as ``(mean, lo, hi)`` triples:

- :func:`~linrep.report.figures.cosine_histograms` — same- vs cross-concept cosines, trained vs untrained;
- :func:`~linrep.report.figures.heatmaps` — |cosine| matrices with concept names, one panel per inner product;
- :func:`~linrep.report.figures.lines_vs_step` — metrics vs training step, log x axis, 95 % bands;
- :func:`~linrep.report.figures.point_intervals` — points with 95 % interval bars per group.

:func:`format_ci` formats ``mean ± half-width`` cells for tables.

Text (summary, paragraphs, captions, table cells) understands ``` `code` ```, `**bold**` and `[text](url)`;
links render only for http(s), relative and ``#`` targets. Pass every string a user controls
(concept, case, model and file names) through :func:`escape` so that it shows literally
(:mod:`linrep.report.markup`). Every figure links to its full-size PNG/SVG, overlapping tick labels
are rotated before saving (:mod:`linrep.report.layout`), wide tables scroll.
"""

from __future__ import annotations

from . import figures
from .markup import escape
from .writer import Report, format_ci, format_value

__all__ = ["Report", "figures", "format_ci", "format_value", "escape"]
