"""Training loop: K runs as one batched computation, history, metric hooks, checkpoints, resume.

Step semantics: θ_0 is the initialisation; step t (t = 0 … steps−1) evaluates the objective at θ_t and
moves to θ_{t+1}. History rows are recorded at θ_t for t ≡ 0 (mod log_every) and at t = steps:
``loss`` is the training objective on its full data (the population loss for ``exact``, the dataset
loss for ``sampled``), ``excess_loss`` is always the *population* loss minus its floor (H(Y|X) for
cross-entropy, see :mod:`linrep.learn.losses`), ``param_norm`` is ‖θ‖₂ of the run, ``lr`` the step
size η_t, followed by the metric hooks' values.

Non-finite losses are detected at every logging/checkpoint step from the per-step losses (no extra
work per step): the error names the first bad step and run; checkpoints are only written after the
check, so the last one on disk is good.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import section_from_dict
from ..errors import ConfigError, InputError, TrainingError
from ..io import atomic_write_bytes, atomic_write_text, ensure_out_dir, run_metadata, write_json
from .checkpoint import CHECKPOINT_NAME, check_fingerprint, load_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig, shared_fingerprint
from .losses import loss_floor
from .model import BatchedModel
from .objective import Targets
from .optim import BatchedOptimizer

__all__ = ["fit", "TrainResult", "MetricFn", "resolve_runs"]

MetricFn = Callable[..., dict[str, np.ndarray]]
"""fn(f: (K, n, d), g: (K, V, d)) -> {name: (K,) array}; called as fn(f, g, b=b) with the bias
b: (K, V) when the model has one (``model.unembedding_bias``), so learned log-odds are f·Δg + Δb."""

# Below this many multiply-adds per step (K·n·V·d), one thread is used: thread hand-offs cost more
# than they save. Measured on a busy 2-core machine: 2 threads were 10-200x slower than 1 at
# m = 4-5, K = 10 and still 14x slower at m = 8, d = 64, K = 1 (1e8 multiply-adds).
SMALL_WORK = 2**28

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ---------------------------------------------------------------------------------- configs
def _as_list(cfg, cls, section) -> list:
    items = cfg if isinstance(cfg, (list, tuple)) else [cfg]
    out = []
    for c in items:
        if isinstance(c, cls):
            out.append(c)
        elif isinstance(c, Mapping):
            out.append(section_from_dict(cls, c, section))
        else:
            raise InputError(
                f"[{section}] must be a {cls.__name__} or a dict, got {type(c).__name__}"
            )
    if not out:
        raise InputError(f"empty list of [{section}] configs")
    return out


def resolve_runs(
    model_cfg, train_cfg, seeds: Sequence[int] | None = None
) -> tuple[list[ModelConfig], list[TrainConfig]]:
    """Per-run (model, train) configs of an ensemble, checked to share shapes.

    ``model_cfg``/``train_cfg`` are a config (or raw dict) or a list of them (one per run). ``seeds``
    (optional) overrides ``train.seed`` run by run; a single train config is repeated once per seed.
    """
    mcfgs = _as_list(model_cfg, ModelConfig, "model")
    tcfgs = _as_list(train_cfg, TrainConfig, "train")
    if seeds is not None:
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise InputError("seeds is empty; pass at least one seed (e.g. --seeds 0-9)")
        if len(tcfgs) == 1:
            tcfgs = tcfgs * len(seeds)
        if len(tcfgs) != len(seeds):
            raise InputError(
                f"{len(tcfgs)} train configs but {len(seeds)} seeds; pass one seed per run"
            )
        tcfgs = [dataclasses.replace(c, seed=s) for c, s in zip(tcfgs, seeds, strict=True)]
    K = max(len(mcfgs), len(tcfgs))
    if len(mcfgs) == 1:
        mcfgs = mcfgs * K
    if len(tcfgs) == 1:
        tcfgs = tcfgs * K
    if len(mcfgs) != K or len(tcfgs) != K:
        raise InputError(
            f"{len(mcfgs)} model configs and {len(tcfgs)} train configs; pass 1 or K of each"
        )
    for section, cfgs in (("model", mcfgs), ("train", tcfgs)):
        ref = shared_fingerprint(cfgs[0], section)
        for k, c in enumerate(cfgs[1:], 1):
            fp = shared_fingerprint(c, section)
            for key in ref:
                if fp[key] != ref[key]:
                    raise ConfigError(
                        f"runs 0 and {k} differ in {section}.{key} ({ref[key]!r} vs {fp[key]!r}); "
                        "an ensemble may only vary per-run keys (seed, lr, init_scale, ...): "
                        "train them as separate ensembles"
                    )
    return mcfgs, tcfgs


def _latent_hash(latent) -> str:
    h = hashlib.sha256()
    for a in (latent.contexts, latent.weights, latent.p_next):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------- result
class TrainResult:
    """Trained ensemble: final and initial parameters, history, per-run configs.

    Attributes:
        history: list of rows (dicts) ``run, seed, step, loss, excess_loss, param_norm, lr, <metrics>``.
        final: per-run dict of the last history row.
        seeds: (K,) seeds. configs: per-run ``{"model": {...}, "train": {...}}``.
        loss_floor: population minimum of the loss (H(Y|X) for cross-entropy).
        seconds: wall-clock training time of this call.
    """

    def __init__(
        self, model, theta, theta0, history, mcfgs, tcfgs, floor, seconds, latent_config=None
    ):
        self.latent_config = latent_config
        self.model: BatchedModel = model
        self.theta_ = theta
        self.theta0_ = theta0
        self.history: list[dict[str, Any]] = history
        self.model_configs: list[ModelConfig] = mcfgs
        self.train_configs: list[TrainConfig] = tcfgs
        self.seeds = [c.seed for c in tcfgs]
        self.configs = [
            {"model": dataclasses.asdict(m), "train": dataclasses.asdict(t)}
            for m, t in zip(mcfgs, tcfgs, strict=True)
        ]
        self.loss_floor = floor
        self.seconds = seconds
        last: dict[int, dict[str, Any]] = {}
        for row in history:
            last[row["run"]] = row
        self.final = [last[k] for k in sorted(last)]

    @property
    def K(self) -> int:
        return self.theta_.shape[0]

    def _embed(self, theta) -> tuple[np.ndarray, np.ndarray]:
        f, g = self.model.embed(theta)
        return f.double().numpy().copy(), g.double().numpy().copy()

    def embeddings(self) -> np.ndarray:
        """f(ξ) of the trained runs for every context of ``latent.contexts``: (K, n, d) float64."""
        return self._embed(self.theta_)[0]

    def unembeddings(self) -> np.ndarray:
        """g(y) of the trained runs: (K, V, d) float64."""
        return self._embed(self.theta_)[1]

    def initial_embeddings(self) -> np.ndarray:
        """f(ξ) of the untrained (initial) runs: (K, n, d) float64."""
        return self._embed(self.theta0_)[0]

    def initial_unembeddings(self) -> np.ndarray:
        """g(y) of the untrained runs: (K, V, d) float64."""
        return self._embed(self.theta0_)[1]

    def params(self, initial: bool = False) -> dict[str, np.ndarray]:
        """Named parameters (K, *shape) as float64 numpy arrays (encoder tensors, ``g``, ``b``)."""
        th = self.theta0_ if initial else self.theta_
        return {k: v.double().numpy().copy() for k, v in self.model.views(th).items()}

    def history_table(self) -> tuple[list[str], list[list[Any]]]:
        """(column names, rows) of the history, columns in first-seen order."""
        cols: list[str] = []
        for row in self.history:
            for k in row:
                if k not in cols:
                    cols.append(k)
        return cols, [[row.get(c, "") for c in cols] for row in self.history]

    def save(self, out_dir: str | Path) -> None:
        """Write config.json, history.csv, params.safetensors, embeddings.npz and metrics.json."""
        from safetensors.torch import save as st_save

        from ..io import save_npz

        out = ensure_out_dir(out_dir)
        write_json(
            out / "config.json",
            {"latent": self.latent_config, "runs": self.configs, "seeds": self.seeds},
        )
        cols, rows = self.history_table()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        w.writerows(rows)
        atomic_write_text(out / "history.csv", buf.getvalue())
        tensors = {}
        for tag, th in (("final", self.theta_), ("initial", self.theta0_)):
            for k, v in self.model.views(th).items():
                tensors[f"{tag}.{k}"] = v.contiguous().clone()
        atomic_write_bytes(
            out / "params.safetensors",
            st_save(tensors, metadata={"seeds": ",".join(map(str, self.seeds))}),
        )
        f, g = self._embed(self.theta_)
        f0, g0 = self._embed(self.theta0_)
        save_npz(out / "embeddings.npz", f=f, g=g, f0=f0, g0=g0, seeds=np.array(self.seeds))
        write_json(
            out / "metrics.json",
            {
                "final": self.final,
                "loss_floor": self.loss_floor,
                "train_seconds": self.seconds,
                "metadata": run_metadata(),
            },
        )


# ---------------------------------------------------------------------------------- fit
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
        out_dir: if given, write checkpoints (every ``checkpoint_every`` steps and at the end) and
            the results (:meth:`TrainResult.save`) there.
        resume: continue from ``out_dir/checkpoint.pt`` (same config required; ``steps`` may grow
            when the schedule is constant).
        progress: show a tqdm progress bar.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ConfigError: invalid or inconsistent configs, or resuming with a different config.
        TrainingError: a loss became NaN/inf (names the step and run; the last checkpoint is kept).
    """
    mcfgs, tcfgs = resolve_runs(model_cfg, train_cfg, seeds)
    tc = tcfgs[0]
    hooks = _normalise_hooks(metrics)
    old_threads = torch.get_num_threads()
    threads = tc.threads
    if threads is None:
        work = len(tcfgs) * latent.n_contexts * latent.n_tokens * mcfgs[0].d  # MACs of z = f gᵀ
        threads = 1 if work < SMALL_WORK else old_threads
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            return _fit(latent, mcfgs, tcfgs, hooks, out_dir, resume, progress)
    finally:
        torch.set_num_threads(old_threads)


