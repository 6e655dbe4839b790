"""The learner at scale: table-free training, the held-out excess loss, wall-time checkpoints,
sharded ensembles and devices.

References are independent: the exact population excess loss is recomputed in numpy from the
trained f, g and an exact table; bit-identity is checked against uninterrupted / unsharded runs.
"""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from linrep.errors import ConfigError
from linrep.latent import LatentModel
from linrep.learn import fit

ADAM = {
    "objective": "sampled",
    "optimizer": "adam",
    "lr": 0.02,
    "batch_size": 32,
    "n_samples": 3000,
    "steps": 60,
    "log_every": 20,
}


def _table_free(cfg):
    """A latent model the learner must treat table-free (its exact table kept for reference)."""
    lat = LatentModel.from_config(cfg)
    ref = copy.copy(lat)
    lat.small = False  # as if n_contexts × V were beyond SMALL_TABLE
    lat.sample = ref.sample  # the same data as the tabulated twin (the sampler has its own tests)
    return lat, ref


@pytest.fixture(scope="module")
def pair():
    return _table_free(
        {"m": 6, "kind": "ising", "param_seed": 2, "contexts": "sampled", "n_contexts": 300}
    )


def _exact_excess(ref, f, g):
    """Σ_ξ w(ξ) KL(p(·|ξ) ‖ softmax(f gᵀ)) in numpy, per run."""
    out = []
    for k in range(f.shape[0]):
        z = f[k] @ g[k].T
        lq = z - z.max(1, keepdims=True)
        lq -= np.log(np.exp(lq).sum(1, keepdims=True))
        P = ref.p_next
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(P > 0, P * (np.log(P) - lq), 0.0).sum(1)
        out.append(ref.weights @ kl)
    return np.array(out)


def test_table_free_training_equals_tabulated_on_the_same_data(pair):
    lat, ref = pair
    a = fit(ref, {"encoder": "linear", "d": 8}, ADAM, seeds=[0, 1], progress=False)
    b = fit(
        lat,
        {"encoder": "linear", "d": 8},
        {**ADAM, "eval_contexts": 1000},
        seeds=[0, 1],
        progress=False,
    )
    assert torch.equal(a.theta, b.theta)  # same minibatches, same steps
    assert a.excess_loss_method.startswith("exact") and b.excess_loss_method.startswith("exact")
    ex_a = np.array([r["excess_loss"] for r in a.final])
    ex_b = np.array([r["excess_loss"] for r in b.final])
    np.testing.assert_allclose(ex_b, ex_a, rtol=1e-5)
    np.testing.assert_allclose(
        ex_b, _exact_excess(ref, b.embeddings(), b.unembeddings()), rtol=1e-5
    )
    assert all(r["excess_loss_se"] == 0 for r in b.final)


def test_held_out_excess_estimate_covers_the_exact_value(pair):
    lat, ref = pair
    r = fit(
        lat,
        {"encoder": "linear", "d": 8},
        {**ADAM, "eval_contexts": 40},
        seeds=[0, 1, 2],
        progress=False,
    )
    assert "40 held-out contexts" in r.excess_loss_method
    exact = _exact_excess(ref, r.embeddings(), r.unembeddings())
    est = np.array([row["excess_loss"] for row in r.final])
    se = np.array([row["excess_loss_se"] for row in r.final])
    assert np.all(se > 0)
    assert np.all(np.abs(est - exact) < 4 * se), (est, exact, se)


def test_table_free_loss_column_is_the_mean_minibatch_loss(pair):
    """Row t > 0: mean loss of the minibatches of steps (t − log_every, t]; row 0: batch 0 at θ_0."""
    from linrep.learn.config import ModelConfig, TrainConfig
    from linrep.learn.model import BatchedModel
    from linrep.learn.objective import Targets

    lat, _ = pair
    tc = {**ADAM, "steps": 4, "log_every": 2, "optimizer": "sgd", "lr": 0.5, "dtype": "float64"}
    r = fit(lat, {"encoder": "linear", "d": 8}, tc, seeds=[5], progress=False)
    cfg = TrainConfig(**tc, seed=5)
    model = BatchedModel(
        ModelConfig(encoder="linear", d=8), lat.contexts, lat.n_tokens, torch.float64
    )
    theta = model.init([5], [ModelConfig(encoder="linear", d=8)])
    targets = Targets(lat, [cfg], torch.float64, tables=False)
    losses = []
    for t in range(4):
        g, loss = model.grad_rows(theta, "cross_entropy", targets.batch(t))
        losses.append(float(loss[0]))
        theta -= 0.5 * g  # plain SGD, written out
    rows = [row["loss"] for row in r.history]
    assert rows[0] == pytest.approx(losses[0], rel=1e-12)
    assert rows[1] == pytest.approx(np.mean(losses[0:2]), rel=1e-12)
    assert rows[2] == pytest.approx(np.mean(losses[2:4]), rel=1e-12)


