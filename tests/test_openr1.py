"""The original GPG code's flat YAML recipes, translated key by key; the dry run."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest
import yaml

from gpgrl import recipe as gpgrl_recipe
from gpgrl.config import ConfigError, steps_for_epochs

# What reading the original's recipes warns about, by design: the keys with no meaning here, and the
# overwrite_output_dir that a recipe file cannot set.
EXPECTED_WARNINGS = ("keys with no meaning in gpgrl, ignored: ", "overwrite_output_dir: true is ignored")


def load_recipe(*args, **kwargs):
    """``gpgrl.recipe.load_recipe``, asserting that the only warnings it gives are the expected ones."""
    gc.collect()  # an earlier test's garbage (an unclosed file's ResourceWarning) is finalised now, not in the window
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = gpgrl_recipe.load_recipe(*args, **kwargs)
    unexpected = [str(w.message) for w in caught if not any(e in str(w.message) for e in EXPECTED_WARNINGS)]
    assert not unexpected, unexpected
    return result


def load_config(*args, **kwargs):
    return load_recipe(*args, **kwargs)[0]

# Written in the style of the original's open-rs/recipes/gpg.yaml (GPG-RS1 on R1-Distill-1.5B)
OPEN_RS = """
original_script: openrs_gpg
model_name_or_path: models/DeepSeek-R1-Distill-Qwen-1.5B
model_revision: main
torch_dtype: bfloat16
attn_implementation: flash_attention_2
dataset_name: knoveleng/open-s1
system_prompt: "Think, then answer within \\\\boxed{}."
bf16: true
use_vllm: false
vllm_device: auto
gradient_accumulation_steps: 4
gradient_checkpointing: true
gradient_checkpointing_kwargs: {use_reentrant: false}
hub_model_id: OpenRS-GRPO
learning_rate: 1.0e-06
logging_steps: 1
logging_strategy: steps
lr_scheduler_type: cosine_with_min_lr
lr_scheduler_kwargs: {min_lr_rate: 0.1}
max_prompt_length: 512
max_completion_length: 3584
max_steps: 100
num_generations: 6
num_train_epochs: 1
output_dir: data/OpenRS-GPG-RS1
overwrite_output_dir: true
per_device_train_batch_size: 6
push_to_hub: false
report_to: [tensorboard]
reward_funcs: [format_v2, cosine]
reward_weights: [1.0, 2.0]
cosine_max_len: 3584
save_strategy: "steps"
save_steps: 50
seed: 42
temperature: 0.7
warmup_ratio: 0.1
"""

# ...and of open-r1/recipes/Qwen2.5-Math-7B/grpo/config_simple_rl_gpg.yaml (the 7B run)
OPEN_R1_7B = """
model_name_or_path: Qwen/Qwen2.5-Math-7B
torch_dtype: bfloat16
dataset_name: DigitalLearningGmbH/MATH-lighteval
dataset_config: default
system_prompt: "Please reason step by step, and put your final answer within \\\\boxed{}."
beta: 0.0
bf16: true
do_eval: true
eval_strategy: epoch
gradient_accumulation_steps: 4
learning_rate: 2.0e-06
lr_scheduler_type: constant_with_warmup
max_prompt_length: 512
max_completion_length: 1024
max_steps: -1
num_generations: 8
num_train_epochs: 1
per_device_train_batch_size: 16
reward_funcs: [accuracy]
reward_weights: [1.0]
save_strategy: epoch
save_total_limit: 1
seed: 42
warmup_ratio: 0.1
scale_rewards: false
adjust_gd: true
min_inverse_alpha: 0.5
"""


def _recipe(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_open_rs_recipe_means_the_same_here(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "16")  # as accelerate launch --num_processes 16 sets it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg, report = gpgrl_recipe.load_recipe(_recipe(tmp_path, OPEN_RS))
    assert cfg.model.name_or_path == "models/DeepSeek-R1-Distill-Qwen-1.5B" and cfg.model.dtype == "bfloat16"
    assert cfg.model.gradient_checkpointing and cfg.model.attn_implementation == "flash_attention_2"
    assert (cfg.data.dataset, cfg.data.prompt_column, cfg.data.answer_column) == ("knoveleng/open-s1", "problem", "solution")
    assert cfg.data.system_prompt.startswith("Think, then answer")
    assert (cfg.rollout.group_size, cfg.rollout.max_completion_length, cfg.rollout.temperature) == (6, 3584, 0.7)
    assert (cfg.optim.lr, cfg.optim.lr_scheduler, cfg.optim.min_lr_rate, cfg.optim.warmup_ratio) == (
        1e-6, "cosine_with_min_lr", 0.1, 0.1)
    # 6 answers per device x 16 processes x 4 accumulation steps = 384 answers = 64 groups of 6
    assert (cfg.train.prompts_per_step, cfg.train.micro_batch_size, cfg.train.steps) == (64, 6, 100)
    # overwrite_output_dir: true is not taken from a file (a recipe never deletes a run; no original script reads it)
    assert (cfg.train.save_every, cfg.train.overwrite, cfg.train.mixed_precision, cfg.train.seed) == (50, False, "bf16", 42)
    assert [(r.name, r.weight, r.params) for r in cfg.rewards] == [
        ("format_v2", 1.0, {}), ("cosine", 2.0, {"max_len": 3584, "semantics": "math_verify_0.5.2"})]
    assert cfg.log.report_to == ["jsonl", "tensorboard"] and cfg.log.log_every == 1
    algo = cfg.algo  # keys left out take the original's defaults; open-rs gpg.py has no KL in its loss
    assert (algo.scale, algo.age, algo.beta, algo.resample_threshold) == ("group", False, 0.0, 0.0)
    assert algo.tempered_logprobs and algo.loss_agg == "token_mean" and not algo.ratio  # TRL >= 0.16
    assert "beta" in report.defaults and report.defaults["scale_rewards"] is True
    assert cfg.rollout.top_k == 50 and report.defaults["top_k"] == 50  # TRL's / transformers' default
    assert report.ignored == ["gradient_checkpointing_kwargs", "hub_model_id", "logging_strategy", "model_revision",
                              "push_to_hub", "vllm_device"]
    assert [str(w.message).split(": ", 1)[1] for w in caught] == [
        "overwrite_output_dir: true is ignored (the original's scripts never read it either: they resume from the "
        "folder's last checkpoint): a recipe never deletes a run; to replace the run in its output folder, pass "
        "--overwrite on the command line (--resume continues it)",
        "keys with no meaning in gpgrl, ignored: " + ", ".join(report.ignored)]  # one warning for those keys


@pytest.mark.parametrize("flag", ["overwrite", "train.overwrite", "overwrite_output_dir"])
def test_only_the_command_line_overwrites_a_flat_recipes_run(tmp_path, flag):
    """The original's YAMLs set overwrite_output_dir: true (read by none of its scripts); only --overwrite (or
    the original's own --overwrite_output_dir on the command line) asks gpgrl to delete a run, silently."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = gpgrl_recipe.load_config(_recipe(tmp_path, OPEN_RS), {flag: "true"})
    assert cfg.train.overwrite is True
    assert not any("overwrite" in str(w.message) for w in caught)


