"""GSPO, CISPO, RLOO and REINFORCE++ (gpgrl.algorithms.objectives) against numbers worked out by hand from each
paper's formula."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from gpgrl.algorithms import get_preset, make_objective, policy_loss
from gpgrl.algorithms.objective import AdvantageInputs, LossInputs, StepLogprobs


def _inputs(logp, mask, adv, old=None, ref=None, num_sequences=None):
    mask = torch.tensor(mask)
    return LossInputs(logp, mask, adv, num_tokens=int(mask.sum()), num_sequences=num_sequences or len(mask),
                      max_completion_length=mask.shape[1], old_logp=old, ref_logp=ref)


def test_gspo_clips_one_ratio_per_answer():
    """arXiv 2507.18071 eq. 5 and 7: s_i = exp(mean_t(log pi - log pi_old)); loss = -1/G sum_i min(s_i A_i,
    clip(s_i, 1 - 3e-4, 1 + 4e-4) A_i). Answer 1: log-ratios (0.1, 0.1) -> s = e^0.1 = 1.1052, clipped to
    1.0004 (A = 1): -1.0004, no gradient. Answer 2: log-ratio 0.0002 -> s = e^0.0002, inside (A = -1):
    +s; its gradient d/d logp = s / (1 token) / (G = 2)."""
    logp = torch.tensor([[-1.0, -2.0], [-3.0, 0.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[-1.1, -2.1], [-3.0002, 0.0]], dtype=torch.float64)
    obj = make_objective("gspo")
    loss, m = obj.loss(_inputs(logp, [[1, 1], [1, 0]], torch.tensor([1.0, -1.0], dtype=torch.float64), old=old))
    s2 = math.exp(0.0002)
    assert float(loss.detach()) == pytest.approx((-(1 + 4e-4) + s2) / 2, abs=1e-12)
    loss.backward()
    assert logp.grad.flatten().tolist() == pytest.approx([0.0, 0.0, s2 / 2, 0.0], abs=1e-12)
    assert m["clip_frac_high"] == pytest.approx(2 / 3)  # both tokens of answer 1 carry its clipped ratio
    # a token-level ratio (GRPO's) would see two tokens with ratio e^0.1 and clip each: GSPO's one ratio per
    # answer, from the mean log-ratio, is what differs. Here a tokenwise mix: log-ratios (0.3, -0.3) average to
    # s = 1, inside the clip, where per token both would be outside it.
    logp = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    loss, m = obj.loss(_inputs(logp, [[1, 1]], torch.tensor([1.0], dtype=torch.float64),
                               old=torch.tensor([[-1.3, -1.7]], dtype=torch.float64)))
    assert float(loss.detach()) == pytest.approx(-1.0) and m["clip_frac_high"] == 0.0
    loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([-0.5, -0.5])  # -A * s / |y| on each token


def test_cispo_clips_the_weight_and_keeps_every_tokens_gradient():
    """arXiv 2506.13585 eq. 4 and 5: loss = -1/sum|o| sum sg(clip(r, 1 - eps_low, 1 + eps_high)) A log pi.
    log pi = (-1, -2), log pi_old = (-1.5, -2): r = (e^0.5, 1); eps_high = 0.2 -> w = (1.2, 1); A = 2:
    loss = -(1.2 * 2 * -1 + 1 * 2 * -2) / 2 = 3.2; d loss / d log pi = -w A / 2 = (-1.2, -1)."""
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    old = torch.tensor([[-1.5, -2.0]])
    loss, m = make_objective(get_preset("cispo", epsilon_high=0.2)).loss(_inputs(logp, [[1, 1]], torch.tensor([2.0]),
                                                                                old=old))
    assert float(loss.detach()) == pytest.approx(3.2)
    loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([-1.2, -1.0])
    assert m["clip_frac_high"] == 0.5 and m["ratio_mean"] == pytest.approx((math.exp(0.5) + 1) / 2)
    # PPO's clipped surrogate (GRPO's, same clip) drops the clipped token's gradient altogether
    logp2 = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ppo, _ = policy_loss(logp2, torch.ones(1, 2), torch.tensor([2.0]), old_logp=old,
                         preset=get_preset("grpo", beta=0.0, loss_agg="token_mean"))
    ppo.backward()
    assert logp2.grad[0].tolist() == pytest.approx([0.0, -1.0])
    # the preset: no lower bound (weights >= 0), an upper one of 5 (TRL's cispo)
    assert (get_preset("cispo").epsilon_low, get_preset("cispo").epsilon_high) == (1.0, 4.0)


def test_rloo_baseline_is_the_mean_of_the_other_answers():
    """arXiv 2402.14740 eq. 5: A_i = r_i - 1/(G-1) sum_{j != i} r_j, checked against that sum directly; a NaN
    reward leaves its answer out of the others' baselines."""
    rewards = [0.0, 1.0, 0.25, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, float("nan"), 1.0, 0.0]
    obj = make_objective("rloo")
    r = torch.tensor(rewards, dtype=torch.float64)
    adv, stats = obj.advantages(AdvantageInputs(r, 4, slice(0, 12), 3, 0.0, lambda: None, lambda t: t))
    expected = []
    for g in range(3):
        group = rewards[4 * g: 4 * g + 4]
        for i, ri in enumerate(group):
            others = [x for j, x in enumerate(group) if j != i and not math.isnan(x)]
            expected.append(0.0 if math.isnan(ri) else ri - sum(others) / len(others))
    assert adv.tolist() == pytest.approx(expected, abs=1e-12)
    assert adv[:4].tolist() == pytest.approx([-0.75, 0.5833333333, -0.4166666667, 0.5833333333])  # 0 - 2.25/3 ...
    assert stats["alpha"] == 1.0 and stats["num_degenerate_groups"] == 1.0
    # the loss: REINFORCE on whole answers, -1/B sum_i A_i sum_t log pi: -(1 * -3 + 0.5 * -3) / 2 = 2.25
    loss, _ = obj.loss(_inputs(torch.tensor([[-1.0, -2.0], [-3.0, 0.0]]), [[1, 1], [1, 0]], torch.tensor([1.0, 0.5])))
    assert float(loss) == pytest.approx(2.25)


