"""Bad input and faults a user hits: each gets a clear message, and a deterministic bug does not waste a run."""

from __future__ import annotations

import io
import json
import math
import re

import pytest
import torch

from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
from gpgrl.rewards.scoring import as_reward_functions, score_batch
from gpgrl.train import checkpoint
from gpgrl.train.trainer import Trainer, TrainingError
from helpers import ScriptedEngine, tiny_config


def _trainer(cfg, engine=True):
    tok = build_char_tokenizer()
    return Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok,
                               engine=ScriptedEngine(tok) if engine else None)


# --- reward output validation (pure) ---------------------------------------------------------------------

def strings(completions, **_):
    return ["yes"] * len(completions)


def one_short(completions, **_):
    return [1.0] * (len(completions) - 1)


def scalar(completions, **_):
    return 1.0


def infinities(completions, **_):
    return [math.inf, -math.inf, 0.5, None]


@pytest.mark.parametrize(("fn", "problem"), [
    (strings, "returned str 'yes' for completion 0; rewards must be finite numbers (or None)"),
    (one_short, "returned 3 values for 4 completions"),
    (scalar, "returned float 1.0; a reward must return a list with one float (or None) per completion (4 here)"),
])
def test_unusable_reward_output_is_named_and_becomes_nan(fn, problem):
    rewards = as_reward_functions([fn, ("tag_count", 2.0)])
    s = score_batch(rewards, ["a", "b", "c", "d"], [{}] * 4)
    assert s.problems == {fn.__name__: problem}
    assert s.failed_all == [fn.__name__]
    assert torch.isnan(s.per_fn[:, 0]).all() and torch.isnan(s.total).all()  # any NaN makes the total NaN
    assert s.per_fn[:, 1].tolist() == [0.0] * 4  # the other reward is untouched


def test_non_finite_rewards_are_failures_not_losses():
    s = score_batch(as_reward_functions([infinities]), ["a", "b", "c", "d"], [{}] * 4)
    assert s.per_fn[:, 0].tolist()[2] == 0.5
    assert [math.isnan(x) for x in s.total.tolist()] == [True, True, False, True]
    assert s.problems == {"infinities": "returned the non-finite value inf for completion 0; rewards must be finite "
                                        "numbers (or None)"}
    assert s.failed_all == []  # one usable value: a partial failure, not a broken function


def test_a_raising_reward_keeps_its_exception():
    def broken(completions, **_):
        raise KeyError("solution")

    s = score_batch(as_reward_functions([broken]), ["a"], [{}])
    assert s.problems == {"broken": "raised KeyError: 'solution'"} and s.failed_all == ["broken"]


# --- the trainer stops on a reward that never works --------------------------------------------------------

def test_a_reward_that_always_fails_stops_the_run_naming_it(tmp_path, capsys):
    cfg = tiny_config(tmp_path, rewards=[{"name": "helpers:count_sevens"}, {"name": "helpers:raises"}],
                      algorithm={"preset": "gpg", "max_resample_draws": 2},
                      train={"steps": 10, "prompts_per_step": 4, "max_reward_failure_steps": 3})
    trainer = _trainer(cfg)
    with pytest.raises(TrainingError, match=r"reward 'raises' gave no usable value for any answer in 3 steps in a row "
                                            r"\(step 3\); its last problem: raised RuntimeError: this reward is broken"):
        trainer.train()
    assert trainer.step == 2  # steps 1 and 2 ran (and were logged); step 3 stopped before its update
    err = capsys.readouterr().err
    assert err.count("reward 'raises' raised RuntimeError") == 1  # warned once, not every step


def test_infinite_rewards_are_counted_as_failures(tmp_path):
    cfg = tiny_config(tmp_path, rewards=[{"name": "helpers:infinite"}],
                      algorithm={"preset": "gpg", "resample_threshold": 0.0}, train={"steps": 1, "prompts_per_step": 4})
    trainer = _trainer(cfg)
    (m,) = trainer.train()
    assert m["reward/failures"] == 8.0 and m["adv/num_nan_rewards"] == 8.0  # every other answer of 16
    assert trainer.counters["nan_steps_in_a_row"] == 0  # not a non-finite loss: the NaN answers left their groups


