"""``policy_loss`` and friends: exact gradients, micro-batch invariance, clipping, KL."""

from __future__ import annotations

import math

import pytest
import torch

from gpgrl.algorithms import (
    AlgorithmConfig,
    get_preset,
    masked_mean,
    masked_sum,
    policy_loss,
)

# Six answers with varied lengths, T = 7: 22 completion tokens in the batch.
LENGTHS = [1, 5, 3, 7, 2, 4]
T = 7
LOSS_CONSTANT = 7  # Dr. GRPO: max_completion_length


def make_mask(lengths: list[int], width: int = T) -> torch.Tensor:
    return (torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).to(torch.int64)


def make_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B = len(LENGTHS)
    mask = make_mask(LENGTHS)
    logp = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3  # [B, T]
    # Padding holds garbage (even -inf): the mask must keep it out of values and gradients.
    logp = torch.where(mask.bool(), logp, torch.full_like(logp, -1e4))
    old_logp = logp + 0.4 * torch.randn(B, T, generator=g, dtype=torch.float64)  # ratios well off 1
    ref_logp = logp + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    return logp, mask, adv, old_logp, ref_logp


# ---------------------------------------------------------------------------------------------
# GPG: value and exact gradient
# ---------------------------------------------------------------------------------------------


def test_gpg_hand_value_and_gradient():
    # Two answers of 2 and 1 tokens, A = (+1, -1):
    # L = -(1*(-1) + 1*(-2) + (-1)*(-3)) / 3 = 0; dL/dlogp = -A * mask / 3.
    logp = torch.tensor([[-1.0, -2.0], [-3.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, metrics = policy_loss(logp, mask, torch.tensor([1.0, -1.0]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[-1 / 3, -1 / 3], [1 / 3, 0.0]]), rtol=1e-7, atol=0)
    assert metrics["num_tokens"] == 3.0 and metrics["pg_loss"] == 0.0


def test_gpg_gradient_is_minus_advantage_over_num_tokens():
    logp, mask, adv, _, _ = make_batch()
    logp.requires_grad_()
    loss, metrics = policy_loss(logp, mask, adv, preset="gpg")
    loss.backward()
    expected = -adv.unsqueeze(1) * mask / 22
    assert torch.allclose(logp.grad, expected, rtol=1e-13, atol=1e-15)
    assert (logp.grad[mask == 0] == 0).all()  # padding gets exactly no gradient
    # loss = -sum_i A_i sum_t logp_it / 22, computed here independently
    by_hand = -sum(adv[i] * logp[i, : LENGTHS[i]].sum() for i in range(6)) / 22
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-12)
    assert metrics["num_tokens"] == 22.0


def test_gpg_global_num_tokens_sets_denominator():
    logp, mask, adv, _, _ = make_batch()
    logp.requires_grad_()
    loss, metrics = policy_loss(logp, mask, adv, num_tokens=100)
    loss.backward()
    assert torch.allclose(logp.grad, -adv.unsqueeze(1) * mask / 100, rtol=1e-13, atol=1e-15)
    assert metrics["num_tokens"] == 22.0  # metrics report this piece's own token count
    # a tensor count works too
    loss_t, _ = policy_loss(logp, mask, adv, num_tokens=torch.tensor(100))
    assert loss_t.item() == pytest.approx(loss.item(), rel=1e-14)


def test_empty_mask_gives_zero_loss_not_nan():
    logp = torch.zeros(2, 3, requires_grad=True)
    loss, _ = policy_loss(logp, torch.zeros(2, 3), torch.tensor([1.0, -1.0]))
    assert loss.item() == 0.0
    loss.backward()
    assert (logp.grad == 0).all()


# ---------------------------------------------------------------------------------------------
# Micro-batching: pieces called with the global counts add up to the full batch
# ---------------------------------------------------------------------------------------------

SPLITS = {"1+5": [1, 5], "2+2+2": [2, 2, 2], "3+3": [3, 3], "6 singles": [1] * 6, "4+1+1": [4, 1, 1]}
PRESET_CASES = {
    "gpg": get_preset("gpg"),
    "grpo": get_preset("grpo"),  # ratio + clip + k3 KL, per-answer token mean
    "dr_grpo": get_preset("dr_grpo"),  # token sum / (num answers * constant)
    "dapo": get_preset("dapo"),  # clip-higher, global token mean
    "gpg_seq_mean": get_preset("gpg", loss_agg="seq_mean_token_mean"),
    "gpg_seq_sum_constant": get_preset("gpg", loss_agg="seq_sum_constant", loss_constant=LOSS_CONSTANT),
    "grpo_token_mean_kl": get_preset("grpo", loss_agg="token_mean"),
}


def full_and_micro_grads(cfg: AlgorithmConfig, sizes: list[int], global_counts: bool, average: bool = False):
    """Gradient w.r.t. logp of the full batch, and the sum of the micro-batches' gradients.

    ``global_counts=False`` is the usual mistake: each piece normalises by its own counts (and, with
    ``average``, the pieces are averaged as in naive gradient accumulation).
    """
    logp, mask, adv, old_logp, ref_logp = make_batch()
    kwargs = {"loss_constant": LOSS_CONSTANT}

    full_logp = logp.clone().requires_grad_()
    full_loss, _ = policy_loss(
        full_logp, mask, adv, preset=cfg, old_logp=old_logp, ref_logp=ref_logp, **kwargs
    )
    full_loss.backward()

    micro_logp = logp.clone().requires_grad_()
    total = 0.0
    start = 0
    for n in sizes:
        sl = slice(start, start + n)
        counts = {"num_tokens": int(mask.sum()), "num_sequences": len(LENGTHS)} if global_counts else {}
        loss, _ = policy_loss(
            micro_logp[sl],
            mask[sl],
            adv[sl],
            preset=cfg,
            old_logp=old_logp[sl],
            ref_logp=ref_logp[sl],
            **counts,
            **kwargs,
        )
        if average:
            loss = loss / len(sizes)
        loss.backward()
        total += loss.item()
        start += n
    assert start == len(LENGTHS)
    return full_logp.grad, micro_logp.grad, full_loss.item(), total


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("preset", list(PRESET_CASES))
def test_micro_batches_with_global_counts_sum_to_full_batch(preset, split):
    full_grad, micro_grad, full_loss, micro_total = full_and_micro_grads(
        PRESET_CASES[preset], SPLITS[split], global_counts=True
    )
    assert full_grad.abs().max() > 1e-3  # a real, non-trivial gradient
    assert torch.allclose(micro_grad, full_grad, rtol=1e-12, atol=1e-15)
    assert micro_total == pytest.approx(full_loss, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("split", ["1+5", "2+2+2", "3+3", "6 singles", "4+1+1"])
@pytest.mark.parametrize("preset", ["gpg", "dapo", "grpo_token_mean_kl"])
def test_token_mean_without_global_num_tokens_differs(preset, split):
    # Each piece divides by its own token count (and pieces are averaged): that is not the batch's
    # token mean, because the pieces hold different numbers of tokens. This proves the test above can fail.
    for average in (False, True):
        full_grad, micro_grad, _, _ = full_and_micro_grads(
            PRESET_CASES[preset], SPLITS[split], global_counts=False, average=average
        )
        assert (micro_grad - full_grad).abs().max() > 1e-3


@pytest.mark.parametrize("preset", list(PRESET_CASES))
def test_uneven_split_without_global_counts_differs(preset):
    # 1+5 split: neither the token count nor the answer count of a piece is the batch's.
    full_grad, micro_grad, _, _ = full_and_micro_grads(PRESET_CASES[preset], [1, 5], False, average=True)
    assert (micro_grad - full_grad).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------
# Clipped surrogate
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("old", ["detached", "default"])
def test_on_policy_clipped_surrogate_gradient_equals_gpg(old):
    logp, mask, adv, _, _ = make_batch()
    grads = {}
    for name, cfg in {
        "gpg": get_preset("gpg"),
        "dapo": get_preset("dapo"),
        "grpo": get_preset("grpo", beta=0.0, loss_agg="token_mean"),
    }.items():
        x = logp.clone().requires_grad_()
        old_logp = x.detach() if old == "detached" else None
        loss, metrics = policy_loss(x, mask, adv, preset=cfg, old_logp=old_logp)
        loss.backward()
        grads[name] = x.grad
        if cfg.ratio:
            assert metrics["ratio_mean"] == 1.0
            assert metrics["clip_frac_low"] == 0.0 and metrics["clip_frac_high"] == 0.0
    expected = -adv.unsqueeze(1) * mask / 22
    for name, grad in grads.items():
        assert torch.allclose(grad, expected, rtol=1e-12, atol=1e-15), name


def clip_case(preset: str):
    # Answer 0 has A = +1, answer 1 has A = -1; 3 tokens each, n = 6. logp = log(ratio), old = 0.
    ratios = torch.tensor([[1.5, 1.1, 0.5], [0.5, 1.5, 1.0]], dtype=torch.float64)
    logp = ratios.log().requires_grad_()
    loss, metrics = policy_loss(
        logp,
        torch.ones(2, 3),
        torch.tensor([1.0, -1.0], dtype=torch.float64),
        preset=preset,
        old_logp=torch.zeros(2, 3, dtype=torch.float64),
    )
    loss.backward()
    return loss, metrics, logp.grad


def test_clipped_tokens_get_zero_gradient_hand_case():
    # GRPO-style clip 0.2 / 0.2, no KL, token mean. per token: -min(ratio * A, clip(ratio, .8, 1.2) * A)
    # A=+1: 1.5 -> min(1.5, 1.2) = 1.2 clipped (constant): grad 0
    #       1.1 -> inside the range: grad -A * ratio / 6 = -1.1 / 6
    #       0.5 -> min(0.5, 0.8) = 0.5 (the unclipped, pessimistic side): grad -0.5 / 6
    # A=-1: 0.5 -> min(-0.5, -0.8) = -0.8 clipped: grad 0
    #       1.5 -> min(-1.5, -1.2) = -1.5 unclipped: grad +1.5 / 6
    #       1.0 -> inside: grad +1.0 / 6
    # loss = (-1.2 - 1.1 - 0.5 + 0.8 + 1.5 + 1.0) / 6 = 0.5 / 6
    cfg = get_preset("grpo", beta=0.0, loss_agg="token_mean")
    loss, metrics, grad = clip_case(cfg)
    expected = torch.tensor([[0.0, -1.1, -0.5], [0.0, 1.5, 1.0]], dtype=torch.float64) / 6
    assert torch.allclose(grad, expected, rtol=1e-12, atol=1e-15)
    assert grad[0, 0] == 0.0 and grad[1, 0] == 0.0
    assert loss.item() == pytest.approx(0.5 / 6, rel=1e-12)
    assert metrics["pg_loss"] == pytest.approx(0.5 / 6, rel=1e-12)
    assert metrics["clip_frac_high"] == pytest.approx(1 / 6)  # ratio > 1.2 with A > 0
    assert metrics["clip_frac_low"] == pytest.approx(1 / 6)  # ratio < 0.8 with A < 0
    assert metrics["ratio_mean"] == pytest.approx(6.1 / 6)


def test_dapo_clip_higher():
    # ratio 1.25 with A > 0: clipped by GRPO's 1.2 (zero gradient) but not by DAPO's 1.28.
    logp = torch.tensor([[math.log(1.25)]], dtype=torch.float64)
    old = torch.zeros(1, 1, dtype=torch.float64)
    adv = torch.tensor([1.0], dtype=torch.float64)
    grads = {}
    for name in ("dapo", "grpo"):
        x = logp.clone().requires_grad_()
        cfg = get_preset(name, beta=0.0, loss_agg="token_mean")
        loss, _ = policy_loss(x, torch.ones(1, 1), adv, preset=cfg, old_logp=old)
        loss.backward()
        grads[name] = x.grad.item()
    assert grads["dapo"] == pytest.approx(-1.25, rel=1e-12)  # -A * ratio / 1
    assert grads["grpo"] == 0.0
    assert get_preset("dapo").epsilon_low == 0.2 and get_preset("dapo").epsilon_high == 0.28


# ---------------------------------------------------------------------------------------------
# k3 KL (GRPO)
# ---------------------------------------------------------------------------------------------


def test_k3_kl_hand_case():
    # k3 = exp(d) - d - 1 with d = ref - logp.
    #   d = log 2  -> 2 - log 2 - 1 = 1 - log 2     (0.30685...)
    #   d = 0      -> 0
    #   d = -log 2 -> 1/2 + log 2 - 1 = log 2 - 1/2 (0.19315...)
    # Answer 0: one token (d = log 2); answer 1: two tokens (d = 0, -log 2) + one padding token.
    # A = 0, so the loss is beta * KL only. GRPO: per-answer token mean, then / 2 answers:
    #   loss = 0.04 * ((1 - log 2) + (0 + log 2 - 1/2) / 2) / 2
    # d k3 / d logp = 1 - exp(d): -1, 0, +1/2; times beta / (answer length * 2 answers).
    ln2 = math.log(2)
    logp = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[ln2, 0.0, 0.0], [0.0, -ln2, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 0, 0], [1, 1, 0]])
    loss, metrics = policy_loss(logp, mask, torch.zeros(2, dtype=torch.float64), preset="grpo", ref_logp=ref)
    assert loss.item() == pytest.approx(0.04 * ((1 - ln2) + (ln2 - 0.5) / 2) / 2, rel=1e-12)
    assert metrics["kl"] == pytest.approx(((1 - ln2) + 0 + (ln2 - 0.5)) / 3, rel=1e-12)  # = 0.5 / 3
    assert metrics["pg_loss"] == 0.0
    loss.backward()
    expected = torch.tensor([[-1.0 / 2, 0, 0], [0.0, 0.5 / 4, 0]], dtype=torch.float64) * 0.04
    assert torch.allclose(logp.grad, expected, rtol=1e-12, atol=1e-15)


