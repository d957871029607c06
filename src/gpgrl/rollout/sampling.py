"""Exact, cheap token sampling for the transformers ``generate`` engine.

RL needs the answers drawn from exactly the distribution the loss differentiates,
``softmax(logits / temperature)`` (restricted to the top-k / top-p tokens only when asked). Two things in
``generate``'s own sampling path get in the way:

* **Settings the caller did not ask for.** Whatever ``generate`` is not told explicitly comes from the
  model's ``generation_config``: a checkpoint that sets ``repetition_penalty`` (Qwen2.5's instruct models
  set 1.05) would reshape every sampled distribution away from the one the loss uses.
* **Cost.** ``torch.multinomial`` draws one exponential random number per vocabulary entry per row
  (``aten::exponential_``): at a 151,936-token vocabulary that was 150 ms per generated token for 32 rows
  on one CPU core, a third of a whole training step. Inverse-CDF sampling needs one uniform number per row.

:class:`ExactSampler` is a ``LogitsProcessor`` that does the whole sampling (temperature, top-k, top-p,
inverse CDF in float64) and hands ``generate`` a score row whose only finite entry is the drawn token;
``generate`` runs in greedy mode (``do_sample=False``), so its ``argmax`` picks exactly that token and
none of its sampling warpers run. The processor sees the logits after the processors that precede it
(e.g. suppressed image placeholders at ``-inf``, which are never drawn).

>>> logits = torch.tensor([[0.0, 1.0, float("-inf")]])
>>> sample_tokens(logits.clone(), temperature=1.0, uniform=torch.tensor([[0.0]])).tolist()   # first bin
[0]
>>> sample_tokens(logits.clone(), temperature=1.0, uniform=torch.tensor([[0.99]])).tolist()  # never the -inf one
[1]
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


def sample_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    *,
    uniform: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    logprobs: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token per row of ``logits`` [B, V] from ``softmax(logits / temperature)``; returns [B] ids.

    ``top_k`` > 0 keeps the k largest logits; ``top_p`` < 1 then keeps the smallest set of most likely
    tokens whose probability reaches ``top_p`` (the token that crosses it included), as transformers'
    and vLLM's warpers do, in that order. ``-inf`` logits (suppressed tokens) are never drawn.
    ``uniform`` [B, 1] in [0, 1) replaces the random draw (for tests); otherwise ``torch.rand`` with
    ``generator`` (default: the global one, so ``torch.manual_seed`` makes runs repeatable).
    ``logprobs`` [B] float32, if given, receives each drawn token's log-prob under the distribution it
    was drawn from (after temperature and top-k / top-p, renormalised: vLLM's ``processed_logprobs``),
    from the probabilities the draw already made.

    **Overwrites** ``logits`` (float32/64) in place: pass a copy you do not need any more.

    >>> sample_tokens(torch.tensor([[2.0, 1.0, 0.0]]), 1.0, top_k=1, uniform=torch.tensor([[0.9]])).tolist()
    [0]
    >>> lp = torch.empty(1)   # probabilities (1/2, 1/4, 1/4); top-k 2 keeps (2/3, 1/3); u = 0.9 draws the second
    >>> sample_tokens(torch.log(torch.tensor([[2.0, 1.0, 1.0]])), 1.0, top_k=2, uniform=torch.tensor([[0.9]]),
    ...               logprobs=lp).tolist(), round(lp.item(), 4)   # log(1/3)
    ([1], -1.0986)
    """
    if temperature <= 0:
        raise ValueError(f"sample_tokens needs temperature > 0 (greedy is argmax), got {temperature}")
    if not logits.is_floating_point() or logits.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"logits must be float32 or float64 (got {logits.dtype}); it is overwritten in place")
    B, V = logits.shape
    index = None  # vocabulary ids of the kept columns when top-k / top-p select a subset
    if top_k and top_k < V:
        logits, index = logits.topk(top_k, dim=-1)  # [B, k], sorted descending
    if temperature != 1.0:
        logits.div_(temperature)
    probs = logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()  # unnormalised, max 1: [B, V or k]
    if top_p < 1.0:
        if index is None:
            probs, index = probs.sort(dim=-1, descending=True)
        mass = probs.cumsum(-1, dtype=torch.float64)
        total = mass[:, -1:]
        before = mass - probs  # mass of the more likely tokens
        probs = probs.masked_fill(before >= top_p * total, 0.0)  # the first token always stays (before = 0)
    u = torch.rand((B, 1), dtype=torch.float64, device=probs.device, generator=generator) if uniform is None \
        else uniform.to(device=probs.device, dtype=torch.float64)
    choice = _inverse_cdf(probs, u)
    if logprobs is not None:  # log(p_choice / sum p): the kept probabilities renormalised
        picked = probs.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
        logprobs.copy_((picked.log() - probs.sum(-1).log()).float())
    if index is not None:
        choice = index.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
    return choice


