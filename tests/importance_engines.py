"""Stand-in engines that report sampling log-probs, and a brute-force reference of vLLM's processed log-probs.

* :class:`ModelSampledEngine` draws with the policy itself (transformers ``generate`` through gpgrl's
  sampler) and reports log-probs computed the slow, obvious way (:func:`brute_force_processed`): what a
  vLLM engine running the same float32 weights returns, with no numerical mismatch at all.
* :class:`PerturbedScriptedEngine` returns :class:`~helpers.ScriptedEngine`'s fixed answers with log-probs
  that are a fixed function of the token ids: a mismatch whose size the tests know.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from gpgrl.rollout.engine import HFGenerateEngine, RolloutEngine
from helpers import ScriptedEngine


def brute_force_processed(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature: float,
                          top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """[N, T] log-prob of each completion token under softmax(logits / temperature) restricted to vLLM's
    top-k set (every logit >= the k-th largest) and then its top-p set (most likely first, while the mass
    before a token is < top_p), renormalised; -inf outside; 0 on padding. One unpadded forward per row
    (in eval mode), one position at a time, in float64 Python over the sorted vocabulary."""
    out = torch.zeros(completion_ids.shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(len(completion_ids)):
                prompt = prompt_ids[i][prompt_mask[i].bool()]
                n = int(completion_mask[i].sum())
                answer = completion_ids[i, :n]
                logits = model(torch.cat([prompt, answer])[None]).logits[0].double()  # [P + n, V]
                for t in range(n):
                    x = logits[len(prompt) - 1 + t] / temperature
                    order = sorted(range(len(x)), key=lambda v: -float(x[v]))
                    kept = order if not top_k or top_k >= len(x) else [v for v in order if x[v] >= x[order[top_k - 1]]]
                    mass, nucleus = 0.0, []
                    for v, pv in zip(kept, torch.softmax(x[kept], -1).tolist()):
                        if mass >= top_p:
                            break
                        nucleus.append(v)
                        mass += pv
                    token = int(answer[t])
                    out[i, t] = float(x[token] - torch.logsumexp(x[nucleus], -1)) if token in nucleus else float("-inf")
    finally:
        model.train(was_training)
    return out


def batch_processed(model, batch, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """:func:`brute_force_processed` of a :class:`~gpgrl.rollout.RolloutBatch`."""
    return brute_force_processed(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                 batch.completion_mask, temperature, top_k, top_p)


class ModelSampledEngine(RolloutEngine):
    """Samples with the model (``HFGenerateEngine``) and reports :func:`brute_force_processed` log-probs."""

    def __init__(self, model, tokenizer, temperature: float, top_k: int = 0, top_p: float = 1.0):
        self.inner = HFGenerateEngine(model, tokenizer)
        self.settings = (temperature, top_k, top_p)

    def generate(self, prompts, params, num_samples):
        assert (params.temperature, params.top_k, params.top_p) == self.settings, "sampled as configured"
        batch = self.inner.generate(prompts, params, num_samples)
        return replace(batch, sampling_logprobs=batch_processed(self.inner.model, batch, *self.settings))

    def update_weights(self, model):
        self.inner.update_weights(model)


def token_id_logprobs(batch) -> torch.Tensor:
    """Engine log-probs -4 - (token id mod 3) on real tokens, 0 on padding: [N, T]. Against the tiny model's
    log-probs of about log(1 / 107) = -4.7, the ratios are about 0.5, 1.4 and 3.7: below, near and above a cap
    of 2."""
    return (-4.0 - (batch.completion_ids % 3).float()) * batch.completion_mask


class PerturbedScriptedEngine(ScriptedEngine):
    """ScriptedEngine's answers with :func:`token_id_logprobs` as the engine's sampling log-probs."""

    def generate(self, prompts, params, num_samples):
        batch = super().generate(prompts, params, num_samples)
        return replace(batch, sampling_logprobs=token_id_logprobs(batch))
