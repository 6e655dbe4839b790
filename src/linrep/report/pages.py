"""Rendering a report's blocks to one HTML page and one Markdown page.

A page is: title, summary, the blocks (headings, paragraphs, tables, figures) in order, the run
information and — when there is one — the resolved configuration. Every piece of text goes through
:mod:`linrep.report.markup` (escaped, only safe links), so a hostile concept, case or model name
cannot inject HTML or a ``javascript:`` link. Layout rules a reader relies on:

- every figure is embedded (base64 PNG, the page stays self-contained) and links to its full-size
  PNG and SVG in ``figures/``;
- tables wider than the page scroll sideways inside their own box instead of being cut;
- a figure caption shared by several consecutive figures is printed once, under the last of them.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .markup import to_html, to_markdown

__all__ = ["Block", "html_page", "markdown_page", "CSS", "PAGE_WIDTH_PX"]

PAGE_WIDTH_PX = 1000
"""Width of the page's text column (CSS ``main`` max-width); figures are sized to fit it."""


@dataclass
class Block:
    kind: str  # "heading" | "text" | "table" | "figure"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Page:
    """Everything a renderer needs (built by :meth:`linrep.report.Report.write`)."""

    title: str
    summary: str | None
    blocks: Sequence[Block]
    figures: Mapping[str, tuple[bytes, bytes]]
    meta_rows: Sequence[tuple[str, str]]
    config_text: str | None


def _captions(blocks: Sequence[Block]) -> list[str | None]:
    """Per block, the caption to print: a caption repeated by the next figure is printed once."""
    out: list[str | None] = []
    for i, b in enumerate(blocks):
        cap = b.data.get("caption") if b.kind == "figure" else None
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        same_next = nxt is not None and nxt.kind == "figure" and nxt.data.get("caption") == cap
        out.append(None if (cap is None or same_next) else cap)
    return out


# ------------------------------------------------------------------------------------- HTML
def _html_table(columns: Sequence[str], cells: Sequence[Sequence[str]], caption: str | None) -> str:
    head = "".join(f"<th>{to_html(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{to_html(c)}</td>" for c in row) + "</tr>" for row in cells
    )
    cap = f"<caption>{to_html(caption)}</caption>" if caption else ""
    table = f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="table-scroll">{table}</div>'


def _alt(caption: str | None, name: str) -> str:
    """Alternative text of an image: its caption (or name) as plain text, without brackets."""
    return re.sub(r"[\[\]\\`*]", "", caption or name).replace("\n", " ")[:200]


def _html_figure(
    name: str, png: bytes, svg: bytes, number: int, caption: str | None, alt: str
) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    stem = html.escape(f"figures/{name}")
    files = f'<a href="{stem}.png">PNG</a>' + (f' · <a href="{stem}.svg">SVG</a>' if svg else "")
    cap = f" {to_html(caption)}" if caption else ""
    return (
        f'<figure id="fig-{html.escape(name)}"><a href="{stem}.png">'
        f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{b64}"></a>'
        f'<figcaption><b>Figure {number}.</b>{cap} <span class="files">(full size: {files})</span>'
        "</figcaption></figure>"
    )


def html_page(page: Page) -> str:
    """The self-contained ``report.html``."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(page.title)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>{to_html(page.title)}</h1>",
    ]
    if page.summary:
        parts.append(f'<p class="summary">{to_html(page.summary)}</p>')
    n_fig = 0
    for b, cap in zip(page.blocks, _captions(page.blocks), strict=True):
        if b.kind == "heading":
            lv = b.data["level"]
            parts.append(f"<h{lv}>{to_html(b.data['text'])}</h{lv}>")
        elif b.kind == "text":
            parts += [f"<p>{to_html(p)}</p>" for p in re.split(r"\n\s*\n", b.data["text"])]
        elif b.kind == "table":
            parts.append(_html_table(b.data["columns"], b.data["cells"], b.data["caption"]))
        elif b.kind == "figure":
            n_fig += 1
            png, svg = page.figures[b.data["name"]]
            alt = _alt(b.data.get("caption"), b.data["name"])
            parts.append(_html_figure(b.data["name"], png, svg, n_fig, cap, alt))
    parts.append("<h2>Run information</h2>")
    parts.append(_html_table(["item", "value"], [list(r) for r in page.meta_rows], None))
    if page.config_text is not None:
        parts.append("<h2>Resolved configuration</h2>")
        parts.append(f"<pre>{html.escape(page.config_text)}</pre>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------- Markdown
def _md_cell(text: str) -> str:
    return re.sub(r"(?<!\\)\|", r"\\|", to_markdown(text)).replace("\n", " ")


def _md_table(columns: Sequence[str], cells: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in cells]
    return [*lines, ""]


def _fence(text: str) -> str:
    """A code fence longer than any backtick run in ``text`` (so the text cannot close it)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def markdown_page(page: Page) -> str:
    """``report.md`` (figures referenced as files under ``figures/``)."""
    lines = [f"# {to_markdown(page.title)}", ""]
    if page.summary:
        lines += [to_markdown(page.summary), ""]
    for b, cap in zip(page.blocks, _captions(page.blocks), strict=True):
        if b.kind == "heading":
            lines += ["#" * b.data["level"] + " " + to_markdown(b.data["text"]), ""]
        elif b.kind == "text":
            lines += [to_markdown(b.data["text"]), ""]
        elif b.kind == "table":
            if b.data["caption"]:
                lines += [f"**{to_markdown(b.data['caption'])}**", ""]
            lines += _md_table(b.data["columns"], b.data["cells"])
        elif b.kind == "figure":
            name, alt = b.data["name"], _alt(b.data.get("caption"), b.data["name"])
            lines += [f"[![{alt}](figures/{name}.png)](figures/{name}.png)", ""]
            if cap:
                lines += [f"*{to_markdown(cap)}*", ""]
    lines += ["## Run information", "", *_md_table(["item", "value"], page.meta_rows)]
    if page.config_text is not None:
        fence = _fence(page.config_text)
        lines += ["## Resolved configuration", "", f"{fence}toml", page.config_text, fence, ""]
    return "\n".join(lines)


CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;
color:#1d1d1f;background:#fff;margin:0;line-height:1.5}
main{max-width:1000px;margin:0 auto;padding:1.5em 2em 4em}
h1{font-size:1.7em;border-bottom:2px solid #ddd;padding-bottom:.3em}
h2{font-size:1.3em;margin-top:1.8em;border-bottom:1px solid #eee}
h3{font-size:1.1em}
p.summary{font-size:1.05em;color:#333;background:#f5f7fa;padding:.7em 1em;border-left:4px solid #4a7ab5}
.table-scroll{overflow-x:auto;max-width:100%;margin:1em 0}
table{border-collapse:collapse;font-size:.92em}
caption{caption-side:top;text-align:left;font-weight:600;padding-bottom:.3em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f2f5}
tbody tr:nth-child(even){background:#fafafa}
figure{margin:1.5em 0;text-align:center}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.92em;color:#444;text-align:left;margin-top:.4em}
figcaption .files{color:#888}
code,pre{font-family:SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em}
code{background:#f3f3f3;padding:0 .2em;border-radius:3px}
pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:1em;overflow-x:auto}
""".strip()
