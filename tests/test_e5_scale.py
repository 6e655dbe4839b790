"""E5's fitted / plateau flags, computed as its docstring says (hand-built histories and a tiny run)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from linrep.errors import ConfigError
from linrep.experiments.config import experiment_config_path, load_config
from linrep.experiments.e5_scale import Settings, fit_check, title


def _history(excess: list[list[float]], steps: list[int], se: list[list[float]] | None = None):
    rows = []
    for k, run in enumerate(excess):
        for j, (t, e) in enumerate(zip(steps, run, strict=True)):
            row = {"run": k, "step": t, "excess_loss": e}
            if se is not None:
                row["excess_loss_se"] = se[k][j]
            rows.append(row)
    return rows


V = 8
LEARNABLE = 4.0  # log V − H̄, by choosing the floor
FLOOR = math.log(V) - LEARNABLE


def _check(excess, steps, se=None):
    return fit_check(
        _history(excess, steps, se), FLOOR, V, fit_fraction=0.05, plateau_fraction=0.05
    )


def test_fitted_and_plateau_flags_follow_the_documented_thresholds():
    steps = [0, 100, 200, 300, 400]
    # threshold 0.05 · 4 = 0.2 nats; plateau window starts at step 300 (= 3/4 of 400)
    fc = _check([[5.0, 1.0, 0.5, 0.20, 0.19], [5.0, 1.0, 0.5, 0.215, 0.21]], steps)
    assert fc.learnable == pytest.approx(LEARNABLE)
    assert fc.from_step == 300
    np.testing.assert_allclose(fc.captured, [1 - 0.19 / 4, 1 - 0.21 / 4])
    np.testing.assert_allclose(fc.drop, [0.01, 0.005], atol=1e-12)
    # run 0: 0.19 ≤ 0.2 fitted, but it fell 0.01 > 5 % of 0.19 in the last quarter: no plateau;
    # run 1: 0.21 > 0.2 not fitted, fell 0.005 ≤ 0.0105: plateau
    assert fc.fitted.tolist() == [True, False]
    assert fc.plateaued.tolist() == [False, True]
    assert fc.status == "not fitted"  # neither every run fitted nor every run at a plateau

    both = _check([[5.0, 0.19, 0.19, 0.19, 0.19], [5.0, 0.1, 0.1, 0.1, 0.1]], steps)
    assert both.fitted.all() and both.status == "fitted"
    high = _check([[5.0, 2.0, 1.5, 1.02, 1.0], [5.0, 2.0, 1.5, 1.01, 1.0]], steps)
    assert not high.fitted.any() and high.plateaued.all() and high.status == "plateau"


def test_the_standard_error_counts_against_fitted_and_for_plateau():
    steps = [0, 100, 200, 300, 400]
    # 0.15 + 2 · 0.03 = 0.21 > 0.2: not fitted; a drop of 0.05 ≤ 2 SE = 0.06: plateau
    fc = _check([[5.0, 1.0, 0.5, 0.2, 0.15]], steps, se=[[0.0, 0.0, 0.0, 0.03, 0.03]])
    assert fc.fitted.tolist() == [False] and fc.plateaued.tolist() == [True]
    exact = _check([[5.0, 1.0, 0.5, 0.2, 0.15]], steps)  # same numbers without an SE
    assert exact.fitted.tolist() == [True] and exact.plateaued.tolist() == [False]


def test_plateau_window_starts_at_the_last_logged_step_before_three_quarters():
    fc = _check([[5.0, 4.0, 3.0, 2.0, 1.0, 0.9, 0.8, 0.75]], [0, 100, 200, 300, 400, 500, 600, 700])
    assert fc.from_step == 500  # 3/4 · 700 = 525
    np.testing.assert_allclose(fc.drop, [0.9 - 0.75])


def test_bad_train_by_m_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="unknown \\[train\\] key 'stesp'"):
        Settings(train_by_m={"16": {"stesp": 10}})
    with pytest.raises(ConfigError, match="integer m"):
        Settings(train_by_m={"sixteen": {"steps": 10}})
    assert Settings(train_by_m={"16": {"steps": 10}}).train_for(16) == {"steps": 10}
    assert Settings().train_for(3) == {}


def test_title_follows_the_config():
    path = experiment_config_path("e5_scale")
    full = load_config(path, Settings)
    quick = load_config(path, Settings, quick=True)
    assert "65,536 tokens" in title(full) and "m = 3…16" in title(full)
    top = f"{2 ** max(quick.settings.ms):,} tokens"
    assert "65,536" not in title(quick) and top in title(quick)


def test_tiny_run_flags_agree_with_its_own_numbers(tiny_runs):
    """Recompute every cell's flags from the per-seed excess it reports (m = 3: exact, SE 0)."""
    run = tiny_runs("E5")
    doc = json.loads((Path(run.out) / "results.json").read_text())
    fit = doc["results"]["fit"]
    assert doc["title"].endswith("(m = 3…3, up to 8 tokens)")
    for key, st in doc["results"]["stats"].items():
        excess = np.array(st["excess_loss"]["per_seed"])
        learnable = math.log(8) - st["loss_floor"]
        assert st["learnable_information"] == pytest.approx(learnable)
        np.testing.assert_allclose(st["captured"]["per_seed"], 1 - excess / learnable)
        fitted = excess <= fit["fit_fraction"] * learnable
        assert st["fitted_runs"] == int(fitted.sum())
        drop = np.array(st["plateau_drop"]["per_seed"])
        plateau = drop <= fit["plateau_fraction"] * excess
        assert st["plateau_runs"] == int(plateau.sum())
        want = "fitted" if fitted.all() else ("plateau" if plateau.all() else "not fitted")
        assert st["status"] == want == fit["cells"][key]
    # the report's "train s" column: the cells' training seconds with one decimal
    lines = (Path(run.out) / "report.md").read_text().splitlines()

    def split(line):  # markdown cells; "\|" is a literal bar inside a cell
        return [c.strip() for c in re.split(r"(?<!\\)\|", line)]

    col = split(next(x for x in lines if "| train s |" in x)).index("train s")
    cells = [split(x)[col] for x in lines if x.startswith("| 3 | 8 |")]
    assert cells == [f"{st['seconds']:.1f}" for st in doc["results"]["stats"].values()]
