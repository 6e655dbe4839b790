"""Tests of the learner (linrep.learn): gradients, objectives, optimisers, ensembles, determinism.

Reference values are derived independently in the tests (finite differences, numpy brute force,
torch.optim), never copied from the implementation's output.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from linrep.errors import ConfigError, InputError, TrainingError
from linrep.latent import LatentModel
from linrep.learn import ModelConfig, TrainConfig, fit
from linrep.learn.config import ENCODERS, LOSSES
from linrep.learn.model import BatchedModel, Rows
from linrep.learn.objective import Targets
from linrep.learn.optim import BatchedOptimizer


@pytest.fixture(scope="module")
def lat3():
    return LatentModel.from_config({"m": 3, "kind": "ising", "param_seed": 1})


@pytest.fixture(scope="module")
def lat4():
    return LatentModel.from_config({"m": 4})


def _model(lat, loss="cross_entropy", **kw):
    mc = ModelConfig(**{"d": 5, "width": 8, "depth": 2, "init_scale": 0.5, **kw})
    m = BatchedModel(mc, lat.contexts, lat.n_tokens, torch.float64)
    th = m.init([3, 4], [mc, mc])
    gen = torch.Generator().manual_seed(0)
    # move every parameter away from special points (zero biases sit on ReLU kinks)
    th += 0.2 * torch.randn(th.shape, generator=gen, dtype=torch.float64)
    return m, th


def _loss_np(lat, loss, f, g, b=None):
    """Independent numpy loss of one run: f (n, d), g (V, d), b (V,)."""
    z = f @ g.T + (0 if b is None else b)
    w, P = lat.weights, lat.p_next
    if loss == "cross_entropy":
        lq = z - z.max(1, keepdims=True)
        lq = lq - np.log(np.exp(lq).sum(1, keepdims=True))
        return float(-(w[:, None] * P * lq).sum())
    if loss == "squared":
        q = np.exp(z - z.max(1, keepdims=True))
        q /= q.sum(1, keepdims=True)
        return float((w[:, None] * (q - P) ** 2).sum())
    s = 1 / (1 + np.exp(-z))
    return float(-(w[:, None] * (P * np.log(s) + (1 - P) * np.log(1 - s))).sum())


# ------------------------------------------------------------------------------- gradients
ENC_CASES = [
    ("free", {}),
    ("linear", {}),
    ("mlp", {"activation": "relu"}),
    ("mlp", {"activation": "tanh"}),
    ("mlp", {"activation": "gelu"}),
    ("transformer", {"depth": 1, "width": 8, "heads": 2}),
]


@pytest.mark.parametrize(
    "enc,kw", ENC_CASES, ids=[f"{e}-{k.get('activation', '')}" for e, k in ENC_CASES]
)
@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_matches_finite_differences(lat3, enc, kw, loss):
    m, th = _model(lat3, encoder=enc, unembedding_bias=True, **kw)
    tg = Targets(lat3, [TrainConfig()] * 2, torch.float64)
    target = tg.full()
    G = m.grad(th, loss, target)
    rng = np.random.default_rng(1)
    eps = 1e-6
    idx = np.concatenate(
        [
            rng.choice(m.n_encoder, 12, replace=False),
            rng.choice(np.arange(m.n_encoder, m.P), 6, replace=False),
        ]
    )
    for j in idx:
        a, b = th.clone(), th.clone()
        a[:, j] += eps
        b[:, j] -= eps
        La = m.loss(a, loss, target)
        Lb = m.loss(b, loss, target)
        fd = (La - Lb) / (2 * eps)
        np.testing.assert_allclose(G[:, j].numpy(), fd.numpy(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("enc", ["free", "linear", "mlp"])
@pytest.mark.parametrize("loss", LOSSES)
def test_reused_step_buffers_do_not_leak_between_calls(lat3, enc, loss):
    """grad() reuses its intermediate buffers: a call must not see the previous call's values."""
    target = Targets(lat3, [TrainConfig()] * 2, torch.float64).full()
    m, th = _model(lat3, encoder=enc, unembedding_bias=True)
    th2 = th + 0.3 * torch.randn(th.shape, generator=torch.Generator().manual_seed(5))
    out = torch.full_like(th, float("nan"))
    g1 = m.grad(th, loss, target)
    m.loss(th2, loss, target)
    g2 = m.grad(th2, loss, target, out=out)
    assert g2 is out
    fresh1, _ = _model(lat3, encoder=enc, unembedding_bias=True)
    fresh2, _ = _model(lat3, encoder=enc, unembedding_bias=True)
    assert torch.equal(g1, fresh1.grad(th, loss, target))
    assert torch.equal(g2, fresh2.grad(th2, loss, target))
    assert not torch.equal(g1, g2)


