"""Argument handling of ``linrep llm`` (kept out of :mod:`linrep.cli` so that stays thin)."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any

from ..config import apply_overrides, check_sections, load_toml
from ..io import ensure_out_dir
from .run import LLMConfig

__all__ = ["run_from_args", "config_from_args"]


def config_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """The ``[llm]`` table from ``--config``, ``--set`` and the flags (flags win), and the models."""
    raw: dict[str, Any] = load_toml(args.config) if args.config is not None else {}
    if raw:
        check_sections(raw, ["llm"], where=str(args.config))
    raw.setdefault("llm", {})
    known = {"llm": [f.name for f in dataclasses.fields(LLMConfig)]}
    apply_overrides(raw, args.overrides, known)
    table = raw["llm"]
    for flag, key in (
        ("concepts", "concepts"),
        ("contexts", "contexts"),
        ("layer", "layer"),
        ("hierarchy", "hierarchy"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            table[key] = value
    if args.cache is not None:
        table["cache"] = str(args.cache)
    if args.no_cache:
        table["use_cache"] = False
    models = args.model or [table.get("model", LLMConfig.model)]
    return table, models


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name) or "model"


def run_from_args(args: argparse.Namespace) -> None:
    """Run ``linrep llm`` for one or several models and print the headline numbers."""
    from .reporting import write_comparison_report
    from .run import run_llm

    table, models = config_from_args(args)
    out = ensure_out_dir(args.out)
    progress = not args.quiet
    results = []
    for spec in models:
        cfg = LLMConfig.from_dict({**table, "model": spec})
        target = out if len(models) == 1 else out / _slug(spec)
        res = run_llm(cfg, target, progress=progress)
        results.append(res)
        _print_summary(res, target)
    if len(results) > 1:
        write_comparison_report(results, out)
        print(f"wrote the cross-model comparison to {out / 'report.html'}")


def _print_summary(res: dict[str, Any], out: Path) -> None:
    off = res["mean_abs_offdiag"]
    print(
        f"{res['model']}: {len(res['concepts'])} concepts; mean |cos| between concepts: "
        f"euclidean {off['euclidean']:.3f}, causal {off['causal']:.3f}, random {off['random']:.3f}"
    )
    for name in res["concepts"][:]:
        e = res["per_concept"][name]
        print(
            f"  {name:24s} pairs {e['n_pairs']:4d}  LOO cos euclidean "
            f"{e['loo_cosine']['euclidean']:.3f}  causal {e['loo_cosine']['causal']:.3f}"
        )
    emb = res.get("embedding")
    if emb and emb.get("summary", {}).get("causal"):
        s = emb["summary"]["causal"]
        print(
            f"  alignment cos(f̄_W, ḡ_W) (causal): mean {s['mean_alignment']:.3f} vs other concepts "
            f"{s['mean_other_concepts_abs']:.3f}, random directions {s['mean_random_abs']:.3f} "
            f"(rank 1 for {s['n_rank1']}/{s['n_concepts']})"
        )
    h = res.get("hierarchy")
    if h:
        sub = h["summary_nulls"].get("subset")
        null = f" (random-subset null {sub['mean_abs_cos_childdiff_null']:.3f})" if sub else ""
        print(
            f"  hierarchy ({h['estimator']}): {len(h['edges'])} edges, mean |cos(ℓp, ℓc − ℓp)| "
            f"{h['mean_abs_cos_childdiff']:.3f}{null}, mean cos(ℓp, ℓc) {h['mean_cos_child']:.3f}"
        )
    print(
        f"  total {res['timings']['total_s']:.1f} s; wrote {out / 'report.html'} and results.json"
    )
