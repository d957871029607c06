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
