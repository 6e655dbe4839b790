"""``linrep llm``: analyse one or several models by name or path and write their reports.

The command is a thin caller of :func:`linrep.llm.analyze_source` (the same pipeline as
:func:`linrep.llm.analyze`) followed by :func:`linrep.llm.reporting.write_model_report`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ..errors import InputError
from .api import Extension, analyze_source
from .options import LLMConfig
from .result import AnalysisResult

__all__ = ["LLMConfig", "run_llm", "analyze_model", "model_keys", "config_extensions"]


def config_extensions(cfg: LLMConfig) -> list[Extension]:
    """The extensions a config asks for (each validates its own input when built)."""
    out: list[Extension] = []
    if cfg.hierarchy:
        from .hierarchy import HierarchyOptions, hierarchy_extension

        out.append(
            hierarchy_extension(
                cfg.hierarchy,
                HierarchyOptions(
                    n_null=cfg.hierarchy_n_null, min_words=cfg.hierarchy_min_words, seed=cfg.seed
                ),
            )
        )
    return out


def analyze_model(cfg: LLMConfig, *, progress: bool = True) -> AnalysisResult:
    """Run every measurement of ``cfg`` on one model (nothing written)."""
    return analyze_source(cfg, progress=progress, extensions=config_extensions(cfg))


def run_llm(
    cfg: LLMConfig,
    out: str | os.PathLike,
    *,
    progress: bool = True,
    extensions: Sequence[Extension] = (),
) -> AnalysisResult:
    """Analyse one model and write ``report.html``, ``report.md``, ``results.json`` and figures.

    ``results.json`` holds the report's tables and, under ``"results"``,
    :meth:`AnalysisResult.to_json` (model, concepts, per_concept, cosine_matrix, mean_abs_offdiag,
    block_structure, embedding, layers, intervention, steering, timings, options, notes).

    Returns:
        The typed result.
    """
    from .reporting import write_model_report

    extensions = [*extensions, *config_extensions(cfg)]  # bad folders fail before model work
    res = analyze_source(cfg, progress=progress, extensions=extensions)
    write_model_report(res, Path(out), config={"llm": asdict(cfg)})
    return res


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def model_keys(specs: Sequence[str]) -> list[str]:
    """Distinct output folder names for several ``--model`` values.

    The last path component, or ``parent_last`` for paths whose last components are equal.

    Raises:
        InputError: a model given twice, or two paths that still cannot be told apart.
    """
    resolved = [
        str(Path(s).expanduser().resolve()) if Path(s).expanduser().exists() else s for s in specs
    ]
    for i, a in enumerate(resolved):
        if a in resolved[:i]:
            raise InputError(f"--model '{specs[i]}' is given twice; pass each model once")
    last = [_slug(Path(s).name) for s in specs]
    keys = [
        _slug(f"{Path(r).parent.name}_{Path(r).name}") if last.count(k) > 1 else k
        for k, r in zip(last, resolved, strict=True)
    ]
    for i, k in enumerate(keys):
        if k in keys[:i]:
            j = keys.index(k)
            raise InputError(
                f"--model '{specs[j]}' and '{specs[i]}' would share the output folder '{k}'; "
                "rename one of the folders"
            )
    return keys
