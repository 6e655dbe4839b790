"""Progress output that behaves in a terminal, a log file and a notebook.

A tqdm bar redraws itself with carriage returns several times a second. On a terminal that is a
bar; in a log file (``2> log``, a batch job, CI) it is thousands of ``\\r`` records. Two pieces:

- :class:`StatusLines` wraps a stream: ordinary lines pass through at once, while the ``\\r``
  redraws of any progress bar become plain lines, at most one every :data:`LOG_INTERVAL_S` seconds
  (plus each bar's final state). ``linrep``'s :func:`~linrep.cli.main` puts it in front of stderr
  when stderr is not a terminal, so every bar — ours, transformers' — behaves in a log.
- :func:`progress_bar` makes a tqdm bar for linrep's own loops (the notebook widget in Jupyter).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

__all__ = ["progress_bar", "StatusLines", "status_lines_unless_terminal", "LOG_INTERVAL_S"]

LOG_INTERVAL_S = 30.0
"""Seconds between two progress lines when the output is not a terminal."""


class StatusLines:
    """A text stream that turns carriage-return redraws into throttled whole lines.

    Args:
        stream: where the lines go.
        interval: least seconds between two status lines (final states are always written).
    """

    def __init__(self, stream: TextIO, interval: float = LOG_INTERVAL_S):
        self.stream = stream
        self.interval = interval
        self._buf = ""
        self._pending: str | None = None  # latest status line not written yet
        self._last = -float("inf")

    def write(self, s: str) -> int:
        self._buf += s
        while True:
            cut = min(
                (i for i in (self._buf.find("\r"), self._buf.find("\n")) if i >= 0), default=-1
            )
            if cut < 0:
                return len(s)
            seg, sep, self._buf = self._buf[:cut], self._buf[cut], self._buf[cut + 1 :]
            if sep == "\n":
                self._line(seg)
            else:
                self._status(seg)

    def _line(self, seg: str) -> None:
        if seg.strip():
            self.stream.write(seg + "\n")
            self._pending = None  # a bar that ends with a newline has written its final state
        else:
            self._flush_pending()
        self.stream.flush()

    def _status(self, seg: str) -> None:
        if not seg.strip():  # a bar clearing itself: its last state is the final one
            self._flush_pending()
            return
        self._pending = seg
        if time.monotonic() - self._last >= self.interval:
            self._flush_pending()

    def _flush_pending(self) -> None:
        if self._pending is not None:
            self.stream.write(self._pending.rstrip() + "\n")
            self.stream.flush()
            self._pending, self._last = None, time.monotonic()

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        """Write what is left (a final status, an unterminated line)."""
        if self._buf.strip():
            self._pending = self._buf
        self._buf = ""
        self._flush_pending()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ... of the wrapped stream
        return getattr(self.stream, name)


@contextlib.contextmanager
def status_lines_unless_terminal() -> Iterator[None]:
    """Route ``sys.stderr`` through :class:`StatusLines` while the block runs, unless it is a tty."""
    original = sys.stderr
    isatty = getattr(original, "isatty", None)
    if original is None or (isatty is not None and isatty()):
        yield
        return
    wrapped = StatusLines(original)
    sys.stderr = wrapped
    try:
        yield
    finally:
        wrapped.close()
        if sys.stderr is wrapped:
            sys.stderr = original


def _in_notebook() -> bool:
    """A Jupyter kernel that can show tqdm's widget (else plain tqdm: Jupyter handles ``\\r``)."""
    import importlib.util

    shell = sys.modules.get("IPython")
    ip = getattr(shell, "get_ipython", lambda: None)() if shell else None
    in_kernel = ip is not None and "IPKernelApp" in getattr(ip, "config", {})
    return in_kernel and importlib.util.find_spec("ipywidgets") is not None


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    enabled: bool = True,
    unit: str = "it",
    initial: int = 0,
    leave: bool = False,
    stream: TextIO | None = None,
) -> Any:
    """A tqdm progress bar (iterate it, or ``update`` / ``set_postfix`` / ``close``).

    On a terminal: a normal bar; in Jupyter: the notebook widget; otherwise (a file or a pipe):
    plain lines, at most one every :data:`LOG_INTERVAL_S` seconds, and the final state.

    Args:
        iterable: items to wrap (or None and call ``update``).
        total: number of units (default: ``len(iterable)`` when it has one).
        desc: label in front of the bar.
        enabled: False gives a disabled bar (all calls are no-ops).
        unit: unit name.
        initial: units already done (e.g. the step a resumed run starts from).
        leave: keep the finished bar on a terminal.
        stream: where to write (default: sys.stderr at the time of the call).
    """
    kw = {"total": total, "desc": desc, "unit": unit, "initial": initial, "disable": not enabled}
    if _in_notebook():
        from tqdm.auto import tqdm

        return tqdm(iterable, leave=leave, **kw)
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return tqdm(iterable, file=stream, leave=leave, mininterval=0.5, dynamic_ncols=True, **kw)
    lines = stream if isinstance(stream, StatusLines) else StatusLines(stream)
    bar = tqdm(iterable, file=lines, leave=True, mininterval=1.0, ncols=80, **kw)
    if lines is not stream:  # our own wrapper: write the final state when the bar closes
        close = bar.close

        def close_and_flush() -> None:
            close()
            lines.close()

        bar.close = close_and_flush
    return bar
