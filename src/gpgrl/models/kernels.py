"""Log-prob kernels: per-token log-probs and entropy without a whole [B, T, V] float32 tensor.

Shapes: B answers, T positions, V vocabulary, H hidden size, N = B * T.

- :func:`token_logprobs` / :func:`token_entropy`: from logits the model has already made ([B, T, V], any
  float dtype). The float32 log-softmax exists a chunk of positions at a time; the backward pass
  recomputes it from the saved logits. The logits and their gradient still exist whole.
- :func:`head_logprobs`: from the final hidden states [B, T, H] and the output head (weight [V, H], bias).
  Each chunk of positions goes hidden -> head -> log-softmax -> gather, and the backward pass recomputes
  the chunk's logits, so neither the [B, T, V] logits nor their gradient ever exist whole (the idea
  behind "fused linear cross-entropy" kernels, here in plain PyTorch).

Extra memory of :func:`head_logprobs` at its peak, for ``c = chunk_tokens`` positions a chunk: about
``10 * c * V`` bytes (the chunk's logits in the compute dtype and two float32 copies), plus, when the
head's weight is trained in bf16/fp16, a float32 accumulator for its gradient and one product buffer
(``6 * V * H`` bytes) -- where the plain path holds ``N * V`` logits and ``N * V`` gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

DEFAULT_CHUNK_TOKENS = 256


def _row_chunks(logits: torch.Tensor, chunk_tokens: int):
    """(b, t0, t1) spans covering [B, T] with at most ``chunk_tokens`` positions each (contiguous views)."""
    B, T = logits.shape[:2]
    step = max(1, chunk_tokens)
    for b in range(B):
        for t0 in range(0, T, step):
            yield b, t0, min(T, t0 + step)


class _TokenLogprob(torch.autograd.Function):
    """logit[token] - logsumexp(logits) in float32, a chunk at a time, saving no float32 copy.

    Forward keeps only the logsumexp per position ([B, T] floats); backward recomputes each chunk's
    softmax from the saved (e.g. bf16) logits: d logp / d logits = onehot(token) - softmax(logits).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, tokens: torch.Tensor, chunk_tokens: int) -> torch.Tensor:
        B, T = tokens.shape
        out = torch.empty((B, T), dtype=torch.float32, device=logits.device)
        lse = torch.empty((B, T), dtype=torch.float32, device=logits.device)
        for b, t0, t1 in _row_chunks(logits, chunk_tokens):
            x = logits[b, t0:t1].float()  # [t, V]
            lse[b, t0:t1] = torch.logsumexp(x, dim=-1)
            out[b, t0:t1] = x.gather(-1, tokens[b, t0:t1].unsqueeze(-1)).squeeze(-1) - lse[b, t0:t1]
        ctx.save_for_backward(logits, tokens, lse)
        ctx.chunk_tokens = chunk_tokens
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, tokens, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for b, t0, t1 in _row_chunks(logits, ctx.chunk_tokens):
            p = torch.exp(logits[b, t0:t1].float() - lse[b, t0:t1].unsqueeze(-1))  # softmax [t, V]
            p.scatter_add_(-1, tokens[b, t0:t1].unsqueeze(-1), -torch.ones_like(p[:, :1]))  # p - onehot
            grad[b, t0:t1] = (-grad_out[b, t0:t1].unsqueeze(-1) * p).to(logits.dtype)
        return grad, None, None


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor,
                   chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> torch.Tensor:
    """log softmax(logits)[tokens] as float32 [B, T], without a [B, T, V] float32 copy.

    Works ``chunk_tokens`` positions at a time; the backward pass recomputes the softmax per chunk, so
    the extra memory is ``chunk_tokens * V`` floats, whatever B and T (a full float32 log-softmax of a
    150k vocabulary over 8 x 4096 tokens would take 20 GB). The logits themselves and their gradient
    ([B, T, V] in the logits' dtype) still exist whole; :func:`head_logprobs` avoids them too.

    Args:
        logits: [B, T, V] any float dtype (a view is fine). tokens: [B, T] token ids.

    >>> logits = torch.tensor([[[0., 0.], [1., 3.]]])
    >>> [round(x, 4) for x in token_logprobs(logits, torch.tensor([[0, 1]]))[0].tolist()]  # -log 2, 3 - log(e + e^3)
    [-0.6931, -0.1269]
    """
    return _TokenLogprob.apply(logits, tokens, chunk_tokens)


