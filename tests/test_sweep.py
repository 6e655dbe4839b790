"""Sweeps: expansion of sweep files, packing into ensembles, the results table, end-to-end runs."""

from __future__ import annotations

import csv
import itertools
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

from linrep.errors import ConfigError, InputError
from linrep.sweep import ResultsTable, load_sweep, make_groups, read_results, sweep_from_dict
from linrep.sweep.spec import parse_seeds

BASE = {
    "latent": {"m": 3, "kind": "ising", "field_sd": 1.0, "coupling_sd": 1.0},
    "model": {"encoder": "linear", "d": 8},
    "train": {"steps": 60, "lr": 1.0, "log_every": 20},
}


def spec_of(sweep: dict, base: dict | None = None):
    raw = {k: dict(v) for k, v in (base or BASE).items()}
    raw["sweep"] = sweep
    return sweep_from_dict(raw)


# ------------------------------------------------------------------ expansion
def test_grid_cases_random_and_seeds_multiply():
    spec = spec_of(
        {
            "seeds": "0-2",
            "grid": {"model": {"d": [4, 8]}, "train.lr": [0.5, 1.0, 2.0]},
            "n_random": 2,
            "random": {"model.init_scale": {"log_uniform": [0.01, 1.0]}},
            "cases": [
                {"name": "indep", "latent.coupling_sd": 0.0},
                {"name": "coupled", "latent.coupling_sd": 1.0},
            ],
        }
    )
    assert len(spec.runs) == 2 * (2 * 3) * 2 * 3
    assert spec.factors == ["case", "model.d", "train.lr", "model.init_scale"]
    assert "latent.coupling_sd" in spec.swept
    # every combination appears once per seed, and the config carries the swept values
    combos = {(r.case, r.params["model.d"], r.params["train.lr"], r.seed) for r in spec.runs}
    want = set(itertools.product(["indep", "coupled"], [4, 8], [0.5, 1.0, 2.0], [0, 1, 2]))
    assert combos == want
    for r in spec.runs:
        assert r.config["model"]["d"] == r.params["model.d"]
        assert r.config["train"]["seed"] == r.seed
        assert r.config["latent"]["coupling_sd"] == (0.0 if r.case == "indep" else 1.0)
        assert 0.01 <= r.config["model"]["init_scale"] <= 1.0
    # random draws are fixed by random_seed and shared across grid points
    draws = {r.params["model.init_scale"] for r in spec.runs}
    assert len(draws) == 2
    assert draws == {r.params["model.init_scale"] for r in spec_of(spec_dict_copy(spec)).runs}


def spec_dict_copy(spec):
    from dataclasses import asdict

    d = asdict(spec.sweep)
    return {k: v for k, v in d.items() if v not in (None, {}, [])}


def test_run_ids_are_stable_and_depend_on_config_and_seed():
    a = spec_of({"seeds": [0, 1], "grid": {"model.d": [4, 8]}})
    b = spec_of({"seeds": [1, 0], "grid": {"model.d": [8, 4]}})
    assert {r.run_id for r in a.runs} == {r.run_id for r in b.runs}
    assert len({r.run_id for r in a.runs}) == 4
    base2 = {**BASE, "train": {**BASE["train"], "steps": 61}}
    c = spec_of({"seeds": [0, 1], "grid": {"model.d": [4, 8]}}, base2)
    assert not {r.run_id for r in a.runs} & {r.run_id for r in c.runs}
    assert a.fingerprint != c.fingerprint


@pytest.mark.parametrize(
    ("value", "want"),
    [(3, [0, 1, 2]), ("0-2", [0, 1, 2]), ("0,3,5-6", [0, 3, 5, 6]), ([4, 1], [1, 4])],
)
def test_parse_seeds(value, want):
    assert parse_seeds(value) == want


@pytest.mark.parametrize("value", [0, "3-1", "a-b", [], [1, 1], [-1], True, 1.5])
def test_parse_seeds_rejects(value):
    with pytest.raises(ConfigError, match="seeds"):
        parse_seeds(value)


def test_base_file_and_inline_override(tmp_path):
    (tmp_path / "base.toml").write_text(
        "[latent]\nm = 3\n[model]\nencoder = 'mlp'\nd = 16\n[train]\nsteps = 50\n"
    )
    (tmp_path / "s.toml").write_text(
        'base = "base.toml"\n[model]\nd = 4\n[sweep]\nseeds = 2\n[sweep.grid]\n"train.lr" = [1.0]\n'
    )
    spec = load_sweep(tmp_path / "s.toml")
    assert spec.base["model"] == {"encoder": "mlp", "d": 4}
    assert spec.base["train"] == {"steps": 50}
    assert len(spec.runs) == 2