def test_reinforce_pp_puts_the_kl_in_the_reward_and_normalises_over_the_batch():
    """arXiv 2501.03262: A_t = r - beta sum_{s >= t} KL_s, KL_s = log pi_old - log pi_ref (k1), then
    (A - mean) / std over every token of the global batch. Rewards (1, 0) for answers of 2 and 1 tokens,
    KL (0.5, 0) and (0), beta 0.1: returns (0.95, 1) and (0)."""
    obj = make_objective(get_preset("reinforce_pp", beta=0.1))
    assert obj.needs.old_logprobs and obj.needs.ref_logprobs and obj.needs.token_advantages
    mask = torch.tensor([[1, 1], [1, 0]])
    old = torch.tensor([[-1.0, -2.0], [-1.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.0], [-1.0, 0.0]])
    logprobs = StepLogprobs(old=[old], ref=[ref], mask=[mask])
    adv, stats = obj.advantages(AdvantageInputs(torch.tensor([1.0, 0.0], dtype=torch.float64), 2, slice(0, 2), 1, 0.0,
                                                lambda: logprobs, lambda t: t))
    returns = [1 - 0.1 * 0.5, 1.0, 0.0]
    mean, std = statistics.fmean(returns), statistics.stdev(returns)
    assert adv.flatten().tolist() == pytest.approx([(returns[0] - mean) / std, (returns[1] - mean) / std,
                                                    (returns[2] - mean) / std, 0.0], abs=1e-7)
    assert stats["return_std"] == pytest.approx(std) and stats["no_signal"] == 0.0
    # split over two processes (one answer each), the sums over both give the same advantages
    halves = [StepLogprobs(old=[old[i:i + 1]], ref=[ref[i:i + 1]], mask=[mask[i:i + 1]]) for i in range(2)]
    sums = [torch.tensor([2.0, 1.95, 0.95 ** 2 + 1.0], dtype=torch.float64),
            torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)]
    for rank in range(2):
        part, _ = obj.advantages(AdvantageInputs(torch.tensor([1.0, 0.0], dtype=torch.float64), 2, slice(rank, rank + 1),
                                                 1, 0.0, lambda r=rank: halves[r], lambda t: sums[0] + sums[1]))
        assert part.flatten().tolist() == pytest.approx(adv[rank].tolist(), abs=1e-12)
    # the loss has no KL term (it is in the reward): on-policy, -sum(A_t)/tokens
    logp = old.clone().requires_grad_(True)
    loss, m = obj.loss(_inputs(logp, mask.tolist(), adv, old=old, ref=ref))
    assert "kl" not in m
    assert float(loss.detach()) == pytest.approx(-float((adv * mask).sum()) / 3, abs=1e-7)


def test_reinforce_pp_with_equal_rewards_and_no_kl_has_no_signal():
    obj = make_objective(get_preset("reinforce_pp", beta=0.0))
    assert not obj.needs.ref_logprobs
    logprobs = StepLogprobs(old=[torch.zeros(2, 2)], ref=[None], mask=[torch.ones(2, 2)])
    adv, stats = obj.advantages(AdvantageInputs(torch.tensor([1.0, 1.0], dtype=torch.float64), 2, slice(0, 2), 1, 0.0,
                                                lambda: logprobs, lambda t: t))
    assert adv.tolist() == [[0.0, 0.0], [0.0, 0.0]] and stats["no_signal"] == 1.0 and obj.skip_step(stats)


@pytest.mark.parametrize("name", ["gspo", "cispo"])
def test_objectives_without_a_kl_term_refuse_beta(name):
    with pytest.raises(ValueError, match=f"{name} has no KL term .*set algorithm.beta: 0"):
        make_objective(get_preset(name, beta=0.04))
