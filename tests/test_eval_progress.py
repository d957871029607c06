"""What a user sees while `gpgrl eval` runs: the first line (the budget and why), progress lines off a
terminal, answers that end at any EOS id or at a stop string; and the shared settings, loader and
vision test behind the command."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA_MISSING, SHARED_DATA
from gpgrl.eval import EvalSettings, check_settings, evaluate, load_benchmarks
from gpgrl.eval.report import Progress
from gpgrl.rollout.engine import HFGenerateEngine, SamplingParams
from gpgrl.rollout.vllm import vllm_sampling_kwargs

REPO = Path(__file__).resolve().parents[1]


def _greedy(engine, ids, n):
    return engine.generate([ids], SamplingParams(n, 0.0), 1)


# --- answers end at every EOS id and at stop strings (transformers engine) -----------------------------------


def test_a_stop_string_ends_the_row_cuts_the_text_and_counts_the_tokens_to_it(tiny):
    model, tok = tiny
    engine = HFGenerateEngine(model, tok)
    ids = tok("1+2=")["input_ids"]
    free = _greedy(engine, ids, 30)
    text = free.texts[0]
    assert len(text) == 30 and bool(free.truncated[0])  # the char tokenizer: one token per character
    k = next(i for i in range(2, len(text)) if text[i] != text[0])  # a stop string that first appears at k - 1
    stop = text[k - 1 : k + 1]
    cut = text.index(stop)
    out = engine.generate([ids], SamplingParams(30, 0.0, stop=(stop, "never written")), 1)
    assert out.texts[0] == text[:cut]  # the text before the stop string
    assert int(out.lengths[0]) == cut + len(stop)  # tokens up to the one that completes it
    assert not bool(out.truncated[0])  # a finished answer, not a truncated one
    assert out.completion_ids.shape[1] <= cut + len(stop)  # the row stopped there: no tokens generated past it
    again = engine.generate([ids], SamplingParams(30, 0.0, stop=("never written",)), 1)
    assert again.texts == free.texts and again.lengths.tolist() == free.lengths.tolist()


def test_every_eos_id_of_the_generation_config_ends_an_answer(tiny):
    model, tok = tiny
    ids = tok("1+2=")["input_ids"]
    free = _greedy(HFGenerateEngine(model, tok), ids, 20)
    row = free.completion_ids[0].tolist()
    k = next(i for i in range(len(row)) if row[i] != row[0])  # the first token not written before
    end_of_turn = row[k]  # stands for a chat model's <|im_end|>: not the tokenizer's EOS
    assert end_of_turn != tok.eos_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id, end_of_turn]  # a list, as chat models have
    out = _greedy(HFGenerateEngine(model, tok), ids, 20)
    assert int(out.lengths[0]) == k + 1 and not bool(out.truncated[0])  # ended there, EOS included
    assert out.texts[0] == free.texts[0][: k + 1]


def test_stop_strings_reach_vllm_only_when_asked():
    assert vllm_sampling_kwargs(SamplingParams(8, 0.0, stop=("\n\nQuestion:",)), 1, 8)["stop"] == ["\n\nQuestion:"]
    assert "stop" not in vllm_sampling_kwargs(SamplingParams(8, 0.0), 1, 8)  # the contract tests' requests as before
    with pytest.raises(ValueError, match="non-empty"):
        SamplingParams(8, 0.0, stop=("",))


# --- the first line and the progress lines ---------------------------------------------------------------------


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_first_line_and_progress_lines_off_a_terminal(tiny, capsys):
    model, tok = tiny
    problems = load_benchmarks("arithmetic", limit=4)
    metrics = evaluate(model, tok, problems, max_new_tokens=6, batch_size=2, model_name="tiny")
    lines = _lines(capsys.readouterr().err)
    assert lines[0] == ("gpgrl eval: tiny on arithmetic (4 problems x 1 sample), up to 6 new tokens per answer "
                        "(--max-new-tokens)")
    assert re.fullmatch(r"eval: 4/4 problems, [\d,]+ tokens( \(\d+ tokens/s\))?(, ~\d+s left)?", lines[-1]), lines
    assert "\x1b[" not in "".join(lines)  # plain text: no terminal codes in a log
    assert 0.0 <= metrics["eval/arithmetic/pass@1"] <= 1.0
    evaluate(model, tok, problems, max_new_tokens=6, show_progress=False)  # --quiet: nothing at all
    assert capsys.readouterr().err == ""


class Clock:
    """A clock for Progress that a test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_count_moves_as_answers_end_and_the_time_left_is_measured_from_problems_done():
    clock, stream = Clock(), io.StringIO()
    with Progress(4, 2, stream=stream, bar=False, clock=clock) as progress:
        progress.begin_batch(4)  # one generate call: 4 problems x 2 samples, rows 0-7 problem by problem
        clock.now = 1.0
        progress.step(8, 1, 100)  # before the first line's delay (2 s): nothing printed
        clock.now = 3.0
        progress.step(8, 2, 100)  # the first line: nothing done yet, so no time left (never a guess)
        progress.answers_ended([0])  # one of problem 0's two answers: the problem is not done
        clock.now = 10.0
        progress.answers_ended([1, 4])  # problem 0 done (rows 0, 1); problem 2 has one of two
        clock.now = 12.0
        progress.batch_done(4, tokens=500)  # the rest end with the call (cut at the budget)
    assert stream.getvalue().splitlines() == [
        "eval: 0/4 problems, 16 tokens (5 tokens/s)",  # 16 tokens in 3 s
        "eval: 1/4 problems, 16 tokens (2 tokens/s), ~30s left",  # 10 s for 1 problem, 3 left: 30 s
        "eval: 4/4 problems, 500 tokens (42 tokens/s)",  # the call's real lengths replace the count
    ]
    fast = io.StringIO()  # a run over within the first line's delay prints its last line only
    with Progress(2, 1, stream=fast, bar=False, clock=Clock()) as progress:
        progress.begin_batch(2)
        progress.step(2, 1, 10)
        progress.answers_ended([1])
        progress.batch_done(2, tokens=12)
    assert fast.getvalue() == "eval: 2/2 problems, 12 tokens\n"
    clock, once = Clock(), io.StringIO()  # the last answers end, then their call: one last line, not two
    with Progress(2, 1, stream=once, bar=False, clock=clock) as progress:
        progress.begin_batch(2)
        clock.now = 5.0
        progress.step(2, 1, 10)
        progress.answers_ended([0, 1])
        progress.batch_done(2, tokens=2)
    assert once.getvalue().splitlines() == ["eval: 0/2 problems, 2 tokens (0 tokens/s)",
                                            "eval: 2/2 problems, 2 tokens (0 tokens/s)"]
    bar = io.StringIO()  # a terminal gets one live bar instead of lines
    with Progress(8, 1, stream=bar, bar=True) as progress:
        progress.batch_done(8, tokens=90)
    assert "8/8" in bar.getvalue() and "90 tokens" in bar.getvalue() and "eval: " not in bar.getvalue()
    quiet = io.StringIO()
    with Progress(8, 1, stream=quiet, enabled=False) as progress:
        progress.batch_done(8, tokens=10)
    assert quiet.getvalue() == ""


