"""Multi-turn episodes (gpgrl.rollout.episodes): token in / token out, the loss mask, how episodes end, and a
training run on them, checked on the saved rollouts and the logged metrics."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import pytest
import torch

from gpgrl.data.prompts import PromptBuilder, resolve_prompt
from gpgrl.models.tiny import build_char_tokenizer
from gpgrl.rollout.engine import HFGenerateEngine, SamplingParams
from gpgrl.rollout.environments import GuessNumber, MultiplySteps, Step, environment_factory
from gpgrl.rollout.episodes import EpisodeInfo, TurnRenderer, episode_columns, episode_metrics, run_episodes
from helpers import LOGP, TurnEngine


class Echo:
    """Answers each turn with one tool message ``obs<k>`` until the policy writes 'done'."""

    def reset(self, record):
        self.k = 0

    def step(self, text):
        self.k += 1
        if "done" in text:
            return Step(done=True, reward={"r": 1.0})
        return Step([{"role": "tool", "name": "echo", "content": f"obs{self.k}"}], tool_calls=1,
                    errors=["timeout"] if "slow" in text else [])


@pytest.fixture
def tok():
    return build_char_tokenizer()


def _prompts(tok, questions):
    builder = PromptBuilder(tok, "plain")
    return [builder.build(q)[0] for q in questions]


def test_each_turn_continues_from_the_exact_ids_sampled_and_only_the_policys_tokens_are_trained(tok):
    script = lambda turn, text, j: "done" if turn >= 2 else f"call{j}"  # noqa: E731
    engine = TurnEngine(tok, script)
    prompts = _prompts(tok, ["1+2", "3+4"])
    batch = run_episodes(engine, prompts, [{}, {}], SamplingParams(200, 1.0), 2, Echo, tokenizer=tok, max_turns=5,
                         pad_id=tok.pad_token_id)
    # one engine call per turn over every live episode: G per prompt first, then one row per episode
    assert [(len(ids), n) for ids, n, _ in engine.calls] == [(2, 2), (4, 1), (4, 1)]
    render = TurnRenderer(tok)
    obs1 = render.ids([{"role": "tool", "name": "echo", "content": "obs1"}], tok.eos_token_id)
    obs2 = render.ids([{"role": "tool", "name": "echo", "content": "obs2"}], tok.eos_token_id)
    eos = tok.eos_token_id
    for row in range(4):
        p, j = prompts[row // 2], row % 2
        turn1 = tok(f"call{j}", add_special_tokens=False)["input_ids"] + [eos]
        turn2 = tok("call0", add_special_tokens=False)["input_ids"] + [eos]  # later turns: one sample (j = 0)
        last = tok("done", add_special_tokens=False)["input_ids"] + [eos]
        expected = turn1 + obs1 + turn2 + obs2 + last
        n = int(batch.completion_mask[row].sum())
        assert batch.completion_ids[row, :n].tolist() == expected
        assert batch.loss_mask[row, :n].tolist() == ([1] * len(turn1) + [0] * len(obs1) + [1] * len(turn2)
                                                      + [0] * len(obs2) + [1] * len(last))
        # the second turn's prompt is the first prompt + everything sampled and observed, unchanged
        assert engine.calls[1][0][row] == p.ids + turn1 + obs1
        assert engine.calls[2][0][row] == p.ids + turn1 + obs1 + turn2 + obs2
        lp = batch.sampling_logprobs[row, :n]
        assert torch.equal(lp != 0, batch.loss_mask[row, :n].bool())  # the engine's log-probs on policy tokens only
        assert torch.allclose(lp[batch.loss_mask[row, :n].bool()], torch.tensor(LOGP))
        info = batch.episodes[row]
        assert (info.turns, info.tool_calls, info.env_tokens, info.ended, info.reward) == (3, 2, len(obs1) + len(obs2),
                                                                                          "done", {"r": 1.0})
    assert batch.action_mask is batch.loss_mask
    assert batch.texts[0] == "call0<tool_response>obs1</tool_response>call0<tool_response>obs2</tool_response>done"


def test_how_episodes_end_budget_context_and_max_turns(tok):
    script = lambda turn, text, j: "call"  # noqa: E731  never answers
    prompts = _prompts(tok, ["1+2"])
    # max_turns: the environment still waits after the last turn
    b = run_episodes(TurnEngine(tok, script), prompts, [{}], SamplingParams(500, 1.0), 2, Echo, tokenizer=tok,
                     max_turns=2, pad_id=tok.pad_token_id)
    assert [i.ended for i in b.episodes] == ["max_turns", "max_turns"] and b.truncated.tolist() == [False, False]
    assert [i.turns for i in b.episodes] == [2, 2]
    # the episode's token budget: 5 (call + EOS) + 38 (the observation) + 3: the second turn is cut
    obs = len(TurnRenderer(tok).ids([{"role": "tool", "name": "echo", "content": "obs1"}], tok.eos_token_id))
    assert obs == 38  # <|user|> <tool_response> (15) obs1 (4) </tool_response> (16) <|end|> <|assistant|>
    b = run_episodes(TurnEngine(tok, script), prompts, [{}], SamplingParams(5 + obs + 3, 1.0), 1, Echo, tokenizer=tok,
                     max_turns=9, pad_id=tok.pad_token_id)
    assert (b.episodes[0].ended, b.episodes[0].turns, bool(b.truncated[0])) == ("length", 2, True)
    assert int(b.completion_mask[0].sum()) == 5 + obs + 3  # the last turn cut at the budget
    # an observation that would not leave room for another turn ends the episode before it is appended
    b = run_episodes(TurnEngine(tok, script), prompts, [{}], SamplingParams(5 + obs, 1.0), 1, Echo, tokenizer=tok,
                     max_turns=9, pad_id=tok.pad_token_id)
    assert (b.episodes[0].ended, int(b.completion_mask[0].sum()), b.episodes[0].env_tokens) == ("length", 5, 0)
    # the model's context: prompt + episode + observation must leave a token to generate
    context = len(prompts[0].ids) + 5 + obs
    engine = TurnEngine(tok, script, max_model_len=context)
    b = run_episodes(engine, prompts, [{}], SamplingParams(500, 1.0), 1, Echo, tokenizer=tok, max_turns=9,
                     pad_id=tok.pad_token_id)
    assert (b.episodes[0].ended, bool(b.truncated[0]), len(engine.calls)) == ("context", True, 1)


def test_environments_of_a_turn_step_at_once_and_a_raising_one_ends_only_its_episode(tok):
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    class Slow:
        def reset(self, record):
            self.record = record

        def step(self, text):
            if self.record.get("broken"):
                raise RuntimeError("bug in the environment")
            start = time.monotonic()
            time.sleep(0.5)
            with lock:
                spans.append((start, time.monotonic()))
            return Step(done=True)

    prompts = _prompts(tok, ["1", "2"])
    b = run_episodes(TurnEngine(tok, lambda *a: "x"), prompts, [{}, {"broken": True}], SamplingParams(50, 1.0), 3,
                     Slow, tokenizer=tok, max_turns=3, pad_id=tok.pad_token_id)
    assert len(spans) == 3
    latest_start, earliest_end = max(s for s, _ in spans), min(e for _, e in spans)
    assert latest_start < earliest_end  # all three steps were running at the same moment
    assert [i.errors for i in b.episodes] == [{}, {}, {}] + [{"environment_exception": 1}] * 3
    assert [i.ended for i in b.episodes] == ["done"] * 6


def test_a_template_that_rewrites_history_is_refused(tok):
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}<|assistant|>"
                         "(old)<|end|>{% else %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}{% endif %}"
                         "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    with pytest.raises(ValueError, match="renders a conversation's beginning differently"):
        TurnRenderer(tok).ids([{"role": "user", "content": "more"}], tok.eos_token_id)


def test_the_rest_of_the_templates_turn_end_comes_before_the_observation(tok):
    # A ChatML-like template closes an assistant turn with its EOS and a newline: the policy stops at the EOS,
    # so the newline is the first thing the observation adds.
    tok.chat_template = ("{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<eos>\n' }}{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    text = TurnRenderer(tok).text([{"role": "user", "content": "hi"}], tok.eos_token_id)
    assert text == "\n<|user|>hi<eos>\n<|assistant|>"
    other = tok.convert_tokens_to_ids("x")
    assert TurnRenderer(tok).text([{"role": "user", "content": "hi"}], other) == "<|user|>hi<eos>\n<|assistant|>"


def test_the_hf_engine_runs_episodes_with_a_real_tiny_model(tiny):
    model, tok = tiny
    engine = HFGenerateEngine(model, tok)
    torch.manual_seed(0)
    prompts = _prompts(tok, ["12+3", "4+56"])
    batch = run_episodes(engine, prompts, [{"answer": "7"}] * 2, SamplingParams(80, 1.0), 2, GuessNumber,
                         tokenizer=tok, max_turns=3, pad_id=tok.pad_token_id)
    assert len(batch) == 4 and batch.sampling_logprobs is not None
    for row, info in enumerate(batch.episodes):
        mask = batch.loss_mask[row]
        assert int((batch.completion_mask[row] - mask).sum()) == info.env_tokens  # env tokens: attended, not trained
        assert info.turns >= 1 and info.ended in ("done", "length", "context", "max_turns")
        for start, end in info.turn_spans:
            assert mask[start:end].all()
    assert (batch.sampling_logprobs * (1 - batch.loss_mask)).abs().sum() == 0


def test_environments_worked_examples():
    env = MultiplySteps()
    env.reset({"question": "12*34"})
    s1 = env.step("<answer>48</answer>")  # 12 * 4
    assert (s1.done, s1.messages[0]["content"]) == (False, "Right. Now partial product 2.")
    s2 = env.step("<answer>300</answer>")  # 12 * 30 = 360
    assert s2.messages[0]["content"] == "Wrong: it is 360. Now the sum of the partial products."
    s3 = env.step("<answer>408</answer>")
    assert (s3.done, s3.reward) == (True, {"steps_right": 2 / 3, "solved": 1.0})
    g = GuessNumber(max_guesses=2)
    g.reset({"answer": 5})
    assert g.step("no guess").errors == ["bad_action"]
    assert g.step("<answer>4</answer>").reward == {"solved": 0.0, "turns_left": 0.0}
    with pytest.raises(ValueError, match="cannot be built"):
        environment_factory("guess_number", {"max_gueses": 3})


def test_episode_columns_and_metrics():
    infos = [EpisodeInfo(turns=3, tool_calls=2, errors={"malformed": 1, "timeout": 1}, reward={"a": 1.0, "b": 0.5}),
             EpisodeInfo(turns=1)]
    cols = episode_columns(infos)
    assert cols["tool_errors"] == [2, 0] and cols["environment_reward"] == [1.5, None] and cols["turns"] == [3, 1]
    assert episode_columns(None) == {}
    m = episode_metrics(infos, loss_mask_sum=30, completion_tokens=40)
    assert (m["episode/turns"], m["episode/tool_calls"], m["episode/tool_errors"], m["episode/env_token_frac"]) == (
        2.0, 1.0, 2.0, 0.25)
    assert (m["episode/tool_errors/malformed"], m["episode/tool_errors/unknown_tool"]) == (1.0, 0.0)


# ------------------------------------------------------------------------------------------ training


def test_training_on_episodes_masks_the_environment_and_logs_what_happened(tmp_path, tiny):
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    model, tok = tiny

    def script(turn, text, j):  # per group: answers 0 and 2 ask once, 1 asks twice, 3 never asks
        if turn:  # which answer of its group this episode is: the 7s its first turn wrote
            j = text.split("<|assistant|>")[1].split("<eos>")[0].count("7") - 1
        plan = {0: ["ask", "x"], 1: ["ask", "ask", "x"], 2: ["ask", "x"], 3: ["x"]}[j]
        return plan[min(turn, len(plan) - 1)] + "7" * (j + 1)

    engine = TurnEngine(tok, script)
    cfg = tiny_config(tmp_path, rewards=[{"name": "environment"}],
                      rollout={"group_size": 4, "max_completion_length": 200, "environment": "helpers:Countdown",
                               "max_turns": 4},
                      algorithm={"preset": "gpg", "resample_threshold": 0.0})
    trainer = Trainer(cfg, model=model, tokenizer=tok, dataset=[{"question": "1+1", "answer": "2"}] * 8,
                      rewards=["environment"], engine=engine)
    history = trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 4 * 4  # 2 steps x 4 prompts x G=4
    for step in (1, 2):
        mine = [r for r in rows if r["step"] == step]
        policy = sum(sum(r["loss_mask"]) for r in mine)
        assert history[step - 1]["rollout/num_tokens"] == policy  # the loss's token count: the policy's only
        total = sum(len(r["completion_ids"]) for r in mine)
        assert history[step - 1]["episode/env_token_frac"] == pytest.approx(1 - policy / total)
        assert history[step - 1]["episode/turns"] == pytest.approx((2 + 3 + 2 + 1) / 4)
    for r in rows:
        j = r["completion_ids"][: r["loss_mask"].index(0)] if 0 in r["loss_mask"] else r["completion_ids"]
        assert r["reward"] == (1.0 if r["episode"]["turns"] == 2 else 0.0)
        assert r["episode"]["ended"] == "done" and j[-1] == tok.eos_token_id
        assert sum(1 - m for m in r["loss_mask"]) == r["episode"]["env_tokens"]
    # AGE on episodes: every group holds 2 rewards of 1 and 2 of 0, so none is degenerate and alpha = 1
    assert history[0]["adv/alpha"] == 1.0
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "episode/tool_calls" in metrics[0] and metrics[0]["episode/ended_done"] == 16.0


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_age_and_threshold_resampling_count_episodes(tmp_path, tiny, threshold):
    """Groups of episodes that all end alike carry no signal: AGE's alpha = B / (B - M) counts them, and
    threshold resampling draws again until every trained group has a signal."""
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    model, tok = tiny

    def script(turn, text, j):  # "0+0": every answer asks once (a group of equal rewards); else answer j decides
        if "0+0" in text:
            return "ask" if turn == 0 else "x"
        if turn:
            j = text.split("<|assistant|>")[1].split("<eos>")[0].count("7") - 1
        return ("ask" if j % 2 and turn == 0 else "x") + "7" * (j + 1)

    cfg = tiny_config(tmp_path, rollout={"group_size": 4, "max_completion_length": 200, "environment": "helpers:Countdown"},
                      algorithm={"preset": "gpg", "resample_threshold": threshold, "max_resample_draws": 20},
                      train={"steps": 2, "prompts_per_step": 4, "micro_batch_size": 16, "seed": 3,
                             "output_dir": str(tmp_path / "run")})
    records = [{"question": q, "answer": "0"} for q in ["0+0", "1+1", "0+0", "2+2", "0+0", "3+3"]]
    trainer = Trainer(cfg, model=model, tokenizer=tok, dataset=records, rewards=["environment"],
                      engine=TurnEngine(tok, script))
    history = trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    for step, m in zip((1, 2), history):
        mine = [r for r in rows if r["step"] == step]
        groups = [mine[g * 4 : g * 4 + 4] for g in range(4)]
        degenerate = sum(len({r["reward"] for r in g}) == 1 for g in groups)
        assert all(len({r["prompt_index"] for r in g}) == 1 for g in groups)
        assert degenerate == sum(records[g[0]["prompt_index"]]["question"] == "0+0" for g in groups)
        if threshold:
            assert degenerate == 0 and m["rollout/draws"] >= 1
        assert m["adv/alpha"] == pytest.approx(16 / (16 - 4 * degenerate))


def test_training_with_tools_survives_every_kind_of_tool_fault(tmp_path, tiny):
    """Through the trainer with real tools: a good call, a malformed one, an unknown tool, wrong arguments, a
    tool that raises and one that hangs past its limit each become a tool message the next turn reads, counted
    by kind; the step trains on."""
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    (tmp_path / "my_tools.py").write_text(
        "import time\n\n"
        "def nap(seconds: float) -> str:\n"
        '    """Sleep.\n\n    Args:\n        seconds: how long\n    """\n'
        "    time.sleep(seconds)\n    return 'rested'\n\n"
        "def fail(x: int) -> str:\n"
        '    """Always raises.\n\n    Args:\n        x: anything\n    """\n'
        "    raise KeyError(x)\n")
    calls = ['<tool_call>{"name": "calculator", "arguments": {"expression": "1234*5678"}}</tool_call>',
             "<tool_call>{not json</tool_call>",
             '<tool_call>{"name": "calculater", "arguments": {"expression": "1"}}</tool_call>',
             '<tool_call>{"name": "calculator", "arguments": {"expr": "1"}}</tool_call>',
             '<tool_call>{"name": "fail", "arguments": {"x": 3}}</tool_call>',
             '<tool_call>{"name": "nap", "arguments": {"seconds": 30}}</tool_call>']

    def script(turn, text, j):
        if turn:  # the answer: which call this episode made (only the first, the calculator's, is right)
            return f"<answer>{calls.index(text.split('<|assistant|>')[1].split('<eos>')[0])}</answer>"
        return calls[j]

    cfg = tiny_config(tmp_path, rollout={"group_size": 6, "max_completion_length": 400, "tool_timeout": 1.0,
                                         "tools": ["calculator", f"{tmp_path}/my_tools.py:nap",
                                                   f"{tmp_path}/my_tools.py:fail"]},
                      train={"steps": 1, "prompts_per_step": 1, "micro_batch_size": 6,
                             "output_dir": str(tmp_path / "run")},
                      algorithm={"preset": "gpg", "resample_threshold": 0.0})
    trainer = Trainer(cfg, model=tiny[0], tokenizer=tiny[1], dataset=[{"question": "1+1", "answer": "0"}] * 2,
                      rewards=["accuracy"], engine=TurnEngine(tiny[1], script))
    start = time.monotonic()
    (m,) = trainer.train()
    assert time.monotonic() - start < 60  # the hanging tool was stopped at its limit, not after 30 s each
    assert (m["episode/tool_calls"], m["episode/turns"]) == (1.0, 2.0)
    assert {k.rsplit("/", 1)[1]: v for k, v in m.items() if k.startswith("episode/tool_errors/")} == {
        "malformed": 1.0, "unknown_tool": 1.0, "bad_arguments": 1.0, "exception": 1.0, "timeout": 1.0}
    rows = [json.loads(line) for line in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in rows]
    assert "<tool_response>7006652</tool_response>" in texts[0]
    assert "did you mean 'calculator'" in texts[2]
    assert "KeyError" in texts[4] and "ran past its 1 s limit and was killed" in texts[5]
    assert rows[0]["reward"] == 1.0 and [r["reward"] for r in rows[1:]] == [0.0] * 5  # "<answer>0</answer>" is right
    for r in rows:
        assert r["episode"]["ended"] == "done" and sum(1 - x for x in r["loss_mask"]) == r["episode"]["env_tokens"] > 0


def test_a_template_that_does_not_list_tools_gets_them_in_the_system_prompt(tok):
    from gpgrl.rollout.episodes import episode_setup

    setup = episode_setup(tools=["calculator"])
    try:
        listed = PromptBuilder(tok, "plain", tools=setup.tools, tool_instructions=setup.tool_instructions).text("2*3")
        assert listed == "<|system|>tools: calculator(expression)<|end|><|user|>2*3<|end|><|assistant|>"
        tok.chat_template = ("{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}"
                             "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")  # SmolLM2's kind
        preset = resolve_prompt("plain", system_prompt="Be brief.")
        text = PromptBuilder(tok, preset, tools=setup.tools, tool_instructions=setup.tool_instructions).text("2*3")
        assert text.startswith("<|system|>Be brief.\n\nYou can use these tools") and '"name": "calculator"' in text
        assert text.endswith("without a tool call.<|end|><|user|>2*3<|end|><|assistant|>")
        # no system prompt of the prompt's own: the instructions open the question, so that a template that
        # adds a default system turn to a conversation without one (SmolLM2's) keeps it
        text = PromptBuilder(tok, "plain", tools=setup.tools, tool_instructions=setup.tool_instructions).text("2*3")
        assert text.startswith("<|user|>You can use these tools")
        assert text.endswith("without a tool call.\n\n2*3<|end|><|assistant|>")
        with pytest.raises(ValueError, match="does not list tools"):
            PromptBuilder(tok, "plain", tools=setup.tools).text("2*3")
    finally:
        setup.close()


def test_evaluate_runs_episodes_and_reports_tool_use(tok, tmp_path):
    """gpgrl.eval.evaluate with tools: the same episodes as training, pass@1 with tool calls per episode."""
    from gpgrl.eval import EvalSettings, evaluate
    from gpgrl.eval.problem import Problem
    from gpgrl.rollout.episodes import episode_setup

    def script(turn, text, j):  # call the calculator on the question, then answer with what it said
        question = text.split("<|user|>")[1].split("<|end|>")[0]
        if turn == 0:
            return ('<tool_call>{"name": "calculator", "arguments": {"expression": "' + question + '"}}</tool_call>'
                    if "+" in question else "<answer>0</answer>")
        return "<answer>" + text.rsplit("<tool_response>", 1)[1].split("</tool_response>")[0] + "</answer>"

    problems = [Problem("arithmetic", str(i), q, a) for i, (q, a) in enumerate([("12+30", "42"), ("7-7", "0"),
                                                                               ("5+5", "11")])]
    setup = episode_setup(tools=["calculator"])
    try:
        m = evaluate(None, tok, {"arithmetic": problems}, EvalSettings(episodes=setup, max_new_tokens=200,
                     output_dir=tmp_path / "eval", show_progress=False), engine=TurnEngine(tok, script))
    finally:
        setup.close()
    assert m["eval/arithmetic/pass@1"] == pytest.approx(2 / 3)  # 42 and 0 right; 5+5 is 10, not the gold 11
    assert m["eval/arithmetic/tool_calls"] == pytest.approx(2 / 3) and m["eval/arithmetic/used_tools"] == pytest.approx(2 / 3)
    assert m["eval/arithmetic/turns"] == pytest.approx(5 / 3)
    rows = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    assert [(r["tool_calls"], r["turns"], r["ended"]) for r in rows] == [(1, 2, "done"), (0, 1, "done"), (1, 2, "done")]


def test_a_turn_cut_by_the_models_context_ends_the_episode_as_context(tok):
    prompts = _prompts(tok, ["1+2"])
    context = len(prompts[0].ids) + 4  # the engine can write 4 tokens: the turn ("long" + EOS) does not end

    class Capped(TurnEngine):
        def generate(self, prompts, params, num_samples):
            return super().generate(prompts, replace(params, max_new_tokens=min(params.max_new_tokens, 4)),
                                    num_samples)

    b = run_episodes(Capped(tok, lambda *a: "long", max_model_len=context), prompts, [{}], SamplingParams(100, 1.0), 1,
                     Echo, tokenizer=tok, max_turns=3, pad_id=tok.pad_token_id)
    assert (b.episodes[0].ended, bool(b.truncated[0]), int(b.completion_mask[0].sum())) == ("context", True, 4)


def test_gpgrl_eval_with_tools_reports_tool_use(tmp_path):
    from gpgrl.eval.cli import main
    from gpgrl.models.tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "model", seed=0)
    code = main(["--model", str(model), "--benchmarks", "arithmetic", "--limit", "3", "--tools", "calculator",
                 "--max-turns", "2", "--max-new-tokens", "12", "--output", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    metrics = results["metrics"]
    assert metrics["eval/arithmetic/tool_calls"] == 0.0 and metrics["eval/arithmetic/turns"] == 1.0  # never calls
    rows = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["ended"] in ("length", "done") and r["tool_calls"] == 0 for r in rows)
    assert main(["--model", str(model), "--benchmarks", "arithmetic", "--tools", "calculater", "--quiet"]) == 2
