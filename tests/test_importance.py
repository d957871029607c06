"""Importance sampling between the rollout engine and the trainer (issue 28, finding 7).

Layers: the trainer's processed log-probs (temperature, top-k, top-p, renormalised) by hand and against a
brute-force reference on tiny models, on the fused, plain and shared-prompt paths; the hf engine's own
sampling log-probs; the four correction modes on a perturbed batch with hand-computable weights; the
config's resolution of ``auto``; whole training runs (hf engine, a model-sampled stand-in of vLLM, a
perturbed scripted engine, two processes). The real vLLM releases' side of "processed" is checked in
``tests/vllm_contract/test_processed_logprobs.py``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gpgrl.models.logprobs as logprobs_module
from gpgrl.algorithms import policy_loss
from gpgrl.algorithms.importance import importance_metrics, importance_weights, resolve_correction
from gpgrl.config import ConfigError, from_dict
from gpgrl.models.logprobs import completion_logprobs, processed_logprobs
from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
from gpgrl.rollout.engine import HFGenerateEngine, SamplingParams
from gpgrl.rollout.sampling import sample_tokens
from gpgrl.train.trainer import Trainer
from helpers import ScriptedEngine, tiny_config
from importance_engines import (
    ModelSampledEngine,
    PerturbedScriptedEngine,
    batch_processed,
    brute_force_processed,
    token_id_logprobs,
)
from test_logprobs import LogitsRecorder, V, rollout_batch, tiny_causal_lm

HERE = Path(__file__).resolve().parent


def zero_reward(completions, **_):
    """Every answer scores 0: no group carries a signal, so every step is skipped."""
    return [0.0] * len(completions)


def length_reward(completions, **_):
    """The answer's length in characters: a signal in almost every group of sampled answers."""
    return [float(len(c)) for c in completions]


# --------------------------------------------------------------------------------------------------------
# the trainer's processed log-probs
# --------------------------------------------------------------------------------------------------------


def test_processed_logprobs_by_hand():
    # probabilities (0.5, 0.25, 0.15, 0.1): logits log(10, 5, 3, 2)
    logits = torch.log(torch.tensor([10.0, 5.0, 3.0, 2.0])).expand(4, 4)
    tokens = torch.tensor([0, 1, 2, 3])

    def lp(**kw):
        return processed_logprobs(logits, tokens, **kw).tolist()

    assert lp() == pytest.approx([math.log(x) for x in (0.5, 0.25, 0.15, 0.1)], abs=1e-6)
    # top-k 2: (10, 5) / 15; the others are impossible
    assert lp(top_k=2) == pytest.approx([math.log(10 / 15), math.log(5 / 15), -math.inf, -math.inf], abs=1e-6)
    # top-p 0.7: the mass before each token is (0, 0.5, 0.75, 0.9): the first two stay (the second crosses 0.7)
    assert lp(top_p=0.7) == lp(top_k=2)
    # top-p 0.8 also keeps the third (0.75 < 0.8): (10, 5, 3) / 18
    assert lp(top_p=0.8) == pytest.approx([math.log(10 / 18), math.log(5 / 18), math.log(3 / 18), -math.inf],
                                          abs=1e-6)
    # temperature 0.5 squares the weights: (100, 25, 9, 4) / 138; with top-k 2, (100, 25) / 125
    assert lp(temperature=0.5) == pytest.approx([math.log(x / 138) for x in (100, 25, 9, 4)], abs=1e-6)
    assert lp(temperature=0.5, top_k=2)[:2] == pytest.approx([math.log(0.8), math.log(0.2)], abs=1e-6)
    # top-p on the tempered distribution (vLLM's order): (100, 25, 9, 4) / 138 has mass before (0, .72, .90, .97)
    assert lp(temperature=0.5, top_p=0.75)[2:] == [-math.inf, -math.inf]
    # top-k then top-p: top-k 3 leaves (10, 5, 3) / 18, mass before (0, .56, .83): top-p 0.6 keeps two
    assert lp(top_k=3, top_p=0.6) == lp(top_k=2)
    # vLLM keeps every logit equal to the k-th largest: top-k 2 of (1, 1, 1, 0) keeps three, 1/3 each
    tied = processed_logprobs(torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 2), torch.tensor([2, 3]), top_k=2)
    assert tied.tolist() == pytest.approx([math.log(1 / 3), -math.inf], abs=1e-6)


