"""The blocked full-batch step (BatchedModel._grad_blocked): contexts in blocks that fit in cache.

Checked against autograd through an independent plain-torch forward pass of the whole context set
(no blocks), for every loss, with a bias and a ragged last block; and a blocked fit against the
same fit in one pass.
"""

from __future__ import annotations

import pytest
import torch

import linrep.learn.model as model_mod
from linrep.latent import LatentModel
from linrep.learn import ModelConfig, TrainConfig, fit
from linrep.learn.config import LOSSES
from linrep.learn.model import BatchedModel
from linrep.learn.objective import Targets


@pytest.fixture(scope="module")
def lat4():
    return LatentModel.from_config({"m": 4, "kind": "ising", "param_seed": 2})


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 16 contexts (the minimum) for K = 2 runs of 16 tokens in float64."""
    monkeypatch.setattr(model_mod, "BLOCK_BYTES", 16 * 2 * 16 * 8)


def _literal_loss(lat, p, loss, act):
    """Loss of one run over all contexts, written out with no blocks (autograd reference)."""
    x = torch.zeros(lat.n_contexts, 3 * lat.m, dtype=torch.float64)
    for i, ctx in enumerate(lat.contexts):
        for c, v in enumerate(ctx):
            x[i, 3 * c + (2 if v < 0 else int(v))] = 1
    w = torch.as_tensor(lat.weights)[:, None]
    P = torch.as_tensor(lat.p_next)
    h = act(x @ p["W0"] + p["b0"])
    f = act(h @ p["W1"] + p["b1"]) @ p["W_out"]
    z = f @ p["g"].T + p["b"]
    if loss == "cross_entropy":
        return -(w * P * torch.log_softmax(z, dim=1)).sum()
    if loss == "squared":
        return (w * (torch.softmax(z, dim=1) - P) ** 2).sum()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, P, reduction="none")
    return (w * bce).sum()


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """torch threads: 2 splits the blocks over two Python threads (one torch thread each)."""
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_blocked_gradient_and_loss_match_autograd(lat4, small_blocks, threads, loss, activation):
    mc = ModelConfig(
        encoder="mlp", d=5, width=8, depth=2, activation=activation, unembedding_bias=True
    )
    m = BatchedModel(mc, lat4.contexts, lat4.n_tokens, torch.float64)
    th = m.init([3, 4], [mc, mc])
    th += 0.2 * torch.randn(th.shape, generator=torch.Generator().manual_seed(0), dtype=th.dtype)
    target = Targets(lat4, [TrainConfig()] * 2, torch.float64).full()
    rows = m.block_rows(2, target)
    assert 0 < rows < lat4.n_contexts and lat4.n_contexts % rows != 0  # blocked, ragged tail
    G = m.grad(th, loss, target)
    L = m.loss(th, loss, target)
    act = torch.relu if activation == "relu" else torch.tanh
    for k in range(2):
        p = {n: v[k].clone().requires_grad_(True) for n, v in m.views(th).items()}
        ref = _literal_loss(lat4, p, loss, act)
        ref.backward()
        want = torch.cat([p[name].grad.reshape(-1) for name, *_ in m.layout])
        torch.testing.assert_close(G[k], want, rtol=1e-9, atol=1e-12)
        assert L[k].item() == pytest.approx(ref.item(), rel=1e-12)


def test_blocked_fit_equals_one_pass_fit_and_repeats_bit_for_bit(lat4, monkeypatch, threads):
    mc = ModelConfig(encoder="mlp", d=6, width=16)
    tc = TrainConfig(steps=30, lr=0.5, log_every=10, dtype="float64", threads=threads)
    whole = fit(lat4, mc, tc, seeds=[0, 1], progress=False)
    monkeypatch.setattr(model_mod, "BLOCK_BYTES", 16 * 2 * 16 * 8)
    a = fit(lat4, mc, tc, seeds=[0, 1], progress=False)
    b = fit(lat4, mc, tc, seeds=[0, 1], progress=False)
    assert torch.equal(a.theta, b.theta)
    torch.testing.assert_close(a.theta, whole.theta, rtol=1e-10, atol=1e-12)
    for ra, rw in zip(a.history, whole.history, strict=True):
        assert ra["loss"] == pytest.approx(rw["loss"], rel=1e-12)


def test_history_loss_and_step_share_one_pass_with_the_same_bits(
    lat4, small_blocks, threads, monkeypatch
):
    """A history row's loss at θ_t also yields the step's gradient (model.keep_grad_of): the run
    is bit-identical to one computing them apart, and the loss's own pass is skipped."""
    mc = ModelConfig(encoder="mlp", d=6, width=16, unembedding_bias=True)
    tc = TrainConfig(steps=12, lr=0.5, log_every=3, dtype="float64", threads=threads)
    calls = []
    block_loss = BatchedModel._block_loss

    def counting(self, *args):
        calls.append(1)
        return block_loss(self, *args)

    monkeypatch.setattr(BatchedModel, "_block_loss", counting)
    shared = fit(lat4, mc, tc, seeds=[0, 1], progress=False)
    n_shared = len(calls)
    never = property(lambda self: None, lambda self, v: None)  # keep no gradient
    monkeypatch.setattr(BatchedModel, "keep_grad_of", never, raising=False)
    calls.clear()
    apart = fit(lat4, mc, tc, seeds=[0, 1], progress=False)
    assert torch.equal(shared.theta, apart.theta)
    assert [r["loss"] for r in shared.history] == [r["loss"] for r in apart.history]
    assert n_shared * 5 == len(calls)  # 5 rows (t = 0, 3, 6, 9, 12); the last one's pass is left


def test_blocked_depth0_mlp_equals_one_pass(lat4, monkeypatch):
    """depth = 0 (f = x W_out, no layer 1): block inputs are x alone, not [x, 1]."""
    mc = ModelConfig(encoder="mlp", d=5, width=8, depth=0)
    m = BatchedModel(mc, lat4.contexts, lat4.n_tokens, torch.float64)
    m.factored = False  # the blocked path is the unfactored head's
    th = m.init([0, 1], [mc, mc])
    target = Targets(lat4, [TrainConfig()] * 2, torch.float64).full()
    whole, whole_loss = m.grad(th, "cross_entropy", target), m.loss(th, "cross_entropy", target)
    monkeypatch.setattr(model_mod, "BLOCK_BYTES", 16 * 2 * 16 * 8)
    assert m.block_rows(2, target) > 0
    torch.testing.assert_close(m.grad(th, "cross_entropy", target), whole, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(m.loss(th, "cross_entropy", target), whole_loss, rtol=1e-12, atol=0)