def test_kl_is_zero_when_policy_equals_reference():
    logp, mask, adv, _, _ = make_batch()
    _, metrics = policy_loss(logp, mask, adv, preset="grpo", ref_logp=logp.clone())
    assert metrics["kl"] == 0.0


# ---------------------------------------------------------------------------------------------
# Dr. GRPO's constant normaliser and GRPO's per-answer mean
# ---------------------------------------------------------------------------------------------


def test_dr_grpo_constant_normaliser():
    # On-policy (ratio 1), per-token loss -A * ratio = -A. Answers of 2 and 1 tokens, A = (1, -1):
    # token sum = -1 - 1 + 1 = -1; 2 answers, constant 4 -> loss = -1 / (2 * 4) = -0.125,
    # gradient -A * ratio / 8 on each real token, whatever the answer's length.
    logp = torch.tensor([[-1.0, -2.0], [-3.0, 0.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0]])
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    loss, _ = policy_loss(logp, mask, adv, preset="dr_grpo", loss_constant=4)
    assert loss.item() == -0.125
    loss.backward()
    assert logp.grad.tolist() == [[-0.125, -0.125], [0.125, 0.0]]
    # The global answer count replaces this piece's: / (4 * 4)
    loss, _ = policy_loss(logp, mask, adv, preset="dr_grpo", loss_constant=4, num_sequences=4)
    assert loss.item() == -1 / 16
    # The config's constant takes precedence over the argument: / (2 * 8)
    cfg = get_preset("dr_grpo", loss_constant=8)
    loss, _ = policy_loss(logp, mask, adv, preset=cfg, loss_constant=4)
    assert loss.item() == -1 / 16


