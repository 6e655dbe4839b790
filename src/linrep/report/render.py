"""Check that a report renders in a real browser: headless Chromium screenshots (optional tooling).

Used by ``scripts/check_report_render.sh`` and the report tests. Nothing here is needed to *write* a
report; Chromium (Debian package ``chromium``) is only looked for when :func:`screenshot` is called.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["find_chromium", "screenshot", "blank_fraction", "colour_fraction", "write_demo_report"]

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(
    html_path: str | os.PathLike,
    png_path: str | os.PathLike,
    *,
    width: int = 1100,
    height: int = 3000,
    timeout: float = 120.0,
) -> Path:
    """Render ``html_path`` in headless Chromium (offline) and save a ``width × height`` screenshot.

    Raises:
        InputError: if Chromium is missing, the file does not exist or no screenshot was produced.
    """
    exe = find_chromium()
    if exe is None:
        raise InputError("chromium not found; install it (apt-get install -y chromium)")
    html_path = Path(html_path).resolve()
    if not html_path.is_file():
        raise InputError(f"report '{html_path}' does not exist")
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    if png_path.exists():
        png_path.unlink()
    with tempfile.TemporaryDirectory(prefix="linrep-chromium-") as profile:
        cmd = [
            exe,
            *_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png_path}",
            html_path.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if not png_path.is_file() or png_path.stat().st_size == 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise InputError(
            f"chromium wrote no screenshot (exit {proc.returncode}): {' | '.join(tail)}"
        )
    return png_path


def _read_png(png_path: str | os.PathLike) -> np.ndarray:
    import matplotlib.image as mpimg

    img = np.asarray(mpimg.imread(str(png_path)), dtype=float)  # (H, W, 3|4) in [0, 1]
    return img[..., :3]


def blank_fraction(png_path: str | os.PathLike) -> float:
    """Fraction of (near-)white pixels of a PNG: 1.0 means the page rendered nothing."""
    img = _read_png(png_path)
    return float((img.min(axis=-1) > 0.97).mean())


def colour_fraction(
    png_path: str | os.PathLike, rgb: tuple[float, float, float], tol: float = 0.08
) -> float:
    """Fraction of pixels within ``tol`` (max-abs per channel) of colour ``rgb`` (components in [0, 1])."""
    img = _read_png(png_path)
    return float((np.abs(img - np.asarray(rgb)).max(axis=-1) <= tol).mean())


def write_demo_report(out_dir: str | os.PathLike) -> Path:
    """Write a small report (a table, a heatmap, a solid-colour figure) used to test rendering."""
    from . import figures
    from .writer import Report

    rng = np.random.default_rng(0)
    rep = Report(
        "linrep render check",
        config={"demo": {"purpose": "render check", "seed": 0}},
        seeds=[0],
        summary="If you can read this and see two figures, the report renders.",
    )
    rep.add_table([{"quantity": "same-concept cosine", "value": 0.93}], caption="A table")
    rep.add_figure(
        figures.heatmaps({"demo": np.abs(rng.normal(size=(4, 4))) / 3}, ["a", "b", "c", "d"]),
        "demo_heatmap",
        caption="A heatmap",
    )
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    fig.patch.set_facecolor((1.0, 0.0, 0.0))
    ax.set_axis_off()
    rep.add_figure(fig, "demo_solid_red", caption="A solid red figure (the test looks for it)")
    rep.write(out_dir)
    return Path(out_dir) / "report.html"
