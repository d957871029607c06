"""Two real processes (accelerate launch --cpu, gloo) against one: same global batch, same update."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
# the launched processes import this checkout's gpgrl (src/) and the tests' helpers, whatever is installed
PYTHONPATH = os.pathsep.join([str(HERE), str(HERE.parent / "src")])


def _run(cmd, out, script="dist_step.py"):
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([*cmd, str(HERE / script), str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out / "result.pt", weights_only=False)


@pytest.mark.distributed
@pytest.mark.skipif(shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists(),
                    reason="accelerate launcher not installed")
def test_two_processes_match_one(tmp_path):
    launcher = str(Path(sys.executable).with_name("accelerate"))
    one = _run([sys.executable], tmp_path / "one")
    two = _run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517"], tmp_path / "two")
    assert one["world"] == 1 and two["world"] == 2
    # alpha and the degenerate groups are counted over the global batch, not per process
    for key in ("adv/alpha", "adv/num_degenerate_groups", "adv/num_samples", "reward/mean", "rollout/num_tokens"):
        assert two["metrics"][key] == one["metrics"][key], key
    assert one["metrics"]["adv/num_samples"] == 32.0
    assert 0 < one["metrics"]["adv/num_degenerate_groups"] < 8  # the batch mixes both kinds of group
    assert one["metrics"]["loss/total"] == pytest.approx(two["metrics"]["loss/total"], abs=1e-6)
    moved = 0.0
    for k, v in one["params"].items():
        torch.testing.assert_close(two["params"][k], v, atol=2e-6, rtol=1e-5)
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model

    start = build_tiny_model(build_char_tokenizer(), seed=0).state_dict()
    moved = max((one["params"][k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-4


@pytest.mark.distributed
@pytest.mark.skipif(shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists(),
                    reason="accelerate launcher not installed")
def test_two_processes_count_resampled_groups_as_configured(tmp_path):
    """dist_resample.py: process 0 draws only groups with a signal, process 1 only degenerate ones; P = 4."""
    launcher = str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29519",
                           str(HERE / "dist_resample.py"), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = torch.load(tmp_path / "result.pt", weights_only=False)
    assert result["world"] == 2
    # kept: process 0 keeps at most its 2 places, so the count stays 2 + 0 < 1.0 x 4 for all 5 draws; the
    # trained batch (2 signal + 2 degenerate groups of 2) has alpha = B / (B - M) = 8 / 4
    assert result["results"]["kept"] == {"rollout/draws": 5.0, "rollout/valid_groups_counted": 2.0, "adv/alpha": 2.0}
    # gathered (the original's): draw 2 brings every signal group drawn to 2 + 2 = 4 >= 4: stop;
    # alpha = 1 / min(1, 4 / 4) = 1
    assert result["results"]["gathered"] == {"rollout/draws": 2.0, "rollout/valid_groups_counted": 4.0,
                                             "adv/alpha": 1.0}


@pytest.mark.distributed
@pytest.mark.skipif(shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists(),
                    reason="accelerate launcher not installed")
def test_two_processes_match_one_on_multi_turn_episodes(tmp_path):
    """Episodes over two processes: the policy's tokens are counted over both (the token-mean's denominator),
    the episode metrics and alpha are global, the update is the one process's, and rollouts.jsonl holds both."""
    import json

    launcher = str(Path(sys.executable).with_name("accelerate"))
    one = _run([sys.executable], tmp_path / "one", script="dist_episodes.py")
    two = _run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29519"], tmp_path / "two",
               script="dist_episodes.py")
    for key in ("adv/alpha", "adv/num_degenerate_groups", "rollout/num_tokens", "episode/turns", "episode/tool_calls",
                "episode/env_token_frac", "episode/ended_done", "reward/mean"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], abs=1e-12), key
    assert one["metrics"]["episode/ended_done"] == 32.0
    assert one["metrics"]["loss/total"] == pytest.approx(two["metrics"]["loss/total"], abs=1e-6)
    for k, v in one["params"].items():
        torch.testing.assert_close(two["params"][k], v, atol=2e-6, rtol=1e-5)
    rows = {name: [json.loads(line) for line in (tmp_path / name / "run" / "rollouts.jsonl").read_text().splitlines()]
            for name in ("one", "two")}
    assert len(rows["one"]) == len(rows["two"]) == 32 and {r["rank"] for r in rows["two"]} == {0, 1}
    assert sum(sum(r["loss_mask"]) for r in rows["two"]) == two["metrics"]["rollout/num_tokens"]
