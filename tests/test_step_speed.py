"""The pure helpers of benchmarks/step_speed.py (run order, reward, the padded tokenizer) and of its report,
benchmarks/step_speed_report.py (statistics, tables, targets, the floor)."""

from __future__ import annotations

import doctest
import json
import math

import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def bench():
    # registered in sys.modules (doctest only runs the examples of objects it finds there, and
    # step_profile.py may have imported another copy under the same name)
    return load_script("step_speed")


@pytest.fixture(scope="module")
def report(bench):
    return load_script("step_speed_report")


def test_doctests(bench, report):
    for module, least in ((bench, 3), (report, 5)):
        result = doctest.testmod(module)
        assert result.attempted >= least and result.failed == 0, module.__name__


def test_median_spread(report):
    s = report.median_spread([2.0, 4.0, float("nan"), 3.0, 10.0])
    assert s["median"] == 3.5 and s["min"] == 2.0 and s["max"] == 10.0 and s["n"] == 4
    assert s["spread"] == pytest.approx(8.0 / 3.5)
    assert math.isnan(report.median_spread([])["median"])


def test_run_order_alternates_and_covers_every_pair(bench):
    order = bench.run_order(bench.CONFIGS, 3)
    assert len(order) == 12 and len(set(order)) == 12
    assert [c for r, c in order if r == 1] == bench.CONFIGS[::-1]
    assert [c for r, c in order if r == 2] == bench.CONFIGS


def test_reward_varies_within_a_group(bench):
    answers = ["12 + 7", "19", "w3 w17 ", "abc", "<answer>19</answer>", "zzzz"]
    values = [bench.reward_value(a) for a in answers]
    assert len(set(values)) == len(values)
    assert all(0.0 <= v <= 1.1 for v in values)


def _run(bench, model, config, wall, gen, peak, ready, rep=0):
    steps = [{"wall": wall + d, "cpu": wall / 2 + d, "gen_wall": gen, "gen_cpu": gen / 2, "tokens": 1024}
             for d in (0.0, 0.1, -0.1)]
    return {"ok": True, "model": model, "config": config, "rep": rep, "steps": steps, "peak_rss_mb": peak,
            "ready_rss_mb": ready, "model_mb": 80.0}


def test_aggregate_ratios_and_report(report, tmp_path):
    runs = []
    for rep, scale in enumerate((1.0, 1.2, 0.9)):
        runs += [_run(bench, "b", "gpgrl_gpg", 10 * scale, 4, 1000, 900, rep),
                 _run(bench, "b", "gpgrl_grpo", 12 * scale, 4, 1100, 1000, rep),
                 _run(bench, "b", "trl_gpg", 20 * scale, 5, 2000, 800, rep),
                 _run(bench, "a", "gpgrl_gpg", 1 * scale, 0.4, 500, 450, rep)]
    runs.append({"ok": False, "model": "a", "config": "trl_gpg", "rep": 0, "error": "boom"})
    agg = report.aggregate(runs)
    assert agg["b/gpgrl_gpg"]["wall"]["median"] == pytest.approx(10.0)
    assert agg["b/gpgrl_gpg"]["update_wall"]["median"] == pytest.approx(6.0)
    assert agg["b/gpgrl_gpg"]["wall"]["n"] == 3
    assert report.ratio(agg, "b", "gpgrl_gpg", "trl_gpg", "wall") == pytest.approx(0.5)
    assert report.ratio(agg, "b", "gpgrl_gpg", "trl_gpg", "peak_rss_mb") == pytest.approx(0.5)
    assert math.isnan(report.ratio(agg, "a", "gpgrl_gpg", "trl_gpg", "wall"))
    lines = "\n".join(report.target_lines(agg))
    assert "model b: **0.50x** (target <= 0.3x: NOT met)" in lines
    assert "model a: **nanx** (target <= 0.8x: not measured)" in lines
    assert "model r (SmolLM2-135M): **nanx** (target <= 0.5x: not measured)" in lines
    table = report.render_table(agg, "b")
    assert table.count("\n") == 5 and "| TRL GRPOTrainer, beta 0.04 | not run |" in table
    assert "10.00 (9.00-12.00)" in table
    settings = {"G": 8, "prompts": 4, "length": 32, "warmup": 1, "steps": 3, "repetitions": 3, "lr": 1e-6,
                "model_shape": {}}
    env = {"platform": "x", "python": "3", "cpus": 2}
    (tmp_path / "step_speed.json").write_text(json.dumps({"settings": settings, "environment": env, "runs": runs,
                                                          "load_average_1min": [1.0, 2.0], "minutes": 3.0}))
    report.write_report(tmp_path)
    md = (tmp_path / "step_speed.md").read_text()
    assert "## Model b" in md and "Failed runs: 1 (a/trl_gpg)" in md and "load average" in md


