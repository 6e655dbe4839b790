"""`linrep train`: outputs, --set / --seeds / --resume, and one-line errors with exit status 2."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from linrep.cli import main

CONFIG = """
[latent]
m = 3
[model]
encoder = "linear"
d = 6
[train]
steps = 40
log_every = 20
checkpoint_every = 20
"""


@pytest.fixture()
def cfg(tmp_path):
    p = tmp_path / "train.toml"
    p.write_text(CONFIG)
    return p


def _train(cfg, out, *extra):
    return main(["train", str(cfg), "--out", str(out), "--quiet", *extra])


def test_train_writes_results(cfg, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(cfg, out, "--seeds", "0-2", "--set", "train.lr=0.5") == 0
    conf = json.loads((out / "config.json").read_text())
    assert conf["seeds"] == [0, 1, 2]
    assert [r["train"]["lr"] for r in conf["runs"]] == [0.5] * 3
    assert conf["latent"]["m"] == 3
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert {int(r["step"]) for r in rows} == {0, 20, 40}
    assert {int(r["seed"]) for r in rows} == {0, 1, 2}
    from safetensors.numpy import load_file

    params = load_file(out / "params.safetensors")
    assert params["final.g"].shape == (3, 8, 6)
    assert params["final.W"].shape == (3, 9, 6)
    emb = np.load(out / "embeddings.npz")
    np.testing.assert_allclose(emb["g"], params["final.g"], rtol=1e-6)
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["final"]) == 3 and metrics["final"][0]["step"] == 40
    assert (out / "checkpoint.pt").exists()
    assert "seed    2" in capsys.readouterr().out


def test_resume_continues_to_the_same_parameters(cfg, tmp_path):
    _train(cfg, tmp_path / "a", "--set", "train.steps=40")
    _train(cfg, tmp_path / "b", "--set", "train.steps=20")
    assert _train(cfg, tmp_path / "b", "--set", "train.steps=40", "--resume") == 0
    a = np.load(tmp_path / "a" / "embeddings.npz")
    b = np.load(tmp_path / "b" / "embeddings.npz")
    assert np.array_equal(a["f"], b["f"]) and np.array_equal(a["g"], b["g"])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--set", "train.lrr=0.1"], "unknown key 'lrr' in [train] (did you mean 'lr'?)"),
        (["--set", "model.encoder=mpl"], "did you mean 'mlp'"),
        (["--set", "train.optimizer=adma"], "did you mean 'adam'"),
        (["--set", "train.loss=squard"], "did you mean 'squared'"),
        (["--set", "train.steps=0"], "train.steps must be > 0"),
        (["--set", "train.lr=0"], "train.lr must be > 0"),
        (["--set", "model.d=0"], "model.d must be ≥ 1"),
        (["--seeds", "5-2"], "--seeds = '5-2': range '5-2' must be 'low-high'"),
        (["--seeds", "1,1"], "lists a seed twice"),
    ],
)
def test_bad_input_is_one_line_exit_2(cfg, tmp_path, capsys, args, message):
    assert _train(cfg, tmp_path / "x", *args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_resume_with_different_config_exit_2(cfg, tmp_path, capsys):
    _train(cfg, tmp_path / "r")
    assert _train(cfg, tmp_path / "r", "--set", "model.d=7", "--resume") == 2
    err = capsys.readouterr().err
    assert "different config (model[run 0].d = 6 in the checkpoint vs 7 now)" in err
    assert err.count("\n") == 1
