"""The CPU quickstart: SFT loss masking by hand, the recipe file, and a shortened end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
from gpgrl.tasks.quickstart import main, rl_config, run
from gpgrl.tasks.sft import IGNORE_INDEX, SFTConfig, build_sft_batch, supervised_warm_start

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


def test_sft_labels_cover_only_completion_tokens(tok):
    batch = build_sft_batch(tok, ["1+2", "10+20"], ["<answer>3</answer>", "<answer>30</answer>"])
    ids = tok.convert_tokens_to_ids
    user, end, asst, ans, ans_end, eos, pad = ids(
        ["<|user|>", "<|end|>", "<|assistant|>", "<answer>", "</answer>", "<eos>", "<pad>"])
    one, two, three, zero, plus = ids(["1", "2", "3", "0", "+"])
    # row 0: 6 prompt tokens + 4 completion tokens, then 3 pads (row 1 is 3 tokens longer)
    assert batch["input_ids"][0].tolist() == [user, one, plus, two, end, asst, ans, three, ans_end, eos, pad, pad, pad]
    assert batch["attention_mask"][0].tolist() == [1] * 10 + [0, 0, 0]
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] * 6 + [ans, three, ans_end, eos] + [IGNORE_INDEX] * 3
    # row 1: 8 prompt tokens + 5 completion tokens, no padding
    assert batch["labels"][1].tolist() == [IGNORE_INDEX] * 8 + [ans, three, zero, ans_end, eos]
    assert batch["attention_mask"][1].tolist() == [1] * 13


def test_sft_loss_is_cross_entropy_over_completion_tokens_only(tok):
    model = build_tiny_model(tok, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, seed=3)
    batch = build_sft_batch(tok, ["1+2", "10+20"], ["<answer>3</answer>", "<answer>30</answer>"])
    loss = model(**batch).loss
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    terms = []
    for i, row in enumerate(batch["labels"].tolist()):
        for t, label in enumerate(row):
            if label != IGNORE_INDEX:  # token t is predicted from position t - 1
                terms.append(-logp[i, t - 1, label])
    assert len(terms) == 4 + 5
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)


def test_warm_start_lowers_the_loss(tok):
    torch.manual_seed(0)
    model = build_tiny_model(tok, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, seed=0)
    questions = ["1+2", "3+4", "5+1"]
    completions = ["<answer>3</answer>", "<answer>7</answer>", "<answer>6</answer>"]
    hist = supervised_warm_start(model, tok, questions, completions, SFTConfig(steps=30, batch_size=3, lr=1e-2))
    assert len(hist) == 30
    assert hist[-1]["sft/loss"] < 0.5 * hist[0]["sft/loss"]


def test_warm_start_stops_at_target(tok):
    model = build_tiny_model(tok, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, seed=0)
    calls = []

    def check() -> float:
        calls.append(1)
        return 0.1 * len(calls)  # 0.1, 0.2, 0.3, ...

    hist = supervised_warm_start(model, tok, ["1+2"], ["<answer>3</answer>"],
                                 SFTConfig(steps=100, batch_size=1, check_every=2, target_accuracy=0.3), check=check)
    assert len(hist) == 6 and hist[-1]["sft/check"] == pytest.approx(0.3)


def test_recipe_file_is_the_quickstart_config():
    recipe = yaml.safe_load((ROOT / "recipes" / "quickstart_cpu.yaml").read_text())
    assert recipe == rl_config()


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "--seed" in capsys.readouterr().out


def test_short_quickstart_writes_summary_and_plot(tmp_path, capsys):
    # an earlier run in the folder: refused, then replaced with --overwrite, saying what it deletes
    (tmp_path / "summary.json").write_text(json.dumps({"quickstart": "text", "seed": 7, "accuracy_before": 0.25,
                                                       "accuracy_after": 0.5, "steps": 9}))
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "stale.bin").write_bytes(b"x" * 1000)
    with pytest.raises(ValueError, match=r"already holds a finished text quickstart run \(seed 7: 25\.0% -> 50\.0% "
                                         r"in 9 GPG steps\): `gpgrl quickstart --overwrite` replaces it"):
        run(tmp_path, seed=1, quiet=True)
    capsys.readouterr()
    # a shortened run: few SFT steps, 2 small GPG steps, 20 test questions
    summary = run(tmp_path, seed=1, steps=2, sft_steps=20, eval_every=1, eval_size=20, quiet=True, overwrite=True,
                  rl_overrides={"train": {"prompts_per_step": 4}, "rollout": {"group_size": 4},
                                "algorithm": {"preset": "gpg", "max_resample_draws": 1}})
    assert capsys.readouterr().out.splitlines()[0] == (
        f"[quickstart] --overwrite: deleting the previous quickstart run in {tmp_path}, a finished text quickstart "
        "run (seed 7: 25.0% -> 50.0% in 9 GPG steps): sft/, summary.json; 1.1 kB")
    assert not (tmp_path / "sft" / "stale.bin").exists()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for key in ("accuracy_before", "accuracy_after", "steps", "seconds", "seed", "config"):
        assert key in on_disk
    assert 0.0 <= on_disk["accuracy_before"] <= 1.0 and 0.0 <= on_disk["accuracy_after"] <= 1.0
    assert on_disk["steps"] == 2 and on_disk["seed"] == 1 and on_disk["seconds"] > 0
    assert on_disk["sft_steps"] == 20
    cfg = on_disk["config"]
    assert cfg["algorithm"]["preset"] == "gpg" and cfg["rewards"][0]["name"] == "accuracy"
    assert cfg["train"]["prompts_per_step"] == 4 and cfg["train"]["seed"] == 1
    assert [e["step"] for e in on_disk["evals"]] == [0, 1, 2]
    png = tmp_path / "quickstart.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "reward/mean" in x] == [1, 2]
    assert (tmp_path / "sft" / "config.json").is_file()


@pytest.mark.slow
def test_default_quickstart_improves_by_20_points(tmp_path):
    summary = run(tmp_path, quiet=True)
    assert summary["accuracy_after"] - summary["accuracy_before"] >= 0.20
