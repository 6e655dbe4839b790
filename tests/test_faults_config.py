"""Fault suite, configs: every numeric key of every section a command reads, attacked with non-finite
and overflowing values; sizes that would exhaust memory; nesting that would exhaust the stack.

The key list is generated from the config dataclasses themselves, so a key added later is attacked
too. Every case must give exit 2 and one line naming the key (``section.key``), and leave the
results already in ``--out`` byte-identical.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing

import pytest

from faultkit import TRAIN, assert_one_line_error, assert_unchanged, call, snapshot, write_files
from linrep.errors import ConfigError
from linrep.io import MARKER

BIG = str(2**70)
FLOAT_VALUES = ("nan", "inf", "-inf")
INT_VALUES = (BIG, f"-{BIG}")
SEED_VALUES = ("-1", str(2**32))


def _numeric_kind(tp) -> str | None:
    """'float', 'int', 'floats' (a list of floats) or None for the annotation ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        kinds = [_numeric_kind(a) for a in args if a is not type(None)]
        return kinds[0] if len(kinds) == 1 else None
    if tp is float:
        return "float"
    if tp is int:
        return "int"
    if origin is list and args and _numeric_kind(args[0]) in ("float", "floats"):
        return "floats"
    return None


def _attacks(section: str, cls: type) -> list[tuple[str, str, str]]:
    """(section.key, value, id) for every numeric field of ``cls``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = _numeric_kind(hints[f.name])
        key = f"{section}.{f.name}"
        if kind == "float":
            out += [(key, v, f"{key}={v}") for v in FLOAT_VALUES]
        elif kind == "floats":
            out += [(key, f"[{v}]", f"{key}=[{v}]") for v in ("nan", "inf")]
        elif kind == "int":
            values = INT_VALUES + (SEED_VALUES if f.name.endswith("seed") else ())
            out += [(key, v, f"{key}={v[:12]}") for v in values]
    return out


def _sections() -> dict[str, tuple[type, list[str]]]:
    """Section → (dataclass, argv prefix of a command whose --set reads it)."""
    from linrep.experiments.simulate import SimulateSettings
    from linrep.latent import LatentConfig
    from linrep.learn import ModelConfig, TrainConfig

    train = ["train", "t.toml", "--quiet"]
    out = {
        "latent": (LatentConfig, train),
        "model": (ModelConfig, train),
        "train": (TrainConfig, train),
        "simulate": (SimulateSettings, ["simulate", "t.toml", "--quiet"]),
    }
    llm = getattr(importlib.import_module("linrep.llm"), "LLMConfig", None)
    if llm is not None:
        out["llm"] = (llm, ["llm", "--contexts", "none", "--quiet"])
    return out


CASES = [
    (argv, key, value, case_id)
    for section, (cls, argv) in _sections().items()
    for key, value, case_id in _attacks(section, cls)
]


def test_every_command_section_is_attacked():
    assert {k.split(".")[0] for _, k, _, _ in CASES} >= {"latent", "model", "train"}
    assert len(CASES) >= 100


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINREP_CACHE", str(tmp_path / "cache"))
    write_files(
        tmp_path,
        {"t.toml": TRAIN, "out/metrics.json": '{"old": true}\n', f"out/{MARKER}": "{}"},
    )
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "key", "value"), [c[:3] for c in CASES], ids=[c[3] for c in CASES]
)
def test_non_finite_or_overflowing_value_names_its_key(work, argv, key, value):
    before = snapshot(work)
    code, _, err = call([*argv, "--out", "out", "--overwrite", "--set", f"{key}={value}"])
    assert_one_line_error(code, err, key)
    assert_unchanged(before, snapshot(work))


# ------------------------------------------------------------------ sizes checked before allocating
SWEEP_BASE = TRAIN + "[sweep]\n"


@pytest.mark.parametrize(
    ("sweep", "words"),
    [
        (
            SWEEP_BASE
            + "[sweep.grid]\n"
            + "".join(
                f'"{k}" = [{", ".join(str(0.1 * (i + 1)) for i in range(30))}]\n'
                for k in ("train.lr", "train.weight_decay", "train.min_lr", "train.beta1")
            )
            + '"model.init_scale" = ['
            + ", ".join(str(0.01 * (i + 1)) for i in range(30))
            + "]\n",
            ["24,300,000 runs", "limit"],
        ),
        (
            SWEEP_BASE.replace("[sweep]\n", "[sweep]\nn_random = 1000000000\n")
            + '[sweep.random]\n"train.lr" = { log_uniform = [0.1, 1.0] }\n',
            ["sweep.n_random", "limit"],
        ),
        (
            SWEEP_BASE.replace("[sweep]\n", "[sweep]\nn_random = 2\n")
            + '[sweep.random]\n"model.d" = { int_uniform = [1, 1e30] }\n',
            ["sweep.random.model.d"],
        ),
        (
            SWEEP_BASE.replace("[sweep]\n", "[sweep]\nn_random = 2\n")
            + '[sweep.random]\n"train.lr" = { uniform = [0.1, inf] }\n',
            ["sweep.random.train.lr", "finite"],
        ),
        (
            SWEEP_BASE.replace("[sweep]\n", "[sweep]\nn_random = 2\n")
            + '[sweep.random]\n"train.lr" = { log_uniform = [nan, 1.0] }\n',
            ["sweep.random.train.lr", "finite"],
        ),
        (SWEEP_BASE.replace("[sweep]\n", '[sweep]\nseeds = "0-99999999999"\n'), ["sweep.seeds"]),
        (SWEEP_BASE.replace("[sweep]\n", "[sweep]\nseeds = [4294967296]\n"), ["sweep.seeds"]),
        (SWEEP_BASE.replace("[sweep]\n", "[sweep]\nrandom_seed = -1\n"), ["sweep.random_seed"]),
        (SWEEP_BASE.replace("[sweep]\n", "[sweep]\nmax_group_size = 0\n"), ["max_group_size"]),
        (SWEEP_BASE.replace("[sweep]\n", "[sweep]\nretries = 1e300\n"), ["sweep.retries"]),
        (SWEEP_BASE.replace("[sweep]\n", "[sweep]\nseeds = 10000000000000\n"), ["sweep.seeds"]),
    ],
    ids=[
        "grid-24M-runs",
        "n-random-1e9",
        "int-uniform-1e30",
        "uniform-inf",
        "log-uniform-nan",
        "seed-range-1e11",
        "seed-2^32",
        "random-seed-negative",
        "group-size-zero",
        "retries-1e300",
        "seed-count-1e13",
    ],
)
def test_sweep_sizes_and_bounds_fail_fast(work, sweep, words):
    write_files(work, {"s.toml": sweep})
    before = snapshot(work)
    code, _, err = call(["sweep", "s.toml", "--out", "out", "--serial", "--overwrite"])
    assert_one_line_error(code, err, *words)
    assert_unchanged(before, snapshot(work))


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--seeds", "0-4294967295"], ["--seeds", "4,294,967,296 seeds", "limit"]),
        (["--seeds", "0-99999999999"], ["--seeds", "out of range"]),
        (["--seeds", "4294967296"], ["--seeds", "0 … 4294967295"]),
        (["--set", "train.batch_size=0", "--set", "train.optimizer=sgd"], ["train.batch_size"]),
        (["--set", "model.width=10000000000", "--set", "model.encoder=mlp"], ["memory", "model"]),
        (["--set", "model.d=100000000000"], ["memory"]),
        (["--set", "latent.m=1e300"], ["latent.m"]),
        (["--set", "train.lr=" + "[" * 5000 + "]" * 5000], ["--set", "deeply"]),
        (["--set", "train.lr=" + "[" * 200 + "]" * 200], ["train.lr"]),
    ],
    ids=[
        "seeds-4e9",
        "seeds-1e11",
        "seed-2^32",
        "batch-size-zero",
        "mlp-width-1e10",
        "d-1e11",
        "m-1e300",
        "set-nested-5000",
        "set-nested-200",
    ],
)
def test_train_sizes_fail_fast(work, extra, words):
    before = snapshot(work)
    code, _, err = call(["train", "t.toml", "--out", "out", "--overwrite", "--quiet", *extra])
    assert_one_line_error(code, err, *words)
    assert_unchanged(before, snapshot(work))


def test_deeply_nested_toml_file(work):
    write_files(work, {"deep.toml": "a = " + "[" * 100_000 + "]" * 100_000 + "\n"})
    for argv in (
        ["train", "deep.toml", "--out", "out", "--overwrite"],
        ["sweep", "deep.toml", "--out", "out", "--overwrite", "--serial"],
        ["latent", "deep.toml", "--out", "out", "--overwrite"],
        ["simulate", "deep.toml", "--out", "out", "--overwrite"],
    ):
        code, _, err = call(argv)
        assert_one_line_error(code, err, "deep.toml", "too deeply")


def test_experiment_seed_count_is_checked_before_listing():
    from linrep.experiments.config import seeds_of

    with pytest.raises(ConfigError, match="n_seeds"):
        seeds_of(10**12)
    with pytest.raises(ConfigError, match="seed"):
        seeds_of(2, first_seed=2**32 - 1)
    assert seeds_of(3, 5) == [5, 6, 7]


def test_non_finite_synonym_weights_are_blamed_on_synonyms(work):
    code, _, err = call(
        ["latent", "t.toml", "--out", "out", "--overwrite"]
    )  # sanity: the base config is fine
    assert code == 0, err
    write_files(work, {"syn.toml": "[latent]\nm = 2\nsynonyms = [0.5, nan]\n"})
    code, _, err = call(["latent", "syn.toml", "--out", "out2"])
    msg = assert_one_line_error(code, err, "latent.synonyms")
    assert "min_known" not in msg and "max_known" not in msg


def test_random_pair_count_is_checked_against_memory_before_drawing():
    import numpy as np

    from linrep.geometry import random_pair_null

    g = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(ConfigError, match="random pairs"):
        random_pair_null(g, np.ones(4), n=10**13)
    assert random_pair_null(g, np.ones(4), n=7).shape == (7,)
