"""``gpgrl quickstart --tools``: the multiplication task, warm-start rows equal to the episodes RL samples,
the recipe file, and a shortened end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from gpgrl.data.datasets import load_records
from gpgrl.data.multiplication import MultiplicationTask
from gpgrl.data.prompts import PromptBuilder
from gpgrl.models.tiny import build_char_tokenizer
from gpgrl.rewards import get_reward
from gpgrl.rollout.batch import RolloutBatch
from gpgrl.rollout.engine import SamplingParams
from gpgrl.rollout.episodes import episode_setup, run_episodes
from gpgrl.tasks.quickstart import TOOLS, main, rl_config, run, tool_sft_examples
from gpgrl.tasks.sft import IGNORE_INDEX, build_episode_sft_batch
from helpers import TurnEngine

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


def test_multiplication_task_is_disjoint_exact_and_loaded_by_name():
    task = MultiplicationTask(num_train=300, num_test=50, seed=7)
    train, test = task.records("train"), task.records("test")
    assert len(train) == 300 and len(test) == 50
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    for r in train + test:
        a, b = r["question"].split("*")
        assert len(a) == len(b) == 4 and int(r["answer"]) == int(a) * int(b)
    assert load_records("builtin:multiplication", split="test", num_train=300, num_test=50, seed=7) == test
    assert MultiplicationTask(digits=2).records("test")[0]["question"].count("*") == 1
    with pytest.raises(ValueError, match="101 distinct 1-digit products asked for, but there are only 81"):
        MultiplicationTask(digits=1, num_train=100, num_test=1).records("train")


def test_the_tool_episode_is_graded_on_its_own_answer_not_the_tools():
    acc = get_reward(*[TOOLS.rl["rewards"][0][k] for k in ("name",)], **TOOLS.rl["rewards"][0]["params"])
    right = ('<tool_call>{"name": "calculator", "arguments": {"expression": "1234*5678"}}</tool_call>'
             '<tool_response>7006652</tool_response><answer>7006652</answer>')
    # the tool's result alone is no answer; a restated question is no answer (number: true); the last block counts
    only_tool = '<tool_call>{"name": "calculator"}</tool_call><tool_response>7006652</tool_response>'
    assert acc([right, only_tool, "<answer>1234*5678</answer>", "<answer>7006652</answer><answer>1</answer>"],
               answer=["7006652"] * 4) == [1.0, 0.0, 0.0, 0.0]


def test_warm_start_rows_are_the_tokens_of_the_episodes_rl_samples(tok):
    """The same episode through run_episodes (a scripted policy, the real calculator) and through
    build_episode_sft_batch: identical prompt and completion ids; labels exactly the policy's tokens."""
    question = "1234*5678"
    call, tool_messages, answer = MultiplicationTask.tool_episode(question)
    setup = episode_setup(tools=["calculator"], max_turns=2)
    try:
        builder = PromptBuilder(tok, "plain", tools=setup.tools)
        prompt = builder.build(question)[0]
        engine = TurnEngine(tok, lambda turn, text, j: call if turn == 0 else answer)
        got = run_episodes(engine, [prompt], [{"question": question, "answer": "7006652"}], SamplingParams(200, 1.0),
                           1, setup.make_env, tokenizer=tok, max_turns=2, pad_id=tok.pad_token_id)
        functions = setup.tools
    finally:
        setup.close()
    assert tool_messages == [{"role": "tool", "name": "calculator", "content": "7006652"}]
    assert got.episodes[0].tool_calls == 1 and got.episodes[0].ended == "done"
    sampled = got.completion_ids[0][got.completion_mask[0].bool()].tolist()
    policy = got.loss_mask[0][got.completion_mask[0].bool()].tolist()

    batch = build_episode_sft_batch(tok, [question], [[call, tool_messages, answer]], functions)
    n = int(batch["attention_mask"][0].sum())
    assert n == len(prompt.ids) + len(sampled)
    assert batch["input_ids"][0, : len(prompt.ids)].tolist() == prompt.ids
    assert batch["input_ids"][0, len(prompt.ids) : n].tolist() == sampled
    labels = batch["labels"][0, len(prompt.ids) : n].tolist()
    assert labels == [t if keep else IGNORE_INDEX for t, keep in zip(sampled, policy)]
    assert batch["labels"][0, : len(prompt.ids)].tolist() == [IGNORE_INDEX] * len(prompt.ids)
    # 88 policy tokens (the call and its EOS), 41 of the tool's, 10 of the answer's (with EOS)
    assert policy == [1] * 88 + [0] * 41 + [1] * 10
    assert tok.decode(sampled[88:129]) == "<|user|><tool_response>7006652</tool_response><|end|><|assistant|>"
    assert "tools: calculator(expression)" in tok.decode(prompt.ids)


