"""evaluate() under two real processes (accelerate launch on CPU, gloo): problems sharded, records gathered,
the same metrics on both ranks, files written once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA_MISSING, SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA / "math"

SCRIPT = """
import json, sys
from accelerate import Accelerator
from gpgrl.eval import evaluate, load_benchmarks
from gpgrl.models import load_policy, load_tokenizer

model_dir, data_dir, out = sys.argv[1:4]
acc = Accelerator(cpu=True)
tok, model = load_tokenizer(model_dir), load_policy(model_dir)
problems = load_benchmarks("math500,gsm8k", data_dir=data_dir, limit=3)
metrics = evaluate(model, tok, problems, samples=2, temperature=1.0, max_new_tokens=6, accelerator=acc,
                   output_dir=out + "/eval", show_progress=False, seed=1)
with open(f"{out}/metrics{acc.process_index}.json", "w") as f:
    json.dump(metrics, f)
acc.end_training()  # destroys the process group: a live gloo group at exit can abort the interpreter
"""

LAUNCHER = Path(sys.executable).with_name("accelerate")


@pytest.mark.distributed
@pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA_MISSING} at {DATA}")
@pytest.mark.skipif(not LAUNCHER.exists() and shutil.which("accelerate") is None, reason="no accelerate launcher")
def test_evaluate_two_processes(tmp_path):
    from gpgrl.models.tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "model")
    script = tmp_path / "run_eval.py"
    script.write_text(SCRIPT)
    launcher = str(LAUNCHER) if LAUNCHER.exists() else shutil.which("accelerate")
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", "29531",
           str(script), str(model), str(DATA), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    m0 = json.loads((tmp_path / "metrics0.json").read_text())
    m1 = json.loads((tmp_path / "metrics1.json").read_text())
    assert m0 == m1  # every rank computes the metrics from all gathered records
    rows = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").open()]
    keys = [(r["benchmark"], r["problem_index"], r["sample_index"]) for r in rows]
    assert keys == [(b, p, s) for b in ("math500", "gsm8k") for p in range(3) for s in range(2)]
    for bench in ("math500", "gsm8k"):
        mine = [r for r in rows if r["benchmark"] == bench]
        assert m0[f"eval/{bench}/pass@1"] == pytest.approx(sum(r["correct"] for r in mine) / 6)
        assert m0[f"eval/{bench}/mean_length"] == pytest.approx(sum(r["length"] for r in mine) / 6)
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["config"]["num_processes"] == 2 and results["metrics"] == m0