@pytest.mark.parametrize(
    ("sweep", "words"),
    [
        ({"grid": {"model.dd": [1]}}, ["model.dd", "did you mean 'd'"]),
        ({"grid": {"modle.d": [1]}}, ["modle.d", "did you mean 'model'"]),
        ({"grid": {"d": [1]}}, ["'d'", "dotted"]),
        ({"grid": {"model.d": []}}, ["model.d", "non-empty list"]),
        ({"grid": {"model.d": 4}}, ["model.d", "list"]),
        ({"grid": {"model.d": [8, 0]}}, ["model.d=0", "model.d must be ≥ 1"]),
        ({"grid": {"train.seed": [1, 2]}}, ["train.seed", "seeds"]),
        ({"grid": {"model.d": [4, 4]}}, ["same config and seed"]),
        ({"n_random": 2}, ["n_random", "[sweep.random]"]),
        ({"random": {"train.lr": {"uniform": [0.1, 1]}}}, ["n_random"]),
        ({"n_random": 1, "random": {"train.lr": {"normal": [0, 1]}}}, ["train.lr", "log_uniform"]),
        ({"n_random": 1, "random": {"train.lr": {"log_uniform": [0, 1]}}}, ["0 < low"]),
        ({"n_random": 1, "random": {"train.lr": {"uniform": [2, 1]}}}, ["low ≤ high"]),
        ({"seeds": "x"}, ["sweep.seeds", "0-9"]),
        ({"max_group_size": 0}, ["max_group_size"]),
        ({"grdi": {}}, ["grdi", "did you mean 'grid'"]),
        ({"cases": [{"name": "a"}, {"name": "a"}]}, ["share a name"]),
        ({"cases": [{"latent.mm": 3}]}, ["latent.mm", "did you mean 'm'"]),
    ],
)
def test_bad_sweep_sections(sweep, words):
    with pytest.raises(ConfigError) as e:
        spec_of(sweep)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_sweep_section_and_bad_base(tmp_path):
    with pytest.raises(ConfigError, match=r"no \[sweep\] section"):
        sweep_from_dict(dict(BASE))
    with pytest.raises(ConfigError, match="does not exist"):
        sweep_from_dict({"base": "nope.toml", "sweep": {}}, path=tmp_path / "s.toml")
    with pytest.raises(ConfigError, match="unknown section"):
        sweep_from_dict({**BASE, "trian": {}, "sweep": {}})


# ------------------------------------------------------------------ groups
def test_groups_pack_per_run_keys_and_split_shapes():
    spec = spec_of(
        {
            "seeds": "0-4",
            "grid": {"train.lr": [0.5, 1.0], "model.init_scale": [0.1, 0.2], "model.d": [4, 8]},
            "max_group_size": 8,
        }
    )
    groups = make_groups(spec.runs, spec.sweep.max_group_size)
    # lr and init_scale vary inside an ensemble, d does not: 2 shapes × 20 runs → 3 groups each
    assert sorted(len(g.runs) for g in groups) == [4, 4, 8, 8, 8, 8]
    for g in groups:
        assert len({r.config["model"]["d"] for r in g.runs}) == 1
    ids = [r.run_id for g in groups for r in g.runs]
    assert sorted(ids) == sorted(r.run_id for r in spec.runs)  # every run exactly once
    again = make_groups(spec.runs, 8)
    assert [g.group_id for g in again] == [g.group_id for g in groups]


# ------------------------------------------------------------------ table
def test_table_replaces_rows_by_run_id_and_round_trips(tmp_path):
    path = tmp_path / "results.csv"
    t = ResultsTable(path, front=["model.d"])
    t.add([{"run_id": "a", "status": "failed", "model.d": 4, "error": "boom, with comma"}])
    t.add([{"run_id": "b", "status": "ok", "model.d": 8, "loss": 0.1 + 0.2, "h": [1, 2]}])
    t.write()
    t2 = ResultsTable(path, front=["model.d"])
    t2.add([{"run_id": "a", "status": "ok", "model.d": 4, "loss": float("nan")}])
    t2.write()
    rows = read_results(tmp_path)
    assert [r["run_id"] for r in rows] == ["a", "b"]
    assert rows[0]["status"] == "ok" and rows[0]["loss"] is None
    assert rows[1]["loss"] == 0.1 + 0.2  # exact float round trip
    assert rows[1]["h"] == [1, 2]
    header = path.read_text().splitlines()[0].split(",")
    assert header[:5] == ["run_id", "status", "case", "seed", "model.d"]