@pytest.mark.parametrize(("processes", "prompts"), [(1, 8), (8, 64)])
def test_the_7b_recipe_and_its_batch_arithmetic(tmp_path, processes, prompts):
    cfg, report = load_recipe(_recipe(tmp_path, OPEN_R1_7B), num_processes=processes)
    # 16 answers per device x processes x 4 accumulation steps / 8 answers per prompt
    assert cfg.train.prompts_per_step == prompts == 16 * processes * 4 // 8
    assert cfg.train.epochs == 1.0  # max_steps -1: the dataset's size decides
    assert cfg.train.save_every == 0 and cfg.train.save_total_limit == 1
    algo = cfg.algo  # adjust_gd: only open-r1's gpg.py accepts it, so that is the script
    assert (algo.name, algo.scale, algo.age, algo.beta, algo.resample_threshold) == ("gpg", "none", True, 0.0, 0.5)
    assert algo.resample_count == "gathered" and algo.tempered_logprobs
    assert any("open-r1/src/open_r1/gpg.py (the only one that accepts adjust_gd, min_inverse_alpha)" in n
               for n in report.notes)
    assert cfg.data.subset is None  # "default" means the dataset's one configuration
    assert {"do_eval", "eval_strategy"} <= set(report.ignored)
    with pytest.raises(ConfigError, match="--preset does not apply to an open-r1 style recipe"):
        load_config(_recipe(tmp_path, OPEN_R1_7B), {"preset": "grpo"})


