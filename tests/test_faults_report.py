"""Fault suite, reports: hostile names, unsafe links, legibility (figure width, tick labels, tables),
progress output in log files, bounded intervals.

Links are checked by parsing the written HTML with the standard library's parser (independent of
the renderer under test) and, when Python-Markdown is installed (the docs extra), the Markdown is
rendered by it and checked the same way.
"""

from __future__ import annotations

import html
import io
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from faultkit import assert_one_line_error, call, write_files
from linrep.report import Report, escape, figures
from linrep.report.markup import safe_href, to_html, to_markdown
from linrep.report.render import blank_fraction, find_chromium, screenshot

HOSTILE = [
    "[click](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD4=)",
    "[x](vbscript:msgbox(1))",
    "[x](//evil.example/x)",
    "[x](file:///etc/passwd)",
    "[x](javascript&colon;alert(1))",
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "$\\frac{$ unbalanced math",
    "**[x](javascript:alert(1))**",
    "`code` | pipe | [y](data:x)",
    "[ref]: javascript:alert(1)",
]
"""Strings a user could put in a concept file name, a sweep case name or a model folder name."""

SAFE_SCHEMES = ("http://", "https://")


class _Links(HTMLParser):
    """Every href/src attribute, every tag and every on* attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.tags: list[str] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k == "href":
                self.hrefs.append(v or "")
            elif k == "src":
                self.srcs.append(v or "")
            elif k.startswith("on"):
                self.handlers.append(k)


def _links(page: str) -> _Links:
    p = _Links()
    p.feed(page)
    return p


def _is_safe(href: str) -> bool:
    low = re.sub(r"[\x00-\x20]", "", href).lower()
    if low.startswith(SAFE_SCHEMES) or low.startswith("#"):
        return True
    return ":" not in low.split("/", 1)[0] and not low.startswith("//")


def _assert_safe_html(page: str) -> None:
    found = _links(page)
    assert all(_is_safe(h) for h in found.hrefs), found.hrefs
    assert all(s.startswith("data:image/png;base64,") for s in found.srcs), found.srcs
    assert "script" not in found.tags and not found.handlers
    assert not re.search(r"(?i)href\s*=\s*[\"']?\s*(javascript|data|vbscript):", page)


# ------------------------------------------------------------------ markup
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_renders_no_unsafe_link_or_tag(text):
    _assert_safe_html(to_html(text))
    md = to_markdown(text)
    assert not re.search(r"\]\(\s*(?i:javascript|data|vbscript|file|//)", md), md
    assert "<script" not in md and "<img" not in md


@pytest.mark.parametrize("text", HOSTILE)
def test_escape_shows_any_string_literally(text):
    assert to_html(escape(text)) == html.escape(text)


@pytest.mark.parametrize(
    ("target", "ok"),
    [
        ("https://arxiv.org/abs/2403.03867", True),
        ("http://example.org", True),
        ("e1_emergence/report.html", True),
        ("../x/report.html", True),
        ("#fig-heatmap", True),
        ("javascript:alert(1)", False),
        (" JAVASCRIPT:alert(1)", False),
        ("data:image/png;base64,xx", False),
        ("mailto:a@b.c", False),
        ("//evil.example", False),
        ("\\\\evil\\share", False),
    ],
)
def test_link_targets_allowed_only_for_http_relative_and_fragment(target, ok):
    assert (safe_href(target) is not None) == ok
    rendered = to_html(f"[label]({target})")
    assert ("<a " in rendered) == ok


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> Path:
    """A report whose every user-visible field is a hostile string."""
    out = tmp_path_factory.mktemp("hostile")
    bad = " / ".join(HOSTILE)
    rep = Report(bad, config={"llm": {"model": bad, bad[:20]: bad}}, seeds=[0], summary=bad)
    rep.add_heading(bad)
    rep.add_text(bad)
    rep.add_table([{bad: bad, "n": 1}], caption=bad)
    rep.add_figure(
        figures.heatmaps({bad[:30]: np.eye(3)}, HOSTILE[:3], title=bad), "h", caption=bad
    )
    rep.add_figure(
        figures.point_intervals(HOSTILE[:4], {bad: (np.ones(4), np.zeros(4), 2 * np.ones(4))}),
        "p",
        caption=bad,
    )
    rep.set_metadata(config_file=bad, model=bad)
    rep.write(out)
    return out


def test_hostile_report_html_has_only_safe_links(hostile_report):
    _assert_safe_html((hostile_report / "report.html").read_text())


def test_hostile_report_markdown_renders_safely(hostile_report):
    markdown = pytest.importorskip("markdown")
    page = markdown.markdown(
        (hostile_report / "report.md").read_text(), extensions=["tables", "fenced_code"]
    )
    found = _links(page)
    assert all(_is_safe(h) for h in found.hrefs), found.hrefs
    assert "script" not in found.tags and not found.handlers


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed")
def test_hostile_report_renders_in_chromium(hostile_report, tmp_path):
    png = screenshot(hostile_report / "report.html", tmp_path / "s.png", width=1200, height=1600)
    assert blank_fraction(png) < 0.97


def test_hostile_sweep_case_names_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = "".join(
        f'[[sweep.cases]]\nname = """{name}"""\n"latent.coupling_sd" = {i / 2}\n'
        for i, name in enumerate(HOSTILE[:4] + HOSTILE[11:12])
    )
    sweep = (
        "[latent]\nm = 2\nkind = 'ising'\n[model]\nd = 3\n[train]\nsteps = 20\nlog_every = 10\n"
        '[sweep]\nseeds = "0-1"\ngeometry = false\nreport_metrics = ["excess_loss"]\n' + cases
    )
    write_files(tmp_path, {"s.toml": sweep})
    code, _, err = call(["sweep", "s.toml", "--out", "o", "--serial", "--quiet"])
    assert code == 0, err
    page = (tmp_path / "o" / "report.html").read_text()
    _assert_safe_html(page)
    assert html.escape(HOSTILE[0]) in page  # the name is shown, literally


# ------------------------------------------------------------------ legibility
def _png_width(data: bytes) -> int:
    return struct.unpack(">I", data[16:20])[0]


def _rendered_width(fig) -> int:
    """Width in pixels of the PNG a report saves for ``fig`` (same dpi, tight bounding box)."""
    import io

    import matplotlib.pyplot as plt

    from linrep.report.layout import DPI

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return _png_width(buf.getvalue())


@pytest.mark.parametrize(("n", "panels"), [(4, 3), (12, 3), (27, 2)])
def test_heatmaps_fit_the_page_whatever_the_number_of_concepts(n, panels):
    labels = [f"[concept {i} - target {i}]" for i in range(n)]
    mats = {f"p{k}": np.abs(np.random.default_rng(k).normal(size=(n, n))) for k in range(panels)}
    assert _rendered_width(figures.heatmaps(mats, labels)) <= 1000


def test_figures_wrap_panels_instead_of_growing_wider():
    steps = np.arange(1, 11)
    band = (steps * 1.0, steps - 0.5, steps + 0.5)
    lines = figures.lines_vs_step(steps, {f"p{i}": {"s": band} for i in range(6)})
    hists = figures.cosine_histograms({f"p{i}": {"s": np.zeros(5)} for i in range(4)})
    assert _rendered_width(lines) <= 1000 and _rendered_width(hists) <= 1000


def test_crowded_tick_labels_end_up_disjoint():
    """Forty long labels on a narrow axis: after the report's declutter step, the labels that are
    still shown do not intersect (checked on their drawn boxes, which are exact at 0° and 90°)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from linrep.report.layout import declutter_ticks

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_xticks(range(40), [f"label number {i}" for i in range(40)])
    declutter_ticks(fig)
    fig.draw_without_rendering()
    r = fig.canvas.get_renderer()
    shown = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    assert shown and all(t.get_rotation() == 90 for t in shown)
    boxes = sorted((t.get_window_extent(r) for t in shown), key=lambda b: b.x0)
    assert all(b.x0 >= a.x1 for a, b in zip(boxes, boxes[1:]))
    plt.close(fig)