def test_dr_grpo_needs_a_constant():
    with pytest.raises(ValueError, match="loss_constant"):
        policy_loss(torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1), preset="dr_grpo")


def test_grpo_per_answer_mean_weights_short_answers_more():
    # seq_mean_token_mean: answer 0 (2 tokens) and answer 1 (1 token), A = (1, 1), on-policy, no KL:
    # gradient -A / (len * 2): answer 0 tokens -1/4 each, answer 1 token -1/2.
    logp = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    cfg = get_preset("grpo", beta=0.0)
    loss, _ = policy_loss(
        logp, torch.tensor([[1, 1], [1, 0]]), torch.ones(2, dtype=torch.float64), preset=cfg
    )
    assert loss.item() == -1.0  # mean over answers of the token mean of -1
    loss.backward()
    assert logp.grad.tolist() == [[-0.25, -0.25], [-0.5, 0.0]]


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_beta_without_ref_logp_raises():
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2), preset="grpo")


@pytest.mark.parametrize(
    ("logp", "mask", "adv", "match"),
    [
        (torch.zeros(2, 3), torch.ones(2, 4), torch.zeros(2), "must both be"),
        (torch.zeros(6), torch.ones(6), torch.zeros(6), "must both be"),
        (torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(3), "advantages must be"),
        (torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, 1), "advantages must be"),
    ],
)
def test_shape_mismatch_raises(logp, mask, adv, match):
    with pytest.raises(ValueError, match=match):
        policy_loss(logp, mask, adv)


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="valid presets: gpg, grpo, dr_grpo, dapo"):
        policy_loss(torch.zeros(1, 1), torch.ones(1, 1), torch.zeros(1), preset="reinforce")


# ---------------------------------------------------------------------------------------------
# masked helpers (the log-prob kernels are tested in test_logprobs.py)
# ---------------------------------------------------------------------------------------------


def test_masked_helpers_ignore_inf_padding():
    x = torch.tensor([[1.0, -math.inf], [3.0, 4.0], [-math.inf, -math.inf]])
    mask = torch.tensor([[1, 0], [1, 1], [0, 0]])
    assert masked_sum(x, mask).item() == 8.0
    assert masked_mean(x, mask, dim=1).tolist() == [1.0, 3.5, 0.0]  # empty row -> 0
    assert masked_mean(x, mask).item() == pytest.approx(8.0 / 3, rel=1e-6)
