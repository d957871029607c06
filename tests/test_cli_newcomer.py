"""A newcomer's first commands: TRL names on `gpgrl train`'s command line, `--help` by section, `gpgrl presets`
one line each, and `gpgrl doctor`. Everything runs through `gpgrl.cli.main` as a user types it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from gpgrl import doctor
from gpgrl.cli import main
from gpgrl.config import ALIASES, MOST_CHANGED, help_rows
from gpgrl.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "recipes" / "quickstart_cpu.yaml")


def _flat_recipe(tmp_path: Path, extra: dict) -> Path:
    """An open-r1 style recipe with ``extra``'s keys, read by the YAML reader."""
    raw = {"model_name_or_path": "m", "dataset_name": "d.jsonl", "reward_funcs": ["accuracy"],
           "original_script": "openr1_grpo", "num_generations": 8, "per_device_train_batch_size": 8, **extra}
    path = tmp_path / "flat.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _value(cfg, dotted: str):
    section, key = dotted.split(".")
    return getattr(cfg.algo, key) if section == "algorithm" else getattr(getattr(cfg, section), key)


# (TRL name, as typed, as a YAML value, the gpgrl settings it sets, their value)
SAME_AS_THE_RECIPE_READER = [
    ("num_generations", "4", 4, ["rollout.group_size"], 4),
    ("learning_rate", "3e-6", 3e-6, ["optim.lr"], 3e-6),
    ("temperature", "0.7", 0.7, ["rollout.temperature"], 0.7),
    ("max_completion_length", "512", 512, ["rollout.max_completion_length"], 512),
    ("top_k", "-1", -1, ["rollout.top_k"], 0),                          # TRL's -1 is off: 0 here
    ("use_vllm", "true", True, ["rollout.engine"], "vllm"),
    ("torch_dtype", "bfloat16", "bfloat16", ["model.dtype"], "bfloat16"),
    ("report_to", "wandb", "wandb", ["log.report_to"], ["jsonl", "wandb"]),  # metrics.jsonl always
    ("logging_steps", "0", 0, ["log.log_every"], 1),
    ("bf16", "true", True, ["train.mixed_precision"], "bf16"),
    ("beta", "0.02", 0.02, ["algorithm.beta"], 0.02),
    ("scale_rewards", "false", False, ["algorithm.scale"], "none"),
    ("epsilon", "0.3", 0.3, ["algorithm.epsilon_low", "algorithm.epsilon_high"], 0.3),
    ("max_steps", "50", 50, ["train.steps"], 50),
    ("num_train_epochs", "2", 2, ["train.epochs"], 2.0),
    ("save_steps", "25", 25, ["train.save_every"], 25),
]


@pytest.mark.parametrize(("name", "typed", "yaml_value", "targets", "expected"), SAME_AS_THE_RECIPE_READER,
                         ids=[row[0] for row in SAME_AS_THE_RECIPE_READER])