def test_translation_errors_name_the_key_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'learning_rat'.*did you mean 'learning_rate'"):
        load_config(_recipe(tmp_path, OPEN_RS + "learning_rat: 1e-6\n"))
    with pytest.raises(ConfigError, match=r"6 x 1 processes x .* = 18 answers per step, not a multiple of num_generations 4"):
        load_recipe(_recipe(tmp_path, OPEN_RS.replace("num_generations: 6", "num_generations: 4")
                            .replace("gradient_accumulation_steps: 4", "gradient_accumulation_steps: 3")), num_processes=1)
    with pytest.raises(ConfigError, match="mixes open-r1 style keys with gpgrl sections"):
        load_config(_recipe(tmp_path, OPEN_RS + "train: {steps: 3}\n"))
    with pytest.raises(ConfigError, match="code execution"):
        load_config(_recipe(tmp_path, OPEN_RS.replace("[format_v2, cosine]", "[code, cosine]")))


def test_steps_for_epochs():
    # 8,523 questions, 32 per step: 266 whole steps per epoch; 5 epochs = 1,330; 0.5 epochs = 133
    assert steps_for_epochs(8523, 32, 5) == 1330
    assert steps_for_epochs(8523, 32, 0.5) == 133
    assert steps_for_epochs(20, 32, 3) == 3  # fewer records than a step: one step per epoch
    with pytest.raises(ValueError):
        steps_for_epochs(10, 2, 0)


def test_epochs_decide_the_steps_once_the_data_is_loaded(tmp_path):
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    cfg = tiny_config(tmp_path, train={"epochs": 1.5, "prompts_per_step": 4})
    tok = build_char_tokenizer()
    records = [{"question": f"{i}+1", "answer": str(i + 1)} for i in range(10)]
    trainer = Trainer(cfg, model=build_tiny_model(tok), tokenizer=tok, dataset=records, rewards=["accuracy"])
    trainer.close()  # its metrics file
    assert trainer.total_steps == 3  # 10 // 4 = 2 steps per epoch, x 1.5
    assert cfg.train.steps == 2  # the config is left as it was given


def test_dry_run_checks_without_loading_a_model(tmp_path):
    from gpgrl.cli import main

    data = tmp_path / "train.jsonl"
    data.write_text('{"problem": "1+1", "solution": "2"}\n' * 10)
    recipe = _recipe(tmp_path, OPEN_R1_7B.replace("DigitalLearningGmbH/MATH-lighteval", str(data)))
    assert main(["train", "--config", str(recipe), "--dry-run", "--num-processes", "2"]) == 0
    bad = _recipe(tmp_path, OPEN_R1_7B.replace("DigitalLearningGmbH/MATH-lighteval", str(data))
                  .replace("reward_funcs: [accuracy]", "reward_funcs: [acuracy]"), "bad.yaml")
    assert main(["train", "--config", str(bad), "--dry-run"]) == 2
    wrong_column = _recipe(tmp_path, "model: {name_or_path: m}\ndata: {dataset: " + str(data) + "}\n", "col.yaml")
    assert main(["train", "--config", str(wrong_column), "--dry-run"]) == 2


def test_dry_run_report(tmp_path, capsys):
    from gpgrl.cli import main

    data = tmp_path / "train.jsonl"
    data.write_text('{"problem": "1+1", "solution": "2"}\n' * 100)
    recipe = _recipe(tmp_path, OPEN_R1_7B.replace("DigitalLearningGmbH/MATH-lighteval", str(data)))
    assert main(["train", "--config", str(recipe), "--dry-run", "--num-processes", "2"]) == 0
    out = capsys.readouterr().out
    # 16 x 2 x 4 / 8 = 16 prompts per step; 100 records / 16 = 6 whole steps for 1 epoch
    assert "per_device_train_batch_size      -> train.micro_batch_size = 16; train.prompts_per_step = 16 x 2 processes" in out
    assert "train.epochs 1 -> train.steps 6" in out
    assert "batch: 16 prompts x G=8 = 128 answers per step over 2 process(es): 64 per process" in out
    assert yaml.safe_load(out[out.index("effective settings:") + 19 : out.index("dry run OK")])["train"]["steps"] == 6


def test_a_flat_recipe_must_name_its_script(tmp_path):
    # open-rs's gpg.yaml names no script, and gpg.py, gpg_std.py and grpo.py all read it: refused, not guessed
    unnamed = OPEN_RS.replace("original_script: openrs_gpg\n", "")
    with pytest.raises(ConfigError, match=r"which of the original's scripts ran this recipe\?(.|\n)*openrs_gpg_std"):
        load_config(_recipe(tmp_path, unnamed))
    # ...the command line can name it, as a name or as the script's path
    cfg = load_config(_recipe(tmp_path, unnamed), {"original_script": "open-rs/src/open_r1/gpg_std.py"})
    assert cfg.algo.beta == 0.04
    with pytest.raises(ConfigError, match="unknown original_script 'gpg'"):
        load_config(_recipe(tmp_path, unnamed), {"original_script": "gpg"})
    # GPGConfig's keys exist only in open-r1's gpg.py: another script's parser would reject them
    with pytest.raises(ConfigError, match=r"adjust_gd: only open-r1's gpg\.py accepts these keys"):
        load_config(_recipe(tmp_path, OPEN_RS + "adjust_gd: true\n"))


