"""A causal LM already in memory, as linrep sees it: γ, vocabulary, layers, hidden states, hooks.

:class:`LoadedLM` wraps a Hugging Face ``PreTrainedModel`` and its tokenizer (built by
:func:`linrep.llm.analyze` around the user's objects, or by ``linrep llm`` around the model it loads).
It never changes the model or the tokenizer: padding is done here, and hooks live only inside
:func:`linrep.llm.steer`.

Layers are indexed like ``output_hidden_states``: hidden state ``L`` for ``L = 0 … n`` is the input of
block ``L`` (``0`` = the embeddings) and ``n`` is the final, post-norm state f(x) = λ(x) whose dot
products with γ are the logits. Hooks for layer ``L < n`` act on the input of block ``L``, for ``n``
on the output of the final norm.

Logits must be plain ``s·γ·h (+ b)``: a logit scale s (``logit_scale`` / ``logits_scaling``) is folded
into γ, an ``lm_head`` bias b is reported (it shifts every log-odds by a constant Δb no direction can
change), and final-logit softcapping c·tanh(γ·h / c) is refused (log-odds would not be linear in h).
:meth:`LoadedLM.check` verifies on one forward pass that the logits are what γ says.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .unembedding import FileLabel, Unembedding
from .vocab import NORMAL

__all__ = ["LoadedLM", "LogitMap", "PROBE_TEXT"]

#: Text of the one forward pass that checks logits and tokenizer (ordinary English).
PROBE_TEXT = (
    "The capital of France is Paris, and the capital of Germany is Berlin. "
    "One, two, three, four, five, six, seven. The cat sat on the mat."
)


@dataclass(frozen=True)
class LogitMap:
    """How logits follow from the final hidden state h: logits = scale · γ·h + bias.

    Attributes:
        scale: multiplicative logit scale (1 for most models), already folded into γ.
        has_bias: whether ``lm_head`` adds a bias b(y).
        note: one line for the results (empty when logits are plain γ·h).
    """

    scale: float = 1.0
    has_bias: bool = False
    note: str = ""


def _text_config(config: Any) -> Any:
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def _find_blocks(model: Any, n: int) -> tuple[Any, Any]:
    """The ModuleList of the n transformer blocks and the final norm next to it."""
    import torch

    for _, module in model.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, torch.nn.ModuleList) and len(child) == n:
                if child_name not in ("layers", "h", "blocks", "layer"):
                    continue
                for norm_name in ("norm", "ln_f", "final_layernorm", "final_norm", "ln_final"):
                    norm = getattr(module, norm_name, None)
                    if isinstance(norm, torch.nn.Module):
                        return child, norm
    raise InputError(
        f"cannot find the {n} transformer blocks and the final norm of {type(model).__name__}; "
        "pass a standard Hugging Face causal LM (LlamaForCausalLM, Gemma3ForCausalLM, ...)"
    )


def n_layers_of(model: Any) -> int:
    """Number of transformer blocks from the model's config (hidden states are 0 … n)."""
    cfg = getattr(model, "config", None) or getattr(model, "cfg", None)
    n = getattr(_text_config(cfg), "num_hidden_layers", None) or getattr(cfg, "n_layers", None)
    if n is None:
        raise InputError(
            "cannot tell the model's number of layers (config.num_hidden_layers is missing); "
            "pass a standard Hugging Face causal LM"
        )
    return int(n)


def hook_point(model: Any, layer: int | None) -> tuple[Any, str, int]:
    """Where hidden state ``layer`` can be changed: ``(module, "pre" | "post", resolved layer)``.

    Hidden state L < n is the input of block L (a forward pre-hook); n is the output of the final
    norm (a forward hook).
    """
    n = n_layers_of(model)
    L = resolve_layer(layer, n)
    blocks, norm = _find_blocks(model, n)
    return (norm, "post", L) if L == n else (blocks[L], "pre", L)


