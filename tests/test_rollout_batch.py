"""The one batch type: selecting, concatenating and carrying extra model inputs per row."""

from __future__ import annotations

import pytest
import torch

from gpgrl.algorithms import policy_loss
from gpgrl.algorithms.importance import importance_metrics, importance_weights
from gpgrl.rollout import RolloutBatch


def _batch(prompts, completions, pad=0, **extra):
    from gpgrl.rollout import left_pad, right_pad

    p_ids, p_mask = left_pad(prompts, pad)
    c_ids, c_mask = right_pad(completions, pad)
    return RolloutBatch(p_ids, p_mask, c_ids, c_mask, torch.zeros(len(prompts), dtype=torch.bool),
                        [str(c) for c in completions], **extra)


def test_select_keeps_rows_in_the_given_order_and_trims_padding():
    b = _batch([[5], [6, 7, 8], [9, 9]], [[1, 2, 3], [4], [5, 6]], rewards=torch.tensor([0.0, 1.0, 2.0]),
               records=[{"i": 0}, {"i": 1}, {"i": 2}])
    s = b.select([2, 0])
    assert s.prompt_ids.tolist() == [[9, 9], [0, 5]]  # the 3-token prompt left: one padding column less
    assert s.completion_ids.tolist() == [[5, 6, 0], [1, 2, 3]]
    assert s.rewards.tolist() == [2.0, 0.0] and [r["i"] for r in s.records] == [2, 0]
    assert s.texts == ["[5, 6]", "[1, 2, 3]"]
    assert b.select([1]).completion_ids.tolist() == [[4]]


def test_cat_repads_and_keeps_optional_fields_only_when_every_part_has_them():
    a = _batch([[5]], [[1, 2]], rewards=torch.tensor([1.0]), sampling_logprobs=torch.tensor([[-0.5, -1.0]]))
    b = _batch([[6, 7]], [[3]], rewards=torch.tensor([2.0]), sampling_logprobs=torch.tensor([[-2.0]]))
    c = RolloutBatch.cat([a, b], pad_id=0)
    assert c.prompt_ids.tolist() == [[0, 5], [6, 7]] and c.prompt_mask.tolist() == [[0, 1], [1, 1]]
    assert c.completion_ids.tolist() == [[1, 2], [3, 0]] and c.completion_mask.tolist() == [[1, 1], [1, 0]]
    assert c.sampling_logprobs.tolist() == [[-0.5, -1.0], [-2.0, 0.0]]
    assert c.rewards.tolist() == [1.0, 2.0]
    d = RolloutBatch.cat([a, _batch([[6]], [[3]])], pad_id=0)
    assert d.rewards is None and d.sampling_logprobs is None  # one part lacks them


def test_model_inputs_are_per_row_and_concatenated_for_a_micro_batch():
    img_a = {"pixel_values": torch.ones(4, 3), "image_grid_thw": torch.tensor([[1, 2, 2]])}  # 4 patches
    img_b = {"pixel_values": torch.zeros(2, 3), "image_grid_thw": torch.tensor([[1, 1, 2]])}  # 2 patches
    b = _batch([[1], [1], [2], [2]], [[3], [3], [4], [4]], model_inputs=[img_a, img_a, img_b, img_b])
    mi = b.model_inputs_for([1, 2])
    assert mi["pixel_values"].shape == (6, 3) and mi["image_grid_thw"].tolist() == [[1, 2, 2], [1, 1, 2]]
    picked = b.select([3, 0]).model_inputs_for()["pixel_values"]
    assert picked.shape == (6, 3) and picked[:2].sum() == 0 and picked[2:].sum() == 12  # img_b's 2 rows, then img_a's 4
    moved = b.to("cpu")
    assert moved.model_inputs[0] is moved.model_inputs[1]  # rows of one prompt share their inputs
    with pytest.raises(ValueError, match="model_inputs has 1 rows"):
        _batch([[1], [2]], [[3], [4]], model_inputs=[img_a])


def test_per_token_advantages_weight_each_token():
    """GPG loss with A [B, T]: -(sum A_bt * logp_bt) / tokens; hand numbers."""
    logp = torch.tensor([[-1.0, -2.0], [-3.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0]])
    adv = torch.tensor([[1.0, 0.5], [-1.0, 9.0]])  # the 9 sits on padding and must not count
    loss, _ = policy_loss(logp, mask, adv)
    # -(1*-1 + 0.5*-2 + -1*-3) / 3 = -(−1 − 1 + 3)/3 = -1/3
    assert loss.item() == pytest.approx(-1 / 3)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1 / 3, -0.5 / 3], [1 / 3, 0.0]]))
    with pytest.raises(ValueError, match=r"advantages must be \[B\]=2 or \[B, T\]=\(2, 2\)"):
        policy_loss(logp, mask, torch.ones(3))


def test_importance_weights_scale_gpg_gradients_token_by_token():
    logp = torch.log(torch.tensor([[0.5, 0.2]])).requires_grad_()
    engine = torch.log(torch.tensor([[0.25, 0.4]]))
    mask = torch.tensor([[1, 1]])
    w, stats = importance_weights(logp, engine, mask, mode="token_truncate", cap=1.5)
    m = importance_metrics(stats)
    torch.testing.assert_close(w, torch.tensor([[1.5, 0.5]]))  # 2 capped to 1.5; 0.5 below the cap
    assert m["is/ratio_max"] == pytest.approx(2.0) and m["is/capped_frac"] == 0.5
    assert m["is/weight_mean"] == pytest.approx(1.0)
    # |log 2| and |log 0.5|: both log 2
    assert m["is/logp_diff_abs"] == pytest.approx(0.6931, abs=1e-4)
    loss, _ = policy_loss(logp, mask, torch.tensor([2.0]).unsqueeze(1) * w)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-2.0 * 1.5 / 2, -2.0 * 0.5 / 2]]))  # -A w / N
    assert not w.requires_grad  # the weights are constants for the gradient


def test_cat_pads_the_loss_masks_of_episodes_of_other_widths():
    """Threshold resampling joins draws of different widths: each draw's loss mask is padded with it (a
    single-turn draw's is its completion mask), and select keeps it aligned."""
    ep = RolloutBatch(torch.tensor([[5]]), torch.tensor([[1]]), torch.tensor([[1, 2, 3]]), torch.tensor([[1, 1, 1]]),
                      torch.tensor([False]), ["abc"], loss_mask=torch.tensor([[1, 0, 1]]), episodes=["info"])
    single = RolloutBatch(torch.tensor([[6]]), torch.tensor([[1]]), torch.tensor([[4]]), torch.tensor([[1]]),
                          torch.tensor([False]), ["d"])
    both = RolloutBatch.cat([single, ep], pad_id=0)
    assert both.loss_mask.tolist() == [[1, 0, 0], [1, 0, 1]]
    assert both.episodes is None  # not every row is an episode
    again = RolloutBatch.cat([ep, ep.select([0])], pad_id=0)
    assert again.loss_mask.tolist() == [[1, 0, 1], [1, 0, 1]] and again.episodes == ["info", "info"]
    assert again.select([1]).action_mask.tolist() == [[1, 0, 1]]