# --- output folders and resume ----------------------------------------------------------------------------

def test_a_used_output_dir_needs_resume_or_overwrite(tmp_path, capsys):
    cfg = tiny_config(tmp_path, train={"steps": 1, "prompts_per_step": 4})
    _trainer(cfg).train()
    with pytest.raises(ValueError, match=r"already holds a run \(checkpoints, metrics.jsonl\)\. Pass --resume"):
        _trainer(cfg)
    cfg.train.overwrite = True
    capsys.readouterr()
    fresh = _trainer(cfg)
    # never deleted without a word: one line says what went
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "--overwrite" in x]
    assert re.fullmatch(r"\[gpgrl\] --overwrite: deleted the previous run in '.*/run': 1 checkpoint up to step 1, "
                        r"metrics\.jsonl with 1 step, config\.yaml; \d+\.\d (kB|MB)", line), line
    assert checkpoint.list_checkpoints(tmp_path / "run") == []  # the old run is gone
    assert not (tmp_path / "run" / "metrics.jsonl").read_text()
    fresh.train()
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1]


def test_resume_refuses_a_checkpoint_with_other_settings(tmp_path):
    cfg = tiny_config(tmp_path, train={"steps": 2, "prompts_per_step": 4})
    _trainer(cfg).train()
    other = tiny_config(tmp_path, rollout={"group_size": 2, "max_completion_length": 6},
                        algorithm={"preset": "gpg", "age": False}, train={"steps": 4, "prompts_per_step": 4,
                                                                           "resume": True})
    with pytest.raises(ValueError, match=r"other settings: rollout\.group_size: 4 -> 2; algorithm\.age: True -> False"):
        _trainer(other)
    longer = tiny_config(tmp_path, train={"steps": 4, "prompts_per_step": 4, "resume": True, "micro_batch_size": 2})
    assert _trainer(longer).step == 2  # more steps and other micro-batching do not change the maths


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path):
    """A kill after step 3 was logged but before its checkpoint: the resumed run logs step 3 once."""
    cfg = tiny_config(tmp_path, train={"steps": 4, "prompts_per_step": 4, "save_every": 2})
    first = _trainer(cfg)
    first.train(stop_at_step=3)
    first.close()
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert [json.loads(r)["step"] for r in metrics.read_text().splitlines()] == [1, 2, 3]
    with metrics.open("a") as f:
        f.write('{"step": 4, "reward/me')  # a line cut by the kill
    cfg.train.resume = True
    second = _trainer(cfg)
    assert second.step == 2
    second.train()
    assert [json.loads(r)["step"] for r in metrics.read_text().splitlines()] == [1, 2, 3, 4]


# --- generation within the model's context ----------------------------------------------------------------

def test_generation_is_capped_at_the_models_context(caplog):
    from gpgrl.rollout.engine import HFGenerateEngine, SamplingParams

    tok = build_char_tokenizer()
    model = build_tiny_model(tok, max_positions=24)
    engine = HFGenerateEngine(model, tok)
    prompt = tok("12+34=")["input_ids"]  # 6 tokens
    with caplog.at_level("WARNING"):
        out = engine.generate([prompt], SamplingParams(max_new_tokens=100, temperature=1.0), num_samples=2)
        engine.generate([prompt], SamplingParams(max_new_tokens=100, temperature=1.0), num_samples=2)
    assert out.completion_ids.shape[1] <= 24 - 6
    warnings = [r.getMessage() for r in caplog.records if "generation capped" in r.getMessage()]
    assert warnings == ["generation capped at 18 new tokens (asked for 100): the model's context is 24 tokens and "
                        "prompts take 6"]  # once


# --- model paths --------------------------------------------------------------------------------------------

