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

Part 2 measures against the filing-time code itself (issue 13 was filed against commit
96ee160): a temporary ``git worktree`` of that commit from this repository's own history, then
``python -m linrep train configs/train_transformer.toml --seeds 0-4 --quiet`` as a fresh process
with that tree's ``src`` first on PYTHONPATH (previous) and with this checkout's (linrep), each
tree with its own config file, in interleaved rounds (previous, linrep, previous, linrep, …).
Each side runs a short and a long run (``--filing-steps 100 1100``) in every round; the cost of a
step is the difference of their wall times over the difference of their step counts, so start-up,
data and writing the results cancel. Checkpoints are switched off on both sides
(``train.checkpoint_every`` beyond the run). The part is skipped, with the reason printed and
recorded, when the commit is not available (not a git checkout, a shallow clone); the temporary
worktree is removed afterwards, also on error.

``--fit-steps N`` also times ``linrep.learn.fit`` end to end for N steps of E4's transformer
(K = 10, both regimes' cost is the same), to size E4's budget.

Usage:  python benchmarks/bench_transformer.py [--rounds 7] [--steps 20] [--threads 1] [--more]
            [--fit-steps 0] [--filing-rounds 3] [--filing-steps 100 1100] [--skip-filing]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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
from record import Recorder, linrep_command

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
FILING_COMMIT = "96ee160487970956148cfa4a6218670cd7851c01"
"""The last commit before the speed-up work: the code issue 13's "present speed" refers to."""


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


# ------------------------------------------------------------------ part 2: the filing-time code
def _git(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *map(str, args)], capture_output=True, text=True)


def filing_unavailable(commit: str) -> str | None:
    """Why the filing-time commit cannot be checked out here, or None when it can."""
    try:
        if _git("rev-parse", "--is-inside-work-tree").returncode:
            return f"{REPO} is not a git checkout"
    except FileNotFoundError:
        return "git is not installed"
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode:
        shallow = _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        return f"commit {commit[:7]} is not in this clone's history" + (
            " (shallow clone: `git fetch --unshallow` brings it)" if shallow else ""
        )
    return None


def _train_seconds(src: Path, cfg: Path, steps: int, out: Path) -> float:
    """Wall seconds of `linrep train CFG --seeds 0-4` with ``src`` first on the import path."""
    cmd = linrep_command(
        "train", cfg, "--out", out, "--seeds", "0-4", "--quiet",
        "--set", f"train.steps={steps}", "--set", f"train.checkpoint_every={10**9}",
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(src)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=out.parent)
    dt = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return dt


def _imported_from(src: Path) -> Path:
    """Where ``import linrep`` resolves with ``src`` first on PYTHONPATH (checked, not assumed)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    code = "import linrep; print(linrep.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return Path(out.stdout.strip()).resolve()


def bench_filing_time(rounds: int, steps: tuple[int, int], rec: Recorder) -> None:
    commit, (short, long) = FILING_COMMIT, steps
    print(
        f"== vs the filing-time code {commit[:7]}: linrep train configs/train_transformer.toml "
        f"--seeds 0-4 as fresh processes, {rounds} interleaved rounds, ms/step from "
        f"{long}- minus {short}-step runs (wall)"
    )
    reason = filing_unavailable(commit)
    if reason is not None:
        print(f"  SKIPPED: {reason}")
        rec["filing_time"] = {"skipped": reason}
        return
    with tempfile.TemporaryDirectory(prefix="linrep-filing-") as tmp:
        old = Path(tmp) / "filing"
        add = _git("worktree", "add", "--detach", old, commit)
        if add.returncode:
            print(f"  SKIPPED: git worktree add failed: {add.stderr.strip()}")
            rec["filing_time"] = {"skipped": f"git worktree add failed: {add.stderr.strip()}"}
            return
        try:
            _filing_rounds(old, rounds, short, long, rec)
        finally:
            _git("worktree", "remove", "--force", old)
            _git("worktree", "prune")


def _filing_rounds(old: Path, rounds: int, short: int, long: int, rec: Recorder) -> None:
    sides = {"previous": old, "linrep": REPO}
    for name, root in sides.items():
        where = _imported_from(root / "src")
        if not where.is_relative_to((root / "src").resolve()):
            raise RuntimeError(f"{name}: `import linrep` resolves to {where}, not {root / 'src'}")
    work = Path(old).parent
    ms: dict[str, list[float]] = {name: [] for name in sides}
    for root in sides.values():  # warm-up: page cache, .pyc files
        _train_seconds(root / "src", root / "configs" / "train_transformer.toml", 1, work / "w")
    for _ in range(rounds):
        for name, root in sides.items():
            cfg = root / "configs" / "train_transformer.toml"
            t_short = _train_seconds(root / "src", cfg, short, work / "o")
            t_long = _train_seconds(root / "src", cfg, long, work / "o")
            ms[name].append(1e3 * (t_long - t_short) / (long - short))
    ratios = [a / b if b > 0 else math.nan for a, b in zip(ms["previous"], ms["linrep"])]
    med = statistics.median(ratios)
    for i, r in enumerate(ratios):
        print(
            f"  round {i + 1}: previous {ms['previous'][i]:7.2f} ms/step, linrep "
            f"{ms['linrep'][i]:6.2f} ms/step -> {r:4.1f}x"
        )
    rec["filing_time"] = {
        "commit": FILING_COMMIT,
        "command": "linrep train configs/train_transformer.toml --seeds 0-4 --quiet "
        f"--set train.checkpoint_every={10**9} --set train.steps=N",
        "steps": [short, long],
        "previous_ms_per_step": ms["previous"],
        "linrep_ms_per_step": ms["linrep"],
        "ratios": ratios,
        "ratio": med,
        "ratio_range": [min(ratios), max(ratios)],
        "previous_ms_median": statistics.median(ms["previous"]),
        "linrep_ms_median": statistics.median(ms["linrep"]),
        "rounds": rounds,
    }
    print(
        f"  RATIO filing-time code / linrep: {med:5.1f}x  (median of {rounds} rounds; range "
        f"{min(ratios):.1f}-{max(ratios):.1f}; target >= 5x)"
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
    ap.add_argument("--filing-rounds", type=int, default=3, help="rounds of part 2")
    ap.add_argument(
        "--filing-steps", type=int, nargs=2, default=(100, 1100), metavar=("SHORT", "LONG"),
        help="part 2's step counts; a step costs the wall-time difference over LONG - SHORT",
    )  # fmt: skip
    ap.add_argument("--skip-filing", action="store_true", help="skip part 2 (git worktree runs)")
    args = ap.parse_args()
    if args.filing_steps[1] <= args.filing_steps[0]:
        ap.error("--filing-steps SHORT LONG needs LONG > SHORT")
    torch.set_num_threads(args.threads)
    rec = Recorder("bench_transformer")
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} at start; torch threads {args.threads}"
    )
    bench_steps(args.rounds, args.steps, args.more, rec)
    if not args.skip_filing:
        bench_filing_time(args.filing_rounds, tuple(args.filing_steps), rec)
    if args.fit_steps:
        bench_fit(args.fit_steps)
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    rec.write()


if __name__ == "__main__":
    main()
