"""``[model]`` and ``[train]`` sections: the typed configuration of the learner (paper §2).

Both dataclasses are plain data (no torch): reading and validating a config never imports torch.
Cross-field checks live in ``__post_init__`` and raise one-line :class:`~linrep.errors.ConfigError` s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, did_you_mean

__all__ = [
    "ModelConfig",
    "TrainConfig",
    "ENCODERS",
    "LOSSES",
    "OPTIMIZERS",
    "OBJECTIVES",
    "SCHEDULES",
    "ACTIVATIONS",
    "PER_RUN_KEYS",
]

ENCODERS = ("free", "linear", "mlp", "transformer")
LOSSES = ("cross_entropy", "squared", "sigmoid")
OPTIMIZERS = ("gd", "sgd", "adam", "adamw")
OBJECTIVES = ("exact", "sampled")
SCHEDULES = ("constant", "cosine")
ACTIVATIONS = ("relu", "gelu", "tanh")
DTYPES = ("float32", "float64")
TRAINABLE = ("all", "unembedding")
DEVICES = ("auto", "cpu", "cuda")

# Keys that may differ between the K runs of one batched ensemble (everything else fixes shapes or
# the computation graph and must be shared).
PER_RUN_KEYS = {
    "model": ("init_scale", "hidden_init_scale"),
    "train": ("seed", "lr", "weight_decay", "min_lr", "beta1", "beta2", "eps", "data_seed"),
}


def _choice(value: str, choices: tuple[str, ...], key: str) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {key} '{value}'{did_you_mean(value, choices)}")


@dataclass
class ModelConfig:
    """The learner p̂(y | x) = softmax_y(f(x)ᵀ g(y) + b(y)) (``[model]`` section).

    f is the *encoder* (context ξ ∈ {0,1,⋄}^m → ℝ^d), g the unembedding table (V, d), b an optional
    per-token bias.
    """

    encoder: str = "linear"
    """free | linear | mlp | transformer. ``free``: one vector f(ξ) per context; ``linear``:
    f(ξ) = Wᵀ x(ξ) with x(ξ) ∈ {0,1}^{3m} the one-hot {0, 1, ⋄} encoding (no bias: each concept's
    three slots sum to 1, so a bias is already in the span); ``mlp``: ``depth`` hidden layers of
    ``width`` units on x(ξ); ``transformer``: a small causal transformer over the known concept values
    (in a random order per context, fixed by ``order_seed``) followed by a query token, f(ξ) = the
    query position's final hidden state projected to ℝ^d."""
    d: int = 32
    """Representation dimension (d ≥ m is needed for orthogonal concept codes)."""
    init_scale: float = 0.1
    """f's last layer (the free table / W / the MLP's and transformer's output layer) and g are drawn
    N(0, init_scale²) (paper calibration: 0.1). May differ between the runs of an ensemble."""
    hidden_init_scale: float | None = None
    """Standard deviation of hidden layers; None = fan-in scaled: gain/√fan_in, gain √2 for relu
    (He) and 1 for gelu/tanh (LeCun)."""
    width: int = 64
    """mlp: hidden units per layer; transformer: model width (residual stream)."""
    depth: int = 1
    """mlp: number of hidden layers; transformer: number of blocks."""
    activation: str = "relu"
    """relu | gelu | tanh (mlp hidden layers; the transformer always uses gelu)."""
    heads: int = 4
    """transformer: attention heads (must divide width)."""
    order_seed: int = 0
    """transformer: seed of the per-context random order of the known concept tokens."""
    unembedding_bias: bool = False
    """Learn a per-token bias b(y) (initialised to 0)."""

    def __post_init__(self) -> None:
        _choice(self.encoder, ENCODERS, "model.encoder")
        _choice(self.activation, ACTIVATIONS, "model.activation")
        if self.d < 1:
            raise ConfigError(f"model.d must be ≥ 1, got {self.d}; set model.d = 32 for example")
        if not self.init_scale > 0:
            raise ConfigError(f"model.init_scale must be > 0, got {self.init_scale}")
        if self.hidden_init_scale is not None and not self.hidden_init_scale > 0:
            raise ConfigError(
                f"model.hidden_init_scale must be > 0 or omitted, got {self.hidden_init_scale}"
            )
        if self.width < 1:
            raise ConfigError(f"model.width must be ≥ 1, got {self.width}")
        if self.depth < (1 if self.encoder == "transformer" else 0):
            raise ConfigError(f"model.depth must be ≥ 0 (≥ 1 for a transformer), got {self.depth}")
        if self.encoder == "transformer" and (self.heads < 1 or self.width % self.heads):
            raise ConfigError(
                f"model.heads = {self.heads} must be ≥ 1 and divide model.width = {self.width}"
            )


