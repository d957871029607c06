"""`gpgrl eval` end to end on a tiny random model saved to disk, in-process and as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA_MISSING, SHARED_DATA
from gpgrl.eval.benchmarks import BENCHMARKS
from gpgrl.eval.cli import main
from gpgrl.models.tiny import save_tiny_model

REPO = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA / "math"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA_MISSING} at {DATA}")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--data-dir", str(DATA), "--output", str(out), "--quiet", *extra]


@needs_data
def test_cli_in_process_tiny_model(tiny_model, tmp_path, capsys):
    out = tmp_path / "eval"
    extra = ["--benchmarks", "math500,gsm8k", "--limit", "3", "--samples", "2", "--max-new-tokens", "8",
             "--temperature", "1.0", "--seed", "3"]
    assert main(_args(tiny_model, out, *extra)) == 0
    console = capsys.readouterr().out
    for word in ("benchmark", "pass@1", "maj@2", "math500", "gsm8k", "avg", "truncated"):
        assert word in console

    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"metrics", "per_benchmark", "config"}
    cfg = results["config"]
    assert cfg["model"] == str(tiny_model) and cfg["benchmarks"] == ["math500", "gsm8k"]
    assert cfg["samples"] == 2 and cfg["sampling"]["max_new_tokens"] == 8 and cfg["sampling"]["temperature"] == 1.0
    assert cfg["prompt"]["preset"] == "qwen_math_cot" and cfg["problems"] == {"math500": 3, "gsm8k": 3}
    assert "timestamp" in cfg and cfg["seed"] == 3

    rows = [json.loads(line) for line in (out / "samples.jsonl").open()]
    assert len(rows) == 3 * 2 * 2  # problems x samples x benchmarks
    assert set(rows[0]) >= {"benchmark", "problem_id", "sample_index", "prompt", "completion", "extracted_answer",
                            "gold", "correct", "length", "truncated"}
    m = results["metrics"]
    for bench in ("math500", "gsm8k"):
        mine = [r for r in rows if r["benchmark"] == bench]
        assert m[f"eval/{bench}/pass@1"] == pytest.approx(sum(r["correct"] for r in mine) / len(mine))
        assert m[f"eval/{bench}/mean_length"] == pytest.approx(sum(r["length"] for r in mine) / len(mine))
        assert m[f"eval/{bench}/truncation_rate"] == pytest.approx(sum(r["truncated"] for r in mine) / len(mine))
        assert all(1 <= r["length"] <= 8 for r in mine)
        assert results["per_benchmark"][bench]["problems"] == 3
    assert m["eval/avg/pass@1"] == pytest.approx((m["eval/math500/pass@1"] + m["eval/gsm8k/pass@1"]) / 2)
    assert rows[0]["gold"] == r"\left( 3, \frac{\pi}{2} \right)" and rows[-1]["gold"] == "70000"

    # Same seed, same samples (the RNG is seeded inside evaluate).
    out2 = tmp_path / "eval2"
    assert main(_args(tiny_model, out2, *extra)) == 0
    again = [json.loads(line)["completion"] for line in (out2 / "samples.jsonl").open()]
    assert again == [r["completion"] for r in rows]


@needs_data
def test_cli_subprocess(tiny_model, tmp_path):
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "gpgrl.eval.cli",
           *_args(tiny_model, out, "--benchmarks", "amc23", "--limit", "2", "--max-new-tokens", "4",
                  "--prompt", "r1_distill")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "amc23" in proc.stdout and "pass@1" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["prompt"]["system_prompt"] is None
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2


def test_cli_help_and_bad_input(tmp_path, capsys):
    assert main(["--help"]) == 0
    assert "--benchmarks" in capsys.readouterr().out

    assert main(["--model", str(tmp_path), "--benchmarks", "math500,mathh"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown benchmark 'mathh'" in err
    assert all(name in err for name in BENCHMARKS)

    assert main(["--model", str(tmp_path / "missing"), "--data-dir", str(tmp_path), "--benchmarks", "gsm8k"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "gsm8k" / "test.jsonl") in err  # data checked first

    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n")
    assert main(["--model", str(tmp_path / "missing"), "--data-dir", str(tmp_path), "--benchmarks", "gsm8k"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such model folder" in err
    assert "Traceback" not in err

    assert main(["--model", "x", "--samples", "0"]) == 2
    assert "--samples must be >= 1" in capsys.readouterr().err
    assert main(["--model", "x", "--samples", "4"]) == 2  # greedy by default: four identical answers
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--samples 4 with --temperature 0 (greedy)" in err


# --- the benchmark data folder: one rule ($GPGRL_DATA) for every command and test ------------------------------


@needs_data
def test_gpgrl_data_serves_eval_for_math_and_vision(tiny_model, tmp_path, monkeypatch, capsys):
    from gpgrl.eval import load_benchmark
    from gpgrl.paths import find_data_dir

    monkeypatch.setenv("GPGRL_DATA", str(SHARED_DATA))
    [first] = load_benchmark("gsm8k", limit=1)  # no --data-dir: $GPGRL_DATA/math, not the Hub
    assert first.gold == "18" and first.question.startswith("Janet")
    for given in (SHARED_DATA, SHARED_DATA / "math"):  # --data-dir: the folder holding math/, or math/ itself
        assert load_benchmark("gsm8k", limit=1, data_dir=given) == [first]
    where = find_data_dir()
    assert (where.path, where.origin) == (SHARED_DATA, "GPGRL_DATA")
    assert BENCHMARKS["geoqa"].find_local(where) == SHARED_DATA / "vision" / "geoqa" / "geoqa_test_prompts.jsonl"
    assert BENCHMARKS["pets37"].find_local(where) == (SHARED_DATA / "vision" / "visual_rft_classification" /
                                                      "pets_val.jsonl")
    out = tmp_path / "eval"
    assert main(["--model", str(tiny_model), "--benchmarks", "gsm8k", "--limit", "1", "--max-new-tokens", "2",
                 "--output", str(out), "--quiet"]) == 0
    assert json.loads((out / "results.json").read_text())["config"]["data_dir"] == str(SHARED_DATA)
    capsys.readouterr()

    monkeypatch.setenv("GPGRL_DATA", str(tmp_path / "nowhere"))
    assert main(["--model", str(tiny_model), "--benchmarks", "gsm8k"]) == 2
    assert capsys.readouterr().err == (f"gpgrl eval: error: GPGRL_DATA={tmp_path / 'nowhere'} is not a folder: set it "
                                       "to the folder holding math/ and vision/, or unset it (then the benchmarks are "
                                       "read from the Hugging Face Hub)\n")


def test_no_local_data_and_no_hub_fails_at_once_naming_both_ways(tiny_model, monkeypatch, capsys):
    """The issue: without --data-dir, `gpgrl eval` spent ~25 s in the datasets library's retries before it said
    the data was missing. Now one 5 s connection test, then one line naming --data-dir and GPGRL_DATA."""
    import datasets

    import gpgrl.models.loading
    import gpgrl.paths

    monkeypatch.delenv("GPGRL_DATA", raising=False)
    monkeypatch.setattr(gpgrl.paths, "checkout_data_dir", lambda: None)
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(gpgrl.paths, "_hub_checked", {})
    tried = []
    monkeypatch.setattr(gpgrl.models.loading, "_unreachable",
                        lambda host, port, timeout: tried.append((host, port, timeout)) or "no answer within 5 s")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("the Hub was asked after all"))
    assert main(["--model", str(tiny_model), "--benchmarks", "gsm8k,math500"]) == 2
    err = capsys.readouterr().err
    assert err == ("gpgrl eval: error: gsm8k: no local copy (no --data-dir, GPGRL_DATA unset) and the Hugging Face Hub "
                   "is out of reach (huggingface.co cannot be reached: no answer within 5 s): set GPGRL_DATA to the "
                   "folder holding math/ and vision/, or pass --data-dir DIR with gsm8k/test.jsonl inside, or --source "
                   "gsm8k=FILE (.jsonl/.json/.parquet); or, with openai/gsm8k in the Hugging Face cache, set "
                   "HF_DATASETS_OFFLINE=1\n")
    assert tried == [("huggingface.co", 443, 5.0)]  # once, bounded


# --- one line for each bad input ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_context_model(tmp_path_factory) -> Path:
    """The quickstart's size of model: a 512-token context, shorter than some MATH-500 prompts."""
    return save_tiny_model(tmp_path_factory.mktemp("short") / "model", max_positions=512)