def test_the_engine_reports_each_answer_as_it_ends(tiny):
    """on_done names the rows (across the engine's chunks) that have just ended; on_step counts only the rows
    still writing."""
    model, tok = tiny
    prompts = [tok("1+2=")["input_ids"], tok("37+45=")["input_ids"]]
    free = HFGenerateEngine(model, tok).generate(prompts, SamplingParams(20, 0.0), 1).texts
    stop = next(free[1][i : i + 2] for i in range(1, 19) if free[1][i : i + 2] not in free[0])  # in row 1 only
    events = []
    engine = HFGenerateEngine(model, tok, batch_size=1)  # one row per chunk: row 1 is the second chunk's row 0
    engine.on_step = lambda new, step, most: events.append(("step", new, step))
    engine.on_done = lambda rows: events.append(("done", rows))
    out = engine.generate(prompts, SamplingParams(20, 0.0, stop=(stop,)), 1)
    end = free[1].index(stop) + len(stop)  # the step whose token completed the stop string (a char tokenizer)
    assert out.lengths.tolist() == [20, end] and out.truncated.tolist() == [True, False]  # not the padded width
    assert [e for e in events if e[0] == "done"] == [("done", [1])]  # row 0 ran to the budget: never reported
    second = events[[i for i, e in enumerate(events) if e == ("step", 1, 1)][1] :]  # the second chunk's events
    assert second[: end + 1] == [*(("step", 1, k) for k in range(1, end + 1)), ("done", [1])]


