"""The little markup reports understand — ``` `code` ```, `**bold**`, `[text](url)`, backslash escapes — rendered
to HTML or Markdown safely, whatever the text holds.

Report text mixes our prose with strings a user controls: concept-file names, sweep case names,
model names, config values. Two rules make that safe:

- :func:`escape` turns any string into markup that renders as exactly that string (every markup
  character is backslash-escaped). Wrap user strings in it before putting them into prose, captions
  or table cells.
- Links render only for ``http(s)://``, relative and ``#`` targets (:func:`safe_href`); any other
  target (``javascript:``, ``data:``, ``vbscript:``, ``//host``, ...) keeps its text and loses the
  link. All other text is HTML-escaped in HTML, and raw HTML tags are neutralised in Markdown.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["escape", "to_html", "to_markdown", "safe_href", "SPECIALS"]

SPECIALS = "\\`*_[]()#|<>!"
"""Characters :func:`escape` backslash-escapes (Markdown's inline specials and the table pipe)."""

_TOKEN = re.compile(
    r"(?P<esc>\\[" + re.escape(SPECIALS) + r"])"
    r"|(?P<code>`(?P<ctext>[^`]+)`)"
    r"|(?P<bold>\*\*(?P<btext>(?:\\.|[^*\\])+?)\*\*)"
    r"|(?P<link>\[(?P<label>(?:\\.|[^\]\\])+)\]\((?P<href>(?:\\.|[^()\s\\]|\([^()\s]*\))*)\))"
)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


def escape(text: object) -> str:
    """Markup that renders as ``str(text)`` literally (for concept, case and model names)."""
    return re.sub("([" + re.escape(SPECIALS) + "])", r"\\\1", str(text))


def safe_href(target: str) -> str | None:
    """``target`` if it is an http(s), relative or ``#`` link, else None.

    The check sees what a browser sees: entities decoded, control characters and white space
    removed, case ignored (``JaVa&#10;Script:`` is ``javascript:``).
    """
    t = html.unescape(target)
    t = "".join(c for c in t if not unicodedata.category(c).startswith(("C", "Z")))
    low = t.lower()
    if low.startswith("//") or "\\" in low:
        return None  # protocol-relative (browsers read a backslash as a slash): another host
    m = _SCHEME.match(low)
    if m and m.group(1) not in ("http", "https"):
        return None
    if not m and ":" in low.split("/", 1)[0].split("#", 1)[0].split("?", 1)[0]:
        return None  # a colon before the first slash is read as a scheme by browsers
    return target


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def to_html(text: str) -> str:
    """HTML for ``text``: markup rendered, everything else escaped, unsafe links dropped."""
    out, pos = [], 0
    for m in _TOKEN.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        pos = m.end()
        if m.group("esc"):
            out.append(html.escape(m.group("esc")[1]))
        elif m.group("code"):
            out.append(f"<code>{html.escape(m.group('ctext'))}</code>")
        elif m.group("bold"):
            out.append(f"<strong>{to_html(m.group('btext'))}</strong>")
        else:
            href = safe_href(_unescape(m.group("href")))
            label = to_html(m.group("label"))
            out.append(f'<a href="{html.escape(href, quote=True)}">{label}</a>' if href else label)
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _md_plain(text: str) -> str:
    """Plain Markdown text that cannot become a link or a tag in any Markdown renderer.

    Brackets are escaped (no ``[x](...)``, ``![x](...)`` or ``[ref]: ...`` can form, even with the
    white space some renderers accept inside a link target) and tag starts become ``&lt;``.
    """
    return _TAG_START.sub("&lt;", re.sub(r"(?<!\\)([\[\]])", r"\\\1", text))


def to_markdown(text: str) -> str:
    """Markdown for ``text``: the same markup, with unsafe links reduced to their text."""
    out, pos = [], 0
    for m in _TOKEN.finditer(text):
        out.append(_md_plain(text[pos : m.start()]))
        pos = m.end()
        if m.group("esc") or m.group("code"):
            out.append(m.group(0))
        elif m.group("bold"):
            out.append(f"**{to_markdown(m.group('btext'))}**")
        else:
            label = to_markdown(m.group("label"))
            href = safe_href(_unescape(m.group("href")))
            out.append(f"[{label}]({m.group('href')})" if href else label)
    out.append(_md_plain(text[pos:]))
    return "".join(out)