def reference(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, top_k: int, top_p: float) -> list[float]:
    """Row by row in float64 Python: sort, keep the top-k (with ties), then while the mass before < top_p."""
    out = []
    for x, tok in zip(logits.double() / temperature, tokens.tolist()):
        order = sorted(range(len(x)), key=lambda v: -float(x[v]))
        kept = order if not top_k else [v for v in order if x[v] >= x[order[top_k - 1]]]
        p, mass, nucleus = torch.softmax(x[kept], -1).tolist(), 0.0, []
        for v, pv in zip(kept, p):
            if mass >= top_p:
                break
            nucleus.append(v)
            mass += pv
        out.append(float(x[tok] - torch.logsumexp(x[nucleus], -1)) if tok in nucleus else -math.inf)
    return out


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(0.7, 5, 1.0), (1.0, 0, 0.9), (1.3, 20, 0.8),
                                                             (0.6, 0, 1.0), (1.0, 1, 1.0), (0.7, 50, 0.95)])
def test_processed_logprobs_match_a_row_by_row_reference(temperature, top_k, top_p, monkeypatch):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(40, 97, generator=gen) * 3
    # a quarter of the rows' tokens are their most likely, a quarter their third, half anywhere (mostly outside)
    top, row = logits.topk(5, -1).indices, torch.arange(40)
    tokens = torch.where(row % 4 == 0, top[:, 0], torch.where(row % 4 == 1, top[:, 2], torch.randint(0, 97, (40,),
                                                                                                      generator=gen)))
    want = torch.tensor(reference(logits, tokens, temperature, top_k, top_p))
    monkeypatch.setattr(logprobs_module, "PROCESSED_BLOCK_ELEMENTS", 3 * 97)  # blocks of 3 rows: the seams too
    got = processed_logprobs(logits, tokens, temperature, top_k, top_p)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    truncated = top_k > 0 or top_p < 1
    assert (0 < int(torch.isinf(got).sum()) < 40) == truncated  # tokens outside the set, and inside it
    finite = torch.isfinite(want)
    torch.testing.assert_close(got[finite], want[finite].float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shared", [False, True])
def test_completion_logprobs_returns_the_engines_log_probs_from_the_same_forward(fused, shared, monkeypatch):
    """The third tensor equals the brute-force reference (incl. -inf outside the set), on the fused, plain and
    shared-prompt paths, while the loss's log-probs and gradients are those of the call without it."""
    model = tiny_causal_lm("llama_tied")
    prompt_ids, prompt_mask, completion_ids, completion_mask, weights = rollout_batch(2)
    if shared:  # rows 0-1 and 2-3 repeat a prompt
        prompt_ids, prompt_mask = prompt_ids[[0, 0, 1, 1]], prompt_mask[[0, 0, 1, 1]]
        completion_ids, completion_mask, weights = (t[[0, 1, 0, 2]] for t in (completion_ids, completion_mask, weights))
    calls = []
    real = logprobs_module.shared_prompt_forward
    monkeypatch.setattr(logprobs_module, "shared_prompt_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = (model, prompt_ids, prompt_mask, completion_ids, completion_mask)
    kw = {"fused": fused, "share_prompts": shared, "chunk_tokens": 4, "with_entropy": True}
    logp, entropy, proc = completion_logprobs(*args, **kw, sampling=(0.7, 20, 0.9))
    (logp * weights * completion_mask).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    logp0, entropy0 = completion_logprobs(*args, **kw)
    (logp0 * weights * completion_mask).sum().backward()
    assert len(calls) == (2 if shared else 0)
    assert torch.equal(logp, logp0) and torch.equal(entropy, entropy0)
    assert all(torch.equal(grads[n], p.grad) for n, p in model.named_parameters())
    assert not proc.requires_grad
    m = completion_mask.bool()
    want = brute_force_processed(model, prompt_ids, prompt_mask, completion_ids, completion_mask, 0.7, 20, 0.9)
    assert torch.equal(torch.isinf(proc[m]), torch.isinf(want[m])) and 0 < int(torch.isinf(want[m]).sum()) < int(m.sum())
    finite = m & torch.isfinite(want)
    torch.testing.assert_close(proc[finite], want[finite], atol=1e-5, rtol=0)


@pytest.mark.parametrize("fused", [True, False])
def test_engine_distribution_equal_to_the_loss_reuses_its_log_probs(fused):
    model = tiny_causal_lm("llama")
    prompt_ids, prompt_mask, completion_ids, completion_mask, _ = rollout_batch(3)
    args = (model, prompt_ids, prompt_mask, completion_ids, completion_mask)
    for loss_t, sampling in ((1.0, (1.0, 0, 1.0)), (0.7, (0.7, 0, 1.0)), (1.0, (0.0, 0, 1.0)), (1.0, (1.0, V, 1.0))):
        logp, _, proc = completion_logprobs(*args, fused=fused, temperature=loss_t, sampling=sampling)
        assert torch.equal(proc, logp.detach())  # the same numbers, not a second computation
    # an untempered loss (tempered_logprobs: false) against an engine at T = 0.7: a different distribution
    logp, _, proc = completion_logprobs(*args, fused=fused, temperature=1.0, sampling=(0.7, 0, 1.0))
    tempered, _ = completion_logprobs(*args, fused=fused, temperature=0.7)
    m = completion_mask.bool()
    torch.testing.assert_close(proc[m], tempered[m].detach(), atol=1e-5, rtol=1e-5)
    assert (proc[m] - logp[m]).abs().max() > 1e-3  # (a random tiny model is near uniform: small, but not 0)


def test_fused_path_with_sampling_still_never_makes_the_whole_logits():
    model = tiny_causal_lm("llama_tied")
    prompt_ids, prompt_mask, completion_ids, completion_mask, weights = rollout_batch()
    B = prompt_ids.shape[0]
    with LogitsRecorder(model) as rec:
        logp, _, _ = completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, fused=True,
                                         chunk_tokens=4, sampling=(0.7, 5, 0.9))
        (logp * weights).sum().backward()
    assert rec.max_rows == 4 and rec.logits_shapes == {(B, 0, V)}


# --------------------------------------------------------------------------------------------------------
# the hf engine's own sampling log-probs
# --------------------------------------------------------------------------------------------------------


def test_sample_tokens_reports_the_drawn_tokens_log_prob():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(64, 97, generator=gen) * 2
    for temperature, top_k, top_p in ((1.0, 0, 1.0), (0.7, 5, 1.0), (0.8, 0, 0.9), (1.2, 30, 0.7)):
        lp = torch.empty(64)
        tokens = sample_tokens(logits.clone(), temperature, top_k, top_p, generator=gen, logprobs=lp)
        want = torch.tensor(reference(logits, tokens, temperature, top_k, top_p), dtype=torch.float32)
        torch.testing.assert_close(lp, want, atol=1e-5, rtol=0)


def test_hf_engine_returns_the_log_probs_it_sampled_with():
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=0)
    engine = HFGenerateEngine(model, tok, batch_size=5)  # two generate calls, the second of 3 rows
    prompts = [tok("12+3=")["input_ids"], tok("4+55=")["input_ids"]]
    torch.manual_seed(0)
    batch = engine.generate(prompts, SamplingParams(8, temperature=0.7, top_k=5, top_p=0.9), num_samples=4)
    want = batch_processed(model, batch, 0.7, 5, 0.9)
    m = batch.completion_mask.bool()
    assert batch.sampling_logprobs.shape == batch.completion_ids.shape and m.sum() > 16
    assert torch.isfinite(batch.sampling_logprobs[m]).all() and (batch.sampling_logprobs[~m] == 0).all()
    torch.testing.assert_close(batch.sampling_logprobs[m], want[m], atol=1e-5, rtol=0)
    greedy = engine.generate(prompts, SamplingParams(8, temperature=0.0), num_samples=1)
    assert greedy.sampling_logprobs is None


