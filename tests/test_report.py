"""The report writer: files, self-containedness, provenance, and rendering in a real browser."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import tomllib

import numpy as np
import pytest

from linrep.errors import InputError
from linrep.report import Report, figures, format_ci, format_value
from linrep.report.render import (
    blank_fraction,
    colour_fraction,
    find_chromium,
    screenshot,
    write_demo_report,
)


def test_import_does_not_load_matplotlib():
    code = "import sys, linrep.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_format_value_and_ci():
    assert format_value(0.93149) == "0.931"
    assert format_value(3) == "3"
    assert format_value(float("nan")) == "–"
    assert format_value(None) == "–"
    assert format_value(1.5e-7) == "1.50e-07"
    assert format_value("0.9 ± 0.1") == "0.9 ± 0.1"
    assert format_ci(0.5, 0.4, 0.6) == "0.500 ± 0.100"
    assert format_ci(0.5, 0.1, 0.6) == "0.500 [0.100, 0.600]"


def _small_report(tmp_path):
    cfg = {
        "latent": {"m": 4, "kind": "independent", "names": ["a", "b", "c", "d"]},
        "train": {"lr": 1.0, "steps": 10, "flag": True},
    }
    rep = Report("Test <report>", config=cfg, seeds=[3, 4], summary="sum `x`")
    rep.add_heading("Section")
    rep.add_text("first paragraph\n\nsecond | paragraph with **bold**")
    rep.add_table(
        [{"k": "a|b", "v": 0.123456}, {"k": "c", "v": np.float32(2.0), "extra": 1}], caption="T"
    )
    x = np.linspace(-1, 1, 50)
    rep.add_figure(figures.cosine_histograms({"p": {"same": x, "cross": -x}}), "hist", caption="H")
    steps = np.array([0, 1, 10, 100])
    band = (np.arange(4.0), np.arange(4.0) - 1, np.arange(4.0) + 1)
    rep.add_figure(figures.lines_vs_step(steps, {"q": {"s": band}}), "lines")
    rep.add_figure(
        figures.point_intervals(["g1", "g2"], {"s": (np.ones(2), np.zeros(2), 2 * np.ones(2))}),
        "points",
    )
    rep.results["answer"] = {"mean": 0.5, "ci": [0.4, float("nan")]}
    rep.set_metadata(mode="quick")
    return rep, rep.write(tmp_path, wall_time_s=1.25), cfg


def test_write_files_and_provenance(tmp_path):
    rep, paths, cfg = _small_report(tmp_path)
    for name in ("report.html", "report.md", "results.json"):
        assert (tmp_path / name).is_file()
    for stem in ("hist", "lines", "points"):
        assert (tmp_path / "figures" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (tmp_path / "figures" / f"{stem}.svg").read_bytes()[:2000]
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["results"]["answer"] == {"mean": 0.5, "ci": [0.4, None]}  # NaN -> null
    assert res["seeds"] == [3, 4]
    assert res["config"] == cfg
    assert res["metadata"]["wall_time_s"] == 1.25
    assert res["metadata"]["mode"] == "quick"
    assert "numpy" in res["metadata"]["packages"]
    assert res["metadata"]["cpus"] >= 1 and res["metadata"]["load_1min"] >= 0
    assert res["tables"][0]["columns"] == ["k", "v", "extra"]
    assert res["tables"][0]["rows"][0] == ["a|b", "0.123", "–"]
    assert res["figures"] == ["figures/hist.png", "figures/lines.png", "figures/points.png"]


def test_html_is_self_contained(tmp_path):
    _, _, _ = _small_report(tmp_path)
    page = (tmp_path / "report.html").read_text()
    # no external resources: every src is an inline data URI, no <script>, no <link>
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<script" not in page and "<link" not in page
    # the embedded images are exactly the written PNG files, in order
    for s, stem in zip(srcs, ("hist", "lines", "points"), strict=True):
        assert (
            base64.b64decode(s.split(",", 1)[1])
            == (tmp_path / "figures" / f"{stem}.png").read_bytes()
        )
    assert "Test &lt;report&gt;" in page  # title is escaped
    assert "<code>x</code>" in page and "<strong>bold</strong>" in page
    assert page.count("<p>") >= 2
    assert "1.2 s" in page  # wall time
    # the resolved config shown in the HTML/Markdown is valid TOML equal to the config
    md = (tmp_path / "report.md").read_text()
    toml_text = md.split("```toml\n", 1)[1].split("```", 1)[0]
    assert tomllib.loads(toml_text) == {
        "latent": {"m": 4, "kind": "independent", "names": ["a", "b", "c", "d"]},
        "train": {"lr": 1.0, "steps": 10, "flag": True},
    }
    assert "| a\\|b | 0.123 | – |" in md
    assert "![H](figures/hist.png)" in md


def test_bad_figure_names(tmp_path):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rep = Report("x")
    with pytest.raises(InputError, match="letters, digits"):
        rep.add_figure(plt.figure(), "../escape")
    rep.add_figure(plt.figure(), "ok")
    with pytest.raises(InputError, match="used twice"):
        rep.add_figure(plt.figure(), "ok")
    plt.close("all")


def test_heatmap_labels_and_values():
    m = np.array([[1.0, 0.25], [0.25, 1.0]])
    fig = figures.heatmaps({"Euclidean": m, "causal": m}, ["royalty", "gender"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["royalty", "gender"]
    assert sorted(t.get_text() for t in ax.texts) == ["0.25", "0.25", "1.00", "1.00"]
    np.testing.assert_array_equal(ax.images[0].get_array(), m)
    import matplotlib.pyplot as plt

    plt.close(fig)


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    html = write_demo_report(tmp_path / "demo")
    png = screenshot(html, tmp_path / "shot.png", width=1000, height=1400)
    assert blank_fraction(png) < 0.98  # something rendered
    # the solid red figure is an embedded base64 PNG: red pixels prove the image decoded and drew
    assert colour_fraction(png, (1.0, 0.0, 0.0)) > 0.02