def test_trained_model_releases_its_step_buffers(lat4):
    res = fit(lat4, {"encoder": "mlp", "width": 16}, {"steps": 5}, seeds=[0, 1], progress=False)
    assert res.model.ws.nbytes == 0
    m, th = _model(lat4, encoder="mlp")
    m.grad(th, "cross_entropy", Targets(lat4, [TrainConfig()] * 2, torch.float64).full())
    assert m.ws.nbytes > 0  # the check above is not vacuous: a step does fill the workspace


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_matches_numpy(lat3, loss):
    m, th = _model(lat3, encoder="linear", unembedding_bias=True)
    tg = Targets(lat3, [TrainConfig()] * 2, torch.float64)
    L = m.loss(th, loss, tg.full())
    p = m.views(th)
    x = np.zeros((lat3.n_contexts, 9))  # one-hot {0,1,⋄} written out independently
    for i, ctx in enumerate(lat3.contexts):
        for c, v in enumerate(ctx):
            x[i, 3 * c + (2 if v < 0 else int(v))] = 1
    for k in range(2):
        f = x @ p["W"][k].numpy()
        ref = _loss_np(lat3, loss, f, p["g"][k].numpy(), p["b"][k, 0].numpy())
        assert L[k].item() == pytest.approx(ref, rel=1e-10)


def test_loss_floor_is_conditional_entropy(lat3):
    r = fit(lat3, {"encoder": "free", "d": 8}, {"steps": 1, "dtype": "float64"}, progress=False)
    assert r.loss_floor == pytest.approx(lat3.entropy(), rel=1e-12)
    row0 = r.history[0]
    assert row0["excess_loss"] == pytest.approx(row0["loss"] - lat3.entropy(), abs=1e-12)


