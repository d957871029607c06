"""The objective seam (gpgrl.algorithms.objective): the four presets it replaced train bit for bit as before,
every registered objective trains a step, and an objective from a file outside the package trains through
`gpgrl train`."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pytest
import torch

from gpgrl.algorithms import OBJECTIVES, PRESETS, make_objective
from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
from gpgrl.train.trainer import Trainer
from helpers import ScriptedEngine, tiny_config
from importance_engines import PerturbedScriptedEngine

SRC = Path(__file__).resolve().parents[1] / "src" / "gpgrl"

# One step of each case, as the code before the objective seam (commit 6a7b297) logged it: every metric but
# the timings, and a SHA-256 of the updated parameters' bytes. Deterministic on CPU: compared exactly.
CASES = {
    "gpg": ({"preset": "gpg", "resample_threshold": 0.0}, {}, "plain"),
    "gpg_gathered": ({"preset": "gpg", "resample_count": "gathered"}, {}, "plain"),
    "gpg_kl_age": ({"preset": "gpg", "beta": 0.5, "age_scales_kl": True, "resample_threshold": 0.0}, {}, "plain"),
    "grpo": ({"preset": "grpo"}, {}, "plain"),
    "grpo_two_iterations": ({"preset": "grpo", "num_iterations": 2}, {}, "plain"),
    "dr_grpo": ({"preset": "dr_grpo"}, {}, "plain"),
    "dapo": ({"preset": "dapo", "max_resample_draws": 3}, {}, "plain"),
    "gpg_importance": ({"preset": "gpg", "resample_threshold": 0.0}, {"engine": "vllm_server"}, "perturbed"),
    "dapo_importance": ({"preset": "dapo", "max_resample_draws": 2}, {"engine": "vllm_server",
                        "importance_correction": "sequence_truncate"}, "perturbed"),
}

#: The values the code before the seam logged, per case (tests/golden/, recorded on 6a7b297).
BEFORE_THE_SEAM = json.loads((Path(__file__).parent / "golden" / "objectives_before_the_seam.json").read_text())


def _one_step(tmp_path, algorithm, rollout=None, engine="plain", ref_seed=0):
    cfg = tiny_config(tmp_path, rewards=[{"name": "helpers:has_one"}], algorithm=algorithm,
                      rollout={"group_size": 4, "max_completion_length": 6, **(rollout or {})},
                      train={"steps": 1, "prompts_per_step": 4, "micro_batch_size": 5})
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=0)
    ref = build_tiny_model(tok, seed=ref_seed) if make_objective(cfg.algo).needs.ref_logprobs else None
    eng = (PerturbedScriptedEngine if engine == "perturbed" else ScriptedEngine)(tok)
    trainer = Trainer.from_config(cfg, model=model, tokenizer=tok, ref_model=ref, engine=eng)
    (m,) = trainer.train()
    return trainer, m


def _fingerprint(trainer) -> str:
    h = hashlib.sha256()
    for k, v in trainer.acc.unwrap_model(trainer.model).state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("case", list(CASES))
def test_the_presets_train_bit_for_bit_as_before_the_seam(tmp_path, case):
    """Loss, gradient norm, every metric and the updated weights of one step equal the old code's exactly
    (the KL case uses a reference model of another seed, so that its alpha-scaled KL is not zero)."""
    algorithm, rollout, engine = CASES[case]
    trainer, m = _one_step(tmp_path, algorithm, rollout, engine, ref_seed=1 if case == "gpg_kl_age" else 0)
    got = {k: v for k, v in sorted(m.items()) if not k.startswith("perf/")}
    got["params_sha256"] = _fingerprint(trainer)
    before = BEFORE_THE_SEAM[case]
    assert sorted(got) == sorted(before)
    different = {k: (got[k], before[k]) for k in before if got[k] != before[k]
                 and not (isinstance(got[k], float) and math.isnan(got[k]) and math.isnan(before[k]))}
    assert not different, different


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_registered_objective_trains_a_step(tmp_path, name):
    """Each objective, with its preset's settings where it has one, gives a finite loss, an update that
    changes the weights, and per-answer advantages for the logged samples."""
    algorithm = {"preset": name} if name in PRESETS else {"preset": "gpg", "objective": name}
    algorithm["resample_threshold"] = 0.0
    before = {k: v.clone() for k, v in build_tiny_model(build_char_tokenizer(), seed=0).state_dict().items()}
    trainer, m = _one_step(tmp_path, algorithm)
    assert m["adv/no_signal"] == 0.0 and m["optim/skipped"] == 0.0
    assert math.isfinite(m["loss/total"]) and math.isfinite(m["optim/grad_norm"]) and m["optim/grad_norm"] > 0
    after = trainer.acc.unwrap_model(trainer.model).state_dict()
    assert any(not torch.equal(after[k], v) for k, v in before.items())
    assert len(trainer._recent) == 16 and all(math.isfinite(s["advantage"]) for s in trainer._recent)


def test_no_file_under_train_names_an_objective():
    names = "|".join([*sorted(OBJECTIVES), "reinforce", r"dr\. grpo"])
    found = [f"{p.name}: {m.group(0)}" for p in sorted((SRC / "train").rglob("*.py"))
             for m in re.finditer(rf"\b({names})\b", p.read_text(), flags=re.IGNORECASE)]
    assert not found, found


USER_OBJECTIVE = '''
from gpgrl.algorithms import register_objective
from gpgrl.algorithms.advantages import group_advantages
from gpgrl.algorithms.objective import Needs, Objective


@register_objective("squared_advantage")
class SquaredAdvantage(Objective):
    """A = r - group mean (no AGE); the loss's value is the batch mean of A^2, its gradient that of
    -A logp summed over tokens / the batch's tokens."""

    @property
    def needs(self):
        return Needs(importance=False)

    def advantages(self, inputs):
        adv, stats = group_advantages(inputs.rewards.cpu(), inputs.group_size, age=False)
        return adv[inputs.rows], stats

    def loss(self, inputs):
        a = inputs.advantages.to(inputs.logp.dtype)
        surrogate = -(a[:, None] * (inputs.logp - inputs.logp.detach()) * inputs.mask).sum() / inputs.num_tokens
        return (a ** 2).sum() / inputs.num_sequences + surrogate, {}