@torch.no_grad()
def token_entropy(logits: torch.Tensor, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> torch.Tensor:
    """Entropy [B, T] of the next-token distribution, ``chunk_tokens`` positions at a time (no grad).

    >>> token_entropy(torch.zeros(1, 1, 4)).tolist()   # uniform over 4: log 4
    [[1.3862943649291992]]
    """
    out = torch.empty(logits.shape[:2], dtype=torch.float32, device=logits.device)
    for b, t0, t1 in _row_chunks(logits, chunk_tokens):
        logp = torch.log_softmax(logits[b, t0:t1].float(), dim=-1)  # [t, V]
        out[b, t0:t1] = -(logp.exp() * logp).sum(-1)
    return out


# --- fused head + log-softmax ------------------------------------------------------------------------------


def _spans(n: int, chunk_tokens: int) -> Iterator[slice]:
    """Row slices covering ``range(n)``, at most ``chunk_tokens`` rows each."""
    step = max(1, chunk_tokens)
    return (slice(i, min(n, i + step)) for i in range(0, n, step))


class _ChunkLogits:
    """``scale * (x[s] @ w.T + b)`` in float32 for row slices ``s``, written into one reused [c, V] buffer.

    Reusing the buffer matters on CPU: a fresh [c, V] tensor per chunk (150 MB at c = 256, V = 152k) costs
    page faults on every touch, which measured more than the arithmetic on it.
    """

    def __init__(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, scale: float, chunk_tokens: int):
        rows = min(max(1, chunk_tokens), x.shape[0])
        self.x, self.wt, self.b, self.scale = x, w.t(), b, scale
        self.out = torch.empty((rows, w.shape[0]), dtype=torch.float32, device=x.device)
        self.low = None if x.dtype == torch.float32 else torch.empty_like(self.out, dtype=x.dtype)

    def __call__(self, s: slice) -> torch.Tensor:
        rows = s.stop - s.start
        target = self.out[:rows] if self.low is None else self.low[:rows]
        if self.b is None:
            torch.mm(self.x[s], self.wt, out=target)
        else:
            torch.addmm(self.b, self.x[s], self.wt, out=target)
        z = self.out[:rows]
        if self.low is not None:
            z.copy_(target)  # rounded as lm_head rounds, then float32
        return z.mul_(self.scale) if self.scale != 1.0 else z


class _HeadLogprob(torch.autograd.Function):
    """log softmax(x @ W.T + b)[token] for rows x of [N, H], a chunk of rows at a time.

    Forward saves hidden, weight, bias, tokens and the float32 logsumexp per row ([N] floats) -- never
    the logits. Backward recomputes each chunk's logits z and its softmax p, with
    d logp / d z = onehot(token) - p, then d/dx = g @ W, d/dW = g.T @ x, d/db = sum of g over rows.

    The head runs in ``dtype`` (the weights' dtype, or autocast's), as ``lm_head`` would inside the
    model; everything after it in float32. Autocast is switched off inside: the casts are explicit, so
    forward and backward agree whatever the caller's autocast state (backward runs outside it).
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, tokens, chunk_tokens: int, with_entropy: bool, dtype: torch.dtype,
                scale: float, visit: Callable[[slice, torch.Tensor], None] | None):
        N = hidden.shape[0]
        device = hidden.device
        logp = torch.empty(N, dtype=torch.float32, device=device)
        lse = torch.empty(N, dtype=torch.float32, device=device)
        entropy = torch.empty(N if with_entropy else 0, dtype=torch.float32, device=device)
        with torch.autocast(device.type, enabled=False):
            x, w = hidden.to(dtype), weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            chunk = _ChunkLogits(x, w, b, scale, chunk_tokens)
            exp_buf = torch.empty_like(chunk.out) if with_entropy else None
            for s in _spans(N, chunk_tokens):
                z = chunk(s)  # [c, V] float32: the chunk's logits (scaled), in a buffer reused by every chunk
                if visit is not None:  # reads the chunk's logits before they are consumed below
                    visit(s, z)
                top = z.amax(-1, keepdim=True)
                picked = z.gather(-1, tokens[s].unsqueeze(-1)).squeeze(-1)
                z.sub_(top)  # z - max <= 0: exp cannot overflow
                if with_entropy:  # one exp for both: H = log S - sum(e * (z - max)) / S, S = sum(e)
                    e = torch.exp(z, out=exp_buf[: z.shape[0]])
                    total = e.sum(-1)
                    entropy[s] = total.log() - e.mul_(z).sum(-1) / total
                else:
                    total = z.exp_().sum(-1)
                lse[s] = top.squeeze(-1) + total.log()
                logp[s] = picked - lse[s]
        ctx.save_for_backward(hidden, weight, bias, tokens, lse)
        ctx.chunk_tokens, ctx.dtype, ctx.scale = chunk_tokens, dtype, scale
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, _grad_entropy):
        hidden, weight, bias, tokens, lse = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dtype, N, scale = ctx.dtype, hidden.shape[0], ctx.scale
        grad_x = torch.empty_like(hidden) if need_x else None
        # The weight's gradient sums over all N rows: accumulate the chunks' products in float32 and round
        # once at the end, as one big matmul would (bf16 partial sums would each add a rounding error).
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        product = torch.empty(weight.shape, dtype=dtype, device=weight.device) \
            if need_w and dtype != torch.float32 else None  # one [V, H] buffer, reused by every chunk
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        with torch.autocast(hidden.device.type, enabled=False):
            x, w = hidden.to(dtype), weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            chunk = _ChunkLogits(x, w, b, scale, ctx.chunk_tokens)
            for s in _spans(N, ctx.chunk_tokens):
                g = chunk(s)  # [c, V]: the chunk's (scaled) logits again
                g.sub_(lse[s].unsqueeze(-1)).exp_()  # softmax p
                g.scatter_add_(-1, tokens[s].unsqueeze(-1), -torch.ones_like(g[:, :1]))  # p - onehot
                # dL/dz = grad * scale * (onehot - p)   [c, V] float32 (z = the head's output, before scaling)
                g.mul_((-grad_logp[s] * scale).unsqueeze(-1))
                if need_b:
                    grad_b += g.sum(0)
                g_h = g.to(dtype)  # the matmuls run in the head's dtype, as autograd's would
                if need_x:
                    grad_x[s] = (g_h @ w).to(hidden.dtype)  # [c, H]
                if need_w and product is None:
                    grad_w.addmm_(g_h.T, x[s])  # [V, H]
                elif need_w:
                    torch.mm(g_h.T, x[s], out=product)
                    grad_w += product
        del product  # freed before the cast below allocates the gradient in the weight's dtype
        return (grad_x, None if grad_w is None else grad_w.to(weight.dtype),
                None if grad_b is None else grad_b.to(bias.dtype), None, None, None, None, None, None)


def head_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    tokens: torch.Tensor,
    *,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    with_entropy: bool = False,
    scale: float = 1.0,
    visit: Callable[[slice, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log softmax(scale * (hidden @ weight.T + bias))[tokens] [B, T] float32, and the entropy if asked.

    Equal (to float rounding) to ``torch.log_softmax(lm_head(hidden).float(), -1).gather(...)``, gradients
    of ``hidden``, ``weight`` and ``bias`` included, but the logits exist ``chunk_tokens`` positions at a
    time only, in forward and backward. The head's matmul runs in the weights' dtype -- or in autocast's,
    when the caller has autocast on -- and the log-softmax in float32. Entropy carries no gradient.

    Args:
        hidden: [B, T, H] final hidden states (after the model's last norm). A view is fine.
        weight: [V, H] the output head's weight (tied to the input embeddings or not).
        bias: [V] or None.
        tokens: [B, T] ids whose log-probs to return.
        chunk_tokens: positions per chunk; the extra memory is about ``10 * chunk_tokens * V`` bytes.
        with_entropy: also return the entropy of each position's distribution.
        scale: multiplies the logits (in float32) before the softmax: ``1 / temperature`` gives the
            log-probs of the distribution that sampling at that temperature draws from.
        visit: called in the forward pass as ``visit(rows, z)`` with each chunk's float32 (scaled) logits
            ``z`` [c, V], ``rows`` the chunk's slice of the B * T positions (row-major), before they are
            used; it must not change ``z`` (:func:`gpgrl.models.logprobs.completion_logprobs` computes the
            engine's sampling log-probs so, from the logits the loss already makes).

    A head that maps the hidden state (1, 0) to logits (0, 0) and (0, 1) to (1, 3):

    >>> w = torch.tensor([[0., 1.], [0., 3.]])
    >>> logp, _ = head_logprobs(torch.tensor([[[1., 0.], [0., 1.]]]), w, None, torch.tensor([[0, 1]]))
    >>> [round(x, 4) for x in logp[0].tolist()]  # -log 2, 3 - log(e + e^3)
    [-0.6931, -0.1269]
    """
    if hidden.dim() != 3 or tokens.shape != hidden.shape[:2]:
        raise ValueError(f"hidden must be [B, T, H] and tokens [B, T]; got {tuple(hidden.shape)} and "
                         f"{tuple(tokens.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[2]:
        raise ValueError(f"weight must be [V, H] with H = {hidden.shape[2]} (the hidden size); got "
                         f"{tuple(weight.shape)}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias must be [V] = [{weight.shape[0]}]; got {tuple(bias.shape)}")
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    B, T, H = hidden.shape
    device_type = hidden.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else weight.dtype
    flat = hidden.to(weight.device).reshape(B * T, H)  # [N, H]; a copy only if ``hidden`` is a strided view
    logp, entropy = _HeadLogprob.apply(flat, weight, bias, tokens.to(weight.device).reshape(B * T),
                                       chunk_tokens, with_entropy, dtype, float(scale), visit)
    return logp.view(B, T), entropy.view(B, T) if with_entropy else None