# ------------------------------------------------------------------------------- optimisers
@pytest.mark.parametrize("kind", ["gd", "adam", "adamw"])
def test_optimizer_matches_torch_optim(kind):
    """Five steps of the batched optimiser == torch.optim on the same gradients (per run lr)."""
    K, P = 3, 7
    gen = torch.Generator().manual_seed(0)
    cfgs = [
        TrainConfig(
            optimizer=kind, lr=lr, weight_decay=0.1, lr_schedule="cosine", steps=5, min_lr=0.01
        )
        for lr in (0.1, 0.2, 0.3)
    ]
    opt = BatchedOptimizer(cfgs, P, torch.float64)
    theta = torch.randn(K, P, generator=gen, dtype=torch.float64)
    grads = torch.randn(5, K, P, generator=gen, dtype=torch.float64)
    refs = []
    for k, c in enumerate(cfgs):
        p = torch.nn.Parameter(theta[k].clone())
        cls = {"gd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]
        o = cls([p], lr=c.lr, weight_decay=c.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=c.min_lr)
        for t in range(5):
            p.grad = grads[t, k].clone()
            o.step()
            sched.step()
        refs.append(p.detach())
    for t in range(5):
        opt.step(theta, grads[t].clone(), t)
    np.testing.assert_allclose(theta.numpy(), torch.stack(refs).numpy(), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------- training
def test_excess_loss_goes_to_zero_with_enough_capacity(lat3):
    r = fit(
        lat3,
        {"encoder": "free", "d": 16, "init_scale": 0.1},
        {"optimizer": "gd", "lr": 1.0, "steps": 3000, "log_every": 500, "dtype": "float64"},
        progress=False,
    )
    ex = [row["excess_loss"] for row in r.history]
    assert ex[0] > 0.5
    assert ex[-1] < 1e-3
    assert all(a >= b for a, b in zip(ex, ex[1:], strict=False))


@pytest.mark.parametrize("opt", ["adam", "gd"])
def test_ensemble_equals_separate_runs(lat3, opt):
    """Runs differing in seed, lr and init scale, trained together == trained one by one."""
    mcs = [{"encoder": "mlp", "d": 6, "width": 8, "init_scale": s} for s in (0.1, 0.4)]
    tcs = [
        {"optimizer": opt, "lr": lr, "steps": 60, "log_every": 20, "dtype": "float64"}
        for lr in (0.01, 0.03)
    ]
    ens = fit(lat3, mcs, tcs, seeds=[5, 6], progress=False)
    for k, (mc, tc, s) in enumerate(zip(mcs, tcs, [5, 6], strict=True)):
        one = fit(lat3, mc, tc, seeds=[s], progress=False)
        np.testing.assert_allclose(ens.embeddings()[k], one.embeddings()[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            ens.unembeddings()[k], one.unembeddings()[0], rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(ens.initial_unembeddings()[k], one.initial_unembeddings()[0])
        assert ens.final[k]["loss"] == pytest.approx(one.final[0]["loss"], rel=1e-9)


def test_determinism_bit_identical(lat3):
    args = (lat3, {"encoder": "linear"}, {"steps": 50, "log_every": 10})
    a = fit(*args, seeds=[0, 1], progress=False)
    b = fit(*args, seeds=[0, 1], progress=False)
    assert np.array_equal(a.embeddings(), b.embeddings())
    assert a.history == b.history
    c = fit(*args, seeds=[0, 2], progress=False)
    assert np.array_equal(a.embeddings()[0], c.embeddings()[0])
    assert not np.array_equal(a.embeddings()[1], c.embeddings()[1])


@pytest.mark.parametrize(
    "tc",
    [
        {"optimizer": "adam", "lr": 0.02},
        {"optimizer": "sgd", "lr": 0.5, "batch_size": 16, "objective": "sampled", "n_samples": 300},
        {"optimizer": "adamw", "lr": 0.02, "batch_size": 8, "weight_decay": 0.1},
    ],
)
def test_resume_is_bit_identical(lat3, tmp_path, tc):
    mc = {"encoder": "mlp", "d": 6, "width": 8}
    full = fit(lat3, mc, {**tc, "steps": 300, "log_every": 50}, seeds=[0, 1], progress=False)
    fit(
        lat3,
        mc,
        {**tc, "steps": 150, "log_every": 50},
        seeds=[0, 1],
        out_dir=tmp_path,
        progress=False,
    )
    res = fit(
        lat3,
        mc,
        {**tc, "steps": 300, "log_every": 50},
        seeds=[0, 1],
        out_dir=tmp_path,
        resume=True,
        progress=False,
    )
    assert np.array_equal(full.embeddings(), res.embeddings())
    assert np.array_equal(full.unembeddings(), res.unembeddings())
    assert full.history == res.history


def test_checkpoint_every_and_resume_after_interrupt(lat3, tmp_path):
    """A run killed after a checkpoint resumes from it and ends where an uninterrupted run ends."""
    tc = {"optimizer": "gd", "lr": 0.5, "steps": 200, "log_every": 40, "checkpoint_every": 80}
    full = fit(lat3, {"encoder": "linear"}, tc, progress=False)

    def boom(f, g):
        if boom.calls == 3:  # the history row at step 120, after the checkpoint at step 80
            raise KeyboardInterrupt
        boom.calls += 1
        return {}

    boom.calls = 0
    with pytest.raises(KeyboardInterrupt):
        fit(lat3, {"encoder": "linear"}, tc, metrics=[boom], out_dir=tmp_path, progress=False)
    from linrep.learn.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 80
    res = fit(lat3, {"encoder": "linear"}, tc, out_dir=tmp_path, resume=True, progress=False)
    assert np.array_equal(full.embeddings(), res.embeddings())


def test_sampled_objective_loss_is_empirical_cross_entropy(lat3):
    r = fit(
        lat3,
        {"encoder": "linear", "d": 4},
        {
            "objective": "sampled",
            "n_samples": 500,
            "steps": 3,
            "log_every": 1,
            "dtype": "float64",
            "data_seed": 9,
        },
        seeds=[0, 1],
        progress=False,
    )
    ctx, tok = lat3.sample(500, seed=9)
    f, g = r.embeddings(), r.unembeddings()
    for k in range(2):
        z = f[k] @ g[k].T
        lq = z - np.log(np.exp(z).sum(1, keepdims=True))
        emp = -lq[ctx, tok].mean()
        assert r.final[k]["loss"] == pytest.approx(emp, rel=1e-10)
        pop = _loss_np(lat3, "cross_entropy", f[k], g[k])
        assert r.final[k]["excess_loss"] == pytest.approx(pop - lat3.entropy(), rel=1e-10)


def test_metric_hooks_and_history(lat3):
    calls = []

    def hook(f, g):
        calls.append((f.shape, g.shape))
        return {"fnorm": np.linalg.norm(f, axis=(1, 2))}

    r = fit(
        lat3,
        {"encoder": "linear", "d": 4},
        {"steps": 25, "log_every": 10},
        seeds=[0, 1, 2],
        metrics={"h": hook},
        progress=False,
    )
    assert calls[0] == ((3, lat3.n_contexts, 4), (3, lat3.n_tokens, 4))
    assert sorted({row["step"] for row in r.history}) == [0, 10, 20, 25]
    for k in range(3):
        assert r.final[k]["h.fnorm"] == pytest.approx(np.linalg.norm(r.embeddings()[k]), rel=1e-5)
    with pytest.raises(InputError, match="one per run"):
        fit(
            lat3,
            {"encoder": "linear"},
            {"steps": 2},
            seeds=[0, 1],
            metrics=[lambda f, g: {"x": 1.0}],
            progress=False,
        )


def test_paper_calibration_linear_encoder(lat4):
    """Paper §2: m = 4, d = 32, 81 contexts, exact loss, GD lr 1, init sd 0.1, linear f on
    independent concepts → same-concept steering-vector cosine ≈ 0.93 (after 20k steps)."""
    r = fit(
        lat4,
        {"encoder": "linear", "d": 32},
        {"steps": 20000, "log_every": 20000},
        seeds=[0],
        progress=False,
    )
    g = r.unembeddings()[0]
    cos = []
    for i in range(4):
        pairs = lat4.counterfactual_pairs(i)
        dg = g[pairs[:, 1]] - g[pairs[:, 0]]
        dg /= np.linalg.norm(dg, axis=1, keepdims=True)
        c = dg @ dg.T
        cos.append(c[np.triu_indices(len(dg), 1)].mean())
    assert 0.88 < np.mean(cos) < 0.98


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "section,raw,match",
    [
        ("model", {"encoder": "linaer"}, "did you mean 'linear'"),
        ("model", {"d": 0}, "model.d must be ≥ 1"),
        ("train", {"loss": "cross_entropi"}, "did you mean 'cross_entropy'"),
        ("train", {"optimizer": "adm"}, "did you mean 'adam'"),
        ("train", {"objective": "exakt"}, "did you mean 'exact'"),
        ("train", {"steps": 0}, "train.steps must be > 0"),
        ("train", {"lr": 0.0}, "train.lr must be > 0"),
        ("train", {"lr": -1}, "train.lr must be > 0"),
        ("train", {"optimizer": "sgd"}, "batch_size"),
        ("train", {"stepz": 3}, "did you mean 'steps'"),
    ],
)
def test_bad_config_is_one_line_error(lat3, section, raw, match):
    kw = {"model": {}, "train": {"steps": 1}}
    kw[section] = {**kw[section], **raw}
    with pytest.raises(ConfigError, match=match) as e:
        fit(lat3, kw["model"], kw["train"], progress=False)
    assert "\n" not in str(e.value)


def test_ensemble_must_share_shapes(lat3):
    with pytest.raises(ConfigError, match="differ in model.d"):
        fit(lat3, [{"d": 4}, {"d": 5}], {"steps": 1}, progress=False)


def test_resume_with_different_config_fails(lat3, tmp_path):
    fit(lat3, {"encoder": "linear"}, {"steps": 5}, out_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="different config.*lr") as e:
        fit(
            lat3,
            {"encoder": "linear"},
            {"steps": 10, "lr": 0.5},
            out_dir=tmp_path,
            resume=True,
            progress=False,
        )
    assert "\n" not in str(e.value)


def _nan_in_run(monkeypatch, runs, at=250):
    """Make θ of ``runs`` NaN right after the update of step ``at`` (in training and replays)."""
    from linrep.learn import optim

    orig = optim.BatchedOptimizer.step

    def step(self, theta, grad, t):
        orig(self, theta, grad, t)
        if t == at:
            theta[runs, 0] = float("nan")

    monkeypatch.setattr(optim.BatchedOptimizer, "step", step)


def test_nan_in_one_run_stops_that_run_and_the_others_go_on(lat3, tmp_path, monkeypatch):
    """θ of run 1 turns NaN in the update of step 250: run 1 is marked failed at step 251 and kept
    at θ_250 (its last finite state); run 0 ends exactly as in a clean ensemble."""
    tc = {"lr": 0.1, "steps": 400, "log_every": 100, "checkpoint_every": 100}
    args = (lat3, {"encoder": "linear"})
    clean = fit(*args, tc, seeds=[7, 8], progress=False)
    clean250 = fit(*args, {**tc, "steps": 250}, seeds=[7, 8], progress=False)
    _nan_in_run(monkeypatch, [1])
    r = fit(*args, tc, seeds=[7, 8], out_dir=tmp_path, progress=False)
    assert list(r.failed) == [1] and "at step 251 (seed 8)" in r.failed[1]
    assert torch.equal(r.theta[0], clean.theta[0])
    assert torch.equal(r.theta[1], clean250.theta[1])
    assert [row["step"] for row in r.history if row["run"] == 1] == [0, 100, 200]
    assert r.final[0]["step"] == 400
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"][0] == "ok" and metrics["status"][1].startswith("failed: loss became")


def test_nan_in_every_run_names_first_bad_step_and_keeps_checkpoint(lat3, tmp_path, monkeypatch):
    """Every run NaN after the update of step 250 → the error names step 251 and run 0; the
    checkpoint of step 200 (last good) stays on disk."""
    from linrep.learn.checkpoint import load_checkpoint

    _nan_in_run(monkeypatch, [0, 1])
    tc = {"lr": 0.1, "steps": 400, "log_every": 100, "checkpoint_every": 100}
    with pytest.raises(TrainingError, match=r"at step 251 in run 0 \(seed 7\).*checkpoint") as e:
        fit(lat3, {"encoder": "linear"}, tc, seeds=[7, 8], out_dir=tmp_path, progress=False)
    assert "\n" not in str(e.value)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 200


def test_divergent_learning_rate_raises_training_error(lat3):
    with pytest.raises(TrainingError, match=r"at step \d+ in run 0 \(seed 3\)"):
        fit(
            lat3,
            {"encoder": "linear", "init_scale": 1.0},
            {"lr": 1e8, "steps": 300},
            seeds=[3],
            progress=False,
        )


def test_encoders_listed():
    assert set(ENCODERS) == {"free", "linear", "mlp", "transformer"}


@pytest.mark.parametrize("enc", ["linear", "mlp"])
def test_factored_head_equals_plain_head(lat3, enc):
    """Logits as H (W gᵀ) (the fast path) and as (H W) gᵀ give the same loss and gradient."""
    m, th = _model(lat3, encoder=enc, unembedding_bias=True)
    target = Targets(lat3, [TrainConfig()] * 2, torch.float64).full()
    out = {}
    for factored in (True, False):
        m.factored = factored
        out[factored] = (m.loss(th, "cross_entropy", target), m.grad(th, "cross_entropy", target))
    np.testing.assert_allclose(out[True][0].numpy(), out[False][0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(out[True][1].numpy(), out[False][1].numpy(), rtol=1e-9, atol=1e-13)


def test_transformer_trains_and_renders_contexts(lat3):
    from linrep.learn.transformer import render_contexts

    seq, pad = render_contexts(lat3.contexts, order_seed=0)
    m = lat3.m
    for ctx, s, pd in zip(lat3.contexts, seq, pad, strict=True):
        known = {2 * i + int(v) for i, v in enumerate(ctx) if v >= 0}
        assert s[-1] == 2 * m and not pd[-1]  # the query token closes every sequence
        assert set(s[~pd][:-1].tolist()) == known and pd.sum() == m - len(known)
        assert not pd[pd.argmin() :].any()  # left padding
    r = fit(
        lat3,
        {"encoder": "transformer", "d": 8, "width": 16, "depth": 1, "heads": 2},
        {"optimizer": "adam", "lr": 0.01, "steps": 150, "log_every": 75},
        seeds=[0, 1],
        progress=False,
    )
    ex = [row["excess_loss"] for row in r.history if row["run"] == 0]
    assert ex[-1] < 0.5 * ex[0]


def test_warmup_and_cosine_schedule():
    from linrep.learn.optim import lr_factor

    c = TrainConfig(lr=2.0, steps=110, warmup_steps=10, lr_schedule="cosine", min_lr=0.5)

    def eta(t):
        w, k = lr_factor(c, t)
        return w * (c.min_lr + (c.lr - c.min_lr) * k)

    assert eta(0) == pytest.approx(0.2)  # (0 + 1)/10 of the peak
    assert eta(9) == pytest.approx(2.0)
    assert eta(60) == pytest.approx(0.5 + 1.5 * 0.5 * (1 + np.cos(np.pi * 0.5)))
    assert eta(110) == pytest.approx(0.5)


def _rows_table(lat, rows) -> torch.Tensor:
    """The empirical (K, n, V) table of a minibatch of rows, counted independently."""
    K, B = rows.ctx.shape
    T = torch.zeros(K, lat.n_contexts, lat.n_tokens, dtype=torch.float64)
    for k in range(K):
        for b, c in enumerate(rows.ctx[k].tolist()):
            if rows.tok is None:  # exact rows: the context's whole distribution
                T[k, c] += rows.P[k, b] / B
            else:
                T[k, c, int(rows.tok[k, b])] += 1.0 / B
    return T


@pytest.mark.parametrize("objective", ["exact", "sampled"])
def test_minibatches_are_unbiased(lat3, objective):
    """The mean minibatch table over many steps approaches the full-batch table (T, r, P)."""
    cfgs = [
        TrainConfig(optimizer="sgd", batch_size=64, objective=objective, n_samples=200, seed=s)
        for s in (0, 1)
    ]
    tg = Targets(lat3, cfgs, torch.float64)
    T_full = tg.full()[0].expand(2, -1, -1)

    def table(t):
        return _rows_table(lat3, tg.batch(t))

    mean = sum(table(t) for t in range(600)) / 600
    assert torch.allclose(mean.sum(dim=(1, 2)), torch.ones(2, dtype=torch.float64))
    assert (mean - T_full).abs().max() < 0.01
    if objective == "exact":  # every row carries its context's exact p(·|ξ)
        b = tg.batch(5)
        assert torch.equal(b.P, torch.as_tensor(lat3.p_next)[b.ctx])
    T0 = table(5)
    assert not torch.equal(T0[0], T0[1])  # runs draw their own minibatches
    tg2 = Targets(lat3, cfgs, torch.float64)
    again = _rows_table(lat3, tg2.batch(5))
    assert torch.equal(again, T0)  # a function of (seed, step)


@pytest.mark.parametrize(
    "enc,kw", ENC_CASES, ids=[f"{e}-{k.get('activation', '')}" for e, k in ENC_CASES]
)
@pytest.mark.parametrize("loss", LOSSES)
def test_rows_gradient_equals_table_gradient(lat3, enc, kw, loss):
    """A minibatch of sampled rows: its O(B·V·d) gradient equals the gradient of the same batch
    written as a (contexts × tokens) table T = counts / B (the table path, itself checked against
    finite differences above)."""
    m, th = _model(lat3, encoder=enc, unembedding_bias=True, **kw)
    gen = torch.Generator().manual_seed(2)
    rows = Rows(
        torch.randint(0, lat3.n_contexts, (2, 9), generator=gen),
        torch.randint(0, lat3.n_tokens, (2, 9), generator=gen),
    )
    rows.ctx[:, 1] = rows.ctx[:, 0]  # a context repeated within the batch
    T = _rows_table(lat3, rows)
    r = T.sum(dim=2, keepdim=True)
    G_table = m.grad(th, loss, (T, r, T / r.clamp_min(1e-300)))
    G_rows, L_rows = m.grad_rows(th, loss, rows)
    torch.testing.assert_close(G_rows, G_table, rtol=1e-9, atol=1e-12)
    if loss != "squared":  # equal values (squared: equal up to a θ-independent constant)
        L_table = m.loss(th, loss, (T, r, T / r.clamp_min(1e-300)))
        torch.testing.assert_close(L_rows, L_table, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m.loss_rows(th, loss, rows), L_rows, rtol=0, atol=0)


def test_an_encoder_without_rows_refuses_minibatches(lat3, monkeypatch):
    """Every built-in encoder has a rows path; one without (an Encoder subclass that does not
    implement forward_rows) gets a one-line ConfigError for train.batch_size, not a crash."""
    from linrep.learn import encoders, model

    for enc in ENCODERS:
        assert _model(lat3, encoder=enc)[0].encoder.takes_rows, enc

    class NoRows(encoders.LinearEncoder):
        forward_rows = encoders.Encoder.forward_rows

    monkeypatch.setattr(model, "make_encoder", lambda cfg, *a: NoRows(cfg, *a))
    tc = {"optimizer": "adam", "steps": 2, "batch_size": 4}
    with pytest.raises(ConfigError, match="no minibatch path .* remove train.batch_size"):
        fit(lat3, {"encoder": "linear", "d": 3}, tc, seeds=[0], progress=False)
    fit(lat3, {"encoder": "linear", "d": 3}, {**tc, "batch_size": None}, seeds=[0], progress=False)


def test_rows_cross_entropy_matches_numpy(lat3):
    """−(1/B) Σ_b log softmax(f(ξ_b) gᵀ + b)_{y_b}, written out in numpy."""
    m, th = _model(lat3, encoder="linear", unembedding_bias=True)
    rows = Rows(
        torch.tensor([[0, 5, 5, 26], [3, 3, 7, 1]]), torch.tensor([[1, 2, 7, 0], [4, 4, 6, 5]])
    )
    p = m.views(th)
    x = np.zeros((lat3.n_contexts, 9))
    for i, ctx in enumerate(lat3.contexts):
        for c, v in enumerate(ctx):
            x[i, 3 * c + (2 if v < 0 else int(v))] = 1
    for k in range(2):
        f = x[rows.ctx[k].numpy()] @ p["W"][k].numpy()
        z = f @ p["g"][k].numpy().T + p["b"][k, 0].numpy()
        lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
        ref = np.mean(lse - z[np.arange(4), rows.tok[k].numpy()])
        assert m.loss_rows(th, "cross_entropy", rows)[k].item() == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("enc", ["free", "linear", "mlp"])
@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_matches_autograd(lat3, enc, loss):
    """Closed-form gradients == autograd through an independent plain-torch forward pass."""
    m, th = _model(lat3, encoder=enc, unembedding_bias=True, depth=2, activation="tanh")
    target = Targets(lat3, [TrainConfig()] * 2, torch.float64).full()
    G = m.grad(th, loss, target)
    x = torch.zeros(lat3.n_contexts, 9, dtype=torch.float64)
    for i, ctx in enumerate(lat3.contexts):
        for c, v in enumerate(ctx):
            x[i, 3 * c + (2 if v < 0 else int(v))] = 1
    w = torch.as_tensor(lat3.weights)[:, None]
    P = torch.as_tensor(lat3.p_next)
    for k in range(2):
        p = {n: v[k].clone().requires_grad_(True) for n, v in m.views(th).items()}
        if enc == "free":
            f = p["E"]
        elif enc == "linear":
            f = x @ p["W"]
        else:
            h = torch.tanh(x @ p["W0"] + p["b0"])
            f = torch.tanh(h @ p["W1"] + p["b1"]) @ p["W_out"]
        z = f @ p["g"].T + p["b"]
        if loss == "cross_entropy":
            L = -(w * P * torch.log_softmax(z, dim=1)).sum()
        elif loss == "squared":
            L = (w * (torch.softmax(z, dim=1) - P) ** 2).sum()
        else:
            L = (
                w * torch.nn.functional.binary_cross_entropy_with_logits(z, P, reduction="none")
            ).sum()
        L.backward()
        ref = torch.cat([p[name].grad.reshape(-1) for name, *_ in m.layout])
        np.testing.assert_allclose(G[k].numpy(), ref.numpy(), rtol=1e-9, atol=1e-12)