'''

USER_REWARD = '''
def thirds(completions, **_):
    """0, 1/2, 1, 0, 1/2, 1, ... in the order of the answers: whatever the model writes."""
    return [(i % 3) / 2 for i in range(len(completions))]
'''


@pytest.mark.parametrize("algorithm", [{"preset": "gpg", "objective": "my_objective.py:SquaredAdvantage"},
                                       {"preset": "gpg", "objective": "my_objective:SquaredAdvantage"},
                                       {"preset": "my_objective.py:SquaredAdvantage"}])
def test_an_objective_from_a_file_outside_the_package_trains_through_gpgrl_train(tmp_path, capsys, algorithm):
    """Registered with the public register_objective in a file beside the recipe, named in algorithm.objective
    as a user reward is, trained 2 steps by `gpgrl train`: the logged loss is the formula's."""
    import yaml

    from gpgrl.algorithms import OBJECTIVES
    from gpgrl.cli import main
    from gpgrl.models.tiny import save_tiny_model

    (tmp_path / "my_objective.py").write_text(USER_OBJECTIVE)
    (tmp_path / "my_rewards.py").write_text(USER_REWARD)
    recipe = {
        "model": {"name_or_path": str(save_tiny_model(tmp_path / "model"))},
        "data": {"dataset": "builtin:arithmetic"},
        "rewards": [{"name": "my_rewards.py:thirds"}],
        "rollout": {"group_size": 4, "max_completion_length": 6},
        "algorithm": algorithm,
        "train": {"steps": 2, "prompts_per_step": 4, "micro_batch_size": 5, "output_dir": str(tmp_path / "run")},
        "log": {"progress": False, "sample_every": 0, "report_to": ["jsonl"]},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    try:
        assert main(["train", "--config", str(tmp_path / "recipe.yaml")]) == 0, capsys.readouterr().err
    finally:
        OBJECTIVES.pop("squared_advantage", None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # the rewards by hand: groups of 4 answers of 0, 1/2, 1, 0, 1/2, 1, ...; A = r - the group's mean
    r = torch.tensor([(i % 3) / 2 for i in range(16)], dtype=torch.float64).view(4, 4)
    a = r - r.mean(dim=1, keepdim=True)
    expected = float((a ** 2).mean())
    assert expected == 0.16015625  # (0.6875 + 0.5 + 0.6875 + 0.6875) / 16
    assert [row["step"] for row in rows] == [1, 2]
    for row in rows:
        assert row["loss/total"] == expected and row["loss/policy"] == expected
        assert row["adv/alpha"] == 1.0 and row["optim/grad_norm"] > 0


def test_an_unknown_objective_is_refused_with_the_registered_ones(tmp_path):
    from gpgrl.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match=r"unknown objective 'gpgg'; registered: .*\bgpg\b"):
        tiny_config(tmp_path, algorithm={"preset": "gpg", "objective": "gpgg"})