@pytest.mark.parametrize(("script", "expected"), [
    # (preset, scale, beta, age, ratio, loss_agg, resample_threshold, resample_count, tempered_logprobs)
    ("openrs_gpg", ("gpg", "group", 0.0, False, False, "token_mean", 0.0, "kept", True)),
    ("openrs_gpg_std", ("gpg", "group", 0.04, False, False, "token_mean", 0.0, "kept", True)),
    ("openrs_grpo", ("grpo", "group", 0.04, False, True, "token_mean", 0.0, "kept", True)),
    ("openr1_gpg", ("gpg", "group", 0.04, False, False, "token_mean", 0.5, "gathered", True)),
    ("openr1_grpo", ("grpo", "group", 0.04, False, True, "token_mean", 0.0, "kept", True)),
])
def test_each_script_trains_as_it_did(tmp_path, script, expected):
    # OPEN_RS leaves beta, scale_rewards, adjust_gd and min_inverse_alpha out: each script's defaults apply
    cfg = load_config(_recipe(tmp_path, OPEN_RS.replace("openrs_gpg", script)))
    a = cfg.algo
    assert (a.name, a.scale, a.beta, a.age, a.ratio, a.loss_agg, a.resample_threshold, a.resample_count,
            a.tempered_logprobs) == expected
    assert not a.skip_no_signal  # every script steps the optimizer on a batch without signal


def test_reward_names_and_defaults_follow_the_fork(tmp_path):
    def rewards(text, script):
        return [r.name for r in load_config(_recipe(tmp_path, text.replace("openrs_gpg", script))).rewards]

    assert rewards(OPEN_RS.replace("[format_v2, cosine]", "[format, cosine]"), "openrs_gpg") == ["think_close", "cosine"]
    assert rewards(OPEN_RS.replace("[format_v2, cosine]", "[format, cosine]"), "openr1_grpo") == ["format", "cosine"]
    no_rewards = OPEN_RS.replace("reward_funcs: [format_v2, cosine]\nreward_weights: [1.0, 2.0]\n", "")
    assert rewards(no_rewards, "openr1_gpg") == ["accuracy", "format", "tag_count"]  # open-r1's default
    with pytest.raises(ConfigError, match="open-rs's tag_count"):  # open-rs's default has its own tag_count
        rewards(no_rewards, "openrs_gpg")


def test_top_k_is_the_original_samplers(tmp_path):
    assert load_config(_recipe(tmp_path, OPEN_RS)).rollout.top_k == 50
    assert load_config(_recipe(tmp_path, OPEN_RS + "top_k: 20\n")).rollout.top_k == 20
    # with vLLM too: TRL 0.16 (which both forks ran) passes its top_k 50 to vLLM's SamplingParams
    vllm = OPEN_RS.replace("use_vllm: false", "use_vllm: true")
    assert load_config(_recipe(tmp_path, vllm)).rollout.top_k == 50
    assert load_config(_recipe(tmp_path, vllm.replace("openrs_gpg", "openr1_grpo"))).rollout.top_k == 50


# open-r1/recipes/OlympicCoder-7B/sft/config_v00.00.yaml, shortened
SFT = """
model_name_or_path: Qwen/Qwen2.5-Coder-7B-Instruct
dataset_name: open-r1/codeforces-cots
dataset_config: solutions_decontaminated
learning_rate: 4.0e-05
max_length: 32768
packing: false
per_device_train_batch_size: 2
"""


def test_supervised_fine_tuning_configs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"supervised fine-tuning \(SFT\) config .*max_length, packing and no reward_funcs"):
        load_config(_recipe(tmp_path, SFT))
    # a bare config with neither rewards nor any RL key is refused as well
    with pytest.raises(ConfigError, match=r"not a GRPO / GPG config of the original \(it has no reward_funcs and no RL setting"):
        load_config(_recipe(tmp_path, "model_name_or_path: m\ndataset_name: d\nlearning_rate: 1.0e-5\n"))


