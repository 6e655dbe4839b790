"""Argument handling of ``linrep llm`` (kept out of :mod:`linrep.cli` so that stays thin)."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..config import apply_overrides, check_sections, load_toml
from ..io import ensure_out_dir
from .run import LLMConfig
from .statistics import ordered

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
    null = res.get("null_mean_abs_offdiag", {})
    cells = [
        f"{k} {off[k]:.3f}"
        + (f" (random word pairs {null[k]['null_mean']:.3f})" if k in null else "")
        for k in ordered(list(off))
    ]
    print(
        f"{res['model']}: {len(res['concepts'])} concepts; mean |cos| between concepts: "
        + ", ".join(cells)
    )
    loo = res.get("statistics", {}).get("loo_test", {})
    for name in res["concepts"]:
        e = res["per_concept"][name]
        z = "".join(f"  z {k} {v[name]['z']:5.1f}" for k, v in loo.items() if name in v)
        print(
            f"  {name:24s} pairs {e['n_pairs']:4d}  LOO cos euclidean "
            f"{e['loo_cosine']['euclidean']:.3f}  causal {e['loo_cosine']['causal']:.3f}{z}"
        )
    perm = res.get("statistics", {}).get("alignment_null", {})
    emb = res.get("embedding") or {}
    for k in ordered(list(emb.get("summary", {}))):
        if k == "random":
            continue
        s = emb["summary"][k]
        al = perm.get(k, {})
        q95 = f", permutation-null 95th pct {np.mean([a['null_q95'] for a in al.values()]):.3f}"
        print(
            f"  alignment cos(f̄_W, ḡ_W) ({k}): mean {s['mean_alignment']:.3f} vs other concepts "
            f"{s['mean_other_concepts_abs']:.3f}"
            + (
                f"{q95}; Holm p < 0.05 for {sum(a['p_holm'] < 0.05 for a in al.values())}/{len(al)}"
                if al
                else ""
            )
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
