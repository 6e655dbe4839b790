"""`linrep latent` end to end, and the CLI's error contract (exit 2, one line, no traceback)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from linrep.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "linrep", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_latent_command_writes_checkable_tables(tmp_path):
    out = tmp_path / "out"
    res = run_cli("latent", ROOT / "configs" / "latent_ising.toml", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "81 contexts" in res.stdout and "16 tokens" in res.stdout
    data = np.load(out / "latent.npz")
    tokens, contexts, p_next, p_c = (
        data["tokens"],
        data["contexts"],
        data["p_next"],
        data["p_concepts"],
    )
    assert tokens.shape == (16, 4) and contexts.shape == (81, 4) and p_next.shape == (81, 16)
    # check the table with nothing but the arrays: p(y|x) ∝ p(c(y)) on consistent tokens
    for ctx, row in zip(contexts, p_next):
        ok = np.all((ctx == -1) | (tokens == ctx), axis=1)
        expected = np.where(ok, p_c, 0.0)
        np.testing.assert_allclose(row, expected / expected.sum(), atol=1e-12)


def write(tmp_path, text):
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[latent]\nm = 3\nkindd = 'ising'\n", "did you mean 'kind'"),
        ("[latent]\nm = 3\nkind = 'isin'\n", "did you mean 'ising'"),
        ("[latent]\nm = 3\np1 = [0.5, 2.0, 0.1]\n", "outside [0, 1]"),
        (
            "[latent]\nm = 3\nkind = 'table'\ntable = [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]\n",
            "sums to",
        ),
        (
            "[latent]\nm = 2\nkind = 'bayesnet'\nparents = [[1], [0]]\ncpt = [[0.5, 0.5], [0.5, 0.5]]\n",
            "cycle",
        ),
        ("[latent]\nm = 16\n", "GiB"),
        ("[latent\nm = 3\n", "not valid TOML"),
        ("[model]\nd = 3\n", "no [latent] section"),
    ],
)
def test_latent_bad_input_exit_2_one_line(tmp_path, text, needle, capsys):
    cfg = write(tmp_path, text)
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "latent.npz"
    keep.write_bytes(b"previous result")
    code = main(["latent", str(cfg), "--out", str(out), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.startswith("linrep: error: ") and err.count("\n") == 1
    assert keep.read_bytes() == b"previous result"


def test_unwritable_or_file_output(tmp_path):
    file_out = tmp_path / "afile"
    file_out.write_text("x")
    res = run_cli("latent", ROOT / "configs" / "latent_ising.toml", "--out", file_out / "sub")
    assert res.returncode == 2 and "Traceback" not in res.stderr and "--out" in res.stderr
    res = run_cli("latent", tmp_path / "missing.toml", "--out", tmp_path / "o")
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_help_explains_every_option():
    res = run_cli("--help")
    assert res.returncode == 0 and "latent" in res.stdout
    res = run_cli("latent", "--help")
    assert res.returncode == 0 and "--out" in res.stdout and "config" in res.stdout


def test_results_are_written_with_normal_permissions(tmp_path):
    import os

    from linrep.io import write_json

    mask = os.umask(0o022)
    try:
        path = write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_experiment_configs_ship_inside_the_package():
    # src/linrep/configs links to the top-level configs/, so a built wheel carries them too
    from importlib.resources import files

    shipped = files("linrep") / "configs"
    assert (shipped / "e1_emergence.toml").is_file() and (shipped / "latent_ising.toml").is_file()


def test_broken_pipe_is_quiet(tmp_path, monkeypatch):
    class ClosedPipe:
        def __init__(self, fh):
            self.fh = fh

        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            return self.fh.fileno()

    with open(tmp_path / "stdout", "w") as fh:
        monkeypatch.setattr(sys, "stdout", ClosedPipe(fh))
        code = main(
            ["latent", str(ROOT / "configs" / "latent_ising.toml"), "--out", str(tmp_path / "o")]
        )
    assert code == 141