# open-r1/recipes/Qwen2.5-Math-7B/grpo/config_simple_rl_math_l35_v1.yaml, shortened
SIMPLE_RL = """
model_name_or_path: models/Qwen2.5-Math-7B
dataset_name: "DATA/simplelr_qwen_level3to5"
dataset_config: "train.parquet"
system_prompt: "You are a helpful AI Assistant."
beta: 0.0
gradient_accumulation_steps: 1
learning_rate: 1.0e-06
lr_scheduler_type: constant_with_warmup
max_prompt_length: 1024
max_completion_length: 3000
max_steps: -1
num_generations: 8
num_train_epochs: 3
per_device_train_batch_size: 8
reward_funcs: [accuracy_lv35]
save_strategy: "steps"
save_steps: 33
warmup_ratio: 0.03
temperature: 1.0
top_p : 1.0
"""

# the command line of open-r1/train.sh that ran it
TRAIN_SH = ["--output_dir", "Your_Path", "--save_strategy", "epoch", "--save_total_limit", "5", "--num_train_epochs",
            "5", "--gradient_accumulation_steps", "4", "--max_completion_length", "2048", "--max_prompt_length", "768",
            "--scale_rewards", "False", "--adjust_gd", "--min_inverse_alpha", "0.5", "--eval_strategy", "epoch"]


def test_the_7b_run_with_its_train_sh_overrides(tmp_path):
    from gpgrl.cli import _parse_overrides

    path = _recipe(tmp_path, SIMPLE_RL.replace("DATA", str(tmp_path)))
    _, overrides = _parse_overrides(TRAIN_SH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg, _ = load_recipe(path, {**overrides, "original_script": "openr1_gpg"}, num_processes=8)
    a = cfg.algo
    assert (a.scale, a.age, a.beta, a.resample_threshold, a.resample_count) == ("none", True, 0.0, 0.5, "gathered")
    # 8 answers x 8 processes x 4 accumulation steps / 8 = 32 prompts per step; 5 epochs; a save per epoch
    assert (cfg.train.prompts_per_step, cfg.train.epochs, cfg.train.save_every, cfg.train.save_total_limit) == (32, 5.0, 0, 5)
    assert (cfg.rollout.max_completion_length, cfg.data.max_prompt_length, cfg.train.output_dir) == (2048, 768, "Your_Path")
    # the parquet's pre-templated prompt as it is: no chat template, no system prompt, gold `target`
    d = cfg.data
    assert (d.dataset, d.prompt_column, d.answer_column) == (f"{tmp_path}/simplelr_qwen_level3to5/train.parquet",
                                                            "prompt.0.content", "target")
    assert (d.subset, d.chat_template, d.system_prompt) == (None, False, "")
    assert [r.name for r in cfg.rewards] == ["accuracy"] and cfg.rollout.top_k == 50
    # open-r1 rewards.py: accuracy_reward_lv35 parses the gold as "$\\boxed{...}$", accuracy_reward as written,
    # both with math-verify 0.5.2 (the fork's setup.py pin)
    assert cfg.rewards[0].params == {"semantics": "math_verify_0.5.2", "boxed_gold": True}
    listed, _ = load_recipe(path, {"reward_funcs": "accuracy_lv35,format,accuracy", "original_script": "openr1_gpg"})
    assert [(r.name, r.weight, r.params) for r in listed.rewards] == [
        ("accuracy", 1.0, {"semantics": "math_verify_0.5.2", "boxed_gold": True}), ("format", 1.0, {}),
        ("accuracy", 1.0, {"semantics": "math_verify_0.5.2", "boxed_gold": False})]
    with pytest.raises(ConfigError, match="--adjust_gd takes a boolean"):
        load_recipe(path, {"adjust_gd": "maybe", "original_script": "openr1_gpg"})
    # open-r1's grpo.py reads the same parquet but makes the prompt a user turn: the chat template wraps it again
    grpo, _ = load_recipe(path, {"original_script": "openr1_grpo"})
    assert (grpo.data.prompt_column, grpo.data.chat_template, grpo.data.system_prompt) == ("prompt.0.content", True, "")
    # another folder: dataset_config is a file name, refused
    with pytest.raises(ConfigError, match=r"dataset_config 'train\.parquet' is a file name"):
        load_recipe(_recipe(tmp_path, SIMPLE_RL.replace("simplelr_qwen_level3to5", "other")), {"original_script": "openr1_grpo"})


def test_the_simplerl_parquet_prompt_is_used_as_it_is(tmp_path):
    pytest.importorskip("pyarrow")
    import datasets

    from gpgrl.data.datasets import get_field, load_records
    from gpgrl.data.prompts import PromptBuilder
    from gpgrl.models.tiny import build_char_tokenizer

    folder = tmp_path / "simplelr_qwen_level3to5"
    folder.mkdir()
    text = "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n"
    datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": text}], "target": "2"}]).to_parquet(
        str(folder / "train.parquet"))
    cfg, _ = load_recipe(_recipe(tmp_path, SIMPLE_RL.replace("DATA", str(tmp_path)) + "adjust_gd: true\n"))
    record = load_records(cfg.data.dataset)[0]
    question = get_field(record, cfg.data.prompt_column)
    assert PromptBuilder(build_char_tokenizer(), cfg.data.prompt_preset()).text(question) == text
    assert get_field(record, cfg.data.answer_column) == "2"