def test_evaluate_counts_a_problem_when_its_answers_end_within_a_batch(tiny, monkeypatch, tmp_path, capsys):
    """Two problems in one generate call: the one whose answer ends early is counted then, with a time left
    measured from it, before the call ends (the issue's counter stayed at 0/8 until the end)."""
    import functools
    import json

    from gpgrl.eval import evaluator

    model, tok = tiny
    every = load_benchmarks("arithmetic", limit=8)["arithmetic"]
    engine = HFGenerateEngine(model, tok)
    evaluate(None, tok, {"arithmetic": every}, engine=engine, max_new_tokens=20, show_progress=False,
             output_dir=tmp_path)
    free = [json.loads(line)["completion"] for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    # a problem whose answer writes a pair of characters that problem 0's never does: it ends there
    j, stop = next((j, text[i : i + 2]) for j, text in enumerate(free) for i in range(1, 19)
                   if text[i : i + 2] not in free[0])
    problems = {"arithmetic": [every[0], every[j]]}
    clock = Clock()

    def tick():  # every look at the clock is a second later
        clock.now += 1.0
        return clock.now

    monkeypatch.setattr(evaluator, "Progress", functools.partial(Progress, clock=tick))
    evaluate(None, tok, problems, engine=engine, max_new_tokens=20, stop=(stop,), batch_size=8, model_name="tiny")
    lines = [line for line in _lines(capsys.readouterr().err) if line.startswith("eval: ")]
    counts = [line.split()[1] for line in lines]
    assert "1/2" in counts and counts[-1] == "2/2" and counts.index("1/2") < len(counts) - 1, lines
    assert counts[: counts.index("1/2")] == ["0/2"] * counts.index("1/2")  # none counted before it ended
    assert not any("left" in line for line in lines if line.split()[1] == "0/2")  # no time left before a problem
    assert re.search(r", ~\d+s left$", lines[counts.index("1/2")])


def test_the_default_budget_is_the_benchmarks_own_capped_by_the_context(tiny, capsys):
    model, tok = tiny
    problems = load_benchmarks("arithmetic", limit=2)
    engine = HFGenerateEngine(model, tok)
    evaluate(model, tok, problems, engine=engine)  # no --max-new-tokens, a context far longer than 256
    first = _lines(capsys.readouterr().err)[0]
    assert first.endswith("up to 256 new tokens per answer (arithmetic's own budget; --max-new-tokens to change)")
    longest = 40
    engine.max_model_len = longest + 12  # a model whose context leaves 12 tokens after the longest prompt
    from gpgrl.data.prompts import PromptBuilder, resolve_prompt

    prompt_len = max(len(PromptBuilder(tok, resolve_prompt("qwen_math_cot")).build(p.question)[0].ids)
                     for p in problems["arithmetic"])
    engine.max_model_len = prompt_len + 12
    evaluate(model, tok, problems, engine=engine)
    first = _lines(capsys.readouterr().err)[0]
    assert first.endswith(f"up to 12 new tokens per answer (the model's {prompt_len + 12}-token context minus the "
                          f"longest prompt, {prompt_len} tokens; --max-new-tokens to change)")


# --- one validator, one loader, one vision test -----------------------------------------------------------------


def test_evaluate_and_the_command_refuse_with_the_same_message(tiny, capsys):
    from gpgrl.eval.cli import main

    model, tok = tiny
    with pytest.raises(ValueError) as e:
        evaluate(model, tok, "arithmetic", samples=4)
    assert main(["--model", "x", "--benchmarks", "arithmetic", "--samples", "4"]) == 2
    assert str(e.value) in capsys.readouterr().err
    with pytest.raises(ValueError, match="--top-p"):
        check_settings(EvalSettings(top_p=0.0))
    with pytest.raises(TypeError, match="unknown evaluation setting"):
        EvalSettings.of(sample=4)


def test_one_vision_test_for_names_models_processors_and_tokenizers(tmp_path, tiny):
    from gpgrl.models.tiny import save_tiny_model
    from gpgrl.models.vision import is_vision_model

    model, tok = tiny
    path = save_tiny_model(tmp_path / "text")
    assert not any(is_vision_model(x) for x in (str(path), path, model, model.config, tok, "smollm2.gguf", None))


def test_a_recipe_with_images_and_a_text_model_fails_before_loading(tmp_path):
    from gpgrl.config import from_dict
    from gpgrl.models.tiny import save_tiny_model
    from gpgrl.models.vision import VISION_INSTALL, require_vision
    from gpgrl.train.build import build_parts

    try:
        require_vision()
    except ImportError:
        pytest.skip(f"vision extra not installed: {VISION_INSTALL}")
    path = save_tiny_model(tmp_path / "text")
    cfg = from_dict({"model": {"name_or_path": str(path)}, "data": {"dataset": "builtin:arithmetic",
                                                                    "image_column": "image"},
                     "train": {"output_dir": str(tmp_path / "run")}})
    with pytest.raises(ValueError, match=r"not an image-text-to-text model.*drop data\.image_column"):
        build_parts(cfg)


# --- the real thing: SmolLM2-135M-Instruct on GSM8K, on a CPU ----------------------------------------------------

GSM8K = SHARED_DATA / "math"


@pytest.mark.slow
def test_smollm2_on_gsm8k_shows_its_budget_and_progress_and_finishes(tmp_path, smollm2):
    pytest.importorskip("gguf", reason="the gguf reader is not installed: pip install 'gpgrl[real-model]'")
    if not (GSM8K / "gsm8k" / "test.jsonl").is_file():
        pytest.skip(f"{DATA_MISSING}: no GSM8K copy at {GSM8K}")
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "gpgrl.cli", "eval", "--model", "smollm2", "--benchmarks", "gsm8k",
                          "--limit", "2", "--data-dir", str(GSM8K), "--output", str(tmp_path / "eval")],
                         capture_output=True, text=True, timeout=900, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = _lines(run.stderr)
    assert lines[0] == "gpgrl eval: loading smollm2 ..."  # the load's 20-30 s are not silent
    assert re.fullmatch(r"gpgrl eval: loaded smollm2 in \d+\.\d s \(135M parameters, cpu\)", lines[1])
    assert lines[2] == ("gpgrl eval: smollm2 on gsm8k (2 problems x 1 sample), up to 512 new tokens per answer "
                        "(gsm8k's own budget; --max-new-tokens to change)")
    assert re.match(r"eval: 2/2 problems, [\d,]+ tokens \(\d+ tokens/s\)", lines[-1]), lines
    assert not any("Loading weights" in line or "GGUF tensors" in line for line in lines)  # no bars in a log
    assert "gsm8k" in run.stdout and (tmp_path / "eval" / "results.json").is_file()
    assert time.monotonic() - start < 900
