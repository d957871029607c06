"""Threshold resampling's count with two processes, for tests/test_distributed.py.

    accelerate launch --cpu --num_processes 2 tests/dist_resample.py OUT_DIR

P = 4 prompts per step (2 per process), G = 2, threshold 1.0 (every group), at most 5 draws. Draw k
holds questions 4k..4k+3; process 0 gets 4k, 4k+1 (both carry a signal), process 1 gets 4k+2, 4k+3
(both degenerate). Writes OUT_DIR/result.pt: per resample_count, the step's draws, count and alpha.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpgrl.config import from_dict
from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
from gpgrl.train.trainer import Trainer
from helpers import ScriptedEngine


def scripted(completions, answer, **_):
    # question i's two answers get (0, 1) when i % 4 < 2 (a signal), else (0, 0)
    return [float(int(a) % 4 < 2 and j % 2 == 1) for j, a in enumerate(answer)]


def main(out: Path) -> None:
    results = {}
    records = [{"question": f"q{i}", "answer": str(i)} for i in range(40)]
    for count in ("kept", "gathered"):
        cfg = from_dict({"model": {"name_or_path": "tiny"}, "data": {"dataset": "mine"},
                         "rollout": {"group_size": 2, "max_completion_length": 4},
                         "algorithm": {"preset": "gpg", "resample_threshold": 1.0, "max_resample_draws": 5,
                                       "resample_count": count},
                         "train": {"steps": 1, "prompts_per_step": 4, "output_dir": str(out / count)},
                         "log": {"progress": False, "report_to": []}})
        tok = build_char_tokenizer()
        trainer = Trainer(cfg, model=build_tiny_model(tok, seed=0), tokenizer=tok, dataset=records,
                          rewards=[scripted], engine=ScriptedEngine(tok))
        draws = iter([list(range(4 * k, 4 * k + 4)) for k in range(10)])
        trainer.rollouts.sampler.draw = lambda n, draws=draws: next(draws)
        (metrics,) = trainer.train()
        results[count] = {k: metrics[k] for k in ("rollout/draws", "rollout/valid_groups_counted", "adv/alpha")}
        trainer.acc.wait_for_everyone()
    if trainer.acc.is_main_process:
        torch.save({"results": results, "world": trainer.acc.num_processes}, out / "result.pt")
    trainer.acc.end_training()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