BLOCK = 1024  # vocabulary entries per block of the two-level search


def _search(cdf: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Index of the first bin of ``cdf`` [B, n] whose end exceeds ``target`` [B, 1] (< the last end): [B, 1]."""
    return torch.searchsorted(cdf, target, right=True)


def _below(total: torch.Tensor) -> torch.Tensor:
    """The largest float64 under ``total``: ``u * total`` can round up to ``total``, which no bin holds."""
    return torch.nextafter(total, torch.zeros_like(total))


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Token index [B] with P(i) = probs[:, i] / sum(probs): the bin of ``u * sum`` on the float64 CDF.

    Zero-probability entries have empty bins and are never returned. Over a large vocabulary the search
    is two-level (block sums accumulated in float64, then the chosen block's own float64 CDF), which reads
    ``probs`` once instead of writing a [B, V] float64 CDF: exact to the rounding of ``probs`` itself.
    """
    B, n = probs.shape
    if n <= 4 * BLOCK:
        cdf = probs.cumsum(-1, dtype=torch.float64)
        total = cdf[:, -1:]
        return _search(cdf, torch.minimum(u * total, _below(total))).squeeze(-1)
    full = n // BLOCK * BLOCK
    # Block sums in probs' own precision, then accumulated in float64: summing a float32 block with
    # dtype=float64 would first copy all of probs to float64 (B x V x 8 bytes per generated token). A
    # float32 block sum is off by ~1e-7 of its value, the rounding the float32 logits already carry.
    sums = probs[:, :full].view(B, -1, BLOCK).sum(-1).double()  # [B, n // BLOCK]
    if full < n:
        sums = torch.cat([sums, probs[:, full:].sum(-1, keepdim=True).double()], dim=-1)
    block_cdf = sums.cumsum(-1)
    total = block_cdf[:, -1:]
    target = torch.minimum(u * total, _below(total))
    block = _search(block_cdf, target)  # [B, 1]
    start = block * BLOCK
    target = target - torch.where(block > 0, block_cdf.gather(-1, (block - 1).clamp_min(0)), 0.0)
    cols = start + torch.arange(BLOCK, device=probs.device)  # [B, BLOCK]
    inside = cols < n
    local = probs.gather(-1, cols.clamp_max(n - 1)).masked_fill(~inside, 0.0)
    cdf = local.cumsum(-1, dtype=torch.float64)
    # The block's own sum can round a hair below its share of the total: never step past its last token.
    last = torch.where(local > 0, torch.arange(BLOCK, device=probs.device), -1).amax(-1, keepdim=True)
    return (start + torch.minimum(_search(cdf, target), last)).squeeze(-1)


class ExactSampler(LogitsProcessor):
    """A ``LogitsProcessor`` that samples with :func:`sample_tokens` and returns scores whose argmax is the draw.

    Use it with ``generate(do_sample=False, logits_processor=LogitsProcessorList([ExactSampler(...)]))``.
    It overwrites the scores it receives (``generate`` gives the processors its own float32 copy of each
    step's logits, and nothing else holds it unless ``output_scores`` is asked, which the engine never does).
    """

    def __init__(self, temperature: float, top_k: int = 0, top_p: float = 1.0,
                 generator: torch.Generator | None = None):
        if temperature <= 0:
            raise ValueError(f"ExactSampler needs temperature > 0, got {temperature}; greedy needs no sampler")
        self.temperature, self.top_k, self.top_p, self.generator = temperature, top_k, top_p, generator
        self._logprobs: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        work = scores if scores.dtype in (torch.float32, torch.float64) else scores.float()
        logprobs = torch.empty(scores.shape[0], dtype=torch.float32, device=scores.device)
        tokens = sample_tokens(work, self.temperature, self.top_k, self.top_p, generator=self.generator,
                               logprobs=logprobs)
        self._logprobs.append(logprobs)  # [B]: one float per row and step, never the [B, V] distribution
        scores.fill_(float("-inf"))
        return scores.scatter_(-1, tokens.unsqueeze(-1), 0.0)

    def take_logprobs(self) -> torch.Tensor:
        """The sampling log-probs [B, steps] of the tokens drawn since the last call (one column per
        ``generate`` step: column t is the t-th new token's), and forget them."""
        steps, self._logprobs = self._logprobs, []
        return torch.stack(steps, dim=1) if steps else torch.empty(0, 0)
