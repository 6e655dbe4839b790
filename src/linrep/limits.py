"""Ranges and sizes checked before anything is allocated.

A one-line config can ask for 10¹² seeds, a 10⁹-point grid or a 10⁶-wide layer. Everything here
computes the size arithmetically first and raises a one-line :class:`~linrep.errors.ConfigError`
naming the key and the fix, instead of expanding a list or allocating an array that exhausts memory.

- :func:`check_seed`: a seed is an integer in 0 … 2³²−1 (what numpy and torch both accept);
- :func:`parse_seeds`: ``[0, 3]``, ``"0-9"``, ``"0,3,5-7"`` or a count ``10`` → a sorted seed list,
  its length checked before it is built;
- :func:`check_count`: a count (runs, draws, grid points) against a limit;
- :func:`check_memory`: bytes an allocation needs against the memory available now.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import ConfigError

__all__ = [
    "SEED_MAX",
    "MAX_SEEDS",
    "INT64_MAX",
    "check_seed",
    "check_int64",
    "parse_seeds",
    "check_count",
    "check_memory",
    "available_memory",
]

SEED_MAX = 2**32 - 1
MAX_SEEDS = 100_000
INT64_MAX = 2**63 - 1


def check_int64(value: int, where: str) -> int:
    """``value`` if it fits a signed 64-bit integer (what numpy/torch store), else ConfigError."""
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise ConfigError(
            f"{where} = {_short(value)} does not fit in 64 bits; use a smaller integer"
        )
    return value


def _short(value: int) -> str:
    """An integer for a message: in full up to 15 digits, else like 1.18e+21."""
    return str(value) if abs(value) < 10**15 else f"{float(value):.3g}"


def check_seed(value: Any, where: str) -> int:
    """``value`` if it is an integer seed in 0 … 2³²−1, else a ConfigError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} = {value!r} must be an integer seed")
    if not 0 <= value <= SEED_MAX:
        raise ConfigError(f"{where} = {_short(value)} is out of range; seeds lie in 0 … {SEED_MAX}")
    return value


def _ranges(value: Any, where: str) -> list[tuple[int, int]]:
    """Inclusive (low, high) seed ranges of a seed spec, unexpanded."""
    if isinstance(value, bool):
        raise ConfigError(f"{where} = {value!r} must be a list of integers, 'a-b' or a count")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where} = {value} must be a positive count (or a list of seeds)")
        return [(0, value - 1)]
    if isinstance(value, list) and value:
        return [(s, s) for s in value]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{where} = {value!r} must be a non-empty list of integers, 'a-b' or a count"
        )
    out = []
    for part in value.replace(" ", "").split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ConfigError(
                f"{where} = {value!r} is not a seed list; write e.g. '0-9', '1,4,7' or '0-2,8'"
            )
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ConfigError(f"{where} = {value!r}: range '{part}' must be 'low-high', low ≤ high")
        out.append((a, b))
    return out


def parse_seeds(value: Any, where: str = "--seeds") -> list[int]:
    """``[0, 3]``, ``"0-9"`` (inclusive), ``"0,3,5-7"`` or a count ``10`` (= 0..9) → sorted seeds.

    Every seed is checked with :func:`check_seed`; the number of seeds (at most
    :data:`MAX_SEEDS`) is counted before the list is built; a seed listed twice is an error.
    """
    ranges = _ranges(value, where)
    for a, b in ranges:
        check_seed(a, f"{where} seed")
        check_seed(b, f"{where} seed")
    check_count(sum(b - a + 1 for a, b in ranges), MAX_SEEDS, "seeds", where)
    seeds = [s for a, b in ranges for s in range(a, b + 1)]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where} = {value!r} lists a seed twice; give each seed once")
    return sorted(seeds)


def check_count(n: int, limit: int, what: str, where: str) -> int:
    """``n`` if ``0 ≤ n ≤ limit``, else ConfigError: ``where`` asks for ``n`` ``what``."""
    if n > limit:
        raise ConfigError(f"{where} asks for {n:,} {what} (limit {limit:,}); ask for fewer")
    return n


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**28 else f"{n / 2**20:,.0f} MiB"


HEADROOM = 0.8
"""Fraction of the available memory one estimated allocation may take: estimates leave out
transient copies and the rest of the process, so an estimate near the whole is refused."""


def check_memory(n_bytes: float, what: str, key: str) -> None:
    """Raise ConfigError if ``what`` (needing ``n_bytes``) cannot fit in the memory available.

    Args:
        n_bytes: estimated size of the allocation (computed arithmetically, before allocating).
        what: what is allocated, e.g. ``"θ and Adam state of 10 runs"``.
        key: the config key(s) that set its size, named in the fix.
    """
    avail = available_memory()
    if avail is not None and n_bytes > HEADROOM * avail:
        raise ConfigError(
            f"{what} needs about {_gib(n_bytes)} but {_gib(avail)} of memory is available "
            f"(linrep uses at most {HEADROOM:.0%} of it for one allocation); "
            f"reduce {key}"
        )
