"""Steering that goes through the network: add α·v to the residual stream at one layer.

:func:`steer` is a context manager around a forward hook (hidden state L < n: a pre-hook adding α·v
to the input of block L; L = n: a hook adding it to the final norm's output, which is Park et al.'s
intervention on λ(x)). The hook is removed when the block exits, also on an exception, and never
touches a parameter, so the model is bit-identical afterwards::

    with linrep.llm.steer(model, res.direction("male - female"), alpha=8.0):
        out = model.generate(**tok("The king said", return_tensors="pt"), max_new_tokens=20)

:func:`steering_curves` measures what ``linrep llm --steer CONCEPT`` reports. For each layer L and
cross-fitting fold f: the unit direction v_L is estimated on the hidden states (at L) of the contexts
whose word pairs are **not** in fold f; the network then runs on the base-side contexts whose pairs
**are** in fold f with α·s_L·v_L added (s_L = mean ‖h_L‖ over the concept's contexts), and the
log-odds log p(target word) − log p(base word) at the next position is compared with α = 0
(on-target). Off-target: the same change for the other concepts' pairs on the same contexts (mean
over each concept's pairs, then mean |·| over concepts). Standard errors are over word pairs (the
rows of one pair are not independent).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .estimators import get_estimator
from .model import hook_point
from .options import MAX_ABS_ALPHA
from .records import Record

__all__ = ["steer", "SteeringCurve", "steering_curves"]


def _hidden_size(model: Any) -> int:
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[1])
    return int(model.get_input_embeddings().weight.shape[1])


def _steering_tensor(model: Any, vector: Any, alpha: float) -> Any:
    import torch

    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float, np.number))
        or not (math.isfinite(float(alpha)) and abs(float(alpha)) <= MAX_ABS_ALPHA)
    ):
        raise InputError(
            f"alpha = {alpha!r} is out of range; pass a finite number with |alpha| ≤ {MAX_ABS_ALPHA:g}"
        )
    v = vector.detach().cpu().double().numpy() if torch.is_tensor(vector) else np.asarray(vector)
    v = np.asarray(v, dtype=np.float64).ravel()
    d = _hidden_size(model)
    if v.shape != (d,) or not np.isfinite(v).all():
        raise InputError(
            f"the steering vector has {v.size} entries{'' if np.isfinite(v).all() else ' (not all finite)'}"
            f" but this model's hidden states have {d}; pass a direction measured on this model"
        )
    p = next(model.parameters())
    return torch.as_tensor(float(alpha) * v, dtype=p.dtype, device=p.device)


@contextmanager
def steer(model: Any, vector: Any, alpha: float, layer: int | None = None) -> Iterator[Any]:
    """Add α·vector to the residual stream at ``layer`` while the block runs.

    Args:
        model: a Hugging Face causal LM (the one the vector was measured on).
        vector: ``(d,)`` numpy array or tensor, e.g. ``result.direction("male - female")``.
        alpha: its multiplier (finite, |α| ≤ 1000).
        layer: hidden-state index 0 … n (None or −1 = n: the final post-norm state, where the
            unembedding directions live; L < n: the input of block L).

    Yields:
        The model (steered until the block exits).

    Raises:
        InputError: α or layer out of range, or a vector of the wrong width (one line each).
    """
    step = _steering_tensor(model, vector, alpha)
    module, mode, _ = hook_point(model, layer)
    if mode == "post":
        handle = module.register_forward_hook(lambda mod, inp, out: _shift(out, step))
    else:
        handle = module.register_forward_pre_hook(_pre_hook(step), with_kwargs=True)
    try:
        yield model
    finally:
        handle.remove()


def _shift(x: Any, step: Any) -> Any:
    """x + step for a tensor, or for the first element of a tuple output."""
    if isinstance(x, tuple):
        return (x[0] + step, *x[1:])
    return x + step


def _pre_hook(step: Any):
    def hook(module, args, kwargs):
        if args:
            return (_shift(args[0], step), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": _shift(kwargs["hidden_states"], step)}

    return hook


# ----------------------------------------------------------------------------- the measurement
@dataclass(frozen=True, eq=False)
class SteeringCurve(Record):
    """Cross-fitted steering of one concept through the network.

    Attributes:
        concept: the concept steered.
        layers, alphas: the grid (α in units of ``scales``, the mean ‖h_L‖ per layer).
        on_target, on_target_se: ``(L, A)`` mean change of the target-vs-base log-odds on
            held-out base-side contexts, and its standard error over word pairs.
        off_target: ``(L, A)`` mean over the other concepts of |mean change of their log-odds|.
        off_target_by_concept: other concept → ``(L, A)`` signed mean change.
        n_eval_contexts, n_pairs, folds: held-out contexts, word pairs with contexts, folds.
    """

    concept: str
    layers: tuple[int, ...]
    alphas: tuple[float, ...]
    scales: tuple[float, ...]
    on_target: np.ndarray
    on_target_se: np.ndarray
    off_target: np.ndarray
    off_target_by_concept: Mapping[str, np.ndarray]
    n_eval_contexts: int
    n_pairs: int
    folds: int

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per (layer, α): on-target ± s.e. and off-target."""
        return [
            {
                "layer": L,
                "α": a,
                "on-target": f"{self.on_target[i, k]:.3f} ± {self.on_target_se[i, k]:.3f}",
                "off-target |·|": float(self.off_target[i, k]),
            }
            for i, L in enumerate(self.layers)
            for k, a in enumerate(self.alphas)
        ]


