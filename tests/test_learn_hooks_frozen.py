"""Metric hooks receive the bias b; ``train.trainable = "unembedding"`` trains g with f fixed.

The frozen-encoder run is checked against an independent numpy gradient-descent loop on the fixed
features: the population cross-entropy L(g, b) = Σ_ξ w(ξ) Σ_y p(y|ξ)(−log softmax(f(ξ)ᵀg + b)_y) has
∂L/∂g = Σ_ξ w(ξ) (q(·|ξ) − p(·|ξ))ᵀ f(ξ) and ∂L/∂b = Σ_ξ w(ξ) (q(·|ξ) − p(·|ξ)), q the softmax.
"""

from __future__ import annotations

import numpy as np
import pytest

from linrep.errors import ConfigError, InputError
from linrep.latent import LatentModel
from linrep.learn import fit


@pytest.fixture(scope="module")
def lat3():
    return LatentModel.from_config({"m": 3, "kind": "ising", "param_seed": 1})


def _gd_on_fixed_features(lat, f, g, b, lr, steps):
    """Plain numpy full-batch GD on (g, b) with f fixed (float64)."""
    w, p = lat.weights[:, None], lat.p_next
    for _ in range(steps):
        z = f @ g.T + b
        q = np.exp(z - z.max(1, keepdims=True))
        q /= q.sum(1, keepdims=True)
        r = w * (q - p)  # (n, V)
        g = g - lr * r.T @ f
        b = b - lr * r.sum(0)
    return g, b


def test_hooks_get_the_bias_when_the_model_has_one(lat3):
    seen = []

    def hook(f, g, b=None):
        seen.append(None if b is None else b.shape)
        return {"b0": np.zeros(f.shape[0]) if b is None else b[:, 0]}

    tc = {"steps": 10, "log_every": 5, "dtype": "float64"}
    fit(lat3, {"encoder": "linear", "d": 4}, tc, seeds=[0, 1], metrics=[hook], progress=False)
    assert seen and all(s is None for s in seen)  # no bias: called fn(f, g)
    seen.clear()
    r = fit(
        lat3,
        {"encoder": "linear", "d": 4, "unembedding_bias": True},
        tc,
        seeds=[0, 1],
        metrics=[hook],
        progress=False,
    )
    assert seen == [(2, lat3.n_tokens)] * 3
    b = r.params()["b"].reshape(2, -1)
    assert np.abs(b[1, 0]) > 1e-6  # the bias moved away from its initial 0
    assert r.final[1]["b0"] == pytest.approx(b[1, 0], abs=1e-12)


def test_a_hook_without_b_is_refused_before_training(lat3):
    with pytest.raises(InputError, match="cannot take the bias b"):
        fit(
            lat3,
            {"encoder": "linear", "unembedding_bias": True},
            {"steps": 5},
            metrics={"old": lambda f, g: {}},
            progress=False,
        )


@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_frozen_encoder_keeps_f_and_trains_g_like_numpy(lat3, optimizer):
    mc = {"encoder": "linear", "d": 6, "unembedding_bias": True, "init_scale": 0.3}
    tc = {"steps": 40, "lr": 0.5, "log_every": 40, "dtype": "float64", "optimizer": optimizer}
    tc["trainable"] = "unembedding"
    if optimizer == "adam":
        tc["lr"] = 0.01
    r = fit(lat3, mc, tc, seeds=[3, 4], progress=False)
    p0, p1 = r.params(initial=True), r.params()
    assert np.array_equal(p0["W"], p1["W"])  # the encoder did not move (not even by rounding)
    assert np.array_equal(r.initial_embeddings(), r.embeddings())
    assert not np.allclose(p0["g"], p1["g"])
    if optimizer == "gd":
        f = r.embeddings()[0]
        g, b = _gd_on_fixed_features(lat3, f, p0["g"][0], p0["b"][0, 0], 0.5, 40)
        np.testing.assert_allclose(p1["g"][0], g, atol=1e-10)
        np.testing.assert_allclose(p1["b"][0, 0], b, atol=1e-10)


def test_trainable_is_validated():
    from linrep.learn import TrainConfig

    with pytest.raises(ConfigError, match="did you mean 'unembedding'"):
        TrainConfig(trainable="unembeding")
