"""Benchmark of the transformer encoder's training step: linrep's vs the previous implementation.

Prints ratios measured in this one run; nothing is asserted.

The reference is the encoder linrep shipped before the speed-up (issue 13), kept here only: every
block evaluated at every position of every context, attention as batched matmuls of the
(L × L) score matrices, gradients by autograd through that forward pass (BatchedModel's generic
autograd path) and the plain, unfactored head. linrep's encoder computes the same function with the
same parameters and initialisation (the script checks that both give the same loss and gradient
before timing) but evaluates block 0 on the (token, position) table and on distinct context
prefixes, the last block at the query position only, and runs a hand-written backward pass.

A step is what the trainer does each iteration: the gradient of the loss on the full exact
objective plus the optimiser update. Both sides run in this process with the same torch threads
(default 1: what ``fit`` chooses at this size), alternating in rounds so that a change in the
machine's load hits both; the ratio is the median over rounds of (reference time / linrep time)
in the same round. The load average is printed before and after.

Settings (read from the shipped configs):
  train    configs/train_transformer.toml: m = 4, d = 32, width 32, depth 2, 4 heads, Adam, K = 5
  e4       configs/e4_architecture.toml, its transformer: width 64, depth 1, 4 heads, GD, K = 10
  m5, m6   the train setting at m = 5 and 6 (243 and 729 contexts), K = 5 (``--more``)

``--fit-steps N`` also times ``linrep.learn.fit`` end to end for N steps of E4's transformer
(K = 10, both regimes' cost is the same), to size E4's budget.

Usage:  python benchmarks/bench_transformer.py [--rounds 7] [--steps 20] [--threads 1] [--more]
                                               [--fit-steps 0]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from linrep.config import load_toml
from linrep.latent import LatentModel
from linrep.learn import ModelConfig, TrainConfig, fit
from linrep.learn.encoders import Encoder
from linrep.learn.model import BatchedModel
from linrep.learn.objective import Targets
from linrep.learn.optim import BatchedOptimizer
from linrep.learn.transformer import render_contexts
from record import Recorder

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# ------------------------------------------------------------------ the reference implementation
def _layer_norm(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    mu = x.mean(dim=-1, keepdim=True)
    var = (x - mu).pow(2).mean(dim=-1, keepdim=True)
    shape = (gain.shape[0],) + (1,) * (x.dim() - 2) + (gain.shape[1],)
    return (x - mu) / torch.sqrt(var + 1e-5) * gain.view(shape) + bias.view(shape)


def _mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    K = x.shape[0]
    out = torch.bmm(x.reshape(K, -1, x.shape[-1]), w)
    return out.view(*x.shape[:-1], w.shape[-1])


class ReferenceTransformer(Encoder):
    """The previous encoder: full forward pass at every position, backward by autograd."""

    manual_backward = False

    def __init__(self, cfg, contexts, dtype, new):
        super().__init__(cfg, contexts, dtype)
        seq, pad = render_contexts(contexts, cfg.order_seed)
        self.L = L = self.m + 1
        self.seq = torch.as_tensor(seq)
        causal = np.tril(np.ones((L, L), dtype=bool))
        allowed = causal[None] & ~pad[:, None, :]
        allowed |= np.eye(L, dtype=bool)[None]
        mask = np.where(allowed, 0.0, -np.inf)
        self.mask = torch.as_tensor(mask, dtype=dtype)[None, :, None]  # (1, n, 1, L, L)
        self.shapes = new.shapes  # the same parameters, layout and initialisation
        self.init = new.init

    def forward(self, p):
        K = p["tok_emb"].shape[0]
        n, L, w, H = self.n, self.L, self.cfg.width, self.cfg.heads
        dh = w // H
        x = p["tok_emb"][:, self.seq] + p["pos_emb"][:, None]  # (K, n, L, w)
        for i in range(self.cfg.depth):
            h = _layer_norm(x, p[f"ln1_g{i}"][:, 0], p[f"ln1_b{i}"][:, 0])
            qkv = _mm(h, p[f"Wqkv{i}"]).view(K, n, L, 3, H, dh)
            q, k, v = (qkv[:, :, :, j].transpose(2, 3) for j in range(3))  # (K, n, H, L, dh)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + self.mask, dim=-1)
            a = (att @ v).transpose(2, 3).reshape(K, n, L, w)
            x = x + _mm(a, p[f"Wo{i}"])
            h = _layer_norm(x, p[f"ln2_g{i}"][:, 0], p[f"ln2_b{i}"][:, 0])
            u = torch.nn.functional.gelu(_mm(h, p[f"W1{i}"]) + p[f"b1{i}"][:, None])
            x = x + _mm(u, p[f"W2{i}"]) + p[f"b2{i}"][:, None]
        last = _layer_norm(x[:, :, -1], p["lnf_g"][:, 0], p["lnf_b"][:, 0])  # (K, n, w)
        return torch.bmm(last, p["W_out"]), None


# ------------------------------------------------------------------ settings and timing
def settings(more: bool) -> dict[str, tuple[LatentModel, ModelConfig, TrainConfig, int]]:
    raw = load_toml(CONFIGS / "train_transformer.toml")
    lat = LatentModel.from_config(raw["latent"])
    mc, tc = ModelConfig(**raw["model"]), TrainConfig(**raw["train"])
    out = {"train": (lat, mc, tc, 5)}
    e4 = load_toml(CONFIGS / "e4_architecture.toml")
    ex = e4["experiment"]
    mc4 = ModelConfig(
        **{**e4["model"], "encoder": "transformer", **ex["encoder_model"]["transformer"]}
    )
    tr4 = {k: v for k, v in ex["encoder_train"]["transformer"].items() if k != "log_every"}
    tc4 = TrainConfig(**{**e4["train"], **tr4})
    out["e4"] = (LatentModel.from_config(e4["latent"]), mc4, tc4, int(ex["n_seeds"]))
    if more:
        for m in (5, 6):
            out[f"m{m}"] = (LatentModel.from_config({**raw["latent"], "m": m}), mc, tc, 5)
    return out


class Stepper:
    """One ensemble's training step (gradient + optimiser update), as the trainer runs it."""

    def __init__(self, lat, mc, tc, K, reference: bool):
        self.model = BatchedModel(mc, lat.contexts, lat.n_tokens, torch.float32)
        if reference:
            self.model.encoder = ReferenceTransformer(
                mc, lat.contexts, torch.float32, self.model.encoder
            )
            self.model.factored = False  # the previous encoder had no factored head
        self.theta = self.model.init(list(range(K)), [mc] * K)
        self.target = Targets(lat, [tc] * K, torch.float32).full()
        self.opt = BatchedOptimizer([tc] * K, self.model.P, torch.float32)
        self.loss, self.buf, self.t = tc.loss, torch.empty_like(self.theta), 0

    def grad(self) -> torch.Tensor:
        return self.model.grad(self.theta, self.loss, self.target, out=self.buf)

    def run(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps."""
        with torch.no_grad():
            t0 = time.perf_counter()
            for _ in range(steps):
                self.opt.step(self.theta, self.grad(), self.t)
                self.t += 1
            return (time.perf_counter() - t0) / steps


def same_math(new: Stepper, ref: Stepper) -> tuple[float, float]:
    """Relative differences of loss and gradient at the common initial θ."""
    with torch.no_grad():
        ln = new.model.loss(new.theta, new.loss, new.target)
        lr = ref.model.loss(ref.theta, ref.loss, ref.target)
        gn, gr = new.grad().clone(), ref.grad().clone()
    return float(((ln - lr).abs() / lr.abs()).max()), float((gn - gr).abs().max() / gr.abs().max())


def bench_steps(rounds: int, steps: int, more: bool, rec: Recorder) -> None:
    print(f"== transformer training step: previous (autograd) vs linrep, {rounds} rounds")
    for name, (lat, mc, tc, K) in settings(more).items():
        new, ref = Stepper(lat, mc, tc, K, False), Stepper(lat, mc, tc, K, True)
        dl, dg = same_math(new, ref)
        ref_steps = max(2, steps // 5)
        new.run(3), ref.run(2)  # warm-up: first-call allocations, lazy imports
        t_new, t_ref, ratios = [], [], []
        for _ in range(rounds):
            a, b = ref.run(ref_steps), new.run(steps)
            t_ref.append(a), t_new.append(b), ratios.append(a / b)
        desc = (
            f"m={lat.m} (n={lat.n_contexts}), width {mc.width}, depth {mc.depth}, "
            f"{mc.heads} heads, d={mc.d}, {tc.optimizer}, K={K}"
        )
        print(f"  {name:5s} {desc}")
        print(f"        same math: |Δloss|/loss {dl:.1e}, max|Δgrad|/max|grad| {dg:.1e} (float32)")
        print(
            f"        previous {1e3 * statistics.median(t_ref):8.2f} ms/step "
            f"(min {1e3 * min(t_ref):.2f}) | linrep {1e3 * statistics.median(t_new):7.2f} ms/step "
            f"(min {1e3 * min(t_new):.2f})"
        )
        rec[name] = {
            "setting": desc,
            "previous_ms_per_step": 1e3 * statistics.median(t_ref),
            "linrep_ms_per_step": 1e3 * statistics.median(t_new),
            "ratio": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)],
            "rounds": rounds,
        }
        print(
            f"        RATIO previous / linrep: {statistics.median(ratios):5.1f}x  (median of "
            f"{rounds} rounds; range {min(ratios):.1f}-{max(ratios):.1f}; target >= 5x)"
        )


def bench_fit(steps: int) -> None:
    lat, mc, tc, K = settings(False)["e4"]
    print(f"== linrep.learn.fit end to end, E4's transformer, {steps} steps, K={K}")
    t0, c0 = time.perf_counter(), time.process_time()
    res = fit(
        lat,
        mc,
        TrainConfig(**{**tc.__dict__, "steps": steps, "log_every": max(1, steps // 4)}),
        seeds=range(K),
        progress=False,
    )
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    ex = np.mean([r["excess_loss"] for r in res.final])
    print(
        f"  wall {dt:7.1f} s ({1e3 * dt / steps:.2f} ms/step incl. logging), CPU {cpu:.1f} s "
        f"({1e3 * cpu / steps:.2f} ms/step); mean excess loss {ex:.2e} (lr {tc.lr})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20, help="linrep steps per round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--more", action="store_true", help="also m = 5 and m = 6")
    ap.add_argument("--fit-steps", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rec = Recorder("bench_transformer")
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} at start; torch threads {args.threads}"
    )
    bench_steps(args.rounds, args.steps, args.more, rec)
    if args.fit_steps:
        bench_fit(args.fit_steps)
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    rec.write()


if __name__ == "__main__":
    main()
