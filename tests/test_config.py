"""Config parsing and bad input: every error names the problem and the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from gpgrl.cli import _parse_overrides, train_help
from gpgrl.config import Config, ConfigError, from_dict
from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model, save_tiny_model
from gpgrl.recipe import load_config
from gpgrl.train.trainer import Trainer
from helpers import tiny_config

BASE = {"model": {"name_or_path": "some/model"}, "data": {"dataset": "builtin:arithmetic"}}


def test_yaml_and_overrides_round_trip(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**BASE, "train": {"steps": 7}, "algorithm": {"preset": "dapo"}}))
    cfg = load_config(recipe, {"train.steps": "9", "optim.lr": "3e-4", "preset": "grpo", "algorithm.beta": "0",
                               "rewards": "accuracy,format", "resume": "true", "log.report_to": "jsonl"})
    assert cfg.train.steps == 9 and cfg.optim.lr == 3e-4 and cfg.train.resume is True
    assert [r.name for r in cfg.rewards] == ["accuracy", "format"]
    algo = cfg.algo
    assert (algo.name, algo.beta, algo.ratio, algo.scale) == ("grpo", 0.0, True, "group")
    assert cfg.log.report_to == ["jsonl"]


def test_open_r1_reward_shorthand():
    cfg = from_dict({**BASE, "reward_funcs": ["format", "cosine"], "reward_weights": [1.0, 2.0]})
    assert [(r.name, r.weight) for r in cfg.rewards] == [("format", 1.0), ("cosine", 2.0)]
    with pytest.raises(ConfigError, match="reward_weights has 1 entries but reward_funcs has 2"):
        from_dict({**BASE, "reward_funcs": ["format", "cosine"], "reward_weights": [1.0]})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**BASE, "train": {"stepz": 3}}, r"unknown config key 'train.stepz'. Did you mean 'steps'\?.*prompts_per_step"),
        ({**BASE, "trian": {}}, r"unknown config key 'trian'. Did you mean 'train'\?"),
        ({**BASE, "train": {"steps": "ten"}}, r"train.steps must be int, got 'ten'"),
        ({**BASE, "optim": {"lr": [1]}}, r"optim.lr must be float"),
        ({**BASE, "train": {"resume": "maybe"}}, r"train.resume must be true or false"),
        ({**BASE, "optim": {"lr_scheduler": "cosine_restarts"}}, r"optim.lr_scheduler must be one of constant"),
        ({**BASE, "algorithm": {"preset": "ppo"}}, r"unknown preset 'ppo'; valid presets: gpg, grpo, dr_grpo, dapo"),
        ({**BASE, "algorithm": {"preset": "gpg", "epsilon": 0.2}}, r"unknown config key 'algorithm.epsilon'"),
        ({**BASE, "algorithm": {"preset": "gpg", "num_iterations": 2}}, r"needs the PPO ratio: set ratio=True"),
        ({**BASE, "rollout": {"group_size": 1}}, r"group_size must be >= 2"),
        ({"data": {"dataset": "x.jsonl"}}, r"model.name_or_path is required"),
        ({**BASE, "log": {"report_to": ["mlflow"]}}, r"unknown sink\(s\) \['mlflow'\]"),
    ],
)
def test_bad_config_values_say_what_to_do(raw, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(raw)


def test_cli_override_parsing():
    assert _parse_overrides(["--config", "r.yaml", "--train.steps", "3", "--lr=1e-5", "--resume"]) == (
        "r.yaml", {"train.steps": "3", "lr": "1e-5", "resume": "true"})


def test_train_help_lists_every_option():
    text = train_help()
    for key in ("--train.prompts_per_step", "--rollout.group_size", "--algorithm.preset", "--algorithm.age",
                "--data.sample_strategy", "--optim.lr_scheduler", "--log.report_to"):
        assert key in text, key
    assert "G: answers sampled per prompt" in text


def _trainer(cfg):
    tok = build_char_tokenizer()
    return Trainer.from_config(cfg, model=build_tiny_model(tok), tokenizer=tok)


def test_missing_dataset_column_is_named(tmp_path):
    cfg = tiny_config(tmp_path, data={"dataset": "builtin:arithmetic", "prompt_column": "problem"})
    with pytest.raises(ValueError, match=r"no column 'problem' \(set by data.prompt_column\); its columns are: "
                                         r"answer, question"):
        _trainer(cfg)


def test_empty_dataset(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cfg = tiny_config(tmp_path, data={"dataset": str(empty)})
    with pytest.raises((ValueError, RuntimeError), match=r"empty\.jsonl"):
        _trainer(cfg)


def test_missing_dataset_file(tmp_path):
    cfg = tiny_config(tmp_path, data={"dataset": str(tmp_path / "nope.jsonl")})
    with pytest.raises(FileNotFoundError, match=r"nope.jsonl.*does not exist"):
        _trainer(cfg)


def test_unknown_reward_lists_valid_names(tmp_path):
    cfg = tiny_config(tmp_path, rewards=[{"name": "acuracy"}])
    with pytest.raises(ValueError, match=r"acuracy.*accuracy"):
        _trainer(cfg)


def test_missing_model_path(tmp_path):
    cfg = tiny_config(tmp_path, model={"name_or_path": str(tmp_path / "no-such-model")})
    with pytest.raises(FileNotFoundError, match=r"no such model folder: '.*no-such-model'"):
        Trainer.from_config(cfg)


def test_prompts_per_step_must_split_over_processes(tmp_path):
    cfg = tiny_config(tmp_path)
    assert isinstance(cfg, Config)


def _gpgrl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gpgrl.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_cli_errors_exit_2_with_a_message(tmp_path):
    proc = _gpgrl("train", "--model", "x", "--dataset", "builtin:arithmetic", "--train.stepz", "3")
    assert proc.returncode == 2
    assert "unknown config key 'train.stepz'" in proc.stderr and "Traceback" not in proc.stderr
    proc = _gpgrl("train", "--model", str(tmp_path / "missing"), "--dataset", "builtin:arithmetic")
    assert proc.returncode == 2 and "no such model folder" in proc.stderr and "Traceback" not in proc.stderr
    proc = _gpgrl("fly")
    assert proc.returncode == 2 and "valid: train, eval, quickstart" in proc.stderr


def test_cli_trains_a_local_model_end_to_end(tmp_path):
    """The real path a user takes: a model folder on disk, a jsonl dataset, `gpgrl train`."""
    model_dir = save_tiny_model(tmp_path / "model")
    data = tmp_path / "train.jsonl"
    data.write_text('{"problem": "1+1", "gold": "2"}\n{"problem": "2+2", "gold": "4"}\n')
    out = tmp_path / "out"
    proc = _gpgrl("train", "--model", str(model_dir), "--dataset", str(data), "--data.prompt_column", "problem",
                  "--data.answer_column", "gold", "--rewards", "accuracy", "--train.steps", "1",
                  "--train.prompts_per_step", "2", "--rollout.group_size", "2", "--rollout.max_completion_length", "4",
                  "--output_dir", str(out), "--log.progress", "false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "checkpoints" / "step-000001" / "model" / "config.json").exists()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["prompt_column"] == "problem" and saved["train"]["steps"] == 1


def test_cli_usage_help_and_reward_listing(capsys):
    from gpgrl.cli import main

    assert main([]) == 2  # no command: usage on stderr, an error status
    usage = capsys.readouterr().err
    assert usage.startswith("usage: gpgrl COMMAND") and "``" not in usage and "Usage::" not in usage
    assert main(["--help"]) == 0
    assert "quickstart" in capsys.readouterr().out
    assert main(["rewards"]) == 0
    listing = capsys.readouterr().out
    assert "think_close (also: format_v2)" in listing
    assert "    min_steps = 3" in listing and "    max_len = " in listing  # every parameter with its default
    assert "``" not in listing