def test_a_direct_answer_is_a_one_turn_row_and_the_mix_draws_both(tok):
    batch = build_episode_sft_batch(tok, ["12*34"], ["<answer>408</answer>"])
    n = int(batch["attention_mask"][0].sum())
    assert tok.decode(batch["input_ids"][0, :n]) == "<|user|>12*34<|end|><|assistant|><answer>408</answer><eos>"
    assert tok.decode(batch["labels"][0, 8:n]) == "<answer>408</answer><eos>"
    import random

    records = MultiplicationTask(num_train=1000, num_test=1).records("train")
    examples = tool_sft_examples(MultiplicationTask, records, 0.3, random.Random(0))
    share = sum(isinstance(e, list) for e in examples) / len(examples)
    assert 0.25 < share < 0.35


def test_cat_pads_the_loss_mask_of_draws_of_different_lengths():
    def draw(width: int) -> RolloutBatch:
        ids = torch.ones(1, width, dtype=torch.long)
        return RolloutBatch(torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long), ids,
                            torch.ones(1, width, dtype=torch.long), torch.zeros(1, dtype=torch.bool), ["x"],
                            loss_mask=torch.tensor([[1] + [0] * (width - 1)]))

    both = RolloutBatch.cat([draw(3), draw(5)], pad_id=0)
    assert both.loss_mask.tolist() == [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]


def test_recipe_file_is_the_tools_quickstart_config():
    recipe = yaml.safe_load((ROOT / "recipes" / "quickstart_tools_cpu.yaml").read_text())
    assert recipe == rl_config("runs/quickstart-tools", setup=TOOLS, steps=TOOLS.steps)
    assert recipe["rollout"]["tools"] == ["calculator"]


def test_flags_that_do_not_go_together_are_refused(capsys):
    for argv, message in ((["--vision", "--tools"], "choose one of --vision and --tools"),
                          (["--no-tools-baseline"], "--no-tools-baseline goes with --tools")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_short_tools_quickstart_writes_summary_with_tool_calls_and_the_baseline(tmp_path):
    summary = run(tmp_path, seed=1, steps=2, sft_steps=10, eval_every=1, eval_size=6, quiet=True, tools=True,
                  baseline=True, rl_overrides={"train": {"prompts_per_step": 2}, "rollout": {"group_size": 2},
                                               "algorithm": {"preset": "gpg", "max_resample_draws": 1}})
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["quickstart"] == "tools" and on_disk["steps"] == 2 and on_disk["sft_steps"] == 10
    for key in ("accuracy_before", "accuracy_after", "tool_calls_before", "tool_calls_after", "seconds"):
        assert isinstance(on_disk[key], float)
    assert [e["step"] for e in on_disk["evals"]] == [0, 1, 2]
    assert on_disk["config"]["rollout"]["tools"] == ["calculator"]
    base = on_disk["no_tools"]
    assert [e["step"] for e in base["evals"]] == [0, 1, 2]
    assert base["config"]["rollout"]["tools"] == [] and base["config"]["train"]["steps"] == 2
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if "reward/mean" in x]
    assert [(x["run"], x["step"]) for x in train] == [("tools", 1), ("tools", 2), ("no tools", 1), ("no tools", 2)]
    assert all("episode/tool_calls" in x for x in train[:2]) and not any("episode/tool_calls" in x for x in train[2:])
    assert (tmp_path / "quickstart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "rl-no-tools").is_dir() and (tmp_path / "sft" / "config.json").is_file()
