"""Training loop: K runs as one batched computation, history, metric hooks, checkpoints, resume.

Step semantics: θ_0 is the initialisation; step t (t = 0 … steps−1) evaluates the objective at θ_t and
moves to θ_{t+1}. History rows are recorded at θ_t for t ≡ 0 (mod log_every) and at t = steps:

- ``loss``: the training objective — the population loss (``exact``), the dataset loss (``sampled``
  with an exact table), or, for table-free latent models, the mean minibatch loss of the steps
  since the previous row (at step 0: of the first minibatch);
- ``excess_loss``: the *population* loss minus its floor (H(Y|X) for cross-entropy), exact when the
  latent model is tabulated, else estimated on held-out contexts with ``excess_loss_se``
  (:mod:`linrep.learn.evaluate`);
- ``param_norm`` ‖θ‖₂ of the run, ``lr`` the step size η_t, then the metric hooks' values.

A step reads only (seed, step) for its data (:mod:`linrep.learn.objective`), so training 2N steps
equals N steps, a checkpoint and N more, bit for bit. Checkpoints are written every
``checkpoint_every`` steps and every ``checkpoint_seconds`` of wall time.

Non-finite values are looked for at every history row and checkpoint (no work per step). A run
whose loss or parameters became NaN/inf is replayed from the last verified state to its first bad
step, is stopped at its last finite state and marked failed; the other runs go on. Only when every
run has failed does training stop with a :class:`~linrep.errors.TrainingError` (the last checkpoint
on disk is always a verified one).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, InputError, TrainingError
from ..io import ensure_out_dir
from .checkpoint import CHECKPOINT_NAME, check_fingerprint, load_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig
from .evaluate import PopulationLoss
from .hooks import MetricFn, check_bias_hooks, evaluate_hooks, normalise_hooks
from .model import BatchedModel, Rows
from .objective import Targets
from .optim import BatchedOptimizer
from .parallel import wide
from .result import TrainResult, write_history
from .runs import fingerprint, resolve_runs

__all__ = ["fit", "TrainResult", "MetricFn", "resolve_runs", "SMALL_WORK"]

# Below this many multiply-adds per step (K·n·V·d), one thread is used: thread hand-offs cost more
# than they save. Measured on a busy 2-core machine: 2 threads were 10-200x slower than 1 at
# m = 4-5, K = 10 and still 14x slower at m = 8, d = 64, K = 1 (1e8 multiply-adds).
SMALL_WORK = 2**28

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def fit(
    latent,
    model_cfg: ModelConfig | Mapping | Sequence,
    train_cfg: TrainConfig | Mapping | Sequence,
    seeds: Sequence[int] | None = None,
    *,
    metrics: Mapping[str, MetricFn] | Sequence[MetricFn] | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train K = len(seeds) runs of p̂(y|ξ) = softmax(f(ξ)ᵀ g(y) + b(y)) as one batched ensemble.

    Args:
        latent: the :class:`linrep.latent.LatentModel` supplying contexts, weights w(ξ) and p(y|ξ).
        model_cfg: ``[model]`` config (ModelConfig or dict), or a list with one per run.
        train_cfg: ``[train]`` config (TrainConfig or dict), or a list with one per run.
        seeds: run seeds (override ``train.seed``); default: the train config(s)' seed(s).
        metrics: hooks ``fn(f: (K, n, d), g: (K, V, d)) -> {name: (K,)}`` evaluated at every history
            step, called ``fn(f, g, b=b)`` with b: (K, V) when the model has a bias; a dict
            ``{prefix: fn}`` names columns ``prefix.name``, a list uses ``name``.
        out_dir: if given, write checkpoints (see module docstring) and the results
            (:meth:`TrainResult.save`) there.
        resume: continue from ``out_dir/checkpoint.pt`` (same config required; ``steps`` may grow
            when the schedule is constant).
        progress: show a tqdm progress bar.

    Returns:
        A :class:`TrainResult` (``failed`` names runs stopped by a non-finite loss).

    Raises:
        ConfigError: invalid or inconsistent configs, or resuming with a different config.
        TrainingError: every run's loss became NaN/inf (names the first bad step and run).
    """
    mcfgs, tcfgs = resolve_runs(model_cfg, train_cfg, seeds)
    hooks = normalise_hooks(metrics)
    check_bias_hooks(hooks, mcfgs[0].unembedding_bias)
    out = ensure_out_dir(out_dir) if out_dir is not None else None
    workers = _workers(latent, mcfgs, tcfgs)
    if resume and out is not None and (out / CHECKPOINT_NAME).exists():
        workers = 1  # a finished or unsharded checkpoint: continue it in this process
    if workers > 1:
        from .shards import fit_sharded

        result = fit_sharded(latent, mcfgs, tcfgs, hooks, out, resume, workers)
    else:
        old_threads = torch.get_num_threads()
        threads = _threads(latent, mcfgs, tcfgs)
        # minibatches of rows: one thread, and `threads` inside their wide kernels only
        torch.set_num_threads(1 if tcfgs[0].minibatch else threads)
        try:
            with torch.no_grad():
                run = Training(latent, mcfgs, tcfgs, hooks, out, progress=progress)
                run.model.wide_threads = threads
                if resume:
                    run.restore()
                result = run.train()
        finally:
            torch.set_num_threads(old_threads)
    if out is not None:
        result.save(out)
    return result


