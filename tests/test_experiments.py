"""Experiments E1 … E10, ``linrep simulate`` and ``linrep reproduce``: code paths, files, errors.

Every experiment runs here with tiny overrides (2 seeds, a few hundred steps) so that all code paths
execute in seconds; the numbers of the paper's calibration are asserted in
``tests/test_experiments_calibration.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from conftest import TINY
from linrep.cli import main
from linrep.errors import ConfigError
from linrep.experiments import EXPERIMENTS, experiment_module, run_experiment
from linrep.experiments.config import (
    deep_merge,
    experiment_config_path,
    load_config,
    load_raw_config,
    merge_quick,
)
from linrep.experiments.stats import summarise


def test_import_experiments_is_light():
    code = (
        "import sys, linrep.experiments, linrep.experiments.config, linrep.experiments.stats, "
        "linrep.experiments.cells; "
        "print([m for m in ('torch', 'matplotlib') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_summarise_matches_t_interval():
    x = np.array([0.9, 0.92, 0.95, 0.91, 0.93])
    s = summarise(x)
    h = stats.t.ppf(0.975, 4) * x.std(ddof=1) / np.sqrt(5)
    assert s.mean == pytest.approx(x.mean())
    assert s.ci == pytest.approx((x.mean() - h, x.mean() + h))
    assert list(s.per_seed) == x.tolist() and s.n == 5
    assert s.to_json() == {"mean": s.mean, "ci": list(s.ci), "n": 5, "per_seed": x.tolist()}


def test_quick_merge_and_overrides(tmp_path):
    raw = {"train": {"steps": 100, "lr": 1.0}, "quick": {"train": {"steps": 5}}}
    assert merge_quick(raw, False) == {"train": {"steps": 100, "lr": 1.0}}
    assert merge_quick(raw, True) == {"train": {"steps": 5, "lr": 1.0}}
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
    with pytest.raises(ConfigError, match="unknown section"):
        merge_quick({"quick": {"trian": {}}}, True)
    mod = experiment_module("e1")
    path = experiment_config_path(mod.STEM)
    full = load_config(path, mod.Settings)
    quick = load_config(path, mod.Settings, quick=True, overrides=("train.lr=0.5",))
    assert quick.train.steps < full.train.steps
    assert quick.settings.n_seeds >= 5 and full.settings.n_seeds >= 5
    assert quick.train.lr == 0.5 and quick.quick and not full.quick
    assert load_raw_config(path, True)["train"]["steps"] == quick.train.steps
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        load_config(path, mod.Settings, overrides=("train.stesp=3",))
    with pytest.raises(ConfigError, match="n_seeds"):
        load_config(path, mod.Settings, overrides=("experiment.n_seed=3",))


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_config_has_at_least_five_seeds_and_reads(name):
    import dataclasses

    mod = experiment_module(name)
    assert mod.Settings.__dataclass_params__.frozen  # experiments get a typed, frozen config
    for quick in (False, True):
        cfg = load_config(experiment_config_path(mod.STEM), mod.Settings, quick=quick)
        assert cfg.settings.n_seeds >= 5 and len(cfg.seeds) == cfg.settings.n_seeds
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.settings.n_seeds = 1


@pytest.mark.parametrize("name", sorted(TINY))
def test_experiment_runs_and_writes_report(name, tiny_runs):
    from pathlib import Path

    s = tiny_runs(name)
    out = Path(s.out)
    for f in ("report.html", "report.md", "results.json"):
        assert (out / f).is_file()
    assert s.figures and all((out / f).is_file() for f in s.figures)
    res = json.loads((out / "results.json").read_text())
    assert res["metadata"]["mode"] == "quick" and res["metadata"]["experiment"] == name
    assert res["seeds"] == [0, 1]
    for v in s.headline.values():  # a Summary over seeds, or a single derived number
        assert np.isfinite(getattr(v, "mean", v)) and len(getattr(v, "ci", (0, 0))) == 2


def test_unknown_experiment_is_a_clean_error(tmp_path, capsys):
    assert main(["reproduce", "E19", "--out", str(tmp_path)]) == 2
    assert "unknown experiment 'E19'" in capsys.readouterr().err


def test_simulate_cli_writes_metrics(tmp_path, capsys):
    from linrep.experiments.config import configs_dir

    out = tmp_path / "sim"
    rc = main(
        [
            "simulate",
            str(configs_dir() / "simulate.toml"),
            "--out",
            str(out),
            "--seeds",
            "0-2",
            "--set",
            "train.steps=300",
            "--set",
            "train.log_every=100",
            "--quiet",
        ]
    )
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    m = doc["metrics"]
    for key in (
        "same_concept_cosine",
        "cross_concept_abs_cosine",
        "alignment_cosine",
        "excess_loss",
        "log_odds_matching_error",
        "same_concept_cosine_causal",
        "same_concept_cosine_random",
        "same_concept_cosine_identifiable",
        "cross_concept_abs_cosine_identifiable",
        "alignment_cosine_identifiable",
        "identifiable_rank",
    ):
        assert key in m, key
        assert len(m[key]["per_seed"]) == 3 and len(m[key]["ci"]) == 2
    assert len(m["same_concept_cosine"]["per_concept"]) == 4
    assert doc["seeds"] == [0, 1, 2]
    assert doc["identifiable"]["d"] == 32 and doc["identifiable"]["rank"] == [9, 9, 9]  # 2m + 1
    for f in ("report.html", "report.md", "results.json", "train/history.csv"):
        assert (out / f).is_file(), f
    assert (
        main(
            [
                "simulate",
                str(configs_dir() / "simulate.toml"),
                "--out",
                str(out),
                "--overwrite",
                "--set",
                "model.encodr=mlp",
            ]
        )
        == 2
    )
    assert "did you mean 'encoder'" in capsys.readouterr().err


def test_same_seed_same_numbers_and_index(tmp_path):
    from linrep.experiments.index import headline_text, write_index

    a = run_experiment("E8", tmp_path / "a", overrides=TINY["E8"], progress=False)
    run_experiment("E8", tmp_path / "b", overrides=TINY["E8"], progress=False)
    ra = json.loads((tmp_path / "a" / "results.json").read_text())["results"]
    rb = json.loads((tmp_path / "b" / "results.json").read_text())["results"]
    assert ra == rb  # bit-identical numbers for the same seeds and config
    assert a.mode == "full"
    write_index([a], tmp_path, quick=False, wall_time_s=1.0)
    page = (tmp_path / "report.html").read_text()
    assert '<a href="a/report.html">E8</a>' in page
    assert page.count("data:image/png;base64,") == 1
    assert "CE/linear: " in headline_text(a.headline)


def test_experiment_report_renders_in_chromium(tmp_path):
    from linrep.report.render import blank_fraction, find_chromium, screenshot

    if find_chromium() is None:
        pytest.skip("chromium not installed")
    run_experiment("E8", tmp_path / "e8", overrides=TINY["E8"], progress=False)
    png = screenshot(
        tmp_path / "e8" / "report.html", tmp_path / "shot.png", width=1000, height=1600
    )
    assert blank_fraction(png) < 0.97