@dataclass(frozen=True)
class _Rows:
    """The contexts of one concept whose next word belongs to one of its pairs."""

    texts: list[str]
    labels: np.ndarray  # (n,) 0 base / 1 target
    pair: np.ndarray  # (n,) index of the word pair
    words: list[tuple[str, str]]  # (P,) the pairs' words
    tokens: np.ndarray  # (P, 2) single-token ids (base, target); -1 for a multi-token word


def _rows(name: str, words: list[tuple[str, str]], tokens: np.ndarray, cs) -> _Rows:
    base = {b: k for k, (b, _) in enumerate(words)}
    target = {t: k for k, (_, t) in enumerate(words)}
    keep = [
        (i, (base if y == 0 else target)[w])
        for i, (w, y) in enumerate(zip(cs.words, cs.labels, strict=True))
        if w in (base if y == 0 else target)
    ]
    if not keep:
        raise InputError(
            f"--steer '{name}': none of its contexts' words is one of its pairs; add contexts for "
            "those words (or set multi_token = true for words of several tokens)"
        )
    idx, pair = (np.asarray(x) for x in zip(*keep, strict=True))
    return _Rows([cs.texts[i] for i in idx], np.asarray(cs.labels)[idx], pair, words, tokens)


def _pairs_of(name, kept, raw, unemb, opts) -> tuple[list[tuple[str, str]], np.ndarray]:
    """A concept's word pairs and their token ids: the kept single-token pairs, or (multi_token)
    every pair of its file with −1 for words of several tokens."""
    if not opts.multi_token or name not in raw:
        c = kept[name]
        return list(c.words), np.asarray(c.pairs)
    words = list(dict.fromkeys(raw[name].words))
    ids = [[unemb.vocab.token_id(w, opts.leading_space) for w in pair] for pair in words]
    return words, np.array([[-1 if i is None else i for i in p] for p in ids], dtype=np.int64)