def test_memory_pass_lines_and_target(report, tmp_path):
    def run(config, peak):
        return {"ok": True, "model": "b", "config": config, "peak_rss_mb": peak, "model_mb": 76.0}

    memory = {"mmap_threshold": 65536,
              "runs": [run("gpgrl_gpg", 1446.0), run("gpgrl_grpo", 1522.5), run("trl_gpg", 3462.0),
                       {"ok": False, "model": "b", "config": "trl_beta", "error": "boom"}]}
    lines = report.memory_lines(memory)
    assert lines[2] == "| b | 1446 | 1522 | 3462 | - |"  # the failed configuration shows as '-'
    assert "GRPO - GPG = **76.5 MB**; the reference model's weights are 76.0 MB (target: the difference >= the " \
           "reference model: met)" in "\n".join(lines)
    assert "GPG / TRL (beta 0) = 0.42x" in lines[-1]
    memory["runs"][1]["peak_rss_mb"] = 1500.0  # 54 MB: less than the weights
    assert "NOT met" in "\n".join(report.memory_lines(memory))
    # the target line of the main run quotes the memory pass next to its own (default-allocator) figure
    agg = report.aggregate([_run(bench, "b", "gpgrl_gpg", 10, 4, 1000, 900, 0),
                           _run(bench, "b", "gpgrl_grpo", 12, 4, 1050, 1000, 0)])
    agg["b/gpgrl_grpo"]["model_mb"]["median"] = 76.0
    line = next(x for x in report.target_lines(agg, memory) if "GRPO - GPG" in x)
    assert "(no target) memory pass, model b: gpgrl GRPO - GPG = 54.0 MB" in line


def test_real_model_targets_floor_and_report(report, tmp_path):
    """Model r: time and both memory ratios against TRL, the floor table and the stretch target."""
    runs = [_run(bench, "r", "gpgrl_gpg", 10, 4, 1000, 900), _run(bench, "r", "trl_gpg", 40, 8, 4000, 1000)]
    agg = report.aggregate(runs)
    assert agg["r/gpgrl_gpg"]["step_peak_mb"]["median"] == 100 and agg["r/trl_gpg"]["step_peak_mb"]["median"] == 3000
    shape = {"hidden": 576, "layers": 30, "heads": 9, "kv_heads": 3, "head_dim": 64, "intermediate": 1536,
             "vocab": 49152}
    floor = {"r": {"shape": shape, "prompt_tokens": 43.0, "rows": 32, "groups": 4, "decode_gflops": 50.0, "train_gflops": 100.0,
                   "matmul_shapes": {"decode": [32, 576, 1536], "train": [2400, 576, 1536]}}}
    lines = "\n".join(report.target_lines(agg, None, floor))
    assert "model r (SmolLM2-135M): **0.25x** (target <= 0.5x: met)" in lines
    assert "whole-process peak RSS: **0.25x** (target <= 0.5x: met)" in lines
    assert "step's own peak (peak RSS - RSS before the 1st step): **0.03x** (target <= 0.5x: met)" in lines
    gpg, trl = report.config_floor(agg, floor, "r", "gpgrl_gpg"), report.config_floor(agg, floor, "r", "trl_gpg")
    assert gpg["completion"] == 32.0 and gpg["generation"] < 0.6 * trl["generation"]  # prompt prefilled once per group
    assert trl["forward"] > gpg["forward"]  # TRL's CPU head projects the prompt positions too
    expected = report.floor_seconds(gpg, 50.0, 100.0)
    assert gpg["seconds"] == pytest.approx(expected) and gpg["multiple"] == pytest.approx(10 / expected)
    assert f"**{10 / expected:.1f}x** (target <= 2x: met)" in lines  # 10 s against a ~25 s floor
    table = report.render_floor(agg, floor, "r")
    assert table.count("| gpgrl GPG") == 1 and "not run" not in table
    settings = {"G": 8, "prompts": 4, "length": 32, "warmup": 1, "steps": 3, "repetitions": 3, "lr": 1e-6,
                "model_shape": {}, "per_model": {"r": {"steps": 2, "repetitions": 2}}}
    check = {"r": {"checked": 8, "configs": ["gpgrl_gpg", "trl_gpg"], "mismatched": []}}
    (tmp_path / "step_speed.json").write_text(json.dumps({
        "settings": settings, "environment": {"platform": "x", "python": "3", "cpus": 2}, "runs": runs,
        "load_average_1min": [1.0], "minutes": 3.0, "floor": floor, "prompt_check": check}))
    report.write_report(tmp_path)
    md = (tmp_path / "step_speed.md").read_text()
    assert "## Model r" in md and "### The floor, model r" in md and "## Model a" not in md
    assert "(model r: 2 steps, 2 repetitions)" in md and "8 prompts checked in gpgrl_gpg, trl_gpg: every one" in md


def test_step_macs_grows_as_the_formula_says(report):
    shape = {"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "head_dim": 16, "intermediate": 128, "vocab": 1000}
    one = report.step_macs(shape, rows=1, prompt=10, completion=5, head_positions=5)
    two = report.step_macs(shape, rows=2, prompt=10, completion=5, head_positions=5)
    assert two["total"] == 2 * one["total"] and one["backward"] == 2 * one["forward"]
    more_head = report.step_macs(shape, rows=1, prompt=10, completion=5, head_positions=15)
    assert more_head["forward"] - one["forward"] == 10 * 64 * 1000


def test_padded_tokenizer_decodes_every_id(bench, tmp_path):
    tok = bench.build_tokenizer(300, tmp_path)
    assert len(tok) == 300
    assert tok.decode(tok("12+7=")["input_ids"]) == "12+7="
    texts = [tok.decode([i]) for i in range(len(tok))]
    assert all(texts) and texts[-1].startswith("w")