@pytest.mark.parametrize(("tempered", "expected"), [(True, 0.7), (False, 1.0)])
def test_the_loss_log_probs_follow_tempered_logprobs(tmp_path, monkeypatch, tempered, expected):
    """tempered_logprobs: true takes the loss's log-probs from softmax(logits / T), as TRL >= 0.16 (which
    the open-rs and open-r1 runs used); false from softmax(logits), as TRL before 0.16."""
    import gpgrl.train.trainer as trainer_module
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from helpers import ScriptedEngine, tiny_config

    seen = []
    real = trainer_module.completion_logprobs

    def spy(*args, temperature, **kwargs):
        seen.append(temperature)
        return real(*args, temperature=temperature, **kwargs)

    monkeypatch.setattr(trainer_module, "completion_logprobs", spy)
    cfg = tiny_config(tmp_path, rewards=[{"name": "helpers:has_one"}], rollout={"temperature": 0.7},
                      algorithm={"preset": "gpg", "resample_threshold": 0.0, "tempered_logprobs": tempered},
                      train={"steps": 1, "prompts_per_step": 4})
    tok = build_char_tokenizer()
    trainer = trainer_module.Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok,
                                                 engine=ScriptedEngine(tok))
    trainer.train()
    assert seen and set(seen) == {expected}


@pytest.mark.parametrize(("skip", "skipped"), [(True, 1.0), (False, 0.0)])
def test_a_step_without_signal_steps_the_optimizer_as_the_original(tmp_path, skip, skipped):
    """Every reward equal (count_sevens gives 0 to the scripted answers, which have no 7): no signal."""
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.train.trainer import Trainer
    from helpers import ScriptedEngine, tiny_config

    cfg = tiny_config(tmp_path, algorithm={"preset": "gpg", "resample_threshold": 0.0, "skip_no_signal": skip},
                      train={"steps": 1, "prompts_per_step": 4})
    tok = build_char_tokenizer()
    trainer = Trainer.from_config(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok,
                                  engine=ScriptedEngine(tok))
    (metrics,) = trainer.train()
    assert metrics["adv/no_signal"] == 1.0 and metrics["optim/skipped"] == skipped
    steps = [s["step"] for s in trainer.optimizer.state.values() if "step" in s]
    assert bool(steps) is not skip  # Adam's state exists only when the optimizer stepped
    if not skip:
        assert metrics["optim/grad_norm"] == 0.0  # zero advantages, no KL: a zero gradient


def test_age_scales_kl_is_the_original_division_of_the_whole_loss():
    """open-r1 gpg.py: loss = (-A logp + beta KL) token mean / inverse_alpha. One answer of 2 tokens,
    logp (-1, -2), reference (-1, -1): k3 KL = (0, e - 2); A = 1, beta = 0.5, inverse_alpha = 0.5 (alpha 2).
    Original: ((1 + 2) / 2 + 0.5 (e - 2) / 2) / 0.5 = 3 + (e - 2) / 2 = 3.3591..."""
    import math

    import torch

    from gpgrl.algorithms import get_preset, policy_loss

    logp, ref, mask = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.0, -1.0]]), torch.ones(1, 2)
    expected = 3 + (math.e - 2) / 2
    # age_scales_kl: the trainer passes advantages x alpha and beta x alpha
    loss, _ = policy_loss(logp, mask, torch.tensor([2.0]), preset=get_preset("gpg", beta=1.0), ref_logp=ref)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # without it (gpgrl's default) only the advantages carry alpha: 3 + 0.5 (e - 2) / 2
    loss, _ = policy_loss(logp, mask, torch.tensor([2.0]), preset=get_preset("gpg", beta=0.5), ref_logp=ref)
    assert float(loss) == pytest.approx(3 + (math.e - 2) / 4, rel=1e-6)
    # the translation of open-r1 gpg.py sets it
    assert load_config_text("openr1_gpg").algo.age_scales_kl
    assert not load_config_text("openrs_gpg_std").algo.age_scales_kl