# --------------------------------------------------------------------------------------------------------
# the correction modes
# --------------------------------------------------------------------------------------------------------


def perturbed_batch():
    """Three answers of four tokens (the third of three); the trainer's log-probs are all log 0.5. The engine
    agrees on answer 0; on answer 1 it gave token 2 a quarter of the trainer's probability (ratio 4); on
    answer 2 every token is a little more likely for the trainer (ratio e^0.3 = 1.35 each, R = e^0.9 = 2.46)."""
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]])
    trainer = torch.full((3, 4), math.log(0.5))
    engine = trainer.clone()
    engine[1, 2] -= math.log(4.0)
    engine[2, :3] -= 0.3
    return trainer, engine * mask, mask


@pytest.mark.parametrize(("mode", "weights"), [
    ("off", [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]),
    ("token_truncate", [[1, 1, 1, 1], [1, 1, 2, 1], [1.3499, 1.3499, 1.3499, 1]]),
    ("token_mask", [[1, 1, 1, 1], [1, 1, 0, 1], [1.3499, 1.3499, 1.3499, 1]]),
    ("sequence_truncate", [[1, 1, 1, 1], [2, 2, 2, 2], [2, 2, 2, 1]]),
    ("sequence_mask", [[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 1]]),
])
def test_each_mode_weights_the_perturbed_tokens_by_hand(mode, weights):
    trainer, engine, mask = perturbed_batch()
    w, stats = importance_weights(trainer, engine, mask, mode=mode, cap=2.0)
    torch.testing.assert_close(w, torch.tensor(weights, dtype=torch.float32), atol=1e-4, rtol=0)  # padding: 1
    m = importance_metrics(stats)
    assert m["is/logp_gap_max"] == pytest.approx(math.log(4.0), abs=1e-6)
    assert m["is/logp_diff_abs"] == pytest.approx((math.log(4.0) + 3 * 0.3) / 11, abs=1e-6)
    assert m["is/ratio_max"] == pytest.approx(4.0, abs=1e-5) and m["is/ratio_min"] == pytest.approx(1.0, abs=1e-6)
    assert m["is/ratio_mean"] == pytest.approx((7 + 4 + 3 * math.exp(0.3)) / 11, abs=1e-6)
    lowered = {"token_truncate": (1, 0), "token_mask": (0, 1), "sequence_truncate": (7, 0), "sequence_mask": (0, 7)}
    capped, masked = lowered.get(mode, (0, 0))  # tokens whose weight the cap lowered / the mask zeroed
    assert (m["is/capped_frac"], m["is/masked_frac"]) == (pytest.approx(capped / 11), pytest.approx(masked / 11))