@needs_data
def test_a_prompt_longer_than_the_context_is_one_line_before_anything_is_generated(short_context_model, tmp_path,
                                                                                   monkeypatch, capsys):
    """The issue's 18-line traceback (`gpgrl eval --model <quickstart model> --benchmarks math500`): now one
    line, found before generating, and --skip-long-prompts evaluates the others."""
    from gpgrl.cli import main as gpgrl
    from gpgrl.data.prompts import PromptBuilder, resolve_prompt
    from gpgrl.eval import load_benchmark
    from gpgrl.eval.evaluator import prompt_lengths
    from gpgrl.models.loading import load_tokenizer
    from gpgrl.rollout.engine import HFGenerateEngine

    problems = load_benchmark("math500", limit=10, data_dir=DATA)
    tok = load_tokenizer(str(short_context_model))
    lengths = prompt_lengths({"math500": BENCHMARKS["math500"]},
                             {"math500": PromptBuilder(tok, resolve_prompt("qwen_math_cot"))}, {"math500": problems})
    long = [i for i, n in enumerate(lengths["math500"]) if n >= 512]
    assert long and len(long) < 10  # some of the first ten do not fit, some do
    generate = HFGenerateEngine.generate
    monkeypatch.setattr(HFGenerateEngine, "generate", lambda *a, **k: pytest.fail("generated before checking"))
    args = ["eval", "--model", str(short_context_model), "--benchmarks", "math500", "--data-dir", str(DATA),
            "--limit", "10"]
    assert gpgrl(args) == 2  # the `gpgrl` command: a traceback would raise here
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [f"gpgrl eval: loading {short_context_model} ...",
                       f"gpgrl eval: loaded {short_context_model} in {err[1].split(' in ')[1].split(' s ')[0]} s "
                       "(0.1M parameters, cpu)"]  # the progress of the load; then the error, one line
    assert err[2:] == [f"gpgrl eval: error: math500: {len(long)} of 10 prompts do not fit the model's 512-token "
                       f"context (the first, id {problems[long[0]].id!r}, has {lengths['math500'][long[0]]} tokens "
                       f"with the prompt template); pass --skip-long-prompts to evaluate the other {10 - len(long)}, "
                       "or use a model with a longer context"]

    monkeypatch.setattr(HFGenerateEngine, "generate", generate)
    out = tmp_path / "eval"
    assert gpgrl([*args, "--skip-long-prompts", "--max-new-tokens", "2", "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert (f" on math500 ({10 - len(long)} problems x 1 sample; {len(long)} left out, their prompt longer than the "
            "model's context), up to 2 new tokens per answer (--max-new-tokens)") in err
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["skipped_long_prompts"] == {"math500": [problems[i].id for i in long]}
    assert results["per_benchmark"]["math500"]["problems"] == 10 - len(long)
    rows = [json.loads(line) for line in (out / "samples.jsonl").open()]
    assert [r["problem_index"] for r in rows] == [i for i in range(10) if i not in long]  # indices of the file


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "{tmp}/missing", "--benchmarks", "arithmetic"], "no such model folder: '{tmp}/missing'"),
    (["--model", "{model}", "--benchmarks", "math5000"], "unknown benchmark 'math5000'; choose from math500,"),
    (["--model", "{model}", "--benchmarks", "arithmetic", "--limit", "0"], "--limit must be >= 1, got 0"),
    (["--model", "{model}", "--benchmarks", "gsm8k", "--data-dir", "{tmp}"],
     "gsm8k: no data file at {tmp}/gsm8k/test.jsonl or {tmp}/math/gsm8k/test.jsonl (--data-dir)"),
    (["--model", "{model}", "--benchmarks", "arithmetic", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
])
def test_each_bad_input_is_one_line(args, message, tiny_model, tmp_path, capsys):
    from gpgrl.cli import main as gpgrl

    fill = {"tmp": str(tmp_path), "model": str(tiny_model)}
    assert gpgrl(["eval", *(a.format(**fill) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"gpgrl eval: error: {message.format(**fill)}"), err
