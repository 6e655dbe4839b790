"""Figure layout checks applied to every figure a report saves: readable tick labels, page width.

:func:`declutter_ticks` finds x tick labels that overlap their neighbours (long category names,
dense numeric ticks) and rotates them by the smallest angle that separates them, then thins them if
even a vertical label does not fit.
:func:`page_inches` is the width a figure may take so that the HTML page shows it at full size
(:data:`linrep.report.pages.PAGE_WIDTH_PX` at the report's dpi); figure helpers size themselves
with it instead of being shrunk by the browser.
"""

from __future__ import annotations

from typing import Any

__all__ = ["declutter_ticks", "literal_text", "overlapping", "page_inches", "DPI"]

DPI = 110
"""Resolution of report PNGs (:meth:`linrep.report.Report.add_figure`)."""


def page_inches(dpi: int = DPI) -> float:
    """Figure width (inches) that fills the report's text column at ``dpi`` without scaling."""
    from .pages import PAGE_WIDTH_PX

    return 0.9 * PAGE_WIDTH_PX / dpi


def literal_text(fig: Any) -> None:
    """Show literally every text of ``fig`` whose ``$…$`` is not valid mathtext.

    Labels carry user strings (concept, case, model names); an unbalanced ``$\\frac{$`` in one
    would make matplotlib raise while drawing. Each text containing ``$`` is measured on its own;
    only those that fail lose math parsing, so real mathtext (log-axis tick labels) is kept.
    """
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    for t in fig.findobj(Text):
        if "$" in t.get_text():
            try:
                t.get_window_extent(renderer)
            except ValueError:
                t.set_parse_math(False)


def _extents(labels: list[Any], renderer: Any) -> list[tuple[float, float, float]]:
    """(centre, width, height) in pixels of the visible, non-empty labels, sorted by centre."""
    boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]
    return sorted(((b.x0 + b.x1) / 2, b.width, b.height) for b in boxes)


def _fits(ext: list[tuple[float, float, float]], angle: float, step: int = 1) -> bool:
    """Do labels drawn at ``angle`` degrees (every ``step``-th one) keep 2 px apart?

    Upright labels need centre gaps of half their widths; labels rotated by θ are parallel strips
    whose horizontal spacing must exceed their height / sin θ.
    """
    import math

    shown = ext[::step]
    for (x0, w0, h0), (x1, w1, h1) in zip(shown, shown[1:], strict=False):
        gap = x1 - x0
        need = (w0 + w1) / 2 if angle == 0 else max(h0, h1) / math.sin(math.radians(angle))
        if gap < need + 2:
            return False
    return True


def overlapping(labels: list[Any], renderer: Any) -> bool:
    """True if neighbouring upright x tick labels overlap."""
    return not _fits(_extents(labels, renderer), 0)


def _set_angle(labels: list[Any], angle: float) -> None:
    for t in labels:
        t.set_rotation(angle)
        t.set_horizontalalignment("center" if angle in (0, 90) else "right")
        t.set_rotation_mode("default" if angle in (0, 90) else "anchor")


def declutter_ticks(fig: Any) -> None:
    """Rotate overlapping x tick labels (30°, 45°, 90°), thinning them if even 90° is too dense."""
    literal_text(fig)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
        if not labels or labels[0].get_rotation() != 0:
            continue  # rotated on purpose by the figure's author
        ext = _extents(labels, renderer)
        if _fits(ext, 0):
            continue
        angle = next((a for a in (30, 45, 90) if _fits(ext, a)), 90)
        _set_angle(labels, angle)
        step = next((k for k in range(1, len(ext) + 1) if _fits(ext, angle, k)), len(ext))
        for i, t in enumerate(sorted(labels, key=lambda t: t.get_window_extent(renderer).x0)):
            t.set_visible(i % step == 0)
