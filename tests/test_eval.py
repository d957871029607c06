"""gpgrl.eval: metrics on hand-made records, benchmark loading from ../shared/data/math, prompts, the
evaluation loop with a deterministic engine (real grading, real data), sharding over processes."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import DATA_MISSING, SHARED_DATA
from gpgrl.data.prompts import PromptBuilder
from gpgrl.eval import (
    BENCHMARKS,
    PRESETS,
    UnknownBenchmarkError,
    compute_metrics,
    evaluate,
    get_benchmark,
    load_benchmark,
    load_benchmarks,
    maj_at_k,
    majority_correct,
    parse_benchmarks,
    pass_at_1,
    pass_at_k,
    resolve_prompt,
    summarize,
    vote_key,
)
from gpgrl.models.tiny import build_char_tokenizer
from gpgrl.rollout import RolloutBatch
from gpgrl.rollout.engine import RolloutEngine, SamplingParams, as_prompts

DATA = SHARED_DATA / "math"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA_MISSING} at {DATA}")


# --- pure metrics --------------------------------------------------------------------------------------


def test_pass_at_1_averages_samples_then_problems():
    # problem 0: 1/4, problem 1: 3/4, problem 2: 0/4 -> (0.25 + 0.75 + 0) / 3
    correct = [[True, False, False, False], [True, True, True, False], [False] * 4]
    assert pass_at_1(correct) == pytest.approx(1 / 3)
    assert pass_at_1([[True]]) == 1.0
    assert pass_at_1([]) == 0.0


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(5, 3, 3) == 1.0  # fewer than 3 wrong samples: any 3 contain a correct one
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_majority_vote_groups_equivalent_spellings():
    # "1/2" spelled three ways outvotes "3" twice; the answer None does not vote.
    answers = [r"\dfrac{1}{2}", "3", r"$\frac{1}{2}$", "3", r"\frac12", None]
    correct = [True, False, True, False, True, False]
    assert majority_correct(answers, correct) is True
    assert vote_key(" 27.0 ") == vote_key("27") == "27"
    assert vote_key("1,000") == vote_key("1000")
    assert vote_key(None) is None
    # A tie goes to the answer seen first.
    assert majority_correct(["5", "4", "4", "5"], [True, False, False, True]) is True
    assert majority_correct(["4", "5", "5", "4"], [False, True, True, False]) is False
    # No answer at all: not correct.
    assert majority_correct([None, None], [False, False]) is False


def test_maj_at_k_on_hand_made_problems():
    problems = [
        (["7", "7", "8"], [True, True, False]),  # majority 7, correct
        (["1", "2", "2"], [True, False, False]),  # majority 2, wrong although one sample is right
        (["9", None, None], [True, False, False]),  # only one vote: 9, correct
        ([None, None, None], [False, False, False]),  # nothing extracted
    ]
    assert maj_at_k(problems) == 0.5


def _records(bench, grades, answers=None, length=10, truncated=False):
    answers = answers or [["x"] * len(g) for g in grades]
    return [
        dict(benchmark=bench, problem_index=p, sample_index=s, correct=c, extracted_answer=answers[p][s],
             length=length, truncated=truncated)
        for p, gs in enumerate(grades)
        for s, c in enumerate(gs)
    ]


def test_compute_metrics_names_and_values():
    a = _records("math500", [[True, False, True], [False, False, False]],
                 answers=[["1", "2", "1"], ["5", "6", "6"]], length=10, truncated=False)
    b = _records("aime24", [[True, True, True], [False, True, False]],
                 answers=[["3", "3", "3"], ["8", "4", "8"]], length=30, truncated=True)
    b[0]["truncated"] = False  # 5 of 6 truncated
    m = compute_metrics(a + b)
    assert m["eval/math500/pass@1"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["eval/math500/maj@3"] == 0.5
    assert m["eval/math500/pass@3"] == 0.5
    assert m["eval/math500/mean_length"] == 10
    assert m["eval/math500/truncation_rate"] == 0
    assert m["eval/aime24/pass@1"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["eval/aime24/maj@3"] == 0.5  # majority "8" of problem 1 is wrong
    assert m["eval/aime24/pass@3"] == 1.0
    assert m["eval/aime24/truncation_rate"] == pytest.approx(5 / 6)
    assert m["eval/avg/pass@1"] == pytest.approx(((2 / 3) / 2 + (4 / 3) / 2) / 2)
    assert m["eval/avg/maj@3"] == 0.5
    assert m["eval/avg/mean_length"] == 20
    assert summarize(a)["math500"]["problems"] == 2


# --- benchmarks ----------------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize(
    "name,count,first_gold",
    [
        ("math500", 500, r"\left( 3, \frac{\pi}{2} \right)"),
        ("aime24", 30, "204"),
        ("amc23", 40, "27"),
        ("minerva", 20, "1.6"),
        ("olympiadbench", 20, "2"),
        ("gsm8k", 1319, "18"),
    ],
)
def test_local_benchmarks_load(name, count, first_gold):
    problems = load_benchmark(name, data_dir=DATA)
    assert len(problems) == count
    assert problems[0].gold == first_gold
    assert all(p.question and p.gold for p in problems)
    assert all(p.benchmark == name for p in problems)
    assert len({p.id for p in problems}) == count  # ids are unique
    assert [p.id for p in load_benchmark(name, data_dir=DATA, limit=3)] == [p.id for p in problems[:3]]


@needs_data
def test_local_gold_conventions():
    aime = load_benchmark("aime24", data_dir=DATA)
    raw = [json.loads(line) for line in (DATA / "aime24" / "test.jsonl").open()]
    padded = [i for i, r in enumerate(raw) if r["answer"].startswith("0")]
    assert padded, "the data has zero-padded AIME answers"
    assert all(aime[i].gold == str(int(raw[i]["answer"])) for i in padded)  # "025" -> "25"
    assert all(p.gold == str(int(p.gold)) for p in load_benchmark("amc23", data_dir=DATA))  # 27.0 -> "27"
    minerva = load_benchmark("minerva", data_dir=DATA)
    assert minerva[1].gold == "4.5e33"  # the single \boxed{} in the solution
    olympiad = load_benchmark("olympiadbench", data_dir=DATA)
    assert olympiad[1].gold == r"\frac{1}{2 n+2}" and "$" not in "".join(p.gold for p in olympiad)
    assert olympiad[0].question.startswith("Xenia and Sergey")
    gsm = load_benchmark("gsm8k", data_dir=DATA)
    raw = [json.loads(line) for line in (DATA / "gsm8k" / "test.jsonl").open()]
    with_commas = [i for i, r in enumerate(raw) if "," in r["answer"].split("####")[-1]]
    assert len(with_commas) == 14
    assert all("," not in gsm[i].gold and gsm[i].gold.isdigit() for i in with_commas)


def test_unknown_benchmark_lists_valid_names():
    with pytest.raises(UnknownBenchmarkError) as e:
        parse_benchmarks("math500,mathh")
    for name in BENCHMARKS:
        assert name in str(e.value)
    assert "'mathh'" in str(e.value)
    assert parse_benchmarks(["MATH500", "minerva_math", "math500"]) == ["math500", "minerva"]
    assert get_benchmark("gsm8k").hub_id == "openai/gsm8k" and get_benchmark("gsm8k").hub_config == "main"


def test_missing_local_file_names_the_expected_path(tmp_path):
    (tmp_path / "math500").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        load_benchmark("math500", data_dir=tmp_path)
    assert str(tmp_path / "math500" / "test.jsonl") in str(e.value)
    # minerva / olympiadbench take any .jsonl (e.g. sample20.jsonl) when there is no test.jsonl
    (tmp_path / "olympiadbench").mkdir()
    row = {"id": 7, "question": "1+1?", "final_answer": ["$2$"]}
    (tmp_path / "olympiadbench" / "sample.jsonl").write_text(json.dumps(row) + "\n")
    [p] = load_benchmark("olympiadbench", data_dir=tmp_path)
    assert (p.id, p.question, p.gold) == ("7", "1+1?", "2")


# --- prompts -------------------------------------------------------------------------------------------


def test_prompt_presets():
    assert set(PRESETS) >= {"qwen_math_cot", "qwen_boxed", "r1_distill", "r1_think", "open_r1"}
    qwen = resolve_prompt("qwen_math_cot")
    assert qwen.system_prompt == r"Please reason step by step, and put your final answer within \boxed{}."
    r1 = resolve_prompt("r1_distill")
    assert r1.system_prompt is None
    assert r1.template.format(question="Q") == (
        "Q\nPlease reason step by step, and put your final answer within \\boxed{}."
    )
    think = resolve_prompt("r1_think")
    assert "<think>" in think.system_prompt and "<answer>" in think.system_prompt
    assert "\\boxed{}" in think.system_prompt and "\\boxed" not in PRESETS["open_r1"].system_prompt
    boxed = resolve_prompt("qwen_boxed")
    assert boxed.system_prompt == "You are a helpful assistant."
    assert boxed.template.format(question="Q") == r1.template.format(question="Q")
    custom = resolve_prompt("r1_think", system_prompt="", template="Solve: {question}", chat_template=False)
    assert (custom.system_prompt, custom.template, custom.chat_template) == (None, "Solve: {question}", False)
    with pytest.raises(ValueError, match="literal braces"):
        resolve_prompt("plain", template=r"{question} \boxed{}")
    with pytest.raises(ValueError, match="no \\{question\\}"):
        resolve_prompt("plain", template="no field")
    with pytest.raises(ValueError, match="r1_distill"):
        resolve_prompt("nope")


def test_build_prompt_with_and_without_chat_template():
    tok = build_char_tokenizer()
    chat = PromptBuilder(tok, resolve_prompt("qwen_math_cot")).text("1+1?")
    assert chat == (
        "<|system|>Please reason step by step, and put your final answer within \\boxed{}.<|end|>"
        "<|user|>1+1?<|end|><|assistant|>"
    )
    plain = PromptBuilder(tok, resolve_prompt("qwen_math_cot", chat_template=False)).text("1+1?")
    assert plain == "Please reason step by step, and put your final answer within \\boxed{}.\n\n1+1?"


# --- the loop, with a deterministic engine ---------------------------------------------------------------


class ScriptedEngine(RolloutEngine):
    """Implements RolloutEngine.generate: the completion of each (prompt, sample) comes from ``script``."""

    def __init__(self, golds_by_prompt: dict[tuple[int, ...], tuple[int, str]], script):
        self.golds_by_prompt = golds_by_prompt  # prompt ids -> (position in its benchmark, gold)
        self.script = script  # (position, sample index, gold) -> (completion, truncated)
        self.calls: list[int] = []

    def generate(self, prompts, params: SamplingParams, num_samples: int) -> RolloutBatch:
        torch.rand(1)  # consumes random state, as sampling does
        texts, trunc = [], []
        for ids in (p.ids for p in as_prompts(prompts)):
            position, gold = self.golds_by_prompt[tuple(ids)]
            for s in range(num_samples):
                text, t = self.script(position, s, gold)
                texts.append(text)
                trunc.append(t)
        self.calls.append(len(texts))
        n, width = len(texts), max(len(t) for t in texts)
        mask = torch.tensor([[1] * len(t) + [0] * (width - len(t)) for t in texts])  # length = characters
        return RolloutBatch(torch.zeros(n, 1, dtype=torch.long), torch.ones(n, 1, dtype=torch.long),
                            torch.zeros(n, width, dtype=torch.long), mask, torch.tensor(trunc), texts)


def _engine_for(tok, problems_by_bench, script, preset="qwen_math_cot"):
    builder = PromptBuilder(tok, resolve_prompt(preset))
    golds = {}
    for problems in problems_by_bench.values():
        for i, problem in enumerate(problems):
            ids = builder.build(problem.question)[0].ids
            assert tuple(ids) not in golds
            golds[tuple(ids)] = (i, problem.gold)
    return ScriptedEngine(golds, script)


def _oracle(position, sample, gold):
    """Right (\\boxed{gold}) on even problems, a wrong number on odd ones; every 4th sample truncated."""
    text = f"The answer is \\boxed{{{gold}}}." if position % 2 == 0 else "I think it is \\boxed{-12345}."
    return text, (position + sample) % 4 == 0


@needs_data
def test_evaluate_oracle_engine_half_right(tmp_path):
    tok = build_char_tokenizer()
    problems = load_benchmarks("math500,gsm8k", data_dir=DATA, limit=4)
    engine = _engine_for(tok, problems, _oracle)
    out = tmp_path / "out"
    torch.manual_seed(0)
    expected_next = torch.rand(1)
    torch.manual_seed(0)
    m = evaluate(None, tok, problems, samples=2, temperature=1.0, engine=engine, batch_size=4, output_dir=out, show_progress=False,
                 seed=5)
    assert torch.equal(torch.rand(1), expected_next)  # the caller's RNG state is left as it was
    assert engine.calls == [4, 4, 4, 4]  # 8 problems x 2 samples, 2 problems (4 rows) per call
    for bench in ("math500", "gsm8k"):
        assert m[f"eval/{bench}/pass@1"] == 0.5  # real grading of real golds
        assert m[f"eval/{bench}/maj@2"] == 0.5
        assert m[f"eval/{bench}/pass@2"] == 0.5
        assert m[f"eval/{bench}/truncation_rate"] == 0.25
    assert m["eval/avg/pass@1"] == 0.5
    rows = [json.loads(line) for line in (out / "samples.jsonl").open()]
    assert len(rows) == 2 * 4 * 2
    assert [(r["benchmark"], r["problem_index"], r["sample_index"]) for r in rows][:3] == [
        ("math500", 0, 0), ("math500", 0, 1), ("math500", 1, 0)]
    r0 = rows[0]
    assert r0["gold"] == r"\left( 3, \frac{\pi}{2} \right)" and r0["extracted_answer"] == r0["gold"]
    assert r0["correct"] is True and r0["problem_id"] == "test/precalculus/807.json"
    assert r0["prompt"].startswith("<|system|>Please reason step by step")
    assert r0["length"] == len(r0["completion"])
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"] == m
    assert results["config"]["samples"] == 2 and results["config"]["prompt"]["preset"] == "qwen_math_cot"
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "samples.jsonl"]  # no temp files left


@needs_data
def test_evaluate_majority_differs_from_pass_at_1():
    tok = build_char_tokenizer()
    problems = load_benchmarks(["amc23"], data_dir=DATA, limit=3)

    def one_right_two_wrong(position, sample, gold):
        return (f"\\boxed{{{gold}}}" if sample == 0 else "\\boxed{-1}"), False

    engine = _engine_for(tok, problems, one_right_two_wrong)
    m = evaluate(None, tok, problems, samples=3, temperature=1.0, engine=engine, show_progress=False)
    assert m["eval/amc23/pass@1"] == pytest.approx(1 / 3)
    assert m["eval/amc23/maj@3"] == 0.0
    assert m["eval/amc23/pass@3"] == 1.0


class FakeAccelerator:
    def __init__(self, rank: int, world: int):
        self.process_index, self.num_processes, self.is_main_process = rank, world, rank == 0

    def unwrap_model(self, model):
        return model


@needs_data
def test_evaluate_shards_over_processes_and_gathers(tmp_path, monkeypatch):
    import accelerate.utils

    tok = build_char_tokenizer()
    problems = load_benchmarks("aime24,gsm8k", data_dir=DATA, limit=3)
    single = evaluate(None, tok, problems, samples=2, temperature=1.0, engine=_engine_for(tok, problems, _oracle),
                      show_progress=False)

    shards: dict[int, list[dict]] = {}

    def run_rank(rank):
        def fake_gather(records):  # all_gather_object stand-in: this rank's records, then the others'
            shards[rank] = list(records)
            return [r for k in sorted(shards) for r in shards[k]] if rank == 0 else list(records)

        monkeypatch.setattr(accelerate.utils, "gather_object", fake_gather)
        engine = _engine_for(tok, problems, _oracle)
        return evaluate(None, tok, problems, samples=2, temperature=1.0, engine=engine, accelerator=FakeAccelerator(rank, 2),
                        output_dir=tmp_path / "out", show_progress=False)

    run_rank(1)
    assert not (tmp_path / "out").exists()  # only the main process writes
    merged = run_rank(0)
    keys = [{(r["benchmark"], r["problem_index"]) for r in shards[k]} for k in (0, 1)]
    assert keys[0].isdisjoint(keys[1]) and len(keys[0] | keys[1]) == 6 and len(keys[0]) == 3
    assert merged == single
    assert len((tmp_path / "out" / "samples.jsonl").read_text().splitlines()) == 6 * 2


def test_hub_source_and_offline_error(monkeypatch):
    import datasets

    import gpgrl.paths
    from gpgrl.eval import BenchmarkDownloadError

    monkeypatch.delenv("GPGRL_DATA", raising=False)  # no local data folder: the Hub
    monkeypatch.setattr(gpgrl.paths, "checkout_data_dir", lambda: None)

    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        if path == "math-ai/olympiadbench":
            return datasets.Dataset.from_list([{"id": 1, "question": "Q?", "final_answer": ["$\\frac{1}{2}$"]}])
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    [p] = load_benchmark("olympiadbench")
    assert (p.id, p.question, p.gold) == ("1", "Q?", r"\frac{1}{2}")
    with pytest.raises(BenchmarkDownloadError, match=r"openai/gsm8k.*--data-dir"):
        load_benchmark("gsm8k")
    assert calls == [("math-ai/olympiadbench", None, "test"), ("openai/gsm8k", "main", "test")]