def test_a_token_the_trainer_excludes_weighs_zero_and_nothing_is_nan():
    """Top-k put the engine's token outside the trainer's set (-inf): ratio 0, weight 0, a finite loss and gradient."""
    logp = torch.tensor([[-0.5, -1.0]], requires_grad=True)  # the loss's own log-probs (full vocabulary)
    proc = torch.tensor([[-0.4, -math.inf]])
    engine = torch.tensor([[-0.4, -2.0]])
    for mode in ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"):
        w, stats = importance_weights(proc, engine, torch.ones(1, 2), mode=mode, cap=2.0)
        assert w[0, 1] == 0 and not torch.isnan(w).any()
        m = importance_metrics(stats)
        assert m["is/outside_frac"] == 0.5 and m["is/ratio_min"] == 0.0 and m["is/logp_gap_max"] == pytest.approx(0.0)
        assert all(math.isfinite(v) for v in m.values())
        loss, _ = policy_loss(logp, torch.ones(1, 2), torch.tensor([[1.0]]) * w)
        loss.backward()
        assert torch.isfinite(logp.grad).all() and logp.grad[0, 1] == 0
        logp.grad = None


def test_on_long_answers_sequence_masking_drops_answers_token_truncation_keeps_them():
    """The default's reason: a per-token log-gap of spread 0.02 (unbiased noise) over 3,584-token answers. TRL's
    sequence_mask (cap 3) drops about a fifth of the answers whole and spreads the others' weights; token
    truncation at 2 touches no token."""
    gen = torch.Generator().manual_seed(0)
    B, T = 256, 3584
    trainer = torch.full((B, T), -1.0)
    engine = trainer + 0.02 * torch.randn(B, T, generator=gen)
    mask = torch.ones(B, T)
    w_seq, _ = importance_weights(trainer, engine, mask, mode="sequence_mask", cap=3.0)
    w_tok, s_tok = importance_weights(trainer, engine, mask, mode="token_truncate", cap=2.0)
    dropped = float((w_seq[:, 0] == 0).float().mean())
    assert 0.12 < dropped < 0.25  # P(N(0, 0.02^2 * 3584) > log 3) = 0.18
    kept = w_seq[w_seq[:, 0] > 0, 0]
    assert kept.min() < 0.2 and kept.max() > 2.0  # the answers kept are reweighted by noise
    assert s_tok["capped"] == 0 and float(w_tok.min()) > 0.9 and float(w_tok.max()) < 1.1