class LoadedLM:
    """An in-memory causal LM and its tokenizer, checked once on construction.

    Args:
        model: a Hugging Face causal LM (``AutoModelForCausalLM``), in eval mode or not (it is
            only ever run under ``torch.inference_mode``).
        tokenizer: its tokenizer.

    Raises:
        InputError: no output embeddings, a tokenizer whose vocabulary does not fit γ, or
            softcapped logits (each one line naming the fix).
    """

    def __init__(self, model: Any, tokenizer: Any):
        self.model, self.tokenizer = model, tokenizer
        self.gamma_t = self._output_weight()
        self.n_layers = n_layers_of(model)
        self.blocks, self.final_norm = _find_blocks(model, self.n_layers)
        self.logit_map = self._logit_map()
        self._check_vocab_size()

    # ------------------------------------------------------------------ structure
    @property
    def d(self) -> int:
        return int(self.gamma_t.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.gamma_t.shape[0])

    @property
    def device(self) -> Any:
        return self.gamma_t.device

    @property
    def name(self) -> str:
        cfg = getattr(self.model, "config", None)
        return str(getattr(cfg, "_name_or_path", "") or type(self.model).__name__)

    def _output_weight(self) -> Any:
        get = getattr(self.model, "get_output_embeddings", None)
        head = get() if callable(get) else None
        weight = getattr(head, "weight", None)
        if weight is None or getattr(weight, "ndim", 0) != 2:
            raise InputError(
                f"{type(self.model).__name__} has no output embeddings (get_output_embeddings() is "
                "None); load it with AutoModelForCausalLM, not AutoModel"
            )
        return weight

    def _logit_map(self) -> LogitMap:
        cfg = _text_config(self.model.config)
        cap = getattr(cfg, "final_logit_softcapping", None)
        if cap:
            raise InputError(
                f"this model softcaps its logits (c·tanh(γ·h/c), c = {cap}), so log-odds are not "
                "linear in h; set model.config.final_logit_softcapping = None to analyse γ·h"
            )
        scale = float(getattr(cfg, "logit_scale", None) or 1.0)
        scaling = getattr(cfg, "logits_scaling", None)
        if scaling:
            scale /= float(scaling)
        bias = getattr(self.model.get_output_embeddings(), "bias", None) is not None
        parts = []
        if scale != 1.0:
            parts.append(f"logits are scaled by {scale:g}: γ includes that factor")
        if bias:
            parts.append(
                "lm_head adds a bias b(y): directions use γ only; b shifts each pair's log-odds by "
                "a constant Δb that no direction changes"
            )
        return LogitMap(scale, bias, "; ".join(parts))

    def _check_vocab_size(self) -> None:
        n_tok, V = len(self.tokenizer), self.vocab_size
        if n_tok > V or n_tok < 0.9 * V:
            raise InputError(
                f"the tokenizer has {n_tok:,} tokens but the model's unembedding has {V:,} rows; "
                "pass the tokenizer saved with this model"
            )

    def resolve_layer(self, layer: int | None) -> int:
        """Map ``layer`` (None = final post-norm state n; negative counts from the end) to 0 … n."""
        return resolve_layer(layer, self.n_layers)

    # ------------------------------------------------------------------ weights
    def gamma(self) -> np.ndarray:
        """γ as ``(V, d)`` float32 numpy (logit scale folded in)."""
        g = self.gamma_t.detach().float().cpu().numpy()
        s = self.logit_map.scale
        return np.ascontiguousarray(g if s == 1.0 else g * np.float32(s))

    def weights_sha256(self) -> str:
        """sha256 over every parameter and buffer (name, dtype, shape, bytes), in name order."""
        import torch

        h = hashlib.sha256()
        state = self.model.state_dict()
        for name in sorted(state):
            t = state[name].detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def vocabulary(self) -> tuple[list[str], np.ndarray]:
        """Token strings ``(V,)`` and GGUF-style types: 1 normal, 3 special added token, 4 other
        added token, 6 byte-fallback piece ``<0xNN>``, 0 rows beyond the tokenizer (padding)."""
        V, n_tok = self.vocab_size, len(self.tokenizer)
        strings = self.tokenizer.convert_ids_to_tokens(list(range(min(V, n_tok))))
        tokens = [t if isinstance(t, str) else "" for t in strings] + [""] * (V - len(strings))
        types = np.full(V, NORMAL, dtype=np.int32)
        types[n_tok:] = 0
        for i, tok in getattr(self.tokenizer, "added_tokens_decoder", {}).items():
            if 0 <= i < V:
                types[i] = 3 if getattr(tok, "special", False) else 4
        byte = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
        types[[i for i, t in enumerate(tokens) if byte.match(t)]] = 6
        return tokens, types

    def unembedding(self, sha256: str | None = None) -> Unembedding:
        """γ and vocabulary as an :class:`~linrep.llm.unembedding.Unembedding` (``sha256``: of the
        weights; computed with :meth:`weights_sha256` when not given)."""
        tokens, types = self.vocabulary()
        cfg = _text_config(self.model.config)
        label = FileLabel(
            name=self.name,
            architecture=str(getattr(cfg, "model_type", "")),
            quantization=str(self.gamma_t.dtype).removeprefix("torch."),
        )
        return Unembedding(
            self.gamma(),
            tokens,
            types,
            "",
            self.name,
            sha256 or self.weights_sha256(),
            self.n_layers,
            label,
        )

    # ------------------------------------------------------------------ running
    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text with the tokenizer's default special tokens (e.g. Gemma's <bos>)."""
        return [list(ids) for ids in self.tokenizer(list(texts))["input_ids"]]

    def _batch(self, ids: list[list[int]]) -> dict[str, Any]:
        """Right-padded ``input_ids`` / ``attention_mask`` tensors (the tokenizer is not touched)."""
        import torch

        width = max(len(x) for x in ids)
        inp = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):
            inp[i, : len(x)] = torch.as_tensor(x, dtype=torch.long)
            mask[i, : len(x)] = 1
        return {"input_ids": inp.to(self.device), "attention_mask": mask.to(self.device)}

    def forward(self, ids: list[list[int]], *, hidden: bool = False, keep: int | None = 1) -> Any:
        """One forward pass on a right-padded batch (``keep``: logits of the last positions only)."""
        kw: dict[str, Any] = {"output_hidden_states": hidden, "use_cache": False}
        enc = self._batch(ids)
        if keep is not None:
            try:
                return self.model(**enc, **kw, logits_to_keep=keep)
            except TypeError:  # models without logits_to_keep
                pass
        return self.model(**enc, **kw)

    def batches(self, ids: list[list[int]], batch_size: int):
        """Yield ``(rows, batch ids)`` with texts of similar length together (less padding)."""
        order = np.argsort([len(x) for x in ids], kind="stable")
        for s in range(0, len(ids), max(1, batch_size)):
            rows = order[s : s + batch_size]
            yield rows, [ids[i] for i in rows]

    def hidden_states(
        self,
        texts: list[str],
        layers: list[int],
        *,
        pooling: str = "last",
        batch_size: int = 16,
        progress: bool = False,
        desc: str = "forward",
    ) -> list[np.ndarray]:
        """Hidden states of each text at several layers, from one forward pass per batch.

        Args:
            texts: n strings.
            layers: hidden-state indices (0 … n, see :meth:`resolve_layer`).
            pooling: ``"last"`` = the state at each text's own last token; ``"mean"`` = the mean
                over its tokens (special tokens such as ``<bos>`` left out).
            batch_size: texts per forward pass.

        Returns:
            One ``(n, d)`` float64 array per layer, rows in the order of ``texts``.
        """
        import torch

        from ..progress import progress_bar

        idx = [self.resolve_layer(x) for x in layers]
        ids = self.encode(texts)
        special = torch.as_tensor(sorted(set(getattr(self.tokenizer, "all_special_ids", []))))
        out = [np.zeros((len(texts), self.d)) for _ in idx]
        steps = list(self.batches(ids, batch_size))
        with torch.inference_mode():
            for rows, batch in progress_bar(steps, desc=desc, unit="batch", enabled=progress):
                res = self.forward(batch, hidden=True)
                enc = self._batch(batch)
                mask = enc["attention_mask"].unsqueeze(-1).to(torch.float64)
                last = mask.sum(dim=1).long().squeeze(-1) - 1
                plain = mask * ~torch.isin(enc["input_ids"], special.to(self.device)).unsqueeze(-1)
                plain = torch.where(plain.sum(dim=1, keepdim=True) > 0, plain, mask)
                for o, i in zip(out, idx, strict=True):
                    h = res.hidden_states[i].to(torch.float64)
                    if pooling == "mean":
                        pooled = (h * plain).sum(dim=1) / plain.sum(dim=1)
                    else:
                        pooled = h[torch.arange(h.shape[0]), last]
                    o[rows] = pooled.cpu().numpy()
        return out

    def _final_states(self, batch: list[list[int]]) -> Any:
        """Final post-norm states ``(b, T, d)`` of one batch, read from the final norm's output.

        The capture hook is registered now, after any steering hook, so it sees the steered state.
        """
        seen: list[Any] = []
        handle = self.final_norm.register_forward_hook(lambda m, i, o: seen.append(o))
        try:
            self.forward(batch, keep=1)
        finally:
            handle.remove()
        out = seen[-1]
        return out[0] if isinstance(out, tuple) else out

    def _logits_of(self, h: Any, ids: Any = None) -> Any:
        """s·γ·h (+ b) for states ``h: (..., d)`` (all tokens, or the token ids ``ids``)."""
        import torch

        g = self.gamma_t if ids is None else self.gamma_t[ids]
        logits = self.logit_map.scale * torch.matmul(h.to(g.dtype), g.T)
        bias = getattr(self.model.get_output_embeddings(), "bias", None)
        if bias is not None:
            logits = logits + (bias if ids is None else bias[ids])
        return logits.double()

    def last_logits(self, texts: list[str], token_ids: np.ndarray, batch_size: int = 16):
        """Logits of chosen tokens at each text's last position: ``(n, T)`` float64.

        Computed as s·γ[ids]·h from the final state (what :meth:`check` verified), so only T of the
        V logits are formed.

        Args:
            texts: n strings. token_ids: ``(T,)`` ids, the same for every text.
        """
        import torch

        ids = self.encode(texts)
        tok = torch.as_tensor(np.asarray(token_ids, dtype=np.int64), device=self.device)
        out = np.zeros((len(texts), tok.numel()))
        with torch.inference_mode():
            for rows, batch in self.batches(ids, batch_size):
                h = self._final_states(batch)
                last = torch.as_tensor([len(x) - 1 for x in batch], device=self.device)
                out[rows] = self._logits_of(h[torch.arange(len(batch)), last], tok).cpu().numpy()
        return out

    def sequence_logprobs(
        self, contexts: list[str], continuations: list[str], batch_size: int = 8
    ) -> np.ndarray:
        """log p(continuation | context) = Σ_i log p(t_i | context, t_<i) per row: ``(n,)``.

        The context is tokenised with the tokenizer's special tokens, the continuation (e.g.
        ``" queen"``, several tokens or one) without, and the two are concatenated; the softmax runs
        over the whole vocabulary at each continuation position.
        """
        import torch

        ctx = self.encode(contexts)
        cont = [
            list(x)
            for x in self.tokenizer(list(continuations), add_special_tokens=False)["input_ids"]
        ]
        if any(not c for c in cont):
            raise InputError("a continuation tokenises to nothing; pass non-empty words")
        ids = [a + b for a, b in zip(ctx, cont, strict=True)]
        out = np.zeros(len(ids))
        with torch.inference_mode():
            for rows, batch in self.batches(ids, batch_size):
                h = self._final_states(batch)
                for r, i in enumerate(rows):
                    n0, n1 = len(ctx[i]), len(cont[i])
                    logp = torch.log_softmax(self._logits_of(h[r, n0 - 1 : n0 + n1 - 1]), dim=-1)
                    tok = torch.as_tensor(cont[i], device=self.device)
                    out[i] = float(logp[torch.arange(n1), tok].sum())
        return out

    # ------------------------------------------------------------------ checks
    def check(self, *, tokenizer: bool = True) -> float:
        """One forward pass on :data:`PROBE_TEXT`: logits must equal s·γ·h (+ b).

        With ``tokenizer=True`` the mean next-token loss of the text must also be clearly below
        that of a uniform guess (ln V): a tokenizer of another model gives near-uniform loss.

        Returns:
            The largest |logit − s·γ·h − b| relative to the largest |logit|.

        Raises:
            InputError: if either check fails.
        """
        import torch

        ids = self.encode([PROBE_TEXT])
        with torch.inference_mode():
            res = self.forward(ids, hidden=True, keep=None)
        logits = res.logits[0].double()
        h = res.hidden_states[self.n_layers][0].double()
        pred = h @ torch.as_tensor(self.gamma()).double().T
        bias = getattr(self.model.get_output_embeddings(), "bias", None)
        if bias is not None:
            pred = pred + bias.detach().double()
        err = float((logits - pred).abs().max() / logits.abs().max().clamp_min(1e-12))
        if not err < 1e-3:
            raise InputError(
                f"the logits of {type(self.model).__name__} are not s·γ·h + b (relative difference "
                f"{err:.2g}); linrep reads the unembedding from get_output_embeddings(), so pass a "
                "model whose logits are a linear read-out of the last hidden state"
            )
        if tokenizer:
            self._check_loss(logits, ids[0])
        return err

    def _check_loss(self, logits: Any, ids: list[int]) -> None:
        import torch

        target = torch.as_tensor(ids[1:])
        nll = torch.nn.functional.cross_entropy(logits[:-1], target).item()
        if nll > 0.75 * np.log(self.vocab_size):
            raise InputError(
                f"the model predicts this tokenizer's tokens no better than chance (loss {nll:.1f} "
                f"nats vs ln V = {np.log(self.vocab_size):.1f}); pass the tokenizer saved with this "
                "model (or check_tokenizer=False)"
            )


def resolve_layer(layer: int | None, n: int) -> int:
    """Map ``layer`` (None = final post-norm state n; negative counts from the end) into 0 … n.

    Raises:
        InputError: if it is out of range.
    """
    if layer is None:
        return n
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise InputError(f"layer {layer!r} is not an integer; use 0..{n} or -1 (final)")
    if not -(n + 1) <= layer <= n:
        raise InputError(
            f"--layer {layer} is out of range for a model with {n} layers; use 0..{n} "
            f"(or -1..-{n + 1}; {n} = final post-norm state, the default)"
        )
    return int(layer) % (n + 1)