def _folds(pairs: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold of each distinct pair (shuffled round-robin), as a lookup over pair indices."""
    uniq = np.unique(pairs)
    if uniq.size < folds:
        raise InputError(
            f"cross-fitting needs at least {folds} word pairs with contexts, got {uniq.size}; "
            "add contexts or lower steer_folds"
        )
    fold = np.empty(int(pairs.max()) + 1, dtype=int)
    fold[np.random.default_rng(seed).permutation(uniq)] = np.arange(uniq.size) % folds
    return fold


def _log_odds(logits: np.ndarray) -> np.ndarray:
    """logit(target) − logit(base) of each pair: logits ``(n, 2P)`` over ids laid out as
    (base₁, target₁, base₂, target₂, …) → ``(n, P)`` (the softmax normaliser cancels)."""
    return logits[:, 1::2] - logits[:, 0::2]


def _spell(word: str, leading_space: bool) -> str:
    return " " + word if leading_space else word


def _measure(lm, rows: _Rows, ev: np.ndarray, other_ids: np.ndarray, opts):
    """(on ``(n_ev,)``, off ``(n_ev, Q)``): each evaluated context's own pair log-odds (sequence
    log-probabilities for multi-token words) and the other concepts' single-token pairs'."""
    texts = [t for t, e in zip(rows.texts, ev, strict=True) if e]
    pair = rows.pair[ev]
    own = np.where(rows.tokens >= 0, rows.tokens, 0).ravel()
    lo = _log_odds(lm.last_logits(texts, np.concatenate([own, other_ids]), opts.batch_size))
    P = rows.tokens.shape[0]
    on = lo[np.arange(len(texts)), pair]
    multi = np.flatnonzero((rows.tokens[pair] < 0).any(axis=1))
    if multi.size:
        sub = [texts[i] for i in multi]
        cont = [[_spell(rows.words[pair[i]][s], opts.leading_space) for i in multi] for s in (0, 1)]
        on[multi] = lm.sequence_logprobs(sub, cont[1]) - lm.sequence_logprobs(sub, cont[0])
    return on, lo[:, P:]


def steering_curves(
    lm, kept, contexts, unemb, opts, progress: bool = False, raw=None
) -> list[SteeringCurve]:
    """:class:`SteeringCurve` of every concept in ``opts.steer`` (see the module docstring).

    Args:
        lm: the loaded model. kept: the concepts with single-token pairs (off-target pairs).
        contexts: concept → paired contexts. unemb: γ and vocabulary. opts: the options.
        progress: show progress. raw: concept name → its file's pairs (for ``multi_token``).
    """
    by_name = {c.name: c for c in kept}
    raw = {c.name: c for c in (raw or [])}
    known = (set(by_name) | (set(raw) if opts.multi_token else set())) & set(contexts)
    missing = [s for s in opts.steer if s not in known]
    if missing:
        raise InputError(
            f"--steer {missing[0]!r}: needs a concept with pairs and paired contexts (available: "
            f"{sorted(known) or 'none'}); pick one of those"
        )
    layers = [lm.resolve_layer(x) for x in opts.steer_layers] or _default_layers(lm.n_layers)
    curves = []
    for name in opts.steer:
        words, tokens = _pairs_of(name, by_name, raw, unemb, opts)
        rows = _rows(name, words, tokens, contexts[name])
        others = [c for c in kept if c.name != name]
        curves.append(_curve(lm, name, rows, others, layers, opts, progress))
    return curves


def _default_layers(n: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(n / 5, n, 5)})


def _curve(lm, name, rows: _Rows, others, layers, opts, progress) -> SteeringCurve:
    from ..progress import progress_bar

    fold = _folds(rows.pair, opts.steer_folds, opts.seed)[rows.pair]
    other_ids = np.concatenate([c.pairs.ravel() for c in others] or [np.zeros(0, np.int64)])
    states = lm.hidden_states(rows.texts, layers, pooling=opts.pooling, batch_size=opts.batch_size)
    scales = [float(np.linalg.norm(S, axis=1).mean()) for S in states]
    estimator = get_estimator(opts.estimator)
    A, L, n = len(opts.steer_alphas), len(layers), len(rows.texts)
    on = np.full((L, A, n), np.nan)
    off = np.full((L, A, n, other_ids.size // 2), np.nan)
    steps = [(f, i) for f in range(opts.steer_folds) for i in range(L)]
    for f, i in progress_bar(steps, desc=f"steer {name}", unit="layer·fold", enabled=progress):
        fit, ev = fold != f, (fold == f) & (rows.labels == 0)
        if not ev.any():
            continue
        v = estimator.fit(states[i][fit], rows.labels[fit]).direction_
        on0, off0 = _measure(lm, rows, ev, other_ids, opts)
        for k, a in enumerate(opts.steer_alphas):
            with steer(lm.model, v, a * scales[i], layers[i]):
                on1, off1 = _measure(lm, rows, ev, other_ids, opts)
            on[i, k, ev], off[i, k, ev] = on1 - on0, off1 - off0
    return _summarise(name, others, rows, on, off, layers, scales, opts)


def _summarise(name, others, rows, on, off, layers, scales, opts) -> SteeringCurve:
    evaluated = ~np.isnan(on[0, 0])
    on, off, pair = on[..., evaluated], off[..., evaluated, :], rows.pair[evaluated]
    per_pair = np.stack([on[..., pair == p].mean(axis=-1) for p in np.unique(pair)], axis=-1)
    se = (
        per_pair.std(axis=-1, ddof=1) / np.sqrt(per_pair.shape[-1])
        if per_pair.shape[-1] > 1
        else np.full(per_pair.shape[:-1], np.nan)
    )
    by_concept, start = {}, 0
    for c in others:
        by_concept[c.name] = off[..., start : start + c.n_pairs].mean(axis=(-1, -2))
        start += c.n_pairs
    mean_off = (
        np.mean([np.abs(v) for v in by_concept.values()], axis=0)
        if by_concept
        else np.full(on.shape[:2], np.nan)
    )
    return SteeringCurve(
        concept=name,
        layers=tuple(layers),
        alphas=tuple(opts.steer_alphas),
        scales=tuple(scales),
        on_target=per_pair.mean(axis=-1),
        on_target_se=se,
        off_target=mean_off,
        off_target_by_concept=by_concept,
        n_eval_contexts=int(evaluated.sum()),
        n_pairs=int(np.unique(pair).size),
        folds=opts.steer_folds,
    )