def load_config_text(script):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_config(_recipe(Path(d), OPEN_RS.replace("openrs_gpg", script)))


def test_the_key_mapping_table_lists_every_key_and_script():
    from pathlib import Path

    from gpgrl.openr1 import ALGORITHM_KEYS, COMBINED, MAPPING, SCRIPTS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "recipes.md").read_text()
    table = doc[doc.index("## Key mapping"):doc.index("## The curriculum sampler")]
    for key, spec in {**MAPPING, **ALGORITHM_KEYS}.items():
        assert f"| `{key}` | `{spec.target}` |" in table, key
    for key in COMBINED:
        assert f"| `{key}` | |" in table, key
    for name, script in SCRIPTS.items():
        assert f"| `{name}` | `{script.path}`" in doc, name


OPEN_RS_SCRIPTS = ("openrs_gpg", "openrs_gpg_std", "openrs_grpo")
RS_RECIPES = ("r1-distill-qwen-1.5b_gpg-rs1", "r1-distill-qwen-1.5b_gpg-rs3")


@pytest.mark.parametrize("script", OPEN_RS_SCRIPTS)
def test_open_rs_ran_on_trl_0_16_with_tempered_log_probs(tmp_path, script):
    """open-rs/setup.py (AMAP-ML/GPG e096da8) pins TRL 69ad852, but open-rs/src/open_r1/trainer/__init__.py
    imports gpg_std_trainer, whose `from trl.extras.profiling import profiling_decorator, profiling_context`
    fails there (69ad852's trl/extras/profiling.py has only profiling_decorator; profiling_context is TRL
    commit ac327d5, first in v0.16.0), and whose `_generate_and_score_completions` reads
    `self.vllm_client`, `self.min_p`, `self._total_train_tokens` (TRL commit f713f61, v0.16.0). TRL
    v0.16.0's grpo_trainer.py `_get_per_token_logps` has `logits = logits / self.temperature` (commit
    04f6597, an ancestor of f713f61), and neither open-rs trainer overrides it: tempered log-probs, T = 0.7."""
    cfg, report = load_recipe(_recipe(tmp_path, OPEN_RS.replace("openrs_gpg", script)))
    assert cfg.algo.tempered_logprobs and cfg.rollout.temperature == 0.7
    assert any("on TRL >= 0.16 (setup.py pins 69ad852, which cannot import its trainers)" in n for n in report.notes)
    for recipe in RS_RECIPES:
        rs = load_config(Path(__file__).resolve().parents[1] / "recipes" / f"{recipe}.yaml")
        assert rs.algo.tempered_logprobs and rs.rollout.temperature == 0.7


@pytest.mark.parametrize("script", ["openrs_grpo", "openr1_grpo"])
def test_trl_grpo_translations_take_the_token_mean(tmp_path, script):
    """TRL's GRPOTrainer.compute_loss, at 69ad852 (open-rs's pin) and at v0.16.0 (open-r1's), trl/trainer/
    grpo_trainer.py: `loss = (per_token_loss * completion_mask).sum() / completion_mask.sum()`: one token
    mean over the micro-batch, not a per-answer mean. By hand, on-policy (ratio 1), beta x KL = 0 (the
    reference equals the policy): answer 1 has 1 token and A = +1, answer 2 has 3 tokens and A = -1; the
    per-token losses are -A: (-1) and (1, 1, 1). Token mean: (-1 + 3) / 4 = 0.5; per-answer mean then batch
    mean (gpgrl's grpo preset, the GRPO paper's): (-1 + 1) / 2 = 0."""
    import torch

    from gpgrl.algorithms import get_preset, policy_loss

    algo = load_config(_recipe(tmp_path, OPEN_RS.replace("openrs_gpg", script))).algo
    assert (algo.name, algo.ratio, algo.loss_agg, algo.beta) == ("grpo", True, "token_mean", 0.04)
    logp = torch.full((2, 3), -1.0)
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([1.0, -1.0])
    loss, _ = policy_loss(logp, mask, adv, preset=algo, ref_logp=logp)
    assert float(loss) == pytest.approx(0.5)
    paper, _ = policy_loss(logp, mask, adv, preset=get_preset("grpo"), ref_logp=logp)
    assert float(paper) == pytest.approx(0.0)