def test_wall_time_checkpoints_resume_bit_identical(pair, tmp_path, monkeypatch):
    """Checkpoints written by wall time at arbitrary steps; interrupt, resume: identical bits."""
    lat, _ = pair
    tc = {**ADAM, "steps": 50, "checkpoint_seconds": 60.0}
    clean = fit(lat, {"encoder": "mlp", "width": 8, "d": 8}, tc, seeds=[0, 1], progress=False)

    from linrep.learn import trainer

    clock = {"t": 0.0, "calls": 0}

    def fake_monotonic():  # every step "takes" 25 s: a checkpoint every third step
        clock["calls"] += 1
        clock["t"] += 12.5
        return clock["t"]

    monkeypatch.setattr(trainer.time, "monotonic", fake_monotonic)
    orig = trainer.Training.step

    def step(self, t, buf):
        if t == 37 and not getattr(self, "_resumed", False):
            raise KeyboardInterrupt  # killed mid-run
        return orig(self, t, buf)

    monkeypatch.setattr(trainer.Training, "step", step)
    with pytest.raises(KeyboardInterrupt):
        fit(
            lat,
            {"encoder": "mlp", "width": 8, "d": 8},
            tc,
            seeds=[0, 1],
            out_dir=tmp_path,
            progress=False,
        )
    from linrep.learn.checkpoint import load_checkpoint

    at = load_checkpoint(tmp_path / "checkpoint.pt")["step"]
    assert 30 < at <= 37 and at % 20 != 0  # a wall-time checkpoint, not on the logging grid

    def resumed_step(self, t, buf):
        self._resumed = True
        return orig(self, t, buf)

    monkeypatch.setattr(trainer.Training, "step", resumed_step)
    res = fit(
        lat,
        {"encoder": "mlp", "width": 8, "d": 8},
        tc,
        seeds=[0, 1],
        out_dir=tmp_path,
        resume=True,
        progress=False,
    )
    assert torch.equal(res.theta, clean.theta)
    assert res.history == clean.history


def test_sharded_ensemble_is_bit_identical_and_resumable(pair, tmp_path):
    lat, _ = pair
    tc = {**ADAM, "steps": 30, "log_every": 10}
    one = fit(lat, {"encoder": "linear", "d": 8}, tc, seeds=range(5), progress=False)
    two = fit(
        lat,
        {"encoder": "linear", "d": 8},
        {**tc, "workers": 2},
        seeds=range(5),
        out_dir=tmp_path,
        progress=False,
    )
    assert torch.equal(one.theta, two.theta) and one.history == two.history
    assert not (tmp_path / "shards").exists()
    again = fit(
        lat,
        {"encoder": "linear", "d": 8},
        {**tc, "workers": 2},
        seeds=range(5),
        out_dir=tmp_path,
        resume=True,
        progress=False,
    )
    assert torch.equal(again.theta, one.theta)


def test_device_cuda_without_gpu_is_a_one_line_error(pair):
    lat, _ = pair
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA device") as e:
        fit(lat, {"encoder": "linear"}, {**ADAM, "device": "cuda"}, progress=False)
    assert "\n" not in str(e.value)
    r = fit(
        lat, {"encoder": "linear", "d": 4}, {**ADAM, "steps": 2, "device": "auto"}, progress=False
    )
    assert r.theta.device.type == "cpu"


def test_train_result_is_keyword_only(pair):
    from linrep.learn import TrainResult

    lat, _ = pair
    r = fit(lat, {"encoder": "linear", "d": 4}, {**ADAM, "steps": 2}, progress=False)
    with pytest.raises(TypeError):
        TrainResult(r.model, r.theta)  # positional fields are refused
    with pytest.raises(TypeError):
        r.params(True)  # flags are keyword-only


KILL = """
[latent]
m = 12
kind = "independent"
contexts = "sampled"
n_contexts = 2000  # 2000 × 4096 cells > SMALL_TABLE: the learner is table-free
[model]
encoder = "linear"
d = 16
[train]
objective = "sampled"
optimizer = "adam"
lr = 0.01
batch_size = 64
n_samples = 5000
steps = 3000
log_every = 1000
checkpoint_seconds = 0.2
eval_contexts = 64
"""