def test_short_labels_are_left_alone():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from linrep.report.layout import declutter_ticks

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.set_xticks(range(3), ["gd", "adam", "sgd"])
    declutter_ticks(fig)
    assert [t.get_rotation() for t in ax.get_xticklabels()] == [0, 0, 0]
    plt.close(fig)


def test_numeric_parameter_gets_a_numeric_axis():
    fig = figures.intervals_vs_value(
        [0.0, 0.25, 0.5, 1.0, 2.0], {"s": (np.arange(5.0), np.arange(5.0), np.arange(5.0))}
    )
    ax = fig.axes[0]
    x = ax.lines[0].get_xdata()
    np.testing.assert_allclose(x, [0, 0.25, 0.5, 1, 2])  # positions are the values themselves
    assert ax.get_xscale() == "linear"
    fig2 = figures.intervals_vs_value([8, 32, 512], {"s": (np.ones(3), np.ones(3), np.ones(3))})
    assert fig2.axes[0].get_xscale() == "log"


def test_page_structure_tables_scroll_captions_once_no_empty_sections(tmp_path):
    rep = Report("t")  # no config, no seeds
    rep.add_table([{f"column {i}": i for i in range(40)}])
    for name in ("a", "b", "c"):
        rep.add_figure(figures.scatter({"s": (np.arange(3), np.arange(3))}), name, caption="same")
    rep.write(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert page.count('<div class="table-scroll"><table>') == page.count("<table>") == 2
    assert page.count("</b> same") == 1  # once, under the last figure of the run
    assert "Resolved configuration" not in page and "(none)" not in page
    assert ">seeds<" not in page
    for name in ("a", "b", "c"):  # each figure links to its full-size files
        assert f'href="figures/{name}.png"' in page and f'href="figures/{name}.svg"' in page


# ------------------------------------------------------------------ progress output
class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_progress_in_a_log_file_is_a_few_plain_lines():
    from linrep.progress import progress_bar

    log = _Stream(tty=False)
    bar = progress_bar(total=10_000, desc="train", stream=log)
    for i in range(10_000):
        bar.update(1)
        bar.set_postfix(loss=i)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text
    assert 1 <= len(text.splitlines()) <= 3 and "10000/10000" in text


def test_progress_on_a_terminal_is_a_tqdm_bar():
    from linrep.progress import progress_bar

    tty = _Stream(tty=True)
    bar = progress_bar(total=3, desc="x", stream=tty)
    bar.update(3)
    bar.close()
    assert "\r" in tty.getvalue()


def test_cli_progress_into_a_file_has_no_carriage_returns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_files(
        tmp_path,
        {"t.toml": "[latent]\nm = 2\n[model]\nd = 3\n[train]\nsteps = 1500\nlog_every = 1\n"},
    )
    from faultkit import run

    res = run(["train", "t.toml", "--out", "o"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "\r" not in res.stderr and len(res.stderr.splitlines()) < 20


# ------------------------------------------------------------------ bounded intervals
def test_cosine_intervals_stay_in_minus_one_one():
    from scipy import stats

    from linrep.geometry import seed_interval, support_of

    v = np.array([0.999, 0.97, 1.0, 0.995])
    iv = seed_interval(v, support=support_of("same_concept_cosine"))
    h = stats.t.ppf(0.975, 3) * v.std(ddof=1) / 2  # independent t half-width
    assert iv.high == 1.0 and iv.low == pytest.approx(v.mean() - h)
    assert support_of("cross_concept_abs_cosine") == (0.0, 1.0)
    assert support_of("excess_loss") is None


def test_sweep_file_named_with_markup_gives_a_safe_title(tmp_path, monkeypatch):
    """A sweep file named with markup still gives a readable title (no crash, no link)."""
    monkeypatch.chdir(tmp_path)
    name = "[x](javascript:alert(1)).toml"
    write_files(
        tmp_path,
        {
            name: "[latent]\nm = 2\n[model]\nd = 3\n[train]\nsteps = 10\n"
            '[sweep]\nseeds = 1\ngeometry = false\nreport_metrics = ["excess_loss"]\n'
            '[sweep.grid]\n"model.d" = [2, 3]\n'
        },
    )
    code, _, err = call(["sweep", name, "--out", "o", "--serial", "--quiet"])
    assert code == 0, err
    _assert_safe_html((tmp_path / "o" / "report.html").read_text())
    code, _, err = call(["sweep", name, "--out", "o", "--serial", "--quiet"])
    assert_one_line_error(code, err, "--resume")


def test_dollar_in_a_name_is_literal_but_log_axis_ticks_stay_math():
    steps = np.array([1, 10, 100, 1000])
    band = (steps * 1.0, steps * 0.9, steps * 1.1)
    fig = figures.lines_vs_step(steps, {"a$\\frac{$": {"s": band}})
    fig.draw_without_rendering()  # would raise on the unbalanced $…$ if it were parsed
    ax = fig.axes[0]
    assert not ax.title.get_parse_math()
    ticks = [t for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(t.get_parse_math() and "$" in t.get_text() for t in ticks)