# --------------------------------------------------------------------------------------------------------
# the switch
# --------------------------------------------------------------------------------------------------------


def config(**rollout):
    return from_dict({"model": {"name_or_path": "tiny"}, "data": {"dataset": "builtin:arithmetic"},
                      "rollout": rollout}).validate()


def test_auto_corrects_vllm_engines_and_leaves_hf_alone():
    assert config(engine="vllm").rollout.importance() == ("token_truncate", 2.0)
    assert config(engine="vllm_server").rollout.importance() == ("token_truncate", 2.0)
    assert config(engine="hf").rollout.importance() == ("off", 2.0)
    assert config().rollout.importance() == ("off", 2.0)  # hf is the default engine
    assert config(engine="vllm", importance_correction="off").rollout.importance()[0] == "off"
    assert config(engine="hf", importance_correction="sequence_mask").rollout.importance() == ("sequence_mask", 2.0)


def test_a_recipe_that_set_importance_cap_keeps_its_meaning():
    """Before, `importance_cap: C` alone meant token truncation at C wherever the engine reported log-probs."""
    assert config(engine="vllm", importance_cap=3.0).rollout.importance() == ("token_truncate", 3.0)
    assert config(engine="vllm_server", importance_cap=1.5).rollout.importance() == ("token_truncate", 1.5)
    assert config(engine="hf", importance_cap=3.0).rollout.importance() == ("off", 3.0)  # hf had none to correct


def test_bad_importance_settings_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="importance_cap must be > 0"):
        config(engine="vllm", importance_cap=0.0)
    with pytest.raises(ValueError, match=r"no effect with rollout\.importance_correction: off"):
        config(engine="vllm", importance_correction="off", importance_cap=2.0)
    with pytest.raises(ConfigError, match="importance_correction"):
        config(importance_correction="tis")
    with pytest.raises(ValueError, match="resolve 'auto'"):
        importance_weights(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), mode="auto", cap=2.0)
    assert resolve_correction("token_mask", "vllm", 5.0) == ("token_mask", 5.0)


# --------------------------------------------------------------------------------------------------------
# training runs
# --------------------------------------------------------------------------------------------------------


def run(cfg, engine=None, seed=0, record_grads=False):
    """Train ``cfg`` on the tiny model; ``engine(model, tok)`` builds the engine (default: the config's).
    Returns (trainer, history, the gradient of each update when ``record_grads``)."""
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=seed)
    trainer = Trainer.from_config(cfg, model=model, tokenizer=tok, engine=engine(model, tok) if engine else None)
    grads = []
    if record_grads:
        step = trainer._optimizer_step

        def recording(skipped):
            grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
            return step(skipped)

        trainer._optimizer_step = recording
    return trainer, trainer.train(), grads