def test_a_mistyped_local_model_path_fails_at_once(tmp_path, monkeypatch):
    from gpgrl.models.loading import load_policy

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for name in ("runs/nomodel", "runs/x/checkpoints/step-10/model", "./sft", "/nonexistent/model"):
        with pytest.raises(FileNotFoundError, match=f"no such model folder: '{name}'"):
            load_policy(name)


def test_an_uncached_hub_id_offline_fails_once_with_the_fix(monkeypatch):
    from gpgrl.models.loading import load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="'nobody/no-such-model' is not in the local Hugging Face cache and HF_HUB_OFFLINE"):
        load_tokenizer("nobody/no-such-model")


# --- console ------------------------------------------------------------------------------------------------

def test_a_slow_step_says_what_it_is_doing_phase_by_phase_and_a_fast_one_does_not(tmp_path, capsys):
    """Off a terminal, the run's first step and a step after a slow one print a line per phase (the issue: a
    real model on a CPU printed nothing for the 65-150 s of each step); a step after a fast one prints its
    step line alone. The engine's progress comes during generation."""
    cfg = tiny_config(tmp_path, train={"steps": 3, "prompts_per_step": 4, "micro_batch_size": 8},
                      algorithm={"preset": "gpg", "resample_threshold": 0.0},  # one draw per step
                      log={"progress": None, "report_to": [], "sample_every": 0})
    tok = build_char_tokenizer()  # transformers generate on the tiny model (it reports its steps), and a reward
    trainer = Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok,  # that varies: updates
                                  rewards=[lambda completions, **_: [float(len(set(c))) for c in completions]])
    phases = trainer.logger.phases
    phases.after = 1e9  # every step counts as fast: only the run's first step shows its phases
    phases.interval = 0.0  # the engine's progress at every decoding step
    trainer.train(stop_at_step=2)
    first = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step ")]
    assert first[0] == "step 1/3: generating 16 answers to 4 prompts ..."
    ticks = [line for line in first if line.startswith("step 1/3: generating: ")]
    assert ticks and all(re.fullmatch(r"step 1/3: generating: \d+/16 answers done, [\d,]+ tokens \(\d+ tokens/s\)", t)
                         for t in ticks)
    assert int(ticks[-1].split()[3].split("/")[0]) <= 16
    assert first[1 + len(ticks):] == ["step 1/3: scoring 16 answers ...", "step 1/3: updating (2 micro-batches) ...",
                                      first[-2], first[-1]]
    assert first[-2].startswith("step 1/3  reward") and first[-1].startswith("step 2/3  reward")  # step 2: no phases
    phases.after = 0.0  # now every step counts as slow: step 3 follows step 2, which took more than 0 s
    trainer.train()
    last = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step ")]
    assert last[0] == "step 3/3: generating 16 answers to 4 prompts ..."
    assert [line for line in last if not line.startswith("step 3/3: generating: ")][1:] == [
        "step 3/3: scoring 16 answers ...", "step 3/3: updating (2 micro-batches) ...", last[-1]]
    assert last[-1].startswith("step 3/3  reward")
    assert trainer.engine.on_step is None and trainer.engine.on_done is None  # the engine is left as it was


def test_loading_the_model_says_so_and_how_long_it_took(tmp_path, capsys):
    from gpgrl.models.tiny import save_tiny_model
    from gpgrl.train.build import build_parts

    path = save_tiny_model(tmp_path / "model")
    capsys.readouterr()  # save_pretrained's own bar
    parts = build_parts(tiny_config(tmp_path, model={"name_or_path": str(path)}, log={"progress": None}))
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"gpgrl train: loading {path} ..."
    assert re.fullmatch(rf"gpgrl train: loaded {re.escape(str(path))} in \d+\.\d s \(0\.1M parameters, cpu\)", err[1])
    assert parts["model"].config.max_position_embeddings == 512
    build_parts(tiny_config(tmp_path, model={"name_or_path": str(path)}, log={"progress": False}))
    assert "gpgrl train" not in capsys.readouterr().err  # log.progress: false is quiet


