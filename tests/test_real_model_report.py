"""benchmarks/real_model.py without training: the held-out questions, the weights kept for the equal-answers
reading, and the report rendered from hand-made cell summaries (numbers a reader can check)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


rm = load_script("real_model")


def test_heldout_questions_are_the_test_split_never_trained_on():
    from gpgrl.data.datasets import load_records
    from gpgrl.eval.benchmarks import load_benchmark

    add3 = rm.heldout_problems("add3")
    assert len(add3) == 200 and all(100 <= int(q) <= 999 for p in add3 for q in p.question.split("+"))
    assert all(int(p.gold) == sum(int(q) for q in p.question.split("+")) for p in add3)
    train = {r["question"] for r in load_records("builtin:arithmetic", split="train", digits=3)}
    assert not train & {p.question for p in add3}  # what the recipe trains on (dataset_kwargs digits 3)
    # add2 is exactly gpgrl eval's `arithmetic` benchmark
    assert [(p.question, p.gold) for p in rm.heldout_problems("add2")] == \
        [(p.question, p.gold) for p in load_benchmark("arithmetic")]


def test_recipe_of_each_method():
    from gpgrl.config import from_dict

    algos = {run: from_dict(rm.rl_config(run, seed=1, output_dir="/tmp/x", steps=3, threads=1, task="add3")).algo
             for run in rm.RUNS}
    assert (algos["gpg"].age, algos["gpg"].resample_threshold, algos["gpg"].max_resample_draws) == (True, 0.5, rm.MAX_DRAWS)
    assert (algos["gpg_plain"].age, algos["gpg_plain"].resample_threshold) == (False, 0.0)
    assert algos["grpo"].beta == pytest.approx(0.04) and algos["dapo"].resample_threshold == 1.0
    assert algos["dapo"].max_resample_draws == rm.MAX_DRAWS


def test_reward_reads_answers_as_the_heldout_grading_does():
    from gpgrl.config import from_dict
    from gpgrl.rewards import get_reward

    spec = from_dict(rm.rl_config("gpg", seed=0, output_dir="/tmp/x", steps=1, threads=1)).rewards[0]
    reward = get_reward(spec.name, **spec.params)
    # SmolLM2's answers have no box: the last number is the answer, as `gpgrl eval` grades it
    assert reward(["10 + 21 = 31", "10 + 21 = 32", "so \\boxed{31}", "31, no: 30"], answer=["31"] * 4) == \
        [1.0, 0.0, 1.0, 0.0]


def test_snapshot_keeps_the_weights_of_the_step_it_was_taken_at():
    model = torch.nn.Linear(2, 1)
    snap = rm._Snapshot()
    snap.take(model, 0, 0)
    kept = snap.state["weight"]
    with torch.no_grad():
        model.weight.fill_(3.0)
    assert not torch.equal(snap.state["weight"], model.weight)  # a copy, not a view of the live weights
    snap.take(model, 4, 128)
    assert snap.state["weight"] is kept  # the same buffer, refilled
    assert torch.equal(snap.state["weight"], torch.full((1, 2), 3.0)) and (snap.step, snap.answers) == (4, 128)


def _summary(run, seed, after, at_budget, task="add3"):
    return {"task": task, "run": run, "label": rm.LABELS[run], "seed": seed, "accuracy_before": 0.015,
            "accuracy_after": after, "accuracy_delta": after - 0.015, "accuracy_at_budget": at_budget,
            "budget_answers": 640, "budget_step": 20 if run in ("gpg_plain", "grpo") else 12,
            "answers_total": 640 if run in ("gpg_plain", "grpo") else 1024, "heldout_questions": 200, "steps": 20,
            "seconds_per_step_mean": 10.0, "peak_rss_mb_max": 4000.0, "draws_mean": 1.6, "alpha_mean": 1.2,
            "evals": [[0, 0, 0.02], [20, 640, after]], "eval_size": 50, "threads": 1, "loadavg_1min_during": [2.0],
            "settings": rm.SETTINGS, "max_draws": rm.MAX_DRAWS, "machine": "test", "command": "real_model.py"}


def test_report_means_and_differences_by_hand(tmp_path):
    runs = tmp_path / "runs"
    cells = {("gpg", 0): (0.30, 0.20), ("gpg", 1): (0.40, 0.30), ("grpo", 0): (0.10, 0.10), ("grpo", 1): (0.20, 0.20)}
    for (run, seed), (after, at_budget) in cells.items():
        folder = runs / "add3" / f"{run}-seed{seed}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps(_summary(run, seed, after, at_budget)))
        (folder / "metrics.jsonl").write_text(json.dumps({"train/step": 1}) + "\n")
    out = tmp_path / "results"
    out.mkdir()
    rm.report(runs, out)
    md = (out / "real_model.md").read_text()
    assert (out / "real_model.png").stat().st_size > 0
    # GPG after: 30 and 40 -> 35.0 +- 7.1 (sample std sqrt(50)); GRPO: 15.0 +- 7.1
    assert "| GPG (AGE + resampling) | 2 | 35.0 +- 7.1 | +33.5 +- 7.1 | 25.0 +- 7.1 |" in md
    # same steps: GPG - GRPO = +20 on both seeds, spread 7.1: beyond; equal answers: +10 on both: beyond
    assert "**+20.0 pts** (seeds +20.0, +20.0; GPG above on 2, below on 0 of 2); seed spread 7.1 pts: **beyond" in md
    assert "**+10.0 pts** (seeds +10.0, +10.0; GPG above on 2, below on 0 of 2); seed spread 7.1 pts: **beyond" in md


def test_report_says_within_the_spread_when_seeds_disagree(tmp_path):
    runs = tmp_path / "runs"
    for (run, seed), after in {("gpg", 0): 0.5, ("gpg", 1): 0.3, ("gpg_plain", 0): 0.4, ("gpg_plain", 1): 0.35}.items():
        folder = runs / "add2" / f"{run}-seed{seed}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps(_summary(run, seed, after, after, task="add2")))
        (folder / "metrics.jsonl").write_text("")
    out = tmp_path / "results"
    out.mkdir()
    rm.report(runs, out)
    # diffs +10 and -5: mean +2.5, GPG's std 14.1 > 2.5
    assert "**+2.5 pts** (seeds +10.0, -5.0; GPG above on 1, below on 1 of 2); seed spread 14.1 pts: within" \
        in (out / "real_model.md").read_text()


def test_a_boxed_question_is_no_answer_in_training_or_heldout_grading(tmp_path):
    # math-verify alone counts \boxed{639+517} equal to 1156; on 3-digit addition every method learned to box
    # the question when the reward allowed it. The reward and the held-out grading both want the number.
    from gpgrl.config import from_dict
    from gpgrl.eval.benchmarks import get_benchmark
    from gpgrl.rewards import get_reward

    spec = from_dict(rm.rl_config("gpg", seed=0, output_dir="/tmp/x", steps=1, threads=1, task="add3")).rewards[0]
    answers = ["\\boxed{639+517}", "639 + 517 = 1156", "\\boxed{1,156}"]
    assert get_reward(spec.name, **spec.params)(answers, answer=["1156"] * 3) == [0.0, 1.0, 1.0]
    problem = rm.heldout_problems("add3", 1)[0]
    grade = get_benchmark("arithmetic").grade
    assert not grade(f"\\boxed{{{problem.question}}}", problem)["correct"]
    assert grade(f"\\boxed{{{problem.gold}}}", problem)["correct"]
    f = tmp_path / "samples.jsonl"
    f.write_text("\n".join(json.dumps({"extracted_answer": a}) for a in ["1156", "639+517", "1155", None]))
    assert rm.question_share(f) == 0.25


def test_cells_evaluated_on_more_questions_are_read_on_the_fewest(tmp_path):
    """A comparison resumed with a smaller --heldout: finished cells are read on their first N saved answers."""
    def samples(folder: Path, correct: list[int]) -> None:
        folder.mkdir(parents=True)
        (folder / "samples.jsonl").write_text("\n".join(json.dumps({"correct": c, "extracted_answer": "7"})
                                                        for c in correct))

    task = tmp_path / "add2"
    samples(task / "base" / "eval", [1, 0, 1, 1])
    (task / "base" / "summary.json").write_text(json.dumps({"accuracy": 0.75, "questions": 4, "subset_accuracy": 0.5}))
    for run, n, after, budget in (("gpg", 4, [1, 1, 0, 0], [0, 1, 1, 1]), ("grpo", 2, [0, 1], None)):
        cell = task / f"{run}-seed0"
        samples(cell / "eval_after", after)
        if budget:
            samples(cell / "eval_at_budget", budget)
        (cell / "metrics.jsonl").write_text("{}")
        (cell / "summary.json").write_text(json.dumps({
            "task": "add2", "run": run, "seed": 0, "heldout_questions": n, "budget_step": 2, "accuracy_before": 0.75,
            "accuracy_after": sum(after) / n, "accuracy_delta": 0.0, "accuracy_at_budget": 0.5}))
    data = rm.collect(tmp_path)["add2"]
    gpg, grpo = data["gpg"][0], data["grpo"][0]
    # on the first 2 questions: base 1/2, GPG after 2/2, at equal answers 1/2
    assert (gpg["accuracy_before"], gpg["accuracy_after"], gpg["accuracy_delta"]) == (0.5, 1.0, 0.5)
    assert gpg["accuracy_at_budget"] == 0.5 and gpg["heldout_questions"] == 2 and gpg["rescored_from"] == 4
    assert grpo["accuracy_after"] == 0.5 and "rescored_from" not in grpo  # already on 2: as written


def test_heldout_out_of_range_or_beyond_the_base_evaluation_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        rm.main(["--heldout", "0", "--output", str(tmp_path)])
    assert e.value.code == 2 and "--heldout 0: each task has 200 held-out questions; give 1 to 200" in capsys.readouterr().err
    base = tmp_path / "add2" / "base"
    base.mkdir(parents=True)
    (base / "summary.json").write_text(json.dumps({"questions": 100, "accuracy": 0.1}))
    with pytest.raises(SystemExit, match="evaluated on 100 questions, fewer than --heldout 200; give --heldout 100"):
        rm.base_summary(tmp_path, "add2", 200)
    assert rm.base_summary(tmp_path, "add2", 100)["accuracy"] == 0.1  # as evaluated: not read again