def test_hf_engine_logs_is_metrics_on_every_step_with_no_gap(tmp_path):
    """Steps that update and steps skipped for lack of signal: the gap between generate's float32 sampling
    log-probs and the trainer's, at T = 0.7 with top-k 5 and an untempered loss, is float rounding."""
    rollout = {"group_size": 4, "max_completion_length": 6, "temperature": 0.7, "top_k": 5}
    skipped_cfg = tiny_config(tmp_path / "skip", rewards=[{"name": "test_importance:zero_reward"}], rollout=rollout,
                              algorithm={"preset": "gpg", "tempered_logprobs": False, "resample_threshold": 0.0})
    trained_cfg = tiny_config(tmp_path / "train", rewards=[{"name": "test_importance:length_reward"}], rollout=rollout,
                              algorithm={"preset": "gpg", "tempered_logprobs": False, "resample_threshold": 0.0},
                              train={"steps": 3, "prompts_per_step": 4}, optim={"lr": 1e-2})
    histories = [run(skipped_cfg)[1], run(trained_cfg)[1]]
    assert [m["optim/skipped"] for m in histories[0]] == [1.0, 1.0]
    assert any(m["optim/skipped"] == 0.0 for m in histories[1])  # steps that updated the model
    for m in histories[0] + histories[1]:
        assert m["is/logp_diff_abs"] < 1e-5 and m["is/logp_gap_max"] < 1e-4
        assert abs(m["is/ratio_max"] - 1) < 1e-4 and abs(m["is/ratio_min"] - 1) < 1e-4 and m["is/ratio_std"] < 1e-4
        assert m["is/weight_mean"] == 1.0 and m["is/capped_frac"] == m["is/masked_frac"] == m["is/outside_frac"] == 0


def test_like_with_like_shows_no_gap_where_the_old_comparison_showed_a_large_one(tmp_path):
    """An engine (a stand-in of vLLM on the same float32 weights) reports processed log-probs at T = 0.7,
    top-k 5; the loss is untempered (tempered_logprobs: false). Processed against processed: no gap, nothing
    capped. What the code compared before (the loss's full-vocabulary log-probs) differs by far more."""
    cfg = tiny_config(tmp_path, rewards=[{"name": "helpers:count_sevens"}],
                      rollout={"group_size": 4, "max_completion_length": 6, "temperature": 0.7, "top_k": 5,
                               "engine": "vllm"},
                      algorithm={"preset": "gpg", "tempered_logprobs": False, "resample_threshold": 0.0},
                      train={"steps": 2, "prompts_per_step": 4}, optim={"lr": 1e-2})

    def engine(model, tok):
        return ModelSampledEngine(model, tok, 0.7, 5)

    trainer, history, _ = run(cfg, engine)
    assert trainer.importance_mode == "token_truncate"  # on, as for any vLLM engine
    for m in history:
        assert m["is/logp_diff_abs"] < 1e-5 and m["is/logp_gap_max"] < 1e-4 and abs(m["is/ratio_max"] - 1) < 1e-4
        assert m["is/capped_frac"] == 0 and m["is/masked_frac"] == 0 and m["is/outside_frac"] == 0
        assert m["is/weight_mean"] == pytest.approx(1.0, abs=1e-5)
    batch, _ = trainer.rollouts.collect()
    m = batch.completion_mask.bool()
    with torch.no_grad():
        loss_logp = trainer._logp(trainer.model, batch, slice(None), False)[0]
    old_gap = (loss_logp - batch.sampling_logprobs)[m]
    assert old_gap.abs().mean() > 0.3 and (old_gap < 0).float().mean() > 0.9  # ratios < 1: "corrected" away


