"""benchmarks/real_model_tools.py: SmolLM2 with a calculator on GSM8K (docs/real_model.md).

Fast tests: the held-out / training split (disjoint, on a made-up file and on the real GSM8K file where the
data folder is there), the recipe, and the report written from made-up parts (table numbers, plot, json).
Slow test (``-m slow``): the script end to end with tiny sizes on the real model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SHARED_DATA, load_script

rmt = load_script("real_model_tools")
GSM8K = SHARED_DATA / "math" / "gsm8k" / "test.jsonl"


def _rows(pairs):
    return [{"question": q, "answer": f"Some working.\n#### {a}"} for q, a in pairs]


def test_split_holds_out_the_first_problems_and_drops_repeats_from_training():
    rows = _rows([("q0", 1), ("q1", "1,200"), ("q2", 3), (" q0 ", 4), ("q4", 5)])
    held, train = rmt.split(rows, 2)
    assert [(r["index"], r["question"], r["answer"]) for r in held] == [(0, "q0", "1"), (1, "q1", "1200")]
    assert [(r["index"], r["answer"]) for r in train] == [(2, "3"), (4, "5")]  # index 3 repeats q0
    with pytest.raises(ValueError, match="hold out 1 to 4"):
        rmt.split(rows, 5)


@pytest.mark.skipif(not GSM8K.is_file(), reason=f"no {GSM8K}")
def test_split_of_the_real_gsm8k_file_is_disjoint():
    held, train = rmt.load_split(str(SHARED_DATA), 100)
    assert len(held) == 100 and [r["index"] for r in held] == list(range(100))
    assert held[0]["answer"] == "18"  # Janet's ducks
    assert not {r["index"] for r in held} & {r["index"] for r in train}
    assert not {r["question"].strip() for r in held} & {r["question"].strip() for r in train}
    assert len(train) == 1219 and train[0]["index"] == 100  # no question of the file repeats a held-out one
    assert [p.gold for p in rmt.problems(held[:2])] == ["18", "3"]


def test_recipe_trains_with_the_calculator_on_the_training_file():
    from gpgrl.config import from_dict

    cfg = from_dict(rmt.rl_config(seed=3, output_dir="/tmp/x", dataset="train.jsonl", s=rmt.SETTINGS, threads=1))
    assert cfg.rollout.tools == ["calculator"] and (cfg.rollout.max_turns, cfg.rollout.max_completion_length) == (3, 200)
    assert (cfg.data.dataset, cfg.train.seed, cfg.rollout.group_size, cfg.train.prompts_per_step) == ("train.jsonl", 3, 4, 2)
    assert cfg.data.prompt_preset().system_prompt == rmt.SMOL_SYSTEM  # SmolLM2's own, kept with the tools
    assert cfg.algo.max_resample_draws == rmt.MAX_DRAWS == 2


def _eval(acc, finished, calls=None, seconds=60.0):
    out = {"pass@1": acc, "finished_correct": finished, "mean_length": 150.0, "truncation_rate": 0.4,
           "seconds": seconds}
    if calls is not None:
        out.update(tool_calls=calls, used_tools=calls / 2, turns=1 + calls / 2, tool_errors=0.0)
    return out


def _step(step, reward, calls):
    return {"step": step, "reward/sampled_mean": reward, "episode/tool_calls": calls, "episode/turns": 1.0 + calls,
            "episode/tool_errors": 0.0, "episode/ended_done": 6.0, "episode/ended_length": 2.0,
            "episode/ended_max_turns": 0.0, "episode/ended_context": 0.0, "rollout/draws": 1.0, "adv/alpha": 1.0,
            "rollout/completion_length": 120.0, "perf/step_seconds": 90.0, "peak_rss_mb": 3000.0, "load": 3.5}


def _write_parts(output: Path) -> None:
    base = {"heldout": 100, "seconds_load": 20.0, "load": [2.0, 3.0, 4.5], "machine": "2 CPU cores (test)",
            "plain": _eval(0.02, 0.01), "tools": _eval(0.02, 0.02, calls=0.1)}
    (output / "base").mkdir(parents=True)
    (output / "base" / "summary.json").write_text(json.dumps(base))
    samples = output / "base" / "eval_tools"
    samples.mkdir()
    (samples / "samples.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"problem_index": 0, "gold": "18", "extracted_answer": "3", "correct": False, "completion": "no call",
         "tool_calls": 0, "turns": 1},
        {"problem_index": 1, "gold": "3", "extracted_answer": "3", "correct": True,
         "completion": '<tool_call>{"name": "calculator"}</tool_call> ``` 3', "tool_calls": 1, "turns": 2}]))
    (output / "nudge").mkdir()
    (output / "nudge" / "summary.json").write_text(json.dumps({**_eval(0.05, 0.0, calls=0.4, seconds=30.0),
                                                               "heldout": 20, "template": "{question}\nUse it.",
                                                               "load": [6.0]}))
    for seed, acc, finished, calls in ((0, 0.03, 0.02, 0.5), (1, 0.05, 0.03, 1.0)):
        folder = output / f"seed{seed}"
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps({
            "seed": seed, "steps": 2, "after": _eval(acc, finished, calls=calls, seconds=70.0),
            "rows": [_step(1, 0.0, 0.25), _step(2, 0.125, 0.5)], "seconds_train": 180.0, "seconds_load": 20.0,
            "load": [3.0, 5.0], "train_prompts": 1219, "episodes_trained": 16, "machine": "m", "command": "c"}))
        (folder / "eval_after").mkdir()
        (folder / "eval_after" / "samples.jsonl").write_text(
            "\n".join(json.dumps({"problem_index": i, "gold": "1", "extracted_answer": None, "correct": False,
                                   "completion": c, "tool_calls": 0, "turns": 1})
                      for i, c in enumerate(["no call" if seed else "other", "x"])))
        (folder / "train").mkdir()
        (folder / "train" / "metrics.jsonl").write_text('{"optim/skipped": 1.0}\n{"optim/skipped": 0.0}\n')


def test_report_from_made_up_parts(tmp_path):
    _write_parts(tmp_path / "runs")
    s = {**rmt.SETTINGS, "steps": 2}
    text = rmt.report(tmp_path / "runs", s, tmp_path / "results")
    lines = text.splitlines()
    assert "| base | no (plain baseline) | 2.0 | 1.0 | | | | 1 | 40.0 | 150 | 60 |" in lines
    assert "| base | yes | 2.0 | 2.0 | 0.10 | 5.0 | 0.00 | 1.05 | 40.0 | 150 | 60 |" in lines
    assert ("| after 2 GPG steps (2 seeds) | yes | 4.0 +- 1.4 | 2.5 +- 0.7 | 0.75 +- 0.35 | 37.5 +- 17.7 "
            "| 0.00 +- 0.00 | 1.38 +- 0.18 | 40.0 +- 0.0 | 150 | 70 |") in lines
    # after minus before, seed by seed: +1 and +3 points of 100 problems
    assert "Change with the calculator, after minus before: **+2.0 +- 1.4 points** (+2 of 100 problems, mean over seeds)." in lines
    assert ("asking for it (`{question} / Use it.`), on the first 20 held-out problems: accuracy 5.0% (right and not cut off 0.0%), **0.40 tool calls per "
            "episode**, 20.0% of episodes called it, 0.00 tool errors per episode (30s).") in text
    assert "1-minute load average during the runs: 2.0-6.0" in text and "seeds: 0, 1." in text
    assert "episodes sampled; 1 of the 2 steps carried a signal and updated the weights" in text
    assert "after it, 0 of the 100 held-out answers are the base model's" in text  # seed 0: "other", "x"
    assert "after it, 1 of the 100 held-out answers are the base model's" in text  # seed 1: "no call"
    assert ("training reward by step (every episode sampled): 0.00, 0.12; tool calls per episode of the trained "
            "batch by step: 0.25, 0.50.") in text
    assert "| 2 | 0.125 | 0.50 | 1.50 | 0 | 6 / 2 / 0 | 1 | 1.00 | 90 | 3.5 |" in lines
    # the episode with a tool call comes first among the examples; code fences in it cannot end the block
    first = text.index("**base_tools, problem 1**")
    assert first < text.index("**base_tools, problem 0**") and "''' 3" in text
    saved = json.loads((tmp_path / "results" / "real_model_tools.json").read_text())
    assert [r["after"]["pass@1"] for r in saved["seeds"]] == [0.03, 0.05]
    assert (tmp_path / "results" / "real_model_tools.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "results" / "real_model_tools.md").read_text() == text


def test_report_without_base_says_what_to_run(tmp_path):
    with pytest.raises(SystemExit, match="--part base"):
        rmt.report(tmp_path, rmt.SETTINGS, tmp_path / "results")


@pytest.mark.slow
@pytest.mark.skipif(not GSM8K.is_file(), reason=f"no {GSM8K}")
def test_script_end_to_end_on_smollm2(smollm2, tmp_path, capsys):
    out, results = tmp_path / "runs", tmp_path / "results"
    assert rmt.main(["--quick", "--heldout", "2", "--output", str(out), "--results", str(results),
                     "--data-dir", str(SHARED_DATA)]) == 0
    data = json.loads((results / "real_model_tools.json").read_text())
    assert data["base"]["heldout"] == 2 and [r["seed"] for r in data["seeds"]] == [0]
    assert set(data["base"]["tools"]) >= {"pass@1", "tool_calls", "used_tools", "finished_correct"}
    assert "tool_calls" not in data["base"]["plain"]  # single answers
    (step,) = data["seeds"][0]["rows"]
    assert step["step"] == 1 and step["episode/turns"] >= 1.0
    rollouts = (out / "quick" / "seed0" / "train" / "rollouts.jsonl").read_text().splitlines()
    assert len(rollouts) == 1 * 2 and "episode" in json.loads(rollouts[0])  # the trained batch: 1 prompt x G = 2
    # the prompts: SmolLM2's own system prompt in both; the tool instructions after it, once, with the tool
    plain, tools = (json.loads((out / "quick" / "base" / f"eval_{k}" / "samples.jsonl").read_text().splitlines()[0])
                    ["prompt"] for k in ("plain", "tools"))
    assert plain.startswith(f"<|im_start|>system\n{rmt.SMOL_SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert tools.startswith(f"<|im_start|>system\n{rmt.SMOL_SYSTEM}\n\nYou can use these tools")
    assert tools.count(rmt.SMOL_SYSTEM) == 1 and tools.count("<tools>") == 1 and '"name": "calculator"' in tools
    assert tools.split("<|im_start|>user\n")[1] == plain.split("<|im_start|>user\n")[1]  # same question turn
    assert "held-out accuracy" in (results / "real_model_tools.md").read_text()
