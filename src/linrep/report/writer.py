"""The report writer: one :class:`Report` → ``report.html``, ``report.md``, ``results.json``, figures.

A report is an ordered list of blocks (headings, paragraphs, tables, figures) plus the run's
provenance (resolved config, seeds, package versions, wall time) and a free-form ``results`` dict that
becomes ``results.json``. Figures are rendered to PNG and SVG bytes when added (and the matplotlib
figure is closed), so building a long report does not keep figures in memory. :meth:`Report.write`
writes everything atomically through :mod:`linrep.io`; the HTML embeds every figure as a base64 PNG,
so the one file can be mailed or archived on its own.
"""

from __future__ import annotations

import io
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import (
    atomic_write_bytes,
    atomic_write_text,
    ensure_out_dir,
    read_bytes,
    run_metadata,
    write_json,
)
from .layout import DPI, declutter_ticks
from .markup import escape
from .pages import Block, Page, html_page, markdown_page

__all__ = ["Report", "format_value", "format_ci"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def format_value(x: Any, digits: int = 3) -> str:
    """Format a table cell: floats with ``digits`` decimals (scientific if tiny/huge), NaN as "–"."""
    if x is None:
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if not math.isfinite(v):
            return "–" if math.isnan(v) else ("∞" if v > 0 else "−∞")
        if v != 0 and (abs(v) < 10 ** (-digits) or abs(v) >= 1e6):
            return f"{v:.{max(digits - 1, 1)}e}"
        return f"{v:.{digits}f}"
    return str(x)


def format_ci(mean: float, lo: float, hi: float, digits: int = 3) -> str:
    """``"0.931 ± 0.004"`` for a symmetric interval, ``"0.931 [0.925, 0.936]"`` otherwise.

    Values below 10^−digits in magnitude switch to scientific notation (``"2.7e-05 ± 4.1e-06"``), so
    a small excess loss is not shown as "0.000 ± 0.000".
    """
    if not all(math.isfinite(float(v)) for v in (mean, lo, hi)):
        return format_value(mean, digits)
    half_lo, half_hi = mean - lo, hi - mean
    scale = max(abs(mean), abs(lo), abs(hi))
    if 0 < scale < 10 ** (-digits):
        fmt = f".{max(digits - 2, 1)}e"
    else:
        fmt = f".{digits}f"
    tiny = 0.5 * (10 ** (-digits) if fmt.endswith("f") else 10 ** (-digits) * scale)
    if abs(half_lo - half_hi) <= max(0.05 * max(abs(half_lo), abs(half_hi)), tiny):
        return f"{mean:{fmt}} ± {max(half_lo, half_hi):{fmt}}"
    return f"{mean:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


class Report:
    """A self-contained experiment report (HTML + Markdown + JSON + PNG/SVG figures).

    Typical use::

        rep = Report("E1 — emergence of linear representations", config=raw_cfg, seeds=[0, 1, 2])
        rep.add_text("Same-concept steering vectors are parallel after training.")
        rep.add_table([{"model": "trained", "same": 0.93}], caption="Headline numbers")
        rep.add_figure(fig, "e1_histograms", caption="Cosine histograms")
        rep.results["same_concept_cosine"] = {"mean": 0.93, "ci": [0.92, 0.94]}
        paths = rep.write("runs/e1")

    Args:
        title: the report's title (``<h1>`` and the Markdown title).
        config: the resolved configuration (a dict; dataclasses are converted), shown verbatim.
        seeds: the seeds of the runs in the report.
        summary: one-paragraph summary shown under the title.

    Attributes:
        results: free-form JSON-able dict written to ``results.json`` under ``"results"``.
        figure_files: names (without extension) of the figures added so far.
    """

    def __init__(
        self,
        title: str,
        *,
        config: Mapping[str, Any] | None = None,
        seeds: Sequence[int] | None = None,
        summary: str | None = None,
    ):
        self.title = title
        self.config: dict[str, Any] = dict(config) if config is not None else {}
        self.seeds = list(seeds) if seeds is not None else []
        self.summary = summary
        self.results: dict[str, Any] = {}
        self.figure_files: list[str] = []
        self._blocks: list[Block] = []
        self._figures: dict[str, tuple[bytes, bytes]] = {}  # name -> (png, svg)
        self._t0 = time.perf_counter()
        self._extra_meta: dict[str, Any] = {}

    # ------------------------------------------------------------------ building
    def add_heading(self, text: str, level: int = 2) -> Report:
        """Add a section heading (level 2 = section, 3 = subsection)."""
        self._blocks.append(Block("heading", {"text": text, "level": int(min(max(level, 2), 4))}))
        return self

    def add_text(self, text: str) -> Report:
        """Add prose. Blank lines separate paragraphs; ``` `code` ```, `**bold**` and `[text](url)` work."""
        self._blocks.append(Block("text", {"text": text.strip()}))
        return self

    def add_table(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        columns: Sequence[str] | None = None,
        caption: str | None = None,
        digits: int = 3,
    ) -> Report:
        """Add a table from a list of row dicts (column order = ``columns`` or first-seen keys).

        Cells are formatted with :func:`format_value` (strings pass through, so pre-formatted
        ``"0.93 ± 0.01"`` cells are fine).
        """
        if columns is None:
            seen: dict[str, None] = {}
            for r in rows:
                for k in r:
                    seen.setdefault(str(k), None)
            columns = list(seen)
        cells = [[format_value(r.get(c), digits) for c in columns] for r in rows]
        self._blocks.append(
            Block("table", {"columns": list(columns), "cells": cells, "caption": caption})
        )
        return self

    def add_figure(
        self, fig: Any, name: str, *, caption: str | None = None, dpi: int = DPI
    ) -> Report:
        """Render a matplotlib figure to PNG + SVG (then close it) and add it to the report.

        Args:
            fig: a ``matplotlib.figure.Figure``.
            name: file stem, e.g. ``"e1_histograms"`` → ``figures/e1_histograms.png`` / ``.svg``;
                letters, digits, ``_ . -`` only, unique within the report.
            caption: text under the figure (a caption shared by consecutive figures is printed once,
                under the last of them).
            dpi: PNG resolution.

        Overlapping x tick labels are rotated (then thinned) before saving
        (:func:`linrep.report.layout.declutter_ticks`).
        """
        if not _NAME_RE.match(name):
            raise InputError(f"figure name '{name}' must use letters, digits, '_', '.', '-' only")
        if name in self._figures:
            raise InputError(f"figure name '{name}' is used twice in this report; pick another")
        import matplotlib.pyplot as plt

        declutter_ticks(fig)
        png, svg = io.BytesIO(), io.BytesIO()
        fig.savefig(png, format="png", dpi=dpi, bbox_inches="tight")
        fig.savefig(svg, format="svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(fig)
        self._figures[name] = (png.getvalue(), svg.getvalue())
        self.figure_files.append(name)
        self._blocks.append(Block("figure", {"name": name, "caption": caption}))
        return self

    def add_image(
        self, png: bytes | str | os.PathLike, name: str, *, caption: str | None = None
    ) -> Report:
        """Add an existing PNG (bytes or a file path), e.g. a figure of another report.

        It is embedded in the HTML and copied to ``figures/<name>.png`` (no SVG is written).
        """
        if not _NAME_RE.match(name):
            raise InputError(f"figure name '{name}' must use letters, digits, '_', '.', '-' only")
        if name in self._figures:
            raise InputError(f"figure name '{name}' is used twice in this report; pick another")
        data = png if isinstance(png, bytes) else read_bytes(png, "image")
        if data[:8] != b"\x89PNG\r\n\x1a\n":
            raise InputError(f"image '{name}' is not a PNG file")
        self._figures[name] = (data, b"")
        self.figure_files.append(name)
        self._blocks.append(Block("figure", {"name": name, "caption": caption}))
        return self

    def set_metadata(self, **extra: Any) -> Report:
        """Add provenance entries shown in the run-information section (e.g. ``mode="quick"``)."""
        self._extra_meta.update(extra)
        return self

    # ------------------------------------------------------------------ writing
    def write(
        self, out_dir: str | os.PathLike, *, wall_time_s: float | None = None
    ) -> dict[str, Path]:
        """Write ``report.html``, ``report.md``, ``results.json`` and ``figures/*.png|svg``.

        Args:
            out_dir: output folder (created if needed).
            wall_time_s: wall time to record; default: seconds since the report was created.

        Returns:
            Paths written, keyed ``"html"``, ``"md"``, ``"json"`` and ``"fig:<name>"``.
        """
        out = ensure_out_dir(out_dir)
        wall = time.perf_counter() - self._t0 if wall_time_s is None else float(wall_time_s)
        meta = run_metadata()
        meta["wall_time_s"] = wall
        meta.update(self._extra_meta)
        paths: dict[str, Path] = {}
        fig_dir = out / "figures"
        for name, (png, svg) in self._figures.items():
            paths[f"fig:{name}"] = atomic_write_bytes(fig_dir / f"{name}.png", png)
            if svg:
                atomic_write_bytes(fig_dir / f"{name}.svg", svg)
        paths["json"] = write_json(
            out / "results.json",
            {
                "title": self.title,
                "results": self.results,
                "tables": [
                    {
                        "caption": b.data["caption"],
                        "columns": b.data["columns"],
                        "rows": b.data["cells"],
                    }
                    for b in self._blocks
                    if b.kind == "table"
                ],
                "figures": [f"figures/{n}.png" for n in self.figure_files],
                "config": self.config,
                "seeds": self.seeds,
                "metadata": meta,
            },
        )
        paths["md"] = atomic_write_text(out / "report.md", self._markdown(meta))
        paths["html"] = atomic_write_text(out / "report.html", self._html(meta))
        return paths

    # ------------------------------------------------------------------ rendering
    def _config_text(self) -> str | None:
        from ..io import to_jsonable

        return _to_toml(to_jsonable(self.config)) if self.config else None

    def _meta_rows(self, meta: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(item, value) rows of the run information; values are data, shown literally."""
        rows = [("seeds", ", ".join(str(s) for s in self.seeds))] if self.seeds else []
        rows += [
            ("wall time", f"{meta['wall_time_s']:.1f} s"),
            ("finished (UTC)", str(meta["time_utc"])),
            ("python", str(meta["python"])),
            ("platform", str(meta["platform"])),
        ]
        rows += [(f"{k}", str(v)) for k, v in meta["packages"].items()]
        rows += [
            (k, str(v))
            for k, v in meta.items()
            if k not in ("wall_time_s", "time_utc", "python", "platform", "packages")
        ]
        return [(escape(k), escape(v)) for k, v in rows]

    def _page(self, meta: Mapping[str, Any]) -> Page:
        return Page(
            title=self.title,
            summary=self.summary,
            blocks=self._blocks,
            figures=self._figures,
            meta_rows=self._meta_rows(meta),
            config_text=self._config_text(),
        )

    def _markdown(self, meta: Mapping[str, Any]) -> str:
        return markdown_page(self._page(meta))

    def _html(self, meta: Mapping[str, Any]) -> str:
        return html_page(self._page(meta))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if v is None:
        return '"none"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return repr(v)


def _to_toml(cfg: Mapping[str, Any], prefix: str = "") -> str:
    """Render a nested dict as TOML text (tables for nested dicts; ``None`` values are left out:
    TOML has no null, and an omitted key means the default)."""
    scalars = [(k, v) for k, v in cfg.items() if not isinstance(v, Mapping) and v is not None]
    tables = [(k, v) for k, v in cfg.items() if isinstance(v, Mapping)]
    lines = [f"{k} = {_toml_value(v)}" for k, v in scalars]
    for k, v in tables:
        name = f"{prefix}{k}"
        lines += ["", f"[{name}]", _to_toml(v, prefix=f"{name}.")]
    return "\n".join(lines).strip("\n")