def test_off_runs_the_papers_loss_exactly_and_the_default_corrects(tmp_path):
    """The same answers and rewards: with engine log-probs that disagree (PerturbedScriptedEngine), `off` gives
    exactly the gradient of the uncorrected loss (an engine that reports none), and the default
    token_truncate gives the gradient of the loss with the hand-checked weights."""
    def cfg(name, **rollout):
        return tiny_config(tmp_path / name, rewards=[{"name": "helpers:has_one"}],
                           rollout={"group_size": 4, "max_completion_length": 6, "engine": "vllm_server", **rollout},
                           algorithm={"preset": "gpg", "resample_threshold": 0.0},
                           train={"steps": 1, "prompts_per_step": 4, "micro_batch_size": 5})

    def perturbed(model, tok):
        return PerturbedScriptedEngine(tok)

    def plain(model, tok):
        return ScriptedEngine(tok)

    _, _, paper = run(cfg("paper"), plain, record_grads=True)
    off, off_history, off_grads = run(cfg("off", importance_correction="off"), perturbed, record_grads=True)
    on, on_history, on_grads = run(cfg("on"), perturbed, record_grads=True)
    assert off.importance_mode == "off" and on.importance_mode == "token_truncate"
    for name, g in paper[0].items():
        assert torch.equal(off_grads[0][name], g), name
    assert max((on_grads[0][n] - g).abs().max().item() for n, g in paper[0].items()) > 1e-6
    # both runs measured the same gap; only the default acted on it
    assert off_history[0]["is/logp_diff_abs"] == on_history[0]["is/logp_diff_abs"] > 0.1
    assert off_history[0]["is/weight_mean"] == 1.0 and on_history[0]["is/weight_mean"] != 1.0
    # the default's gradient is that of -A * w * logp with w = min(pi_train / pi_engine, 2) (global token mean)
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=0)
    fresh = Trainer.from_config(cfg("check"), model=model, tokenizer=tok, engine=PerturbedScriptedEngine(tok))
    batch, info = fresh.rollouts.collect()
    adv, _ = fresh._advantages(batch.rewards, info["rollout/valid_groups_counted"], len(batch))
    logp, _, proc = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                        batch.completion_mask, sampling=(1.0, 0, 1.0))
    ratio = torch.exp(proc - token_id_logprobs(batch))
    w = torch.where(batch.completion_mask.bool(), ratio.clamp(max=2.0), 1.0)
    assert (ratio[batch.completion_mask.bool()] > 2.0).any()  # the cap is reached on some tokens
    mask = batch.completion_mask
    loss = -(adv.unsqueeze(1) * w * logp * mask).sum() / mask.sum()
    loss.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(on_grads[0][n], p.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.distributed
@pytest.mark.skipif(not Path(sys.executable).with_name("accelerate").exists(), reason="accelerate launcher not installed")
def test_two_processes_reduce_is_metrics_over_the_global_batch(tmp_path):
    """Means over every process's tokens, and the max / min of all of them (not a mean of per-process maxima)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent / "src")]), "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    script = str(HERE / "dist_importance.py")
    results = []
    for cmd, out in (([sys.executable], tmp_path / "one"),
                     ([str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
                       "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                       "--main_process_port", "29523"], tmp_path / "two")):
        proc = subprocess.run([*cmd, script, str(out)], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        results.append(torch.load(out / "result.pt", weights_only=False))
    one, two = results
    assert one["world"] == 1 and two["world"] == 2
    keys = [k for k in one["metrics"] if k.startswith("is/")]
    assert len(keys) == 10 and one["metrics"]["is/capped_frac"] > 0
    for k in keys:
        assert two["metrics"][k] == pytest.approx(one["metrics"][k], rel=1e-6, abs=1e-7), k
    # the max and min are those of the two processes' batches together, which differ: a mean of per-process
    # extremes (or rank 0's alone) would not give them
    local = [torch.load(tmp_path / "two" / f"stats-{rank}.pt") for rank in (0, 1)]
    assert local[0]["gap_max"] != local[1]["gap_max"] and local[0]["ratio_min"] != local[1]["ratio_min"]
    assert two["metrics"]["is/logp_gap_max"] == pytest.approx(max(s["gap_max"] for s in local), rel=1e-6)
    assert two["metrics"]["is/ratio_min"] == pytest.approx(min(s["ratio_min"] for s in local), rel=1e-6)
    for k, v in one["params"].items():
        torch.testing.assert_close(two["params"][k], v, atol=2e-6, rtol=1e-5)


def test_docs_describe_the_switch_and_its_metrics():
    text = (HERE.parent / "docs" / "engines.md").read_text()
    section = text[text.index("## Importance sampling"):]
    for needed in ("importance_correction: off", "token_truncate", "sequence_mask", "processed_logprobs",
                   "is/logp_diff_abs", "is/logp_gap_max", "is/ratio_std", "is/capped_frac", "top_k: 50"):
        assert needed in section, needed