def test_ids_that_look_like_numbers_stay_text(tmp_path):
    t = ResultsTable(tmp_path / "results.csv")
    t.add([{"run_id": "241271425594", "group_id": "123e45678901", "status": "ok", "case": "7"}])
    t.write()
    (row,) = read_results(tmp_path)
    assert (row["run_id"], row["group_id"], row["case"]) == ("241271425594", "123e45678901", "7")


def test_damaged_table_is_named(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("run_id,status,loss\nabc,ok,0.1\nxyz,ok\n")
    with pytest.raises(InputError, match=r"results.csv.*line 3"):
        read_results(path)
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a linrep sweep results table"):
        read_results(path)


# ------------------------------------------------------------------ end to end (in-process)
SWEEP_TOML = """
[latent]
m = 3
kind = "ising"
[model]
encoder = "linear"
d = 6
[train]
steps = 80
lr = 1.0
log_every = 40
[sweep]
seeds = "0-2"
geometry = false
[sweep.grid]
"model.d" = [4, 6]
"train.lr" = [0.5, 1.0]
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_serial_sweep_resume_and_equivalence_to_single_runs(tmp_path):
    from linrep.latent import LatentModel
    from linrep.learn import fit
    from linrep.sweep import run_sweep

    sweep = write(tmp_path, SWEEP_TOML)
    out = tmp_path / "out"
    res = run_sweep(sweep, out, serial=True, progress=False, report=False, log=lambda s: None)
    assert (res.n_runs, res.n_ok, res.n_failed, res.n_groups) == (12, 12, 0, 2)  # lr batched
    rows = read_results(out)
    assert len(rows) == 12 and len({r["run_id"] for r in rows}) == 12
    assert [r["run_id"] for r in rows] == [r.run_id for r in load_sweep(sweep).runs]  # plan order
    # one run of the ensemble equals the same run trained alone with the learner
    r = next(r for r in rows if r["model.d"] == 4 and r["train.lr"] == 0.5 and r["seed"] == 2)
    latent = LatentModel.from_config({"m": 3, "kind": "ising"})
    alone = fit(
        latent,
        {"encoder": "linear", "d": 4},
        {"steps": 80, "lr": 0.5, "log_every": 40},
        seeds=[2],
        progress=False,
    )
    assert r["excess_loss"] == pytest.approx(alone.final[0]["excess_loss"], rel=1e-4, abs=1e-6)
    assert r["group_size"] == 6
    # re-running resumes: nothing trained, nothing duplicated, rows unchanged
    before = (out / "results.csv").read_text()
    res2 = run_sweep(sweep, out, serial=True, progress=False, report=False, log=lambda s: None)
    assert (res2.n_skipped, res2.n_groups) == (12, 0)
    assert (out / "results.csv").read_text() == before
    # extending the grid trains only the new runs
    write(tmp_path, SWEEP_TOML.replace('"train.lr" = [0.5, 1.0]', '"train.lr" = [0.5, 1.0, 2.0]'))
    res3 = run_sweep(sweep, out, serial=True, progress=False, report=False, log=lambda s: None)
    assert (res3.n_skipped, res3.n_ok) == (12, 18)
    assert len(read_results(out)) == 18
    # a different base config may not share the folder
    write(tmp_path, SWEEP_TOML.replace("steps = 80", "steps = 90"))
    with pytest.raises(ConfigError, match=r"different base config \(train.steps"):
        run_sweep(sweep, out, serial=True, progress=False, report=False, log=lambda s: None)


def test_diverging_run_is_isolated_and_recorded(tmp_path):
    """lr = 1e30 diverges: its runs fail alone (after the ensemble is split), the rest is ok."""
    from linrep.sweep import run_sweep

    text = SWEEP_TOML.replace('"model.d" = [4, 6]', '"model.d" = [4]').replace(
        '"train.lr" = [0.5, 1.0]', '"train.lr" = [1.0, 1e30]'
    )
    sweep = write(tmp_path, text)
    res = run_sweep(sweep, tmp_path / "o", serial=True, progress=False, report=True, log=print)
    rows = read_results(tmp_path / "o")
    bad = [r for r in rows if r["train.lr"] == 1e30]
    good = [r for r in rows if r["train.lr"] == 1.0]
    assert res.n_failed == 3 and res.n_ok == 3
    assert all(r["status"] == "failed" and "lower train.lr" in r["error"] for r in bad)
    assert all(r["status"] == "ok" and math.isfinite(r["excess_loss"]) for r in good)
    html = (tmp_path / "o" / "report.html").read_text()
    assert "Failed runs" in html and "data:image/png;base64" in html


def test_report_intervals_match_independent_t_interval(tmp_path):
    from scipy import stats

    from linrep.sweep.summary import summarize

    rng = np.random.default_rng(0)
    rows = []
    for d, seed in itertools.product([4, 8], range(5)):
        rows.append(
            {
                "run_id": f"{d}-{seed}",
                "status": "ok",
                "model.d": d,
                "seed": seed,
                "excess_loss": float(rng.normal(d, 1.0)),
            }
        )
    rows.append({"run_id": "x", "status": "failed", "model.d": 8, "seed": 9, "error": "e"})
    table = {t["model.d"]: t for t in summarize(rows, ["model.d"])}
    for d in (4, 8):
        v = np.array(
            [r["excess_loss"] for r in rows if r.get("model.d") == d and r["status"] == "ok"]
        )
        h = stats.t.ppf(0.975, 4) * v.std(ddof=1) / np.sqrt(5)
        assert table[str(d)]["excess_loss"] == pytest.approx(v.mean())
        assert table[str(d)]["excess_loss_hi"] == pytest.approx(v.mean() + h)
    assert table["8"]["n_failed"] == 1 and table["4"]["n_failed"] == 0


def test_results_csv_is_plain_csv(tmp_path):
    t = ResultsTable(tmp_path / "results.csv")
    t.add([{"run_id": "q", "status": "ok", "error": 'a "quoted", multi\nline'}])
    t.write()
    with open(tmp_path / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["error"] == 'a "quoted", multi\nline'


def test_dry_run_describes_the_plan_and_writes_nothing(tmp_path):
    from linrep.sweep import describe_sweep

    sweep = write(tmp_path, SWEEP_TOML)
    text = describe_sweep(sweep, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert text.splitlines()[0].startswith("12 runs (0 already done")
    assert "2 batched ensembles" in text
    assert text.count("K =   6") == 2 and "varying inside the ensemble: train.lr" in text


# ------------------------------------------------------------------ properties of the expansion
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

GRID_KEYS = {
    "model.d": st.integers(1, 64),
    "train.lr": st.floats(1e-3, 10.0),
    "model.init_scale": st.floats(1e-3, 1.0),
    "model.encoder": st.sampled_from(["free", "linear", "mlp"]),
    "latent.coupling_sd": st.floats(0.0, 2.0),
}


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    grid=st.dictionaries(
        st.sampled_from(sorted(GRID_KEYS)), st.just(None), min_size=0, max_size=3
    ).flatmap(
        lambda keys: st.fixed_dictionaries(
            {k: st.lists(GRID_KEYS[k], min_size=1, max_size=3, unique=True) for k in keys}
        )
    ),
    seeds=st.lists(st.integers(0, 50), min_size=1, max_size=4, unique=True),
    size=st.integers(1, 7),
)
def test_expansion_and_grouping_properties(grid, seeds, size):
    spec = spec_of({"seeds": seeds, "grid": grid, "max_group_size": size})
    n_points = math.prod(len(v) for v in grid.values())
    assert len(spec.runs) == n_points * len(seeds)
    assert len({r.run_id for r in spec.runs}) == len(spec.runs)
    assert {tuple(sorted(r.params.items())) for r in spec.runs} == {
        tuple(sorted(zip(grid, vals, strict=True))) for vals in itertools.product(*grid.values())
    }
    groups = make_groups(spec.runs, size)
    members = [r.run_id for g in groups for r in g.runs]
    assert sorted(members) == sorted(r.run_id for r in spec.runs)  # a partition
    for g in groups:
        assert 1 <= len(g.runs) <= size
        # inside an ensemble only per-run keys (seed, lr, init_scale) may differ
        shared = {
            (
                r.config["latent"].get("coupling_sd"),
                r.config["model"].get("d"),
                r.config["model"].get("encoder"),
            )
            for r in g.runs
        }
        assert len(shared) == 1
    # shapes that could share an ensemble do: #groups is minimal given max_group_size
    shapes: dict[tuple, int] = {}
    for r in spec.runs:
        key = (
            r.config["latent"].get("coupling_sd"),
            r.config["model"].get("d"),
            r.config["model"].get("encoder"),
        )
        shapes[key] = shapes.get(key, 0) + 1
    assert len(groups) == sum(math.ceil(n / size) for n in shapes.values())
