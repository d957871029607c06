"""End-to-end trainer tests on a tiny real transformers model (CPU, no network)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
from gpgrl.train import checkpoint
from gpgrl.train.trainer import Trainer, TrainingError
from helpers import ScriptedEngine, tiny_config


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _trainer(cfg, seed=0, engine=None):
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=seed)
    return Trainer.from_config(cfg, model=model, tokenizer=tok, engine=engine(tok) if engine else None)


def test_reward_goes_up_on_an_easy_task(tmp_path):
    # Reward: the share of '7' characters in an 8-token answer. A random tiny model scores ~1/107.
    cfg = tiny_config(tmp_path, rollout={"group_size": 8, "max_completion_length": 8},
                      train={"steps": 12, "prompts_per_step": 4}, optim={"lr": 1e-2})
    history = _trainer(cfg).train()
    first = sum(m["reward/mean"] for m in history[:3]) / 3
    last = sum(m["reward/mean"] for m in history[-3:]) / 3
    assert first < 0.1
    assert last > first + 0.3, [round(m["reward/mean"], 3) for m in history]
    # metrics.jsonl holds one row per step with the namespaced metrics
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    for key in ("reward/mean", "adv/alpha", "adv/frac_degenerate_groups", "rollout/draws", "rollout/truncation_rate",
                "rollout/completion_length", "loss/entropy", "optim/grad_norm", "optim/lr", "perf/tokens_per_s"):
        assert key in rows[-1], key
    # the final checkpoint loads in plain transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = checkpoint.latest_checkpoint(tmp_path / "run")
    assert final is not None and final.name == "step-000012"
    AutoModelForCausalLM.from_pretrained(final / "model")
    reloaded = AutoTokenizer.from_pretrained(final / "model")
    assert reloaded.decode(reloaded("<answer>4 5</answer>")["input_ids"]) == "<answer>4 5</answer>"


def test_step_matches_the_algorithm_core(tmp_path):
    """With a scripted engine the batch is known, so alpha and the degenerate count can be checked by hand."""
    cfg = tiny_config(tmp_path, rewards=[{"name": "helpers:has_one"}], algorithm={"preset": "gpg", "resample_threshold": 0.0},
                      train={"steps": 1, "prompts_per_step": 4})
    trainer = _trainer(cfg, engine=ScriptedEngine)
    batch, info = trainer.rollouts.collect()
    rewards = batch.rewards.view(4, 4)
    degenerate = int(sum(bool((row == row[0]).all()) for row in rewards))
    assert info["rollout/draws"] == 1.0
    assert info["reward/sampled_mean"] == pytest.approx(float(rewards.mean()))  # one draw: every answer
    # recompute the step's statistics from the same prompts
    trainer2 = _trainer(cfg, engine=ScriptedEngine)
    metrics = trainer2.train_step()
    assert metrics["adv/num_degenerate_groups"] == degenerate
    B, M = 16, 4 * degenerate
    assert metrics["adv/alpha"] == (B / (B - M) if B > M else 0.0)
    assert metrics["reward/mean"] == pytest.approx(float(rewards.mean()))


def test_micro_batching_does_not_change_the_update(tmp_path):
    results = []
    for mbs in (16, 5, 1):
        cfg = tiny_config(tmp_path / str(mbs), rewards=[{"name": "helpers:has_one"}],
                          algorithm={"preset": "gpg", "resample_threshold": 0.0},
                          train={"steps": 1, "prompts_per_step": 4, "micro_batch_size": mbs},
                          optim={"lr": 1e-2, "max_grad_norm": None, "adam_eps": 1e-3})
        trainer = _trainer(cfg, engine=ScriptedEngine)
        trainer.train()
        results.append(_params(trainer.acc.unwrap_model(trainer.model)))
    start = _params(build_tiny_model(build_char_tokenizer(), seed=0))
    moved = max((results[0][k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-4  # the update is not trivially zero
    for other in results[1:]:
        for k in start:
            torch.testing.assert_close(other[k], results[0][k], atol=1e-6, rtol=1e-5)


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    common = {"rollout": {"group_size": 4, "max_completion_length": 6}, "optim": {"lr": 5e-3, "lr_scheduler": "cosine"}}
    full = _trainer(tiny_config(tmp_path / "a", train={"steps": 4, "prompts_per_step": 4}, **common))
    full.train()
    expected = _params(full.acc.unwrap_model(full.model))

    cfg = tiny_config(tmp_path / "b", train={"steps": 4, "prompts_per_step": 4, "save_every": 2}, **common)
    first = _trainer(cfg)
    first.train(stop_at_step=2)
    assert checkpoint.latest_checkpoint(tmp_path / "b" / "run").name == "step-000002"
    # a new process would start from a different random model: resume must restore everything
    cfg.train.resume = True
    second = _trainer(cfg, seed=123)
    assert second.step == 2
    second.train()
    got = _params(second.acc.unwrap_model(second.model))
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], atol=0, rtol=0)
    rows = [json.loads(line) for line in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_interrupted_save_leaves_the_previous_checkpoint_usable(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, train={"steps": 4, "prompts_per_step": 4, "save_every": 2})
    trainer = _trainer(cfg)
    trainer.train(stop_at_step=2)
    good = checkpoint.latest_checkpoint(tmp_path / "run")
    assert good.name == "step-000002"

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", crash)  # the trainer state is the last file a save writes
    trainer.step = 3
    with pytest.raises(checkpoint.CheckpointError, match=r"could not write the checkpoint of step 3 into .* \(disk "
                       r"full \(simulated\); [0-9.]+ GB free\); the previous checkpoint step-000002 is kept"):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert not (tmp_path / "run" / "checkpoints" / ".tmp-step-000003").exists()  # the partial save is removed
    assert checkpoint.latest_checkpoint(tmp_path / "run") == good
    cfg.train.resume = True
    resumed = _trainer(cfg)
    assert resumed.step == 2


def test_threshold_resampling_budget_runs_out_without_crashing(tmp_path):
    # a constant reward: every group is degenerate, so no draw can reach the threshold
    cfg = tiny_config(tmp_path, rewards=[{"name": "helpers:has_one", "weight": 0.0}],
                      algorithm={"preset": "gpg", "resample_threshold": 0.5, "max_resample_draws": 3},
                      train={"steps": 2, "prompts_per_step": 4})
    trainer = _trainer(cfg)
    before = _params(trainer.acc.unwrap_model(trainer.model))
    history = trainer.train()
    assert [m["rollout/draws"] for m in history] == [3.0, 3.0]
    assert [m["rollout/resample_budget_exhausted"] for m in history] == [1.0, 2.0]
    assert all(m["adv/no_signal"] == 1.0 and m["optim/skipped"] == 1.0 for m in history)
    after = _params(trainer.acc.unwrap_model(trainer.model))
    assert all(torch.equal(before[k], after[k]) for k in before)  # no signal, no update


def test_failing_reward_is_counted_not_fatal(tmp_path):
    cfg = tiny_config(tmp_path, rewards=[{"name": "helpers:count_sevens"}, {"name": "helpers:raises"}],
                      train={"steps": 1, "prompts_per_step": 4})
    (m,) = _trainer(cfg).train()
    assert m["reward/failures"] == 16.0  # every sample lost its reward
    assert m["adv/num_nan_rewards"] == 16.0 and m["adv/no_signal"] == 1.0
    assert math.isnan(m["reward/raises"])  # logged under the function's name


def test_non_finite_loss_is_skipped_then_stops(tmp_path):
    cfg = tiny_config(tmp_path, rewards=[{"name": "helpers:overflowing"}],
                      algorithm={"preset": "gpg", "resample_threshold": 0.0},
                      train={"steps": 10, "prompts_per_step": 4, "max_nan_steps": 3, "save_every": 1})
    trainer = _trainer(cfg)
    before = _params(trainer.acc.unwrap_model(trainer.model))
    with pytest.raises(TrainingError, match="not finite for 3 steps in a row"):
        trainer.train()
    after = _params(trainer.acc.unwrap_model(trainer.model))
    assert all(torch.equal(before[k], after[k]) for k in before)  # every bad update was skipped
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["optim/skipped"] for r in rows] == [1.0, 1.0, 1.0]  # logged before stopping
    assert checkpoint.latest_checkpoint(tmp_path / "run").name == "step-000002"  # nothing written is lost


def test_lora_trains_only_the_adapter(tmp_path):
    pytest.importorskip("peft")
    cfg = tiny_config(tmp_path, model={"name_or_path": "tiny", "lora_r": 4, "lora_target_modules": "q_proj,v_proj"},
                      rewards=[{"name": "helpers:has_one"}], algorithm={"preset": "gpg", "resample_threshold": 0.0},
                      train={"steps": 1, "prompts_per_step": 4}, optim={"lr": 1e-2})
    trainer = _trainer(cfg, engine=ScriptedEngine)
    model = trainer.acc.unwrap_model(trainer.model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    (m,) = trainer.train()
    assert m["optim/skipped"] == 0.0
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert any(not torch.equal(p, lora_before[n]) for n, p in model.named_parameters() if n in lora_before)
    saved = checkpoint.latest_checkpoint(tmp_path / "run") / "model"
    assert (saved / "adapter_config.json").exists()  # a peft adapter, loadable with PeftModel.from_pretrained


def test_gradient_checkpointing_gives_the_same_update(tmp_path):
    results = []
    for gc in (False, True):
        cfg = tiny_config(tmp_path / str(gc), model={"name_or_path": "tiny", "gradient_checkpointing": gc},
                          rewards=[{"name": "helpers:has_one"}], algorithm={"preset": "gpg", "resample_threshold": 0.0},
                          train={"steps": 1, "prompts_per_step": 4}, optim={"lr": 1e-2, "adam_eps": 1e-3})
        trainer = _trainer(cfg, engine=ScriptedEngine)
        assert trainer.acc.unwrap_model(trainer.model).is_activation_checkpointing == gc
        (m,) = trainer.train()
        assert m["optim/skipped"] == 0.0
        results.append(_params(trainer.acc.unwrap_model(trainer.model)))
    for k in results[0]:
        torch.testing.assert_close(results[1][k], results[0][k], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("preset", ["grpo", "dr_grpo", "dapo"])
def test_other_presets_run_a_step(tmp_path, preset):
    """GRPO loads a reference model (beta > 0); all presets produce finite losses and an update."""
    from gpgrl.models.tiny import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "model")
    cfg = tiny_config(tmp_path, model={"name_or_path": str(model_dir)}, algorithm={"preset": preset},
                      rewards=[{"name": "helpers:has_one"}], train={"steps": 1, "prompts_per_step": 4})
    trainer = Trainer.from_config(cfg, engine=ScriptedEngine(build_char_tokenizer()))
    assert (trainer.ref_model is not None) == (preset == "grpo")
    (m,) = trainer.train()
    assert math.isfinite(m["loss/total"]) and m["optim/skipped"] == 0.0
    if preset == "grpo":
        assert m["loss/kl"] == pytest.approx(0.0, abs=1e-6)  # first step: the policy still equals the reference
    else:
        assert "loss/kl" not in m  # no KL term, no KL metric
    assert m["adv/alpha"] == (1.0 if m["adv/no_signal"] == 0 else 0.0)  # AGE is GPG's only


def test_eval_every_runs_the_benchmark_evaluation(tmp_path, capsys):
    from conftest import DATA_MISSING, SHARED_DATA

    data_dir = SHARED_DATA / "math"
    if not data_dir.is_dir():
        pytest.skip(f"{DATA_MISSING} at {SHARED_DATA}")
    cfg = tiny_config(tmp_path, train={"steps": 2, "prompts_per_step": 4, "eval_every": 2,
                                       "eval_benchmarks": ["gsm8k", "amc23"], "eval_data_dir": str(data_dir),
                                       "eval_limit": 2})
    _trainer(cfg).train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/gsm8k/pass@1" in r]
    assert len(evals) == 1 and evals[0]["step"] == 2
    err = capsys.readouterr().err  # gpgrl eval's first line and progress lines, as the command prints them
    assert "on gsm8k, amc23 (4 problems x 1 sample), up to" in err and "eval: 4/4 problems" in err
    assert f"up to {cfg.rollout.max_completion_length} new tokens per answer (rollout.max_completion_length)" in err
    samples = [json.loads(line) for line in
               (tmp_path / "run" / "eval" / "step-000002" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4  # 2 benchmarks x 2 problems x 1 sample
    for bench in ("gsm8k", "amc23"):  # the logged number is the mean of the audited rows
        correct = [r["correct"] for r in samples if r["benchmark"] == bench]
        assert evals[0][f"eval/{bench}/pass@1"] == sum(correct) / len(correct)


def test_train_can_be_called_in_chunks(tmp_path):
    """train(stop_at_step=k) keeps the sinks open, so a caller can interleave its own work (evaluations)."""
    cfg = tiny_config(tmp_path, train={"steps": 3, "prompts_per_step": 4})
    trainer = _trainer(cfg)
    assert len(trainer.train(stop_at_step=1)) == 1
    assert len(trainer.train(stop_at_step=2)) == 1
    assert len(trainer.train()) == 1
    assert trainer.train() == []  # already done: no step, no second final save
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "run")] == ["step-000003"]


def test_the_update_differentiates_the_distribution_it_sampled_from(tmp_path):
    """At rollout.temperature T the loss uses log softmax(logits / T): the log-probs the trainer computes for
    a batch are those of the tempered distribution, and the update differs from an untempered one."""
    from gpgrl.models import completion_logprobs

    updates = {}
    for temperature in (1.0, 0.5):
        cfg = tiny_config(tmp_path / str(temperature), rewards=[{"name": "helpers:has_one"}],
                          rollout={"group_size": 4, "max_completion_length": 6, "temperature": temperature},
                          algorithm={"preset": "gpg", "resample_threshold": 0.0}, train={
                              "steps": 1, "prompts_per_step": 4, "micro_batch_size": 16,
                              "output_dir": str(tmp_path / str(temperature) / "run")})
        trainer = _trainer(cfg, engine=ScriptedEngine)
        batch, _ = trainer.rollouts.collect()
        model = trainer.acc.unwrap_model(trainer.model)
        with torch.no_grad():
            got, _ = trainer._logp(trainer.model, batch, slice(None), False)
            want, _ = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                          batch.completion_mask, temperature=temperature, use_position_ids=True)
        m = batch.completion_mask.bool()
        torch.testing.assert_close(got[m], want[m])
        trainer2 = _trainer(cfg, engine=ScriptedEngine)
        trainer2.train()
        updates[temperature] = _params(trainer2.acc.unwrap_model(trainer2.model))
    assert max((updates[1.0][k] - updates[0.5][k]).abs().max().item() for k in updates[1.0]) > 0
