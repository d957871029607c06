"""Every setting resolved once: the algorithm on the config, the lists of choices in one place each, the
settings that change the maths marked on their fields, the run's resolved numbers kept off the config."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from gpgrl.algorithms import AGGREGATIONS, F_NORMS, LOSS_AGGS, SCALES
from gpgrl.algorithms.advantages import Scale
from gpgrl.algorithms.aggregation import LossAgg
from gpgrl.algorithms.presets import RESAMPLE_COUNTS, AlgorithmConfig
from gpgrl.config import (
    LR_SCHEDULERS,
    REPORT_SINKS,
    Config,
    ConfigError,
    from_dict,
    math_keys,
    prompt_budget,
    to_yaml,
)
from gpgrl.recipe import load_config
from gpgrl.train import checkpoint
from helpers import tiny_config


def test_each_list_of_choices_is_its_literal():
    assert typing.get_args(Scale) == SCALES == tuple(F_NORMS)
    assert typing.get_args(LossAgg) == LOSS_AGGS == tuple(AGGREGATIONS)
    hints = typing.get_type_hints(AlgorithmConfig)
    assert typing.get_args(hints["scale"]) == SCALES and typing.get_args(hints["loss_agg"]) == LOSS_AGGS
    assert typing.get_args(hints["resample_count"]) == RESAMPLE_COUNTS
    from gpgrl.config import OptimConfig
    from gpgrl.openr1 import translate

    assert typing.get_args(typing.get_type_hints(OptimConfig)["lr_scheduler"]) == LR_SCHEDULERS
    assert REPORT_SINKS == ("jsonl", "tensorboard", "wandb")
    raw, _ = translate({"model_name_or_path": "m", "dataset_name": "d", "reward_funcs": ["accuracy"],
                        "report_to": ["wandb", "mlflow"], "lr_scheduler_type": "cosine"}, script="openr1_grpo")
    assert raw["log"]["report_to"] == ["jsonl", "wandb"] and raw["optim"]["lr_scheduler"] == "cosine"


def test_the_algorithm_is_resolved_once_and_again_when_its_section_changes():
    cfg = from_dict({"model": {"name_or_path": "m"}, "data": {"dataset": "d"},
                     "algorithm": {"preset": "grpo", "beta": 0.0}})
    assert cfg.algo is cfg.algo and (cfg.algo.name, cfg.algo.beta, cfg.algo.scale) == ("grpo", 0.0, "group")
    cfg.algorithm["epsilon_high"] = 0.3
    assert cfg.algo.epsilon_high == 0.3 and cfg.algo.beta == 0.0
    cfg.algorithm = {"preset": "dapo"}
    assert cfg.algo.name == "dapo"
    assert "algo" not in cfg.to_dict() and "\nalgo:" not in to_yaml(cfg)  # only the section is written


def test_command_line_overrides_of_the_algorithm_reach_the_resolved_settings(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"name_or_path": "m"}, "data": {"dataset": "d"},
                                      "algorithm": {"preset": "grpo"}}))
    cfg = load_config(recipe, {"algorithm.beta": "0.01", "preset": "grpo"})
    assert (cfg.algo.name, cfg.algo.beta) == ("grpo", 0.01)
    with pytest.raises(ConfigError, match="unknown preset 'ppo'"):
        load_config(recipe, {"algorithm.preset": "ppo"})


def test_the_settings_that_change_the_maths_are_marked_on_their_fields():
    keys = math_keys()
    for key in ("data.image_column", "data.image_dir", "model.max_pixels", "model.min_pixels", "model.name_or_path",
                "data.max_prompt_length", "rollout.group_size", "rollout.importance_cap", "optim.lr", "rewards",
                "algorithm", "train.prompts_per_step", "train.seed", "train.mixed_precision"):
        assert key in keys, key
    for key in ("train.steps", "train.epochs", "train.micro_batch_size", "train.output_dir", "rollout.engine",
                "log.report_to", "train.eval_every", "model.gradient_checkpointing"):
        assert key not in keys, key
    # every optimizer setting changes the maths; none of the logging ones does
    assert all(f"optim.{f.name}" in keys for f in dataclasses.fields(Config().optim))
    assert not any(k.startswith("log.") for k in keys)


def _vision_setup(tmp_path, image_dir):
    pytest.importorskip("torchvision")
    from PIL import Image

    from gpgrl.models.tiny import build_tiny_vlm, build_vlm_processor

    image_dir.mkdir(exist_ok=True)
    records = []
    for i, rgb in enumerate([(220, 30, 30), (30, 200, 30)] * 2):
        Image.new("RGB", (56, 56), rgb).save(image_dir / f"{i}.png")
        records.append({"question": "Colour?", "image": f"{i}.png", "answer": "red"})
    cfg = tiny_config(tmp_path, model={"name_or_path": "tiny-vlm"},
                      data={"dataset": "mine", "image_column": "image", "image_dir": str(image_dir)},
                      train={"steps": 1, "prompts_per_step": 2, "micro_batch_size": 8})
    processor = build_vlm_processor()
    return cfg, dict(model=build_tiny_vlm(processor, seed=0), tokenizer=processor, dataset=records,
                     rewards=[lambda completions, **_: [float("r" in c) for c in completions]])


def test_a_resumed_vision_run_on_other_images_is_refused_naming_the_key(tmp_path):
    from gpgrl.train.trainer import Trainer

    cfg, parts = _vision_setup(tmp_path, tmp_path / "images")
    Trainer(cfg, **parts).train()
    assert checkpoint.latest_checkpoint(tmp_path / "run") is not None
    other, parts = _vision_setup(tmp_path, tmp_path / "other_images")
    other.train.resume, other.train.steps = True, 2
    with pytest.raises(ValueError, match=r"other settings: data\.image_dir: '.*images' -> '.*other_images'"):
        Trainer(other, **parts)


def test_check_resumable_names_each_vision_setting(tmp_path):
    ckpt = tmp_path / "step-000001"
    ckpt.mkdir()
    saved = tiny_config(tmp_path, data={"image_column": "image", "image_dir": "a"}, model={"max_pixels": 1000})
    (ckpt / "config.yaml").write_text(to_yaml(saved))
    checkpoint.check_resumable(ckpt, saved)  # the same settings: fine
    now = tiny_config(tmp_path, data={"image_column": "img", "image_dir": "a"},
                      model={"max_pixels": 2000, "min_pixels": 10})
    with pytest.raises(ValueError) as e:
        checkpoint.check_resumable(ckpt, now)
    for text in ("model.min_pixels: None -> 10", "model.max_pixels: 1000 -> 2000", "data.image_column: 'image' -> 'img'"):
        assert text in str(e.value)


def test_the_trainer_keeps_the_resolved_numbers_and_leaves_the_config_alone(tmp_path):
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.rollout.engine import model_context_length
    from gpgrl.train.trainer import Trainer

    cfg = tiny_config(tmp_path, train={"epochs": 1.0, "prompts_per_step": 4, "save_every": 1})
    given = to_yaml(cfg)
    tok = build_char_tokenizer()
    records = [{"question": f"{i}+1", "answer": str(i + 1)} for i in range(8)]
    model = build_tiny_model(tok)
    trainer = Trainer(cfg, model=model, tokenizer=tok, dataset=records, rewards=["accuracy"])
    assert trainer.total_steps == 2  # 8 records, 4 per step, one epoch
    assert trainer.max_prompt_length == prompt_budget(cfg, model_context_length(model)) == trainer.prompts.max_length
    assert to_yaml(cfg) == given  # nothing written into the config
    trainer.train()
    assert len(checkpoint.list_checkpoints(tmp_path / "run")) == 2  # the two steps of one epoch
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["train"]["steps"] == 2 and written["train"]["epochs"] == 1.0  # what ran
    assert written["data"]["max_prompt_length"] == trainer.max_prompt_length
    # resuming with the run's own recipe (epochs set) is accepted and ends at the same step
    again = tiny_config(tmp_path, train={"epochs": 1.0, "prompts_per_step": 4, "resume": True})
    resumed = Trainer(again, model=build_tiny_model(tok), tokenizer=tok, dataset=records, rewards=["accuracy"])
    assert resumed.step == 2 and resumed.total_steps == 2
    assert resumed.train() == [] and resumed.step == 2  # nothing left to do (train closes its sinks)


def test_the_ctrl_c_report_counts_the_steps_the_run_resolved(tmp_path):
    """With train.epochs the run's last step is its total_steps, not the recipe's train.steps."""
    from types import SimpleNamespace

    from gpgrl.cli import interrupted

    cfg = tiny_config(tmp_path, train={"epochs": 1.0, "steps": 100})
    trainer = SimpleNamespace(step=3, total_steps=3)
    assert interrupted(trainer, KeyboardInterrupt(), cfg).startswith("interrupted after the last step (3), while saving")
    trainer.step = 2
    assert interrupted(trainer, KeyboardInterrupt(), cfg).startswith("interrupted at step 3 (2 done)")