def _step_work(latent, mcfgs, tcfgs) -> int:
    """Multiply-adds of the logits of one step, K·rows·V·d (rows = batch or all contexts)."""
    tc = tcfgs[0]
    rows = tc.batch_size if tc.minibatch else latent.n_contexts
    return len(tcfgs) * rows * latent.n_tokens * mcfgs[0].d


def _threads(latent, mcfgs, tcfgs) -> int:
    """Torch threads of the step: ``train.threads``, or 1 for small steps (see SMALL_WORK)."""
    if tcfgs[0].threads is not None:
        return tcfgs[0].threads
    return 1 if _step_work(latent, mcfgs, tcfgs) < SMALL_WORK else torch.get_num_threads()


def _workers(latent, mcfgs, tcfgs) -> int:
    """Processes to shard the ensemble over: ``train.workers``, or the idle cores when 0."""
    tc, K = tcfgs[0], len(tcfgs)
    if tc.workers != 0:
        return min(tc.workers, K)
    if _threads(latent, mcfgs, tcfgs) != 1 or K < 2 or device_of(tc).type != "cpu":
        return 1
    import os

    idle = (os.cpu_count() or 1) - os.getloadavg()[0]
    return max(1, min(K, int(idle + 0.5)))


def device_of(tc: TrainConfig) -> torch.device:
    """The torch device of ``train.device`` (auto = cuda if available, else cpu)."""
    if tc.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if tc.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device = 'cuda' but torch sees no CUDA device here; use 'auto' or 'cpu'"
        )
    return torch.device(tc.device)