def test_the_loading_lines_go_where_stderr_was_and_an_error_prints_no_second_one():
    """A quiet GGUF load holds stderr back while it runs (models.loading.loading_bars): the first line must
    not wait for the end of the load."""
    import contextlib

    from gpgrl.models.progress import model_loading

    out, held = io.StringIO(), io.StringIO()
    model = build_tiny_model(build_char_tokenizer(), seed=0)
    # inside: what loading_bars does during a quiet GGUF load
    with contextlib.redirect_stderr(out), model_loading("gpgrl eval", "smollm2") as loaded, \
            contextlib.redirect_stderr(held):
        assert out.getvalue() == "gpgrl eval: loading smollm2 ...\n"  # already there
        loaded["model"] = model
    assert re.fullmatch(r"gpgrl eval: loaded smollm2 in \d+\.\d s \(0\.1M parameters, cpu\)",
                        out.getvalue().splitlines()[1])
    failed = io.StringIO()
    with pytest.raises(OSError), model_loading("gpgrl eval", "x", stream=failed):
        raise OSError("could not load")
    assert failed.getvalue() == "gpgrl eval: loading x ...\n"
    quiet = io.StringIO()
    with model_loading("gpgrl eval", "smollm2", stream=quiet, enabled=False) as loaded:  # --quiet
        loaded["model"] = model
    assert quiet.getvalue() == ""


def test_outside_a_terminal_progress_is_one_plain_line_per_logged_step(tmp_path, capsys):
    cfg = tiny_config(tmp_path, train={"steps": 2, "prompts_per_step": 4}, log={"progress": None, "report_to": [],
                                                                             "sample_every": 0})
    _trainer(cfg).train()
    lines = [line for line in capsys.readouterr().err.splitlines() if re.match(r"step \d+/\d+  ", line)]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert "reward" in lines[0] and "alpha" in lines[0]


def test_many_fast_resampling_draws_print_their_phases_once(tmp_path, capsys):
    """Threshold resampling's 20 draws in the run's first step: the first draw's phases, not 40 lines."""
    cfg = tiny_config(tmp_path, train={"steps": 1, "prompts_per_step": 4}, log={"progress": None, "report_to": [],
                                                                              "sample_every": 0})
    trainer = _trainer(cfg)  # count_sevens: no group ever has a signal, so every draw is spent
    trainer.logger.phases.after = 1e9
    trainer.train()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step ")]
    assert lines[:2] == ["step 1/1: generating 16 answers to 4 prompts ...", "step 1/1: scoring 16 answers ..."]
    assert len(lines) == 3 and lines[2].startswith("step 1/1  reward 0")
    assert trainer.logger.phases.on is False  # the later draws were fast


def test_a_slow_draw_shows_the_next_ones(tmp_path, capsys):
    from gpgrl.train.logging import StepPhases

    clock, out = [0.0], io.StringIO()
    phases = StepPhases(20, lines=True, after=5.0, stream=out, clock=lambda: clock[0])
    phases.begin(3)  # the run's first step: shown
    phases("generating 16 answers to 2 prompts")
    clock[0] = 2.0
    phases.draw()  # the first draw took 2 s: the second is not shown
    phases("generating 16 answers to 2 prompts (threshold resampling: draw 2)")
    clock[0] = 10.0
    phases.draw()  # the second took 8 s: the third is shown
    phases("generating 16 answers to 2 prompts (threshold resampling: draw 3)")
    phases.last_seconds = 4.0  # a step of 4 s: the next one's phases are not shown
    phases.begin(4)
    phases("updating (2 micro-batches)")
    phases.last_seconds = 6.0
    phases.begin(5)
    phases("updating (2 micro-batches)")
    assert out.getvalue().splitlines() == [
        "step 3/20: generating 16 answers to 2 prompts ...",
        "step 3/20: generating 16 answers to 2 prompts (threshold resampling: draw 3) ...",
        "step 5/20: updating (2 micro-batches) ..."]