def _normalise_hooks(metrics) -> list[tuple[str, MetricFn]]:
    if metrics is None:
        return []
    if isinstance(metrics, Mapping):
        items = [(f"{k}.", v) for k, v in metrics.items()]
    elif callable(metrics):
        items = [("", metrics)]
    else:
        items = [("", fn) for fn in metrics]
    for name, fn in items:
        if not callable(fn):
            raise InputError(f"metric hook '{name or fn!r}' is not callable; pass fn(f, g) -> dict")
    return items


def _takes_bias(fn) -> bool:
    """True if ``fn`` accepts a keyword argument ``b`` (named, or via ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return True
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == "b" and p.kind is not p.POSITIONAL_ONLY)
        for p in params
    )


def _check_bias_hooks(hooks, has_bias: bool) -> None:
    """With a bias, every hook must take ``b`` (log-odds are f·Δg + Δb); fail before training."""
    for name, fn in hooks if has_bias else ():
        if not _takes_bias(fn):
            raise InputError(
                f"metric hook '{name or fn!r}' cannot take the bias b, but model.unembedding_bias "
                "is true; give the hook a keyword argument b=None (b: (K, V)) and use it"
            )


def _fingerprint(latent, mcfgs, tcfgs) -> dict[str, Any]:
    tr = []
    for c in tcfgs:
        d = dataclasses.asdict(c)
        for k in ("log_every", "checkpoint_every", "threads"):
            d.pop(k)
        if c.lr_schedule == "constant":
            d.pop("steps")  # a constant-lr run may be extended by resuming with more steps
        if c.trainable == "all":
            d.pop("trainable")  # checkpoints written before the option existed stay resumable
        tr.append(d)
    lat_cfg = getattr(latent, "config", None)
    return {
        "latent_config": dataclasses.asdict(lat_cfg) if dataclasses.is_dataclass(lat_cfg) else None,
        "tables_sha256": _latent_hash(latent),
        "model": [dataclasses.asdict(c) for c in mcfgs],
        "train": tr,
    }


def _fit(latent, mcfgs, tcfgs, hooks, out_dir, resume, progress) -> TrainResult:
    tc = tcfgs[0]
    dtype = _DTYPES[tc.dtype]
    K = len(tcfgs)
    seeds = [c.seed for c in tcfgs]
    model = BatchedModel(mcfgs[0], latent.contexts, latent.n_tokens, dtype)
    _check_memory(model, latent, tcfgs, dtype)
    _check_bias_hooks(hooks, mcfgs[0].unembedding_bias)
    targets = Targets(latent, tcfgs, dtype)
    free = _trainable_slice(model, tc)
    opt = BatchedOptimizer(tcfgs, free.stop - free.start, dtype)
    floor = loss_floor(tc.loss, latent.weights, latent.p_next)
    theta0 = model.init(seeds, mcfgs)
    theta = theta0.clone()
    history: list[dict[str, Any]] = []
    start = 0
    fp = _fingerprint(latent, mcfgs, tcfgs)
    out = ensure_out_dir(out_dir) if out_dir is not None else None
    ck_path = out / CHECKPOINT_NAME if out is not None else None
    own_ck: dict[str, int] = {}  # "step" of the checkpoint this call wrote or resumed from

    if resume:
        if ck_path is None:
            raise InputError("resume=True needs out_dir (the folder holding checkpoint.pt)")
        if ck_path.exists():
            ck = load_checkpoint(ck_path)
            check_fingerprint(fp, ck["fingerprint"], ck_path)
            if ck["step"] > tc.steps:
                raise ConfigError(
                    f"checkpoint '{ck_path}' is at step {ck['step']} > train.steps = {tc.steps}; "
                    "raise train.steps or use a new --out folder"
                )
            if tuple(ck["theta"].shape) != tuple(theta.shape):
                raise ConfigError(
                    f"checkpoint '{ck_path}' has parameters of another shape; use a new --out"
                )
            theta.copy_(ck["theta"].to(dtype))
            try:
                opt.load_state_dict(ck["opt_state"])
            except (KeyError, RuntimeError):
                raise InputError(
                    f"checkpoint '{ck_path}' holds an optimiser state that does not fit this "
                    "config; delete it, or start again with --overwrite"
                ) from None
            start = own_ck["step"] = ck["step"]
            history = [row for row in ck["history"] if row["step"] <= start]

    kind = tc.loss
    minibatch = tc.minibatch
    full = targets.full()
    exact = targets.exact
    logged = {row["step"] for row in history}

    def batch(t: int) -> tuple[torch.Tensor, torch.Tensor]:
        return targets.batch(t) if minibatch else full

    # last state known to be finite: (step, θ, optimiser state); a non-finite loss is traced back
    # to its first step by replaying from here (deterministic), so the hot loop pays nothing.
    good = (start, theta.clone(), {k: v.clone() for k, v in opt.state_dict().items()})

    def verify(t: int) -> torch.Tensor:
        """Population loss at θ_t (K,); on a non-finite value, find the first bad step and raise."""
        nonlocal good
        loss = model.loss(theta, kind, exact)
        if bool(torch.isfinite(loss).all()) and bool(torch.isfinite(theta).all()):
            good = (t, theta.clone(), {k: v.clone() for k, v in opt.state_dict().items()})
            return loss
        step, run, value = _replay_to_nonfinite(model, tcfgs, kind, batch, exact, good, t, free)
        _raise_nonfinite(step, run, seeds[run], value, own_ck.get("step"), ck_path, history, out)
        raise AssertionError  # unreachable

    def record(t: int) -> None:
        pop_loss = verify(t)
        if tc.objective == "exact":
            train_loss = pop_loss
        else:
            train_loss = model.loss(theta, kind, full)
        norms = torch.linalg.vector_norm(theta, dim=1).double().numpy()
        lr = opt.lr_at(min(t, tc.steps - 1)).double().numpy()[:, 0]
        tl = train_loss.double().numpy()
        pl = pop_loss.double().numpy()
        extra: dict[str, np.ndarray] = {}
        if hooks:
            f, g = model.embed(theta)
            f_np, g_np = f.double().numpy(), g.double().numpy()
            b = model.views(theta).get("b")
            kw = {} if b is None else {"b": b.double().numpy().reshape(K, -1)}
            for prefix, fn in hooks:
                vals = fn(f_np, g_np, **kw)
                if not isinstance(vals, Mapping):
                    raise InputError(
                        f"metric hook {fn!r} returned {type(vals).__name__}; return a dict"
                    )
                for name, v in vals.items():
                    a = np.asarray(v, dtype=np.float64).reshape(-1)
                    if a.size != K:
                        raise InputError(
                            f"metric '{prefix}{name}' has {a.size} values; a hook must return "
                            f"one per run (K = {K})"
                        )
                    extra[f"{prefix}{name}"] = a
        for k in range(K):
            row = {
                "run": k,
                "seed": seeds[k],
                "step": t,
                "loss": float(tl[k]),
                "excess_loss": float(pl[k] - floor),
                "param_norm": float(norms[k]),
                "lr": float(lr[k]),
            }
            for name, a in extra.items():
                row[name] = float(a[k])
            history.append(row)
        logged.add(t)

    bar = None
    if progress:
        from ..progress import progress_bar

        bar = progress_bar(
            total=tc.steps, initial=start, desc=f"train {mcfgs[0].encoder} K={K}", unit="step"
        )
    t0 = time.perf_counter()
    last_bar = start
    log_every, ck_every, steps = tc.log_every, tc.checkpoint_every, tc.steps
    grad_buf = torch.empty_like(theta)
    for t in range(start, steps):
        if t % log_every == 0 and t not in logged:
            record(t)
            if bar is not None:
                bar.update(t - last_bar)
                last_bar = t
                bar.set_postfix(excess=f"{np.mean([h['excess_loss'] for h in history[-K:]]):.3g}")
        grad = model.grad(theta, kind, batch(t), out=grad_buf)
        opt.step(theta[:, free], grad[:, free], t)
        if out is not None and ck_every and (t + 1) % ck_every == 0 and t + 1 < steps:
            verify(t + 1)
            save_checkpoint(ck_path, theta, opt.state_dict(), t + 1, history, fp)
            own_ck["step"] = t + 1
    if steps not in logged:
        record(steps)
    model.ws.clear()
    if bar is not None:
        bar.update(steps - last_bar)
        bar.close()
    seconds = time.perf_counter() - t0
    if out is not None:
        save_checkpoint(ck_path, theta, opt.state_dict(), steps, history, fp)
    result = TrainResult(
        model, theta, theta0, history, mcfgs, tcfgs, floor, seconds, fp["latent_config"]
    )
    if out is not None:
        result.save(out)
    return result


def _trainable_slice(model: BatchedModel, tc: TrainConfig) -> slice:
    """Columns of θ that the optimiser updates: all, or g (and b) only (``train.trainable``)."""
    return slice(model.n_encoder if tc.trainable == "unembedding" else 0, model.P)


def _replay_to_nonfinite(model, tcfgs, kind, batch, exact, good, t_bad, free):
    """Re-run from the last good state to the first step whose loss (or θ) is not finite.

    Returns:
        (step, run, loss value) of the first non-finite population loss.
    """
    t, theta, state = good
    theta = theta.clone()
    opt = BatchedOptimizer(tcfgs, free.stop - free.start, theta.dtype)
    opt.load_state_dict(state)
    model._view_src = None  # θ is a new tensor: rebuild the cached views
    for s in range(t, t_bad):
        opt.step(theta[:, free], model.grad(theta, kind, batch(s))[:, free], s)
        loss = model.loss(theta, kind, exact)
        bad = ~torch.isfinite(loss) | ~torch.isfinite(theta).all(dim=1)
        if bool(bad.any()):
            k = int(torch.nonzero(bad)[0, 0])
            return s + 1, k, float(loss[k])
    return t_bad, 0, float("nan")


def _check_memory(model: BatchedModel, latent, tcfgs, dtype: torch.dtype) -> None:
    """Refuse before allocating when θ, the optimiser state and the logits cannot fit in memory.

    About 6 copies of θ: (K, P) (θ, θ₀, the last good θ, the gradient, two Adam moments) and 5
    tables of (K, rows, V) (targets, logits, probabilities, their gradient, scratch), rows = the
    minibatch or all contexts.
    """
    from ..limits import check_memory

    tc = tcfgs[0]
    K = len(tcfgs)
    rows = tc.batch_size or latent.n_contexts
    itemsize = torch.finfo(dtype).bits // 8
    n_bytes = itemsize * (6 * K * model.P + 5 * K * rows * latent.n_tokens)
    check_memory(
        n_bytes,
        f"training {K} run(s) with P = {model.P:,} parameters each on {rows:,} × "
        f"{latent.n_tokens:,} logits",
        "model.d / model.width / model.depth, the number of seeds or train.batch_size",
    )


def _raise_nonfinite(step, run, seed, value, ck_step, ck_path, history, out) -> None:
    if out is not None and history:
        cols: list[str] = []
        for row in history:
            cols += [k for k in row if k not in cols]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        w.writerows([[row.get(c, "") for c in cols] for row in history])
        atomic_write_text(Path(out) / "history.csv", buf.getvalue())
    where = (  # only a checkpoint of this run: never one an earlier run left in the folder
        f"; this run's last good checkpoint (step {ck_step}) is '{ck_path}'"
        if ck_step is not None
        else ""
    )
    raise TrainingError(
        f"loss became {value} at step {step} in run {run} (seed {seed}){where}; "
        "lower train.lr or use train.dtype = 'float64'"
    )