class Training:
    """One training run of an ensemble, as small named steps (see :meth:`train`).

    Args:
        latent: the latent model (as :func:`fit`).
        mcfgs: per-run model configs (resolved, :func:`~linrep.learn.runs.resolve_runs`).
        tcfgs: per-run train configs (resolved).
        hooks: (column prefix, metric hook) pairs (:func:`~linrep.learn.hooks.normalise_hooks`).
        out_dir: output folder for checkpoints, or None.
        progress: show a progress bar.
    """

    def __init__(self, latent, mcfgs, tcfgs, hooks, out_dir, *, progress: bool = True):
        tc = self.tc = tcfgs[0]
        self.latent, self.mcfgs, self.tcfgs, self.hooks = latent, mcfgs, tcfgs, hooks
        self.K = len(tcfgs)
        self.seeds = [c.seed for c in tcfgs]
        self.device = device_of(tc)
        dtype = DTYPES[tc.dtype]
        # minibatches never need a table (sampled: rows of (context, token); exact: rows of
        # (context, p(·|ξ))); a small latent model still gives tables and the exact evaluation
        tables = not tc.minibatch or bool(getattr(latent, "small", True))
        if tables and not getattr(latent, "tabulated", True):
            raise ConfigError(
                f"the latent model has no exact table ({latent.n_contexts:,} contexts × "
                f"{latent.n_tokens:,} tokens > latent.max_cells); train it with objective = "
                '"sampled" and a batch_size (e.g. optimizer = "adam", batch_size = 256)'
            )
        self.model = BatchedModel(mcfgs[0], latent.contexts, latent.n_tokens, dtype, self.device)
        if tc.minibatch and not self.model.encoder.takes_rows:  # every built-in encoder does
            raise ConfigError(
                f"model.encoder = '{mcfgs[0].encoder}' has no minibatch path (its encoder does not "
                "implement forward_rows); remove train.batch_size to train it on the full batch"
            )
        _check_memory(self.model, latent, tcfgs, dtype, tables=tables)
        self.targets = Targets(latent, tcfgs, dtype, self.device, tables=tables)
        self.rows = self.targets.rows
        self.trainable = slice(
            self.model.n_encoder if tc.trainable == "unembedding" else 0, self.model.P
        )
        width = self.trainable.stop - self.trainable.start
        self.opt = BatchedOptimizer(tcfgs, width, dtype, self.device)
        self.population = PopulationLoss(
            latent,
            tc.loss,
            dtype,
            self.targets.exact,
            eval_contexts=tc.eval_contexts,
            seed=tc.eval_seed,
            device=self.device,
        )
        self.theta0 = self.model.init(self.seeds, mcfgs).to(self.device)
        self.theta = self.theta0.clone()
        self.history: list[dict[str, Any]] = []
        self.failed: dict[int, dict[str, Any]] = {}
        self.start = 0
        self.fingerprint = fingerprint(latent, mcfgs, tcfgs)
        self.own_checkpoint: int | None = None  # step of the checkpoint this call wrote/resumed
        self.out = ensure_out_dir(out_dir) if out_dir is not None else None
        self.ck_path = self.out / CHECKPOINT_NAME if self.out is not None else None
        self.full = self.targets.full() if tables else None
        # running minibatch loss since the last history row (table-free models report it)
        self.window = {
            "sum": torch.zeros(self.K, dtype=torch.float64, device=self.device),
            "count": torch.zeros((), dtype=torch.int64),
        }
        self.good = self._snapshot(0)
        self.progress = progress
        self._free_key: tuple | None = None  # (grad buffer, θ, their trainable views)

    # ------------------------------------------------------------------ restore
    def restore(self) -> None:
        """Continue from ``out_dir/checkpoint.pt`` if it exists (same config required)."""
        if self.ck_path is None:
            raise InputError("resume=True needs out_dir (the folder holding checkpoint.pt)")
        if not self.ck_path.exists():
            return
        ck = load_checkpoint(self.ck_path)
        check_fingerprint(self.fingerprint, ck["fingerprint"], self.ck_path)
        if ck["step"] > self.tc.steps:
            raise ConfigError(
                f"checkpoint '{self.ck_path}' is at step {ck['step']} > train.steps = "
                f"{self.tc.steps}; raise train.steps or use a new --out folder"
            )
        if tuple(ck["theta"].shape) != tuple(self.theta.shape):
            raise ConfigError(
                f"checkpoint '{self.ck_path}' has parameters of another shape; use a new --out"
            )
        self.theta.copy_(ck["theta"].to(self.theta.dtype))
        try:
            self.opt.load_state_dict({k: v.to(self.device) for k, v in ck["opt_state"].items()})
        except (KeyError, RuntimeError):
            raise InputError(
                f"checkpoint '{self.ck_path}' holds an optimiser state that does not fit this "
                "config; delete it, or start again with --overwrite"
            ) from None
        self.start = self.own_checkpoint = ck["step"]
        self.history = [row for row in ck["history"] if row["step"] <= self.start]
        self.failed = ck["failed"]
        if self.failed:
            self.opt.freeze(sorted(self.failed))
        for k, v in ck["window"].items():
            self.window[k] = v.to(self.window[k].device)
        self.good = self._snapshot(self.start)

    # ------------------------------------------------------------------ the loop
    def train(self) -> TrainResult:
        """Run steps ``start … steps − 1`` with history rows and checkpoints; return the result."""
        tc, steps = self.tc, self.tc.steps
        logged = {row["step"] for row in self.history}
        bar = self._progress_bar()
        t0 = time.perf_counter()
        last_ck = time.monotonic()
        grad_buf = torch.empty_like(self.theta)
        # a history row's loss at θ_t also gives the step's gradient from θ_t (model.keep_grad_of)
        self.model.keep_grad_of = None if self.rows else self.full
        for t in range(self.start, steps):
            if t % tc.log_every == 0 and t not in logged:
                self.record(t)
                logged.add(t)
                self._update_bar(bar, t)
            self.step(t, grad_buf)
            due_steps = tc.checkpoint_every and (t + 1) % tc.checkpoint_every == 0
            due_time = tc.checkpoint_seconds and time.monotonic() - last_ck >= tc.checkpoint_seconds
            if self.out is not None and t + 1 < steps and (due_steps or due_time):
                self.checkpoint(t + 1)
                last_ck = time.monotonic()
        self.model.keep_grad_of = None  # no step follows the last row
        if steps not in logged:
            self.record(steps)
        self._update_bar(bar, steps)
        if bar is not None:
            bar.close()
        self.model.clear_buffers()
        seconds = time.perf_counter() - t0
        if self.out is not None:
            self.checkpoint(steps)
        return self.result(seconds)

    def step(self, t: int, grad_buf: torch.Tensor) -> None:
        """One optimisation step θ_t → θ_{t+1}.

        Per-step Python work is kept to the calls themselves: the trainable views of θ and of
        ``grad_buf`` are made once per buffer (:meth:`_free_views`), and the thread switch of
        :func:`~linrep.learn.parallel.wide` is entered only when it changes the thread count.
        """
        if self.rows:
            grad, loss = self.model.grad_rows(
                self.theta, self.tc.loss, self._batch(t), out=grad_buf
            )
            if loss is not None:
                self.window["sum"] += loss.double()
                self.window["count"] += 1
        else:
            grad = self.model.grad(self.theta, self.tc.loss, self.full, out=grad_buf)
        if self.failed:
            grad[sorted(self.failed)] = 0.0  # stopped runs keep their last finite state
        theta_free, grad_free = self._free_views(grad)
        threads = self.model.wide_threads
        if threads is None or threads == torch.get_num_threads():
            self.opt.step(theta_free, grad_free, t)
        else:
            with wide(threads):
                self.opt.step(theta_free, grad_free, t)

    def _free_views(self, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(θ[:, trainable], grad[:, trainable]); cached for the loop's reused gradient buffer."""
        key = self._free_key
        if key is not None and key[0] is grad and key[1] is self.theta:
            return key[2], key[3]
        views = (self.theta[:, self.trainable], grad[:, self.trainable])
        self._free_key = (grad, self.theta, *views)
        return views

    def record(self, t: int) -> None:
        """Verify θ_t and write its history rows (the one history writer)."""
        ev = self.verify(t, full=True)
        train_loss = self._train_loss(t, ev.loss)
        norms = torch.linalg.vector_norm(self.theta, dim=1).double().cpu().numpy()
        lr = self.opt.lr_at(min(t, self.tc.steps - 1)).double().cpu().numpy()[:, 0]
        extra = self._hook_values() if self.hooks else {}
        for k in range(self.K):
            if k in self.failed:
                continue
            row = {
                "run": k,
                "seed": self.seeds[k],
                "step": t,
                "loss": float(train_loss[k]),
                "excess_loss": float(ev.excess[k]),
            }
            if ev.excess_se is not None:
                row["excess_loss_se"] = float(ev.excess_se[k])
            row.update(param_norm=float(norms[k]), lr=float(lr[k]))
            row.update({name: float(a[k]) for name, a in extra.items()})
            self.history.append(row)

    def checkpoint(self, t: int) -> None:
        """Verify θ_t (cheaply) and write ``checkpoint.pt`` atomically."""
        self.verify(t, full=False)
        save_checkpoint(
            self.ck_path,
            theta=self.theta,
            opt_state=self.opt.state_dict(),
            step=t,
            history=self.history,
            fingerprint=self.fingerprint,
            failed=self.failed,
            window=self.window,
        )
        self.own_checkpoint = t

    def result(self, seconds: float) -> TrainResult:
        """The :class:`TrainResult` of the finished loop."""
        lat_cfg = self.fingerprint["latent_config"]
        return TrainResult(
            model=self.model,
            theta=self.theta,
            theta0=self.theta0,
            history=self.history,
            model_configs=self.mcfgs,
            train_configs=self.tcfgs,
            loss_floor=self.population.floor,
            excess_loss_method=self.population.method,
            seconds=seconds,
            latent_config=lat_cfg,
            failed={k: v["reason"] for k, v in self.failed.items()},
        )

    # ------------------------------------------------------------------ the non-finite guard
    def verify(self, t: int, *, full: bool):
        """Check θ_t (and its loss) for NaN/inf; stop the runs that went bad (module docstring).

        ``full``: evaluate the population loss (history rows); otherwise only θ and the running
        minibatch loss are checked (checkpoints: no extra work).

        Returns:
            The :class:`~linrep.learn.evaluate.Evaluation` at θ_t (``full``), else None.
        """
        ev = self.population(self.model, self.theta) if full else None
        bad = ~torch.isfinite(self.theta).all(dim=1).cpu()
        if ev is not None:
            bad |= ~torch.isfinite(ev.loss).cpu()
        if self.rows:
            bad |= ~torch.isfinite(self.window["sum"]).cpu()
        new = [k for k in torch.nonzero(bad).flatten().tolist() if k not in self.failed]
        if new:
            self._stop_runs(new, t)
            if ev is not None:
                ev = self.population(self.model, self.theta)
        self.good = self._snapshot(t)
        return ev

    def _stop_runs(self, runs: list[int], t: int) -> None:
        """Replay to each bad run's first bad step, restore its last finite state, mark it failed."""
        first = self._replay(runs, t)
        if len(self.failed) + len(runs) == self.K:
            s, k, value = min((first[k][0], k, first[k][1]) for k in runs)
            self._raise_all_failed(s, k, value)
        state = self.opt.state_dict()
        for k in runs:
            s, value, theta_k, opt_k = first[k]
            self.theta[k] = theta_k
            for name, v in opt_k.items():
                state[name][k] = v
            self.window["sum"][k] = 0.0
            self.failed[k] = {
                "reason": f"loss became {value} at step {s} (seed {self.seeds[k]}); "
                "lower train.lr or use train.dtype = 'float64'",
                "step": s,
            }
        self.opt.freeze(sorted(self.failed))

    def _replay(self, runs: list[int], t_bad: int) -> dict[int, tuple]:
        """From the last verified state, the first step s at which each run is non-finite.

        Returns:
            run → (s, loss value, θ_{s−1} of the run, its optimiser state at s − 1).
        """
        t, theta, state = self.good
        theta = theta.clone()
        opt = BatchedOptimizer(
            self.tcfgs, self.trainable.stop - self.trainable.start, theta.dtype, self.device
        )
        opt.load_state_dict(state)
        if self.failed:
            opt.freeze(sorted(self.failed))
        self.model._view_src = None  # θ is a new tensor: rebuild the cached views
        found: dict[int, tuple] = {}
        prev = (theta.clone(), {n: v.clone() for n, v in opt.state_dict().items()})
        for s in range(t, t_bad):
            batch = self._batch(s)
            if isinstance(batch, Rows):
                grad, loss = self.model.grad_rows(theta, self.tc.loss, batch)
            else:
                grad = self.model.grad(theta, self.tc.loss, batch)
            if self.failed:
                grad[sorted(self.failed)] = 0.0
            opt.step(theta[:, self.trainable], grad[:, self.trainable], s)
            if not isinstance(batch, Rows):
                loss = self.model.loss(theta, self.tc.loss, self.targets.exact)
            elif loss is None:  # exact rows: the minibatch loss on θ_{s+1}'s next batch
                loss = self.model.loss_rows(theta, self.tc.loss, self._batch(s + 1))
            bad = ~torch.isfinite(loss) | ~torch.isfinite(theta).all(dim=1)
            for k in runs:
                if k not in found and bool(bad[k]):
                    found[k] = (
                        s + 1,
                        float(loss[k]),
                        prev[0][k].clone(),
                        {n: v[k].clone() for n, v in prev[1].items()},
                    )
            if len(found) == len(runs):
                break
            prev = (theta.clone(), {n: v.clone() for n, v in opt.state_dict().items()})
        self.model._view_src = None
        for k in runs:  # bad only in the evaluation: stop at the verified step itself
            if k not in found:
                found[k] = (
                    t_bad,
                    float("nan"),
                    prev[0][k].clone(),
                    {n: v[k].clone() for n, v in prev[1].items()},
                )
        return found

    def _raise_all_failed(self, step: int, run: int, value: float) -> None:
        if self.out is not None and self.history:
            write_history(self.out / "history.csv", self.history)
        where = (  # only a checkpoint of this run: never one an earlier run left in the folder
            f"; this run's last good checkpoint (step {self.own_checkpoint}) is '{self.ck_path}'"
            if self.own_checkpoint is not None
            else ""
        )
        raise TrainingError(
            f"loss became {value} at step {step} in run {run} (seed {self.seeds[run]}){where}; "
            "lower train.lr or use train.dtype = 'float64'"
        )

    # ------------------------------------------------------------------ helpers
    def _batch(self, t: int):
        return self.targets.batch(t) if self.tc.minibatch else self.full

    def _snapshot(self, t: int):
        """(step, θ, optimiser state) copies: the last verified state."""
        state = {k: v.clone() for k, v in self.opt.state_dict().items()}
        return t, self.theta.clone(), state

    def _train_loss(self, t: int, population_loss: torch.Tensor) -> np.ndarray:
        """The ``loss`` column at θ_t (see module docstring), (K,) float64."""
        if self.tc.objective == "exact":
            self.window["sum"].zero_()
            self.window["count"].zero_()
            return population_loss.double().cpu().numpy()
        if self.full is not None:
            return self.model.loss(self.theta, self.tc.loss, self.full).double().cpu().numpy()
        count = int(self.window["count"])
        if count == 0:  # step 0: the first minibatch at θ_0
            loss = self.model.loss_rows(self.theta, self.tc.loss, self.targets.batch(t))
            return loss.double().cpu().numpy()
        mean = (self.window["sum"] / count).cpu().numpy()
        self.window["sum"].zero_()
        self.window["count"].zero_()
        return mean

    def _hook_values(self) -> dict[str, np.ndarray]:
        f, g = self.model.embed(self.theta)
        b = self.model.views(self.theta).get("b")
        b_np = None if b is None else b.double().cpu().numpy().reshape(self.K, -1)
        return evaluate_hooks(self.hooks, f.double().cpu().numpy(), g.double().cpu().numpy(), b_np)

    def _progress_bar(self):
        if not self.progress:
            return None
        from ..progress import progress_bar

        return progress_bar(
            total=self.tc.steps,
            initial=self.start,
            desc=f"train {self.mcfgs[0].encoder} K={self.K}",
            unit="step",
        )

    def _update_bar(self, bar, t: int) -> None:
        if bar is None:
            return
        bar.update(t - bar.n)
        last = [row["excess_loss"] for row in self.history[-self.K :]]
        if last:
            bar.set_postfix(excess=f"{np.mean(last):.3g}")


def _check_memory(model: BatchedModel, latent, tcfgs, dtype: torch.dtype, *, tables: bool) -> None:
    """Refuse before allocating when θ, the optimiser state and the logits cannot fit in memory.

    About 6 copies of θ: (K, P) (θ, θ₀, the last verified θ, the gradient, two Adam moments), the
    float64 draws of one run's initialisation (two (P,) copies while they are scaled), and
    the (K, rows, V) tables of a step: 5 of them (targets, logits, probabilities, their gradient,
    scratch) when the learner holds tables, else the logits and one scratch copy of a minibatch of
    rows, plus, for the exact objective, the rows' p(·|ξ) stored by their support
    (:meth:`~linrep.learn.objective.ExactRows.peak_bytes`); rows = the minibatch or all contexts.
    """
    from ..limits import check_memory
    from .objective import ExactRows

    tc = tcfgs[0]
    K = len(tcfgs)
    rows = tc.batch_size or latent.n_contexts
    itemsize = torch.finfo(dtype).bits // 8
    n_bytes = itemsize * (6 * K * model.P + (5 if tables else 2) * K * rows * latent.n_tokens)
    n_bytes += 2 * 8 * model.P
    if not tables and tc.objective == "exact":
        n_bytes += ExactRows.peak_bytes(latent)
    check_memory(
        n_bytes,
        f"training {K} run(s) with P = {model.P:,} parameters each on {rows:,} × "
        f"{latent.n_tokens:,} logits",
        "model.d / model.width / model.depth, the number of seeds or train.batch_size",
    )
