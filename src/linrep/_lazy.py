"""Lazy re-exports: a package lists ``name → module`` and imports each module on first access.

This keeps ``import linrep`` (and ``import linrep.learn``, ``import linrep.llm``) free of heavy imports
such as torch or transformers while still offering a flat public API.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: Mapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package: the package's ``__name__`` (for error messages).
        exports: public name → module that defines it.
        namespace: the package's ``globals()`` (what ``dir()`` lists besides the exports).

    Returns:
        ``(__getattr__, __dir__)`` to assign at module level.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module '{package}' has no attribute '{name}'")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