def test_a_trl_name_on_the_command_line_means_what_the_recipe_reader_makes_of_it(
        tmp_path, name, typed, yaml_value, targets, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_yaml, _ = load_recipe(_flat_recipe(tmp_path, {name: yaml_value}), num_processes=1)
    lines: list[str] = []
    cli, report = load_recipe(None, {"model": "m", "dataset": "d.jsonl", name: typed}, note=lines.append)
    assert report is None
    for target in targets:
        assert _value(cli, target) == _value(from_yaml, target) == expected, target
    assert len(lines) == 1 and lines[0].startswith(f"--{name} {typed} -> --{targets[0]} "), lines


def test_trl_batch_arithmetic_on_the_command_line_is_the_recipe_readers(tmp_path):
    """16 answers per device x 2 processes x 2 accumulation steps / 8 answers per prompt = 8 prompts per step."""
    batch = {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 2, "num_generations": 8}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_yaml, _ = load_recipe(_flat_recipe(tmp_path, batch), num_processes=2)
    lines: list[str] = []
    cli, _ = load_recipe(None, {"model": "m", "dataset": "d", **{k: str(v) for k, v in batch.items()}},
                         num_processes=2, note=lines.append)
    assert (cli.train.prompts_per_step, cli.train.micro_batch_size, cli.rollout.group_size) == (8, 16, 8)
    assert (from_yaml.train.prompts_per_step, from_yaml.train.micro_batch_size) == (8, 16)
    assert ("--per_device_train_batch_size 16 --gradient_accumulation_steps 2 -> --train.prompts_per_step 8 "
            "--train.micro_batch_size 16 (16 x 2 processes x 2 accumulation / 8)") in lines


def test_dry_run_shows_each_translated_name_and_its_effect(capsys):
    assert main(["train", "--config", QUICKSTART, "--num_generations", "4", "--learning_rate", "3e-6",
                 "--push_to_hub", "true", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "TRL / open-r1 names on the command line:\n  --num_generations 4 -> --rollout.group_size 4\n" \
           "  --learning_rate 3e-6 -> --optim.lr 3e-6\n" in out
    effective = yaml.safe_load(out.split("effective settings:\n")[1].split("dry run OK")[0])
    assert effective["rollout"]["group_size"] == 4 and effective["optim"]["lr"] == 3e-6
    assert err.strip() == ("gpgrl train: warning: command line: TRL / open-r1 names with no meaning in gpgrl, "
                           "ignored: --push_to_hub")


def test_training_prints_one_line_per_translated_name_on_stderr(capsys, tmp_path):
    # the model folder does not exist: set-up stops with its error after the names were translated
    assert main(["train", "--model", str(tmp_path / "none"), "--dataset", "builtin:arithmetic",
                 "--num_generations", "4"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "gpgrl train: --num_generations 4 -> --rollout.group_size 4"
    assert err[1].startswith("gpgrl train: error: no such model folder") and len(err) == 2


def test_short_forms_win_over_trl_names_of_the_same_spelling(capsys):
    assert set(ALIASES) & {"seed", "output_dir"} == {"seed", "output_dir"}  # the documented clashes
    lines: list[str] = []
    cfg, _ = load_recipe(QUICKSTART, {"seed": "3", "output_dir": "runs/x"}, note=lines.append)
    assert (cfg.train.seed, cfg.train.output_dir, lines) == (3, "runs/x", [])


@pytest.mark.parametrize(("args", "message"), [
    (["--lerning_rate", "1e-5"], "unknown config key 'lerning_rate'; did you mean --learning_rate (TRL's name for "
                                 "--optim.lr)? `gpgrl train --help` lists every option"),
    (["--num_generation", "4"], "did you mean --num_generations (TRL's name for --rollout.group_size)?"),
    (["--train.stepz", "3"], "unknown config key 'train.stepz'; did you mean --train.steps?"),
    (["--train.lr", "1e-5"], "did you mean --optim.lr?"),
    (["--group-size", "4"], "did you mean --group_size?"),
    (["--gradient_accumulation_steps", "4"], "--gradient_accumulation_steps has no single gpgrl flag: TRL's answers "
                                             "per step are per-device x processes x accumulation; use "
                                             "--train.micro_batch_size M"),
    (["--per_device_train_batch_size", "8"], "--per_device_train_batch_size needs --num_generations with it"),
    (["--original_script", "openr1_gpg"], "pick the algorithm with --preset NAME"),
    (["--cosine_max_len", "1000"], "rewards: [{name: cosine, params: {max_len: VALUE}}]"),
    (["--num_generations", "4", "--rollout.group_size", "6"], "--num_generations 4 and --rollout.group_size both "
                                                              "set rollout.group_size; keep one"),
    (["--learning_rate", "abc"], "optim.lr must be float, got 'abc' (from --learning_rate abc)"),
    (["--num_generations", "1"], "rollout.group_size must be >= 2, got 1: a group of one answer has no "
                                 "group-relative advantage (from --num_generations 1)"),
])
def test_each_bad_option_gets_one_clear_line(capsys, args, message):
    assert main(["train", "--config", QUICKSTART, *args, "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("gpgrl train: error: ") and message in err, err


def test_the_docs_table_of_trl_names_is_the_codes():
    from gpgrl.openr1 import IGNORED, command_line_rows

    doc = (REPO / "docs" / "recipes.md").read_text()
    section = doc[doc.index("## TRL / open-r1 names on the command line"):doc.index("## The curriculum sampler")]
    rows = [line for line in section.splitlines() if line.startswith("| `--")]
    assert rows == [f"| `--{name}` | {what} |" for name, what in command_line_rows()]
    assert ", ".join(f"`--{k}`" for k in sorted(IGNORED)) in section
    assert dict(command_line_rows())["num_generations"] == "--rollout.group_size"


def test_train_help_has_the_top_ten_then_every_option_by_section(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    top = text.split("most-changed settings (short form, full key):\n")[1].split("\n  other short forms:")[0]
    assert len(top.splitlines()) == 10 == len(MOST_CHANGED)
    assert top.splitlines()[0].startswith("  --model, --model.name_or_path ")
    assert "  --lr, --optim.lr " in top and "  --train.prompts_per_step " in top
    others = [f"--{a} (--{t})" for a, t in ALIASES.items() if t not in MOST_CHANGED]
    assert "--seed (--train.seed)" in others and f"  other short forms: {', '.join(others)}\n" in text
    assert "--num_generations" in text.split("all options, by section:")[0]  # the line on TRL names
    full = text.split("all options, by section:\n")[1]
    headings = [line.split(":")[0] for line in full.splitlines() if re.match(r"^[a-z]+: ", line)]
    assert headings == ["model", "data", "rollout", "rewards", "algorithm", "optim", "train", "log"]
    listed = re.findall(r"^  --(\S+)", full, flags=re.M)
    assert sorted(listed) == sorted(["config", *(key for key, _, _ in help_rows())])  # each once, none lost
    rollout = full.split("\nrollout: ")[1].split("\nrewards: ")[0]
    assert "  --rollout.group_size " in rollout and "G: answers sampled per prompt (default: 8)" in rollout


def test_presets_list_one_line_each_with_the_settings_they_change(capsys):
    from gpgrl.algorithms.presets import DESCRIPTIONS, PRESETS

    assert set(DESCRIPTIONS) == set(PRESETS) and all("arXiv" in d for d in DESCRIPTIONS.values())
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_name = {line.split()[0]: line for line in lines[: len(PRESETS)]}
    assert list(by_name) == list(PRESETS)
    # grpo vs gpg, by hand: group std, no AGE, the ratio, KL 0.04, per-answer mean, no resampling
    assert by_name["grpo"].endswith("| changes: scale=group, age=False, ratio=True, beta=0.04, "
                                    "loss_agg=seq_mean_token_mean, resample_threshold=0.0")
    assert re.match(r"grpo +GRPO \(Shao et al. 2024", by_name["grpo"])
    assert by_name["dapo"].endswith("epsilon_high=0.28, resample_threshold=1.0")
    assert by_name["gpg"].endswith("| changes: (the reference)")


def test_presets_name_prints_one_presets_yaml_and_yaml_all(capsys):
    from gpgrl.algorithms.presets import PRESETS, get_preset

    assert main(["presets", "Dr. GRPO"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# dr_grpo: Dr. GRPO (Liu et al. 2025")
    assert yaml.safe_load(out) == {k: v for k, v in get_preset("dr_grpo").to_dict().items() if k != "name"}
    assert main(["presets", "--yaml"]) == 0
    assert re.findall(r"^# (\w+)$", capsys.readouterr().out, flags=re.M) == list(PRESETS)
    assert main(["presets", "ppo"]) == 2
    assert capsys.readouterr().err == f"gpgrl presets: error: unknown preset 'ppo'; valid presets: {', '.join(PRESETS)}\n"


# ------------------------------------------------------------------------------------------ doctor


def _doctor(capsys, *args: str) -> tuple[int, str]:
    code = main(["doctor", *args])
    return code, capsys.readouterr().out


def test_doctor_reports_each_section_and_exits_0(capsys, tmp_path, monkeypatch):
    (tmp_path / "data" / "math").mkdir(parents=True)
    monkeypatch.setenv("GPGRL_DATA", str(tmp_path / "data"))
    out_dir = tmp_path / "runs" / "a"
    code, out = _doctor(capsys, "--output_dir", str(out_dir))
    assert code == 0
    names = [line.split()[0] for line in out.split("\n\n")[1].splitlines()]
    assert names == ["gpgrl", "python", "platform", "torch", "GPU", "transformers", "accelerate", "datasets"]
    import torch

    assert f"torch         {torch.__version__}, " in out and f"{torch.get_num_threads()} threads" in out
    for what in ("vLLM engines", "real model smollm2", "LoRA (model.lora_r)", "vision models", "benchmark data"):
        assert re.search(rf"^  (ok|missing|unsupported) +{re.escape(what)}", out, flags=re.M), what
    assert f"  ok           benchmark data (gpgrl eval on local files, the tests): {tmp_path / 'data'} (GPGRL_DATA)" in out
    assert "  ok             math/: " in out
    assert (f"  missing        vision/: {tmp_path / 'data' / 'vision'} does not exist (vision benchmarks and their "
            "images); fix: export GPGRL_DATA=DIR, the folder holding math/ and vision/") in out
    assert (f"  ok           output folder {out_dir}: does not exist yet; training creates it in {tmp_path}, which is "
            "writable") in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # the write check left nothing, created nothing


def test_doctor_names_a_missing_extra_and_an_unsupported_vllm_with_their_fix(capsys, monkeypatch):
    real = doctor.installed_version
    fake = {"peft": None, "vllm": "0.12.0"}
    monkeypatch.setattr(doctor, "installed_version", lambda name: fake[name] if name in fake else real(name))
    code, out = _doctor(capsys)
    assert code == 0  # optional parts missing: still 0
    assert "  missing      LoRA (model.lora_r): peft not installed; fix: pip install 'gpgrl[peft]'\n" in out
    assert ("  unsupported  vLLM engines (rollout.engine vllm / vllm_server): vllm 0.12.0 is outside the supported "
            "range >=0.17,<0.35; fix: pip install 'vllm>=0.17,<0.35' (docs/engines.md)\n") in out
    fake.update(vllm="0.28.0", peft="0.14.0")
    code, out = _doctor(capsys)
    assert "  ok           vLLM engines (rollout.engine vllm / vllm_server): vllm 0.28.0 (supported: >=0.17,<0.35)\n" in out
    assert "  ok           LoRA (model.lora_r): peft 0.14.0\n" in out


def test_doctor_says_how_to_get_the_real_model(capsys, monkeypatch):
    from gpgrl import model_files

    # the lookup training uses (packaged_gguf), for a package that is surely not installed
    spec = model_files.PACKAGED_GGUF["smollm2"]._replace(distribution="gpgrl-test-no-such-package")
    monkeypatch.setitem(model_files.PACKAGED_GGUF, "smollm2", spec)
    code, out = _doctor(capsys)
    assert code == 0
    assert ("  missing      real model smollm2: model 'smollm2' is the GGUF file of the gpgrl-test-no-such-package "
            "package, which is not installed; fix: gpgrl models fetch smollm2\n") in out, out


def test_doctor_output_folder_under_a_file_is_missing_and_a_broken_core_exits_1(capsys, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    code, out = _doctor(capsys, "--output_dir", str(tmp_path / "file" / "run"))
    assert code == 0 and f"  missing      output folder {tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is a file" in out
    real = doctor.installed_version
    monkeypatch.setattr(doctor, "installed_version", lambda name: None if name == "accelerate" else real(name))
    code, out = _doctor(capsys)
    assert code == 1
    assert re.search(r"^  broken       accelerate: not installed \(gpgrl needs it\); fix: pip install 'accelerate",
                     out, flags=re.M)
    assert out.rstrip().endswith("features: not checked until the core works")


def test_doctor_help_and_bad_usage(capsys):
    assert main(["doctor", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: gpgrl doctor [--output_dir DIR]\n\nIt prints the versions")
    assert main(["doctor", "--verbose"]) == 2
    assert "unexpected argument '--verbose'" in capsys.readouterr().err
    assert main(["doctor", "--output_dir"]) == 2
    assert capsys.readouterr().err == "gpgrl doctor: error: --output_dir needs a folder: gpgrl doctor --output_dir DIR\n"


def test_doctor_runs_as_a_command(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "gpgrl.cli", "doctor", "--output_dir", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("gpgrl doctor: paste this into a bug report\n") and "\nfeatures:\n" in proc.stdout
    assert f"{REPO / 'src' / 'gpgrl'}" in proc.stdout and "import vllm" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_data_folder_resolves_as_the_tests_do():
    from conftest import SHARED_DATA
    from gpgrl.paths import data_dir

    assert data_dir() == SHARED_DATA


def test_rewards_lists_one_by_name_and_refuses_an_unknown_one(capsys):
    assert main(["rewards", "cosine"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cosine\n    cosine: ") and "    max_len = 1000\n" in out and "\naccuracy" not in out
    assert main(["rewards", "acuracy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpgrl rewards: error: unknown reward 'acuracy'; did you mean accuracy?") and err.count("\n") == 1
    assert main(["rewards", "--x"]) == 2
    assert capsys.readouterr().err.startswith("gpgrl rewards: error: unknown option '--x'")


def test_the_quickstart_recipe_before_the_quickstart_says_to_run_it_first(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/quickstart/sft here
    assert main(["train", "--config", QUICKSTART, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such model folder: 'runs/quickstart/sft'" in err
    assert err.rstrip().endswith("(runs/quickstart/sft is the warm-started model `gpgrl quickstart` writes: run that "
                                 "first, here)")
