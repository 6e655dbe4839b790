"""The transformer encoder's hand-written forward and backward passes.

The references are independent of ``linrep.learn.transformer``'s evaluation strategy (a table of
(token, position) cells, distinct context prefixes, a query-only last block): a literal plain-torch
transformer evaluated at every position of every context with ``F.layer_norm``,
``F.scaled_dot_product_attention`` and ``F.gelu``, differentiated by autograd; and central finite
differences of linrep's own loss along random directions inside every parameter tensor.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from linrep.latent import LatentModel
from linrep.learn import ModelConfig, TrainConfig, fit
from linrep.learn.config import LOSSES
from linrep.learn.model import BatchedModel, Rows
from linrep.learn.objective import Targets
from linrep.learn.transformer import render_contexts

ARCHS = [  # depth 1 (block 0 is the last block), 2 (the shipped config's shape), 3 (a middle block)
    {"depth": 1, "width": 8, "heads": 2},
    {"depth": 2, "width": 8, "heads": 2},
    {"depth": 3, "width": 6, "heads": 3},
    {"depth": 2, "width": 4, "heads": 1},  # one head: size-1 head axes in every layout
]


def _arch_id(a: dict) -> str:
    return f"depth{a['depth']}-heads{a['heads']}"


@pytest.fixture(scope="module")
def lat3():
    return LatentModel.from_config({"m": 3, "kind": "ising", "param_seed": 1})


@pytest.fixture(scope="module")
def lat4():
    return LatentModel.from_config({"m": 4, "kind": "ising", "param_seed": 2})


def _model(lat, **kw):
    """Two runs in float64, parameters moved off their special initial values (gains 1, biases 0)."""
    mc = ModelConfig(encoder="transformer", d=5, init_scale=0.5, unembedding_bias=True, **kw)
    m = BatchedModel(mc, lat.contexts, lat.n_tokens, torch.float64)
    th = m.init([3, 4], [mc, mc])
    th += 0.2 * torch.randn(th.shape, generator=torch.Generator().manual_seed(0), dtype=th.dtype)
    return m, th


def reference_f(p: dict[str, torch.Tensor], contexts: np.ndarray, cfg: ModelConfig):
    """f (n, d) of one run, literally: every block at every position of every context."""
    seq, pad = (torch.as_tensor(a) for a in render_contexts(contexts, cfg.order_seed))
    n, L = seq.shape
    w, H = cfg.width, cfg.heads
    allowed = torch.tril(torch.ones(L, L, dtype=torch.bool)) & ~pad[:, None, :]
    allowed |= torch.eye(L, dtype=torch.bool)  # a pad attends to itself; nobody reads it

    def ln(x, gain, bias):
        return F.layer_norm(x, (w,), p[gain][0], p[bias][0], eps=1e-5)

    x = p["tok_emb"][seq] + p["pos_emb"]  # (n, L, w)
    for i in range(cfg.depth):
        qkv = ln(x, f"ln1_g{i}", f"ln1_b{i}") @ p[f"Wqkv{i}"]
        q, k, v = (t.reshape(n, L, H, w // H).transpose(1, 2) for t in qkv.split(w, dim=-1))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        x = x + o.transpose(1, 2).reshape(n, L, w) @ p[f"Wo{i}"]
        h = ln(x, f"ln2_g{i}", f"ln2_b{i}")
        x = x + F.gelu(h @ p[f"W1{i}"] + p[f"b1{i}"]) @ p[f"W2{i}"] + p[f"b2{i}"]
    return ln(x[:, -1], "lnf_g", "lnf_b") @ p["W_out"]


def reference_loss(lat, loss: str, f, g, b):
    """Population loss of one run from f (n, d), g (V, d), b (V,) (the losses module's formulas)."""
    z = f @ g.T + b
    w, P = torch.as_tensor(lat.weights)[:, None], torch.as_tensor(lat.p_next)
    if loss == "cross_entropy":
        return -(w * P * torch.log_softmax(z, dim=1)).sum()
    if loss == "squared":
        return (w * (torch.softmax(z, dim=1) - P) ** 2).sum()
    return (w * F.binary_cross_entropy_with_logits(z, P, reduction="none")).sum()


@pytest.mark.parametrize("arch", ARCHS, ids=_arch_id)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("factored", [True, False], ids=["factored-head", "plain-head"])
def test_gradient_matches_autograd_of_a_literal_transformer(lat4, arch, loss, factored):
    m, th = _model(lat4, **arch)
    m.factored = factored
    target = Targets(lat4, [TrainConfig()] * 2, torch.float64).full()
    G = m.grad(th, loss, target)
    L = m.loss(th, loss, target)
    f, _ = m.embed(th)
    for k in range(2):
        p = {n: v[k].clone().requires_grad_(True) for n, v in m.views(th).items()}
        fk = reference_f(p, lat4.contexts, m.cfg)
        np.testing.assert_allclose(f[k].numpy(), fk.detach().numpy(), rtol=1e-10, atol=1e-12)
        Lk = reference_loss(lat4, loss, fk, p["g"], p["b"][0])
        assert float(L[k]) == pytest.approx(Lk.item(), rel=1e-12)
        Lk.backward()
        ref = torch.cat([p[name].grad.reshape(-1) for name, *_ in m.layout])
        np.testing.assert_allclose(G[k].numpy(), ref.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("arch", ARCHS, ids=_arch_id)
def test_gradient_matches_finite_differences_in_every_tensor(lat3, arch):
    """⟨∇L, v⟩ = (L(θ + εv) − L(θ − εv)) / 2ε for a random direction v inside each tensor."""
    m, th = _model(lat3, **arch)
    target = Targets(lat3, [TrainConfig()] * 2, torch.float64).full()
    G = m.grad(th, "cross_entropy", target)
    gen = torch.Generator().manual_seed(1)
    eps = 1e-6
    for name, _, off, size in m.layout:
        v = torch.zeros_like(th)
        v[:, off : off + size] = torch.randn(2, size, generator=gen, dtype=th.dtype)
        fd = (
            m.loss(th + eps * v, "cross_entropy", target)
            - m.loss(th - eps * v, "cross_entropy", target)
        ) / (2 * eps)
        np.testing.assert_allclose(
            (G * v).sum(1).numpy(), fd.numpy(), rtol=1e-6, atol=1e-9, err_msg=name
        )


def test_step_buffers_are_reused_without_leaking(lat3):
    """grad() keeps its intermediates in the model's workspace: a call never sees the last one's."""
    target = Targets(lat3, [TrainConfig()] * 2, torch.float64).full()
    m, th = _model(lat3, depth=2, width=8, heads=2)
    th2 = th + 0.3 * torch.randn(th.shape, generator=torch.Generator().manual_seed(5))
    for factored in (True, False):
        m.factored = factored
        g1 = m.grad(th, "cross_entropy", target)
        m.loss(th2, "squared", target)
        m.embed(th2)
        g2 = m.grad(th2, "cross_entropy", target)
        fresh, _ = _model(lat3, depth=2, width=8, heads=2)
        fresh.factored = factored
        assert torch.equal(g1, fresh.grad(th, "cross_entropy", target))
        assert torch.equal(g2, fresh.grad(th2, "cross_entropy", target))
        assert m.ws.nbytes > 0


@pytest.mark.parametrize("factored", [True, False], ids=["factored-head", "plain-head"])
@pytest.mark.parametrize("arch", ARCHS[1:3], ids=_arch_id)
def test_gradient_written_into_the_loops_buffer(lat3, arch, factored):
    """grad(out=buf) writes every column of the reused (K, P) buffer (a NaN-filled one keeps no
    NaN), equal to the encoder's own gradient tensors assembled by the model (``grad_into`` off)."""
    m, th = _model(lat3, **arch)
    m.factored = factored
    target = Targets(lat3, [TrainConfig()] * 2, torch.float64).full()
    th2 = th + 0.3 * torch.randn(th.shape, generator=torch.Generator().manual_seed(6))
    apart, _ = _model(lat3, **arch)
    apart.factored, apart.encoder.grad_into = factored, False
    buf = torch.empty_like(th)
    for t in (th, th2, th):
        buf.fill_(float("nan"))
        assert m.grad(t, "squared", target, out=buf) is buf
        assert torch.equal(buf, apart.grad(t, "squared", target))


def test_training_is_deterministic_and_runs_do_not_interact(lat3):
    """Same seeds → the same bits; a run trained inside an ensemble = the run trained alone."""
    mc = {"encoder": "transformer", "d": 6, "width": 8, "depth": 2, "heads": 2}
    tc = {"optimizer": "adam", "lr": 0.01, "steps": 40, "log_every": 20}
    a = fit(lat3, mc, tc, seeds=[0, 1], progress=False)
    b = fit(lat3, mc, tc, seeds=[0, 1], progress=False)
    assert np.array_equal(a.embeddings(), b.embeddings())
    assert np.array_equal(a.unembeddings(), b.unembeddings())
    assert a.history == b.history
    one = fit(lat3, mc, {**tc, "dtype": "float64"}, seeds=[1], progress=False)
    two = fit(lat3, mc, {**tc, "dtype": "float64"}, seeds=[0, 1], progress=False)
    np.testing.assert_allclose(two.embeddings()[1], one.embeddings()[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("heads", [1, 2])
def test_a_run_alone_has_its_gradient_inside_an_ensemble(lat3, heads):
    """K = 1 (size-1 run axes in every layout) gives the run's gradient in a 2-run ensemble."""
    m2, th = _model(lat3, depth=2, width=4, heads=heads)
    m1 = BatchedModel(m2.cfg, lat3.contexts, lat3.n_tokens, torch.float64)
    G2 = m2.grad(th, "cross_entropy", Targets(lat3, [TrainConfig()] * 2, torch.float64).full())
    G1 = m1.grad(th[1:], "cross_entropy", Targets(lat3, [TrainConfig()], torch.float64).full())
    np.testing.assert_allclose(G1[0].numpy(), G2[1].numpy(), rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- minibatches of rows
def _batch(lat, K: int, B: int, seed: int) -> torch.Tensor:
    """(K, B) context indices, different per run, each run repeating one context."""
    rows = torch.randint(0, lat.n_contexts, (K, B), generator=torch.Generator().manual_seed(seed))
    rows[:, -1] = rows[:, 0]
    return rows


@pytest.mark.parametrize("arch", ARCHS, ids=_arch_id)
def test_rows_forward_is_the_full_forward_at_the_rows(lat4, arch):
    """forward_rows: run k's f at its own rows = the every-context forward gathered at them."""
    m, th = _model(lat4, **arch)
    p = m.views(th)
    f_all, _ = m.encoder.forward(p)  # (2, n, d)
    for B, seed in ((1, 0), (7, 1), (40, 2)):
        rows = _batch(lat4, 2, B, seed)
        f, _ = m.encoder.forward_rows(p, rows)
        ref = torch.stack([f_all[k, rows[k]] for k in range(2)])
        torch.testing.assert_close(f, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("arch", ARCHS, ids=_arch_id)
@pytest.mark.parametrize("targets", ["tokens", "exact"])
def test_rows_gradient_matches_autograd_of_a_literal_transformer(lat4, arch, targets):
    """grad_rows of a minibatch (different contexts per run, one repeated) = autograd of the
    minibatch cross-entropy through the literal transformer, run by run."""
    m, th = _model(lat4, **arch)
    rows = _batch(lat4, 2, 11, 3)
    gen = torch.Generator().manual_seed(4)
    P_all = torch.as_tensor(lat4.p_next)
    if targets == "tokens":
        batch = Rows(rows, torch.randint(0, lat4.n_tokens, rows.shape, generator=gen))
    else:
        batch = Rows(rows, None, P_all[rows])
    G, L = m.grad_rows(th, "cross_entropy", batch)
    if L is None:  # exact rows give no loss with the step: the minibatch loss apart
        L = m.loss_rows(th, "cross_entropy", batch)
    for k in range(2):
        p = {n: v[k].clone().requires_grad_(True) for n, v in m.views(th).items()}
        z = reference_f(p, lat4.contexts, m.cfg)[rows[k]] @ p["g"].T + p["b"][0]
        logp = torch.log_softmax(z, dim=1)
        if targets == "tokens":
            Lk = -logp[torch.arange(rows.shape[1]), batch.tok[k]].mean()
        else:
            Lk = -(P_all[rows[k]] * logp).sum(1).mean()
        assert float(L[k]) == pytest.approx(Lk.item(), rel=1e-12)
        Lk.backward()
        ref = torch.cat([p[name].grad.reshape(-1) for name, *_ in m.layout])
        np.testing.assert_allclose(G[k].numpy(), ref.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("arch", ARCHS[:3], ids=_arch_id)
def test_a_repeated_context_counts_once_per_occurrence(lat3, arch):
    """Rows (c, c, e) with ∂f (a, b, x) give the gradient of rows (c, e) with ∂f (a + b, x)."""
    m, th = _model(lat3, **arch)
    p = m.views(th)
    gen = torch.Generator().manual_seed(7)
    twice = torch.tensor([[5, 5, 20], [0, 13, 13]])
    once = torch.tensor([[5, 20], [0, 13]])
    df = torch.randn(2, 3, m.d, generator=gen, dtype=th.dtype)
    f2, cache2 = m.encoder.forward_rows(p, twice)
    assert torch.equal(f2[0, 0], f2[0, 1]) and torch.equal(f2[1, 1], f2[1, 2])
    g2 = m.encoder.backward_rows(p, cache2, df, twice)
    df1 = torch.stack(
        [torch.stack([df[0, 0] + df[0, 1], df[0, 2]]), torch.stack([df[1, 0], df[1, 1] + df[1, 2]])]
    )
    f1, cache1 = m.encoder.forward_rows(p, once)
    g1 = m.encoder.backward_rows(p, cache1, df1, once)
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], rtol=1e-11, atol=1e-13, msg=name)


@pytest.mark.parametrize("arch", ARCHS, ids=_arch_id)
def test_each_run_encodes_its_own_rows(lat4, arch):
    """A run's rows gradient inside an ensemble whose runs draw different batches (so their
    block-0 rows differ in number and are padded) = that run alone on its batch."""
    m2, th = _model(lat4, **arch)
    m1 = BatchedModel(m2.cfg, lat4.contexts, lat4.n_tokens, torch.float64)
    rows = torch.stack([torch.arange(0, 81, 3), torch.full((27,), 80)])  # 27 contexts vs 1
    tok = torch.randint(0, lat4.n_tokens, rows.shape, generator=torch.Generator().manual_seed(8))
    G2, L2 = m2.grad_rows(th, "cross_entropy", Rows(rows, tok))
    for k in range(2):
        G1, L1 = m1.grad_rows(th[k : k + 1], "cross_entropy", Rows(rows[k : k + 1], tok[k : k + 1]))
        np.testing.assert_allclose(G1[0].numpy(), G2[k].numpy(), rtol=1e-12, atol=1e-14)
        assert float(L1[0]) == pytest.approx(float(L2[k]), rel=1e-13)


def test_minibatch_training_falls_and_is_deterministic(lat4):
    """fit with batch_size on the transformer: the loss falls, and the same seeds give the same
    bits (θ and history)."""
    mc = {"encoder": "transformer", "d": 6, "width": 8, "depth": 2, "heads": 2}
    tc = {"optimizer": "adam", "lr": 0.01, "steps": 120, "log_every": 40, "batch_size": 16}
    a = fit(lat4, mc, tc, seeds=[0, 1], progress=False)
    b = fit(lat4, mc, tc, seeds=[0, 1], progress=False)
    assert torch.equal(a.theta, b.theta) and a.history == b.history
    for run in (0, 1):
        loss = [r["loss"] for r in a.history if r["run"] == run]
        assert loss[-1] < loss[0] - 0.05, loss  # population loss, exact over all contexts
    c = fit(lat4, mc, tc, seeds=[0, 2], progress=False)
    assert torch.equal(c.theta[0], a.theta[0]) and not torch.equal(c.theta[1], a.theta[1])


def test_minibatches_at_m12_never_plan_every_context():
    """m = 12 (3¹² contexts are never enumerated; sampled contexts, table-free): minibatch steps
    build plans of their batches only — the plan of every context is never made."""
    lat = LatentModel.from_config(
        {"m": 12, "kind": "independent", "contexts": "sampled", "n_contexts": 2048}
    )
    assert not lat.small
    mc = {"encoder": "transformer", "d": 4, "width": 4, "depth": 2, "heads": 1}
    tc = {"optimizer": "adam", "lr": 0.01, "steps": 3, "log_every": 3, "batch_size": 32}
    tc |= {"objective": "sampled", "n_samples": 1000, "eval_contexts": 16}
    res = fit(lat, mc, tc, seeds=[0], progress=False)
    assert res.model.encoder._plan is None
    assert np.isfinite(res.theta.numpy()).all() and len(res.history) == 2


@pytest.mark.parametrize("m", [4, 16])  # prefix keys in one int64, and in two (m = 16)
def test_prefix_keys_sort_like_the_padded_prefixes(m):
    """Distinct prefixes found from the packed keys = np.unique of the literal prefixes (tokens,
    −1 after position i) of two sets of contexts: same order, first occurrences and inverse."""
    from linrep.learn.transformer import _prefix_keys, _unique_rows

    rng = np.random.default_rng(m)
    ctx = rng.integers(-1, 2, (2 * 60, m)).astype(np.int8)
    ctx[60:90] = ctx[:30]  # contexts shared by the two sets, and repeated within one
    ctx[5] = ctx[7]
    seq = render_contexts(ctx, order_seed=0)[0].reshape(2, 60, m + 1)  # (R, B, L)
    R, B, L = seq.shape
    literal = np.where(np.arange(L) <= np.arange(L)[:, None], seq[:, :, None, :], -1)
    literal = literal.transpose(0, 2, 1, 3).reshape(R * L * B, L)
    r = np.repeat(np.arange(R), L * B)[:, None]
    _, first, inv = np.unique(
        np.hstack([r, literal]), axis=0, return_index=True, return_inverse=True
    )
    keys = _prefix_keys(seq, 2 * m + 2).reshape(R * L * B, -1)
    assert keys.shape[1] == (1 if m == 4 else 2)
    got_first, got_inv = _unique_rows(np.hstack([r, keys]))
    assert np.array_equal(got_first, first) and np.array_equal(got_inv, inv.reshape(-1))