@pytest.mark.parametrize("script", ["openrs_gpg", "openrs_gpg_std", "openrs_grpo", "openr1_gpg", "openr1_grpo"])
def test_dry_run_of_an_original_recipe_prints_rewards_and_the_log_prob_temperature(tmp_path, capsys, script):
    """`gpgrl train --dry-run` on the original's YAML (open-rs/recipes/gpg.yaml's keys) for each script."""
    from gpgrl.cli import main

    recipe = _recipe(tmp_path, OPEN_RS.replace("openrs_gpg", script).replace("[format_v2, cosine]",
                                                                              "[format, cosine]"))
    assert main(["train", "--config", str(recipe), "--dry-run", "--num-processes", "16"]) == 0
    out = capsys.readouterr().out
    assert ("loss log-probs: tempered, log softmax(logits / T) with T = rollout.temperature = 0.7, the distribution "
            "sampled from (algorithm.tempered_logprobs: true)") in out
    fmt = "think_close" if script.startswith("openrs") else "format"
    assert f"\n  1 x {fmt}: " in out
    assert ("\n  2 x cosine: correctness scaled by completion length on a cosine schedule (open-r1). params: "
            "max_len=3584 (recipe), semantics='math_verify_0.5.2' (recipe), min_value_wrong=0.0, max_value_wrong=-0.5, "
            "min_value_correct=0.5, max_value_correct=1.0, clip_len=False, timeout=5.0\n") in out


def test_dry_run_of_the_7b_run_and_an_untempered_override(tmp_path, capsys):
    from gpgrl.cli import main

    path = _recipe(tmp_path, SIMPLE_RL.replace("DATA", str(tmp_path)))
    assert main(["train", "--config", str(path), "--original_script", "openr1_gpg", *TRAIN_SH, "--dry-run",
                 "--num-processes", "8", "--algorithm.tempered_logprobs", "false"]) == 0
    out = capsys.readouterr().out
    assert ("loss log-probs: untempered, log softmax(logits) (T = 1), while sampling at T = 1 "
            "(algorithm.tempered_logprobs: false)") in out
    assert "\n  1 x accuracy: 1.0 if the completion's final answer equals the gold answer, else 0.0. params: " \
           "semantics='math_verify_0.5.2' (recipe), boxed_gold=True (recipe), timeout=5.0\n" in out  # no grader settings


@pytest.mark.parametrize("recipe", RS_RECIPES)
def test_dry_run_of_the_rs_recipes_says_tempered(capsys, recipe):
    from gpgrl.cli import main

    path = Path(__file__).resolve().parents[1] / "recipes" / f"{recipe}.yaml"
    assert main(["train", "--config", str(path), "--dry-run", "--num-processes", "16"]) == 0
    out = capsys.readouterr().out
    assert "loss log-probs: tempered, log softmax(logits / T) with T = rollout.temperature = 0.7" in out
    assert "\n  1 x think_close: 1.0 if \"\\n</think>\\n\" occurs exactly once in the completion, else 0.0.\n" in out


@pytest.mark.parametrize("keys, expected", [
    ({"vllm_importance_sampling_correction": False, "vllm_importance_sampling_cap": 2.0}, ("off", None)),
    ({"vllm_importance_sampling_correction": True}, ("sequence_mask", 3.0)),  # TRL's defaults
    ({"vllm_importance_sampling_mode": "token_truncate", "vllm_importance_sampling_cap": 2.5}, ("token_truncate", 2.5)),
    ({}, ("auto", None)),  # the original's TRL 0.16 has none of these keys: gpgrl's default
])
def test_trls_importance_sampling_keys_translate_to_the_correction(keys, expected):
    from gpgrl.openr1 import translate

    raw = {"model_name_or_path": "m", "reward_funcs": ["accuracy"], "use_vllm": True, **keys}
    out, _ = translate(raw, script="openr1_grpo")
    rollout = out["rollout"]
    assert (rollout.get("importance_correction", "auto"), rollout.get("importance_cap")) == expected


def test_an_unknown_trl_importance_mode_is_refused():
    from gpgrl.openr1 import TranslationError, translate

    raw = {"model_name_or_path": "m", "reward_funcs": ["accuracy"], "vllm_importance_sampling_mode": "seq"}
    with pytest.raises(TranslationError, match="vllm_importance_sampling_mode 'seq' is not one of token_truncate"):
        translate(raw, script="openr1_grpo")