def test_kill9_table_free_run_then_resume_is_bit_identical(tmp_path):
    """A table-free run checkpointed by wall time only, killed with SIGKILL, resumed: same bits."""
    from safetensors.numpy import load_file

    (tmp_path / "t.toml").write_text(textwrap.dedent(KILL))
    cmd = [sys.executable, "-m", "linrep", "train", "t.toml", "--quiet", "--seeds", "0-1"]
    ck = tmp_path / ".a.partial" / "checkpoint.pt"  # the staging folder while it runs
    from linrep.learn.checkpoint import load_checkpoint

    proc = subprocess.Popen(
        [*cmd, "--out", "a"],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            try:
                if load_checkpoint(ck)["step"] >= 300:  # a few wall-time checkpoints in
                    break
            except Exception:  # noqa: BLE001 - not written yet
                pass
            time.sleep(0.01)
        running = proc.poll() is None
    finally:
        if proc.poll() is None:
            import os

            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert running, proc.stderr.read().decode()[-2000:]
    assert 0 < load_checkpoint(ck)["step"] < 3000
    for extra in (["--out", "a", "--resume"], ["--out", "b"]):
        done = subprocess.run([*cmd, *extra], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())["final"]
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())["final"]
    assert a == b
    pa, pb = (
        load_file(tmp_path / "a" / "params.safetensors"),
        load_file(tmp_path / "b" / "params.safetensors"),
    )
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])


def test_train_command_writes_geometry_into_metrics(tmp_path):
    """`linrep train`'s Python twin writes same-/cross-concept cosines, per run and mean ± SE."""
    from linrep.learn.run import train_from_config

    cfg = tmp_path / "c.toml"
    cfg.write_text("[latent]\nm = 4\n[model]\nd = 8\n[train]\nsteps = 50\nlog_every = 25\n")
    train_from_config(cfg, tmp_path / "out", seeds="0-2", progress=False)
    geo = json.loads((tmp_path / "out" / "metrics.json").read_text())["geometry"]
    for key in (
        "same_concept_cosine",
        "cross_concept_abs_cosine",
        "alignment_cosine",
        "same_concept_cosine_identifiable",
    ):
        v = geo[key]
        assert len(v["per_run"]) == 3 and np.isfinite(v["mean"])
        assert v["se"] == pytest.approx(np.std(v["per_run"], ddof=1) / np.sqrt(3), rel=1e-9)


def test_exact_minibatch_rows_equal_the_table_form(pair):
    """Exact objective with a batch size on a table-free model: B contexts with their exact rows
    p(·|ξ). Same contexts drawn as the table path (a function of seed and step), same gradient."""
    from linrep.learn.config import ModelConfig, TrainConfig
    from linrep.learn.model import BatchedModel
    from linrep.learn.objective import Targets

    lat, ref = pair
    tc = [TrainConfig(objective="exact", optimizer="sgd", batch_size=16, seed=s) for s in (3, 4)]
    mc = ModelConfig(encoder="mlp", d=6, width=8, unembedding_bias=True)
    model = BatchedModel(mc, lat.contexts, lat.n_tokens, torch.float64)
    theta = model.init([3, 4], [mc, mc]) + 0.1
    rows = Targets(lat, tc, torch.float64, tables=False).batch(7)
    ctx = rows.ctx
    for k in range(2):  # the same contexts as with tables, each with its exact row
        np.testing.assert_allclose(
            rows.P.dense()[k].numpy(), ref.p_next[ctx[k].numpy()], rtol=1e-12
        )
    # the table form of the same minibatch: T = (counts / B) p(·|ξ), written out here
    counts = torch.zeros(2, ref.n_contexts, 1, dtype=torch.float64)
    for k in range(2):
        for c in ctx[k].tolist():
            counts[k, c] += 1.0 / 16
    P = torch.as_tensor(ref.p_next)[None]
    table = (counts * P, counts, P.expand(2, -1, -1))
    for kind in ("cross_entropy", "squared", "sigmoid"):
        G_rows, L_rows = model.grad_rows(theta, kind, rows)
        assert L_rows is None  # the exact objective's step needs no loss value
        G_table = model.grad(theta, kind, table)
        torch.testing.assert_close(G_rows, G_table, rtol=1e-9, atol=1e-12)
        L = model.loss_rows(theta, kind, rows)
        torch.testing.assert_close(L, model.loss(theta, kind, table), rtol=1e-10, atol=0)
