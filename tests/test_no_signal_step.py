"""A step whose groups carry no signal: the vision forks step the optimizer on it, gpgrl's default skips it.

The vision forks (AMAP-ML/GPG at e096da8: R1-V/src/r1-v/src/open_r1/trainer/grpo_trainer.py,
Visual-RFT/src/virft/src/open_r1/trainer/grpo_trainer.py,
VisualThinker-R1-Zero/src/open-r1-multimodal/src/open_r1/trainer/grpo_trainer.py) resample in
``_generate_and_score_completions`` for ``max_resample_attempts = 20`` draws; the condition
``current_resample_attempt != max_resample_attempts - 1`` takes the 20th draw as it is, with or without a
group with a signal. ``compute_loss`` returns the loss (zero advantages: a zero gradient, divided by
``inverse_alpha + 1e-5``), and transformers' ``Trainer`` (not overridden there) calls the optimizer: AdamW
moves the weights through its momentum. So the vision recipes set ``skip_no_signal: false``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from gpgrl.rollout.engine import RolloutEngine, as_prompts
from helpers import scripted_batch

ROOT = Path(__file__).resolve().parents[1]
VISION_RECIPES = sorted((ROOT / "recipes").glob("vision-*.yaml"))


def test_adamw_moves_the_weights_on_a_zero_gradient():
    """The premise, by hand: one weight w = 1, lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay.
    Step 1, gradient 1: m = 0.1, v = 0.001; m_hat = 1, v_hat = 1, w -= 1e-3 -> 0.999.
    Step 2, gradient 0: m = 0.09, v = 0.000999; m_hat = 0.09 / 0.19 = 0.473684,
    v_hat = 0.000999 / 0.001999 = 0.499750, w -= 1e-3 x 0.473684 / 0.706929 = 6.7005e-4 -> 0.99832995."""
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = torch.optim.AdamW([w], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    for grad in (1.0, 0.0):
        w.grad = torch.tensor([grad], dtype=torch.float64)
        opt.step()
    assert float(w.detach()) == pytest.approx(1 - 1e-3 - 6.7005e-4, abs=1e-8)


class SwitchedEngine(RolloutEngine):
    """Every group with a signal while ``signal`` is set (answers alternate between one with a '1' and one
    without, for ``helpers:has_one``), every group without one (G identical answers) once it is cleared."""

    def __init__(self, tokenizer):
        self.tok, self.signal, self.calls = tokenizer, True, 0

    def generate(self, prompts, params, num_samples):
        self.calls += 1
        prompts = [p.ids for p in as_prompts(prompts)]
        texts = [("<answer>1</answer>" if j % 2 and self.signal else "<answer>22</answer>")
                 for _ in prompts for j in range(num_samples)]
        return scripted_batch(self.tok, prompts, texts, num_samples)


def _expected_after_zero_gradient(trainer) -> dict[str, torch.Tensor]:
    """Each weight after one more AdamW step on a zero gradient, from the optimizer's state (torch's AdamW:
    m = b1 m, v = b2 v, w = w (1 - lr wd) - lr / (1 - b1^t) x m / (sqrt(v) / sqrt(1 - b2^t) + eps))."""
    group = trainer.optimizer.param_groups[0]
    (b1, b2), eps, lr, wd = group["betas"], group["eps"], group["lr"], group["weight_decay"]
    expected = {}
    for name, p in trainer.model.named_parameters():
        state = trainer.optimizer.state[p]
        t = float(state["step"]) + 1
        m, v = b1 * state["exp_avg"], b2 * state["exp_avg_sq"]
        denom = v.sqrt() / (1 - b2**t) ** 0.5 + eps
        expected[name] = p.detach() * (1 - lr * wd) - lr / (1 - b1**t) * m / denom
    return expected


def _vision_algorithm(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["algorithm"]


@pytest.mark.parametrize("path", VISION_RECIPES, ids=lambda p: p.stem)
def test_the_vision_recipes_step_on_a_group_without_signal_as_their_fork(path):
    algo = _vision_algorithm(path)
    assert algo["skip_no_signal"] is False and algo["resample_threshold"] == 0.4
    from gpgrl.recipe import load_config

    assert load_config(path).algo.skip_no_signal is False and load_config(path).algo.max_resample_draws == 20


@pytest.mark.parametrize("fork", [True, False], ids=["vision-fork", "gpgrl-default"])
def test_a_no_signal_step_moves_the_weights_only_as_the_fork_does(tmp_path, fork):
    """Step 1 has a signal (Adam's momentum becomes nonzero); step 2 has none in any of its 20 draws. With the
    vision recipe's algorithm the weights move by exactly AdamW's momentum step; with gpgrl's default (the
    same settings, skip_no_signal left at true) they stay as they were."""
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    algo = _vision_algorithm(ROOT / "recipes" / "vision-r1v-geoqa_qwen2.5-vl-3b_gpg.yaml")
    if not fork:
        algo = {k: v for k, v in algo.items() if k != "skip_no_signal"}
    cfg = tiny_config(tmp_path, rewards=[{"name": "helpers:has_one"}], algorithm=algo,
                      train={"steps": 2, "prompts_per_step": 4})
    assert cfg.algo.skip_no_signal is not fork and cfg.algo.resample_count == "gathered"
    tok = build_char_tokenizer()
    engine = SwitchedEngine(tok)
    trainer = Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok, engine=engine)
    (first,) = trainer.train(stop_at_step=1)
    assert first["adv/no_signal"] == 0.0 and first["optim/skipped"] == 0.0 and engine.calls == 1
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    expected = _expected_after_zero_gradient(trainer)
    engine.signal = False
    (second,) = trainer.train(stop_at_step=2)
    assert engine.calls == 1 + 20  # the fork's budget: 20 draws, the last one taken as it is
    assert second["rollout/draws"] == 20.0 and second["adv/no_signal"] == 1.0
    after = dict(trainer.model.named_parameters())
    moved = sum(int(not torch.equal(after[n].detach(), before[n])) for n in before)
    if fork:
        assert second["optim/skipped"] == 0.0 and second["optim/grad_norm"] == 0.0
        assert moved == len(before)  # every weight moved, on a zero gradient
        for name, p in after.items():
            torch.testing.assert_close(p.detach(), expected[name], rtol=1e-5, atol=1e-7)
    else:
        assert second["optim/skipped"] == 1.0 and moved == 0
