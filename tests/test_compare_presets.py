"""benchmarks/compare_presets.py: the small statistics helpers (hand-checkable numbers), the methods and
tasks it compares, and the report it renders from a results.json (no training here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


cp = load_script("compare_presets")


# -- spread ------------------------------------------------------------------------------------------

def test_spread_hand_checked():
    s = cp.spread([0.1, 0.2, 0.3])
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(0.2)
    assert s["std"] == pytest.approx(0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
    assert (s["min"], s["max"]) == (0.1, 0.3)


def test_spread_sample_std_uses_n_minus_1():
    # values 2 and 4: mean 3, squared deviations 1 + 1, / (2 - 1) -> variance 2
    assert cp.spread([2.0, 4.0])["std"] == pytest.approx(math.sqrt(2))


def test_spread_one_value_and_nan_and_empty():
    assert cp.spread([0.4]) == {"n": 1, "mean": 0.4, "std": 0.0, "min": 0.4, "max": 0.4}
    assert cp.spread([0.4, float("nan"), 0.6])["mean"] == pytest.approx(0.5)  # NaN dropped
    empty = cp.spread([])
    assert empty["n"] == 0 and math.isnan(empty["mean"]) and math.isnan(empty["std"])


# -- paired_difference ---------------------------------------------------------------------------------

def test_paired_difference_beyond_spread():
    d = cp.paired_difference([0.5, 0.7], [0.2, 0.3])
    assert d["diffs"] == pytest.approx([0.3, 0.4])
    assert d["mean"] == pytest.approx(0.35)
    assert (d["min"], d["max"]) == (pytest.approx(0.3), pytest.approx(0.4))
    assert (d["above"], d["below"]) == (2, 0)
    # stds: a = sqrt(0.02) = 0.141, b = sqrt(0.005) = 0.071; gap of the means 0.35 > 0.141
    assert d["seed_spread"] == pytest.approx(math.sqrt(0.02))
    assert d["beyond_spread"] is True


def test_paired_difference_within_spread():
    # a: 0.2, 0.6 (mean 0.4, std 0.283); b: 0.3, 0.4 (mean 0.35); gap 0.05 < 0.283
    d = cp.paired_difference([0.2, 0.6], [0.3, 0.4])
    assert d["mean"] == pytest.approx(0.05)
    assert (d["above"], d["below"]) == (1, 1)
    assert d["beyond_spread"] is False


def test_paired_difference_ties_one_seed_and_mismatch():
    d = cp.paired_difference([0.5, 0.5], [0.5, 0.5])
    assert (d["mean"], d["above"], d["below"], d["beyond_spread"]) == (0.0, 0, 0, False)
    one = cp.paired_difference([0.9], [0.1])  # one seed: no spread to compare with
    assert one["mean"] == pytest.approx(0.8) and one["beyond_spread"] is False
    with pytest.raises(ValueError, match="one value per seed"):
        cp.paired_difference([0.1, 0.2], [0.1])


def test_value_at_budget_interpolates():
    pts = [(0, 0.1), (256, 0.2), (768, 0.4)]
    assert cp.value_at_budget(pts, 512) == pytest.approx(0.3)  # halfway from 256 (0.2) to 768 (0.4)
    assert cp.value_at_budget(pts, 256) == pytest.approx(0.2)
    assert cp.value_at_budget(pts, 768) == pytest.approx(0.4)
    assert cp.value_at_budget(pts, 10_000) == 0.4  # past the last point: its value
    assert cp.value_at_budget(list(reversed(pts)), 128) == pytest.approx(0.15)  # order does not matter
    assert math.isnan(cp.value_at_budget([(100, 0.3)], 50))
    assert math.isnan(cp.value_at_budget([], 50))


# -- methods and tasks ------------------------------------------------------------------------------------

def test_methods_resolve_to_the_intended_algorithms():
    from gpgrl.config import from_dict
    from gpgrl.tasks import quickstart as qs

    def algo(method):
        raw = qs.rl_config()
        raw["algorithm"] = dict(cp.METHODS[method])
        return from_dict(raw).algo

    assert set(cp.METHODS) == {"gpg", "gpg_no_age", "gpg_no_resample", "gpg_group_std", "grpo", "dr_grpo", "dapo",
                               "gspo", "cispo", "rloo", "reinforce_pp"}
    gpg = algo("gpg")
    assert (gpg.scale, gpg.age, gpg.resample_threshold, gpg.beta) == ("none", True, 0.5, 0.0)
    assert algo("gpg_no_age").age is False and algo("gpg_no_age").resample_threshold == 0.5
    assert algo("gpg_no_resample").resample_threshold == 0.0 and algo("gpg_no_resample").age is True
    assert algo("gpg_group_std").scale == "group" and algo("gpg_group_std").age is True
    assert algo("grpo").beta > 0 and algo("dapo").resample_threshold == 1.0
    assert [algo(m).name for m in ("gspo", "cispo", "rloo", "reinforce_pp")] == ["gspo", "cispo", "rloo", "reinforce_pp"]
    assert set(cp.LABELS) >= set(cp.METHODS) and set(cp.COLORS) >= set(cp.METHODS)


def test_tasks_keep_the_quickstart_and_make_the_hard_one_harder():
    from gpgrl.data.arithmetic import ArithmeticTask
    from gpgrl.tasks import quickstart as qs

    quick = cp.TASKS["quickstart"]
    assert quick["sft"] == qs.SFT and quick["max_new_tokens"] == qs.MAX_NEW_TOKENS  # the original comparison
    assert quick["num_validation"] == qs.NUM_VALIDATION and quick["methods"] == cp.PRESETS
    hard = cp.TASKS["hard"]
    assert hard["dataset_kwargs"] == {"digits": 3} and len(hard["methods"]) == 11 and len(hard["seeds"]) == 5
    assert hard["sft"]["target_accuracy"] < quick["sft"]["target_accuracy"]
    # every reference completion (with EOS) fits in the new-token budget
    from gpgrl.models.tiny import build_char_tokenizer

    tok = build_char_tokenizer()
    task = ArithmeticTask(**hard["dataset_kwargs"], num_train=50, num_test=10)
    longest = max(len(tok(task.solution(r["question"]), add_special_tokens=False)["input_ids"]) + 1
                  for r in task.records("train") + task.records("test"))
    assert longest <= hard["max_new_tokens"]


# -- report ---------------------------------------------------------------------------------------------

def _run(seed, method, after, *, draws=1.0, evals=((0, 0.1), (5, 0.2), (10, 0.3))):
    per_draw = 256
    samples = [(0, 0)] + [(s, int(s * draws * per_draw)) for s in (5, 10)]
    return {
        "seed": seed, "preset": method, "method": method, "before": 0.1, "after": after, "steps": 10,
        "seconds": 10.0, "run_seconds": 12.0, "rss_start_mb": 1000.0, "peak_rss_mb": 1200.0,
        "memory_measure": "per run", "mean_draws": draws, "max_draws_hit": 0, "mean_alpha": 1.3, "signal_share": 0.6,
        "final_reward": 0.3, "final_batch_reward": 0.35, "clip_frac": 0.0, "kl": 0.0, "skipped_steps": 0,
        "evals": [list(e) for e in evals], "samples": [list(x) for x in samples],
        "train_reward": [], "sampled_reward": [[1, 0.2], [2, 0.3]],
        "algorithm": {"scale": "none", "age": True, "ratio": False, "epsilon_low": 0.2, "epsilon_high": 0.2,
                      "beta": 0.0, "loss_agg": "token_mean", "resample_threshold": 0.5, "max_resample_draws": 4},
    }


def _data(runs, complete=True):
    return {
        "command": "python benchmarks/compare_presets.py --task hard", "machine": "test", "notes": "",
        "date": "2026-01-01", "task": "hard", "presets": ["gpg", "dapo"], "complete": complete,
        "total_seconds": 60.0, "warm_starts": {"0": {"sft_steps": 5, "sft_seconds": 1.0, "before": 0.1},
                                               "1": {"sft_steps": 5, "sft_seconds": 1.0, "before": 0.1}},
        "settings": {"steps": 10, "group_size": 8, "prompts_per_step": 32, "temperature": 0.7, "max_new_tokens": 48,
                     "lr": 5e-4, "lr_scheduler": "cosine", "warmup_steps": 10, "max_grad_norm": 1.0,
                     "max_resample_draws": 4, "model": {}, "sft": cp.TASKS["hard"]["sft"],
                     "dataset_kwargs": {"digits": 3}, "eval_every": 5},
        "runs": runs,
    }


def test_summarize_pairs_seeds_and_equal_budget():
    runs = [_run(0, "gpg", 0.30), _run(0, "dapo", 0.50, draws=2.0, evals=((0, 0.1), (5, 0.4), (10, 0.6))),
            _run(1, "gpg", 0.40), _run(1, "dapo", 0.60, draws=2.0, evals=((0, 0.1), (5, 0.5), (10, 0.7))),
            _run(2, "gpg", 0.90)]  # seed 2 unfinished for dapo: left out of the paired summary
    s = cp.summarize(runs, ["gpg", "dapo"])
    assert s["seeds"] == [0, 1]
    assert s["budget"] == {0: 2560, 1: 2560}  # gpg: 10 steps x 256 answers; dapo sampled twice as many
    gpg, dapo = s["methods"]["gpg"], s["methods"]["dapo"]
    assert gpg["after"]["mean"] == pytest.approx(0.35)
    assert dapo["vs_ref"]["mean"] == pytest.approx(0.2) and dapo["vs_ref"]["above"] == 2
    assert dapo["vs_ref"]["beyond_spread"] is True  # gap 0.2 > std 0.0707
    # at 2560 answers dapo is at step 5 (2560 answers), gpg at step 10
    assert dapo["at_budget_values"] == pytest.approx([0.4, 0.5]) and gpg["at_budget_values"] == pytest.approx([0.3, 0.3])
    assert dapo["vs_ref_budget"]["mean"] == pytest.approx(0.15)
    # DAPO's time ratio to GPG: both ran 10 s here
    assert dapo["time_ratio"]["mean"] == pytest.approx(1.0)
    assert gpg["per_step"][5]["mean"] == pytest.approx(0.2)
    assert gpg["rss_growth_mb"]["mean"] == pytest.approx(200.0)


def test_render_hard_report_and_partial_label(tmp_path):
    runs = [_run(0, "gpg", 0.30), _run(0, "dapo", 0.50, draws=2.0), _run(1, "gpg", 0.40)]
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(_data(runs, complete=False)))
    md = tmp_path / "report.md"
    assert cp.main(["--task", "hard", "--render-only", "--output", str(out), "--results", str(md),
                    "--reading", "A reading."]) == 0
    text = md.read_text()
    assert "PARTIAL RESULTS" in text and "seeds 0 (n = 1)" in text
    assert "| GPG | 10.0 | 30.0 ± 0.0 [30.0, 30.0] | (reference) |" in text
    assert "+20.0 [+20.0, +20.0] (1/0)" in text
    assert "## Reading\n\nA reading." in text
    assert md.with_suffix(".png").stat().st_size > 0
    assert json.loads(md.with_suffix(".json").read_text())["reading"] == "A reading."


def test_render_quickstart_report_keeps_the_old_format(tmp_path):
    runs = [_run(0, "gpg", 0.8), _run(0, "grpo", 0.9)]
    for r in runs:  # a results.json written before the hard task existed has none of these
        for key in ("method", "samples", "run_seconds", "rss_start_mb", "peak_rss_mb", "memory_measure"):
            del r[key]
    data = _data(runs)
    for key in ("task", "complete"):
        del data[key]
    data["presets"] = ["gpg", "grpo"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(data))
    md = tmp_path / "cmp.md"
    assert cp.main(["--render-only", "--output", str(out), "--results", str(md)]) == 0
    text = md.read_text()
    assert text.startswith("# GPG vs GRPO vs Dr. GRPO vs DAPO on the quickstart task")
    assert "| 0 | GRPO | 10.0% | 90.0% | +80.0 |" in text
    assert not md.with_suffix(".json").exists()