@dataclass
class TrainConfig:
    """How the learner is trained (``[train]`` section)."""

    objective: str = "exact"
    """exact | sampled. ``exact``: the population cross-entropy Σ_ξ w(ξ) Σ_y p(y|ξ)(−log p̂(y|ξ))
    under the latent model's exact tables; ``sampled``: the same sum under the empirical distribution
    of ``n_samples`` (context, token) draws from the latent model's sampler."""
    loss: str = "cross_entropy"
    """cross_entropy | squared | sigmoid. ``squared``: Σ_ξ w(ξ) ‖p̂(·|ξ) − p(·|ξ)‖²;
    ``sigmoid``: one-vs-all binary cross-entropy with σ(f(ξ)ᵀg(y) + b(y)) (no softmax)."""
    optimizer: str = "gd"
    """gd (full batch) | sgd (minibatches of ``batch_size``) | adam | adamw (full batch unless
    ``batch_size`` is set)."""
    lr: float = 1.0
    """Peak learning rate (paper calibration: gd with lr 1)."""
    steps: int = 20000
    """Number of optimisation steps."""
    seed: int = 0
    """Seed of the initialisation (and of minibatches / the dataset unless ``data_seed`` is set)."""
    weight_decay: float = 0.0
    """L2 penalty (weight_decay/2)·‖θ‖² added to the loss for gd/sgd/adam; decoupled decay
    θ ← θ − lr·weight_decay·θ for adamw. The reported loss never includes the penalty."""
    lr_schedule: str = "constant"
    """constant | cosine (from lr down to ``min_lr`` over ``steps``, after ``warmup_steps``)."""
    warmup_steps: int = 0
    """Linear warm-up from 0 to lr over this many steps."""
    min_lr: float = 0.0
    """Final learning rate of the cosine schedule."""
    beta1: float = 0.9
    """Adam/AdamW first-moment decay."""
    beta2: float = 0.999
    """Adam/AdamW second-moment decay."""
    eps: float = 1e-8
    """Adam/AdamW denominator guard."""
    batch_size: int | None = None
    """Minibatch size: samples (objective = sampled) or contexts ξ ~ w (objective = exact); required
    for sgd, optional for adam/adamw, not allowed for gd."""
    n_samples: int = 10000
    """objective = sampled: size of the finite dataset."""
    data_seed: int | None = None
    """Seed of the sampled dataset; None = each run uses its own ``seed``."""
    log_every: int = 100
    """Record loss, excess loss, parameter norm and metric hooks every this many steps (and at the
    first and last step). Non-finite values are detected at these steps (and at checkpoints) and
    traced back to the first bad step by a deterministic replay."""
    checkpoint_every: int = 0
    """Write ``checkpoint.pt`` every this many steps when an output folder is given (0 = by wall
    time only, see ``checkpoint_seconds``)."""
    checkpoint_seconds: float = 60.0
    """Also write ``checkpoint.pt`` whenever this many seconds of wall time have passed since the last
    one (when an output folder is given), so a killed run loses at most about this much work;
    0 = off. Results do not depend on when checkpoints were written."""
    eval_contexts: int | None = None
    """Minibatch training on a large context set (no exact table in the learner): the excess loss
    is estimated on this many held-out contexts drawn from the context weights, with its standard
    error (``excess_loss_se``). None = 512. Ignored when the learner holds the exact table (the
    excess loss is then exact)."""
    eval_seed: int = 0
    """Seed of the held-out contexts (the same for every run, so runs are compared on one sample)."""
    dtype: str = "float32"
    """float32 (fast) | float64 (for gradient checks). Both are bit-reproducible on CPU."""
    trainable: str = "all"
    """all | unembedding. ``unembedding``: only g (and b) are updated, the encoder f keeps its
    initialisation — fixed features, the setting of the implicit-bias theorem
    (``docs/theory.md`` §3.2)."""
    device: str = "auto"
    """auto | cpu | cuda: where the learner's tensors live (auto = cuda if available, else cpu).
    Results are bit-reproducible on CPU; on a GPU they are reproducible up to the GPU's own
    kernel determinism."""
    workers: int = 1
    """Processes an ensemble is sharded over (each trains K/workers runs with 1 thread); 0 =
    automatic: the machine's idle cores (cores minus load average), when a step is small enough
    to run on one thread. Results are identical to workers = 1."""
    threads: int | None = None
    """torch intra-op threads while training; None = automatic: 1 thread when a step is small
    (K·n·V·d < 2²⁸ multiply-adds, where thread hand-offs cost more than they save; on an idle
    many-core machine a larger value may pay off for big models), torch's setting otherwise."""

    def __post_init__(self) -> None:
        _choice(self.objective, OBJECTIVES, "train.objective")
        _choice(self.loss, LOSSES, "train.loss")
        _choice(self.optimizer, OPTIMIZERS, "train.optimizer")
        _choice(self.lr_schedule, SCHEDULES, "train.lr_schedule")
        _choice(self.dtype, DTYPES, "train.dtype")
        _choice(self.trainable, TRAINABLE, "train.trainable")
        if self.steps <= 0:
            raise ConfigError(f"train.steps must be > 0, got {self.steps}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.min_lr < 0 or self.warmup_steps < 0:
            raise ConfigError("train.weight_decay, train.min_lr and train.warmup_steps must be ≥ 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1) or not self.eps > 0:
            raise ConfigError("train.beta1 and train.beta2 must be in [0, 1) and train.eps > 0")
        if self.log_every < 1:
            raise ConfigError(f"train.log_every must be ≥ 1, got {self.log_every}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"train.checkpoint_every must be ≥ 0, got {self.checkpoint_every}")
        if self.n_samples < 1:
            raise ConfigError(f"train.n_samples must be ≥ 1, got {self.n_samples}")
        if self.optimizer == "sgd" and self.batch_size is None:
            raise ConfigError("train.optimizer = 'sgd' needs train.batch_size (e.g. 256)")
        if self.optimizer == "gd" and self.batch_size is not None:
            raise ConfigError(
                "train.optimizer = 'gd' is full-batch; remove train.batch_size or use 'sgd'"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be ≥ 1, got {self.batch_size}")
        _choice(self.device, DEVICES, "train.device")
        if self.workers < 0:
            raise ConfigError(f"train.workers must be ≥ 0 (0 = automatic), got {self.workers}")
        if self.checkpoint_seconds < 0:
            raise ConfigError(
                f"train.checkpoint_seconds must be ≥ 0 (0 = off), got {self.checkpoint_seconds}"
            )
        if self.eval_contexts is not None and self.eval_contexts < 2:
            raise ConfigError(f"train.eval_contexts must be ≥ 2, got {self.eval_contexts}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"train.threads must be ≥ 1, got {self.threads}")

    @property
    def minibatch(self) -> bool:
        """True if every step uses a fresh minibatch (sgd, or adam/adamw with a batch size)."""
        return self.batch_size is not None


def config_keys() -> dict[str, list[str]]:
    """Valid keys of the ``[model]`` and ``[train]`` sections (for ``--set`` checking)."""
    return {
        "model": [f.name for f in dataclasses.fields(ModelConfig)],
        "train": [f.name for f in dataclasses.fields(TrainConfig)],
    }


def shared_fingerprint(cfg: ModelConfig | TrainConfig, section: str) -> dict[str, Any]:
    """The fields of ``cfg`` that must agree between the runs of one ensemble."""
    per_run = PER_RUN_KEYS[section]
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in per_run}
